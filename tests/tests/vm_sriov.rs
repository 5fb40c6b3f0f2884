//! The `sriov` crate against the real igb/igbvf drivers (emulated 82576). Runs in the VM only.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use nix::errno::Errno;
use sriov::MacAddr;
use sriov::netlink::{LinkOps, Netlink, NetlinkError, VfLinkState, VfSetting, VlanProto};
use sriov::netns::Netns;
use vfnet_e2e::{VF_TIMEOUT, igb_pf, igb_pf_with_vfs, pf_index, say, sysfs};

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn creates_vfs_and_discovery_finds_exactly_them() -> Result<()> {
    let pf = igb_pf()?;
    ensure!(pf.total_vfs == 7, "the 82576 offers 7 VFs, sysfs says {}", pf.total_vfs);
    let s = sysfs();
    s.set_num_vfs(&pf.pci, 0)?;
    ensure!(igb_pf()?.vfs.is_empty(), "VFs left after sriov_numvfs=0");

    s.set_num_vfs(&pf.pci, 4)?;
    let pf = s.wait_for_vfs(&pf.pci, 4, true, VF_TIMEOUT)?;
    let node = s.discover()?;
    ensure!(node.problems.is_empty(), "discovery problems: {:?}", node.problems);
    let found = node.pfs.iter().find(|p| p.pci == pf.pci).context("PF not rediscovered")?;
    ensure!(found.num_vfs == 4 && found.vfs.len() == 4, "expected 4 VFs, found {}", found.vfs.len());
    let nl = Netlink::new()?;
    for (i, vf) in found.vfs.iter().enumerate() {
        ensure!(vf.index as usize == i, "VF order: {} at {i}", vf.index);
        ensure!(vf.pf_pci == pf.pci && vf.pf_netdev == pf.netdev, "VF {} names the wrong PF", vf.pci);
        ensure!(vf.driver.as_deref() == Some("igbvf"), "VF {} driver {:?}", vf.pci, vf.driver);
        ensure!(
            vf.vendor.to_string() == "8086" && vf.device.to_string() == "10ca",
            "VF {} id {}:{}",
            vf.pci,
            vf.vendor,
            vf.device
        );
        let netdev = vf.netdev.as_deref().context("VF without netdev")?;
        let loc = s.locate_vf(&vf.pci)?;
        ensure!(loc.pf == pf.pci && loc.index == vf.index, "locate_vf({}) = {loc:?}", vf.pci);
        ensure!(s.vf_pci(&pf.pci, vf.index)? == vf.pci, "vf_pci round trip");
        // netlink finds the same netdev by its parent PCI device.
        let link = nl.link_by_pci(&vf.pci)?;
        ensure!(link.name == netdev, "netlink says {} for {}, sysfs says {netdev}", link.name, vf.pci);
        say(format_args!("VF {} index {} driver igbvf netdev {netdev}", vf.pci, vf.index));
    }
    let err = s.vf_pci(&pf.pci, 7).unwrap_err();
    ensure!(err.to_string().contains("beyond PF"), "index 7: {err}");
    let err = s.vf_pci(&pf.pci, 5).unwrap_err();
    ensure!(err.to_string().contains("only 4 VFs are enabled"), "index 5: {err}");
    let err = s.set_num_vfs(&pf.pci, 8).unwrap_err();
    ensure!(err.to_string().contains("sriov_totalvfs is 7"), "8 VFs: {err}");
    Ok(())
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn changing_a_nonzero_vf_count_goes_through_zero() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    // The kernel answers EBUSY to 4 -> 2 directly; set_num_vfs passes through 0.
    sysfs().set_num_vfs(&pf.pci, 2)?;
    let pf = sysfs().wait_for_vfs(&pf.pci, 2, true, VF_TIMEOUT)?;
    ensure!(pf.vfs.len() == 2);
    say(format_args!("PF {} went from 4 to 2 VFs", pf.pci));
    Ok(())
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn vf_settings_read_back_from_the_pf_vf_dump() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let nl = Netlink::new()?;
    let pfi = pf_index(&nl, &pf)?;
    let vf = 1;
    let mac: MacAddr = "02:00:5e:10:00:01".parse()?;
    let applied = [
        VfSetting::Vlan { vlan: 100, qos: 3, proto: VlanProto::Dot1Q },
        VfSetting::Mac(mac),
        VfSetting::SpoofChk(false),
        VfSetting::Trust(true),
    ];
    for setting in &applied {
        nl.set_vf(pfi, vf, setting).with_context(|| format!("set {} on VF {vf}", setting.name()))?;
    }
    let states = nl.vf_states(pfi)?;
    ensure!(states.len() == 4, "the PF dump lists {} VFs", states.len());
    let st = states.iter().find(|s| s.index == vf).context("VF 1 missing from the dump")?;
    ensure!((st.vlan, st.qos, st.proto) == (100, 3, VlanProto::Dot1Q), "vlan read back as {st:?}");
    ensure!(st.mac == mac, "mac read back as {}", st.mac);
    ensure!(!st.spoofchk && st.trust, "spoofchk/trust read back as {}/{}", st.spoofchk, st.trust);
    let other = states.iter().find(|s| s.index == 0).context("VF 0")?;
    ensure!(other.vlan == 0 && other.spoofchk && !other.trust, "VF 0 was touched: {other:?}");
    say(format_args!(
        "VF {vf} of {}: vlan 100 qos 3, mac {mac}, spoofchk off, trust on (read back from the PF dump)",
        pf.pci
    ));

    for setting in [
        VfSetting::Vlan { vlan: 0, qos: 0, proto: VlanProto::Dot1Q },
        VfSetting::Mac(MacAddr::ZERO),
        VfSetting::SpoofChk(true),
        VfSetting::Trust(false),
    ] {
        nl.set_vf(pfi, vf, &setting)?;
    }
    let st = nl.vf_states(pfi)?.into_iter().find(|s| s.index == vf).context("VF 1")?;
    ensure!(st.vlan == 0 && st.qos == 0 && st.mac.is_zero() && st.spoofchk && !st.trust, "restore read back as {st:?}");
    Ok(())
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn driver_refusals_are_typed_errors_naming_the_setting() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let nl = Netlink::new()?;
    let pfi = pf_index(&nl, &pf)?;
    let pf_name = pf.netdev.clone().context("PF netdev")?;
    // igb does not implement ndo_set_vf_link_state.
    match nl.set_vf(pfi, 2, &VfSetting::LinkState(VfLinkState::Enable)) {
        Err(NetlinkError::VfSettingRefused { pf, vf: 2, setting: "link state", errno: Errno::EOPNOTSUPP, .. })
            if pf == pf_name => {}
        other => anyhow::bail!("expected EOPNOTSUPP for link state, got {other:?}"),
    }
    // igb applies a rate limit only while the PF link has a speed; without one it answers
    // EINVAL. Either way the answer is exact: a typed refusal, or the rate read back.
    match nl.set_vf(pfi, 2, &VfSetting::Rate { min_mbps: 0, max_mbps: 100 }) {
        Err(e @ NetlinkError::VfSettingRefused { setting: "tx rate", .. }) => say(format_args!("igb refused: {e}")),
        Ok(()) => {
            let st = nl.vf_states(pfi)?.into_iter().find(|s| s.index == 2).context("VF 2")?;
            ensure!(st.max_tx_rate == 100, "rate accepted but reads back as {st:?}");
            nl.set_vf(pfi, 2, &VfSetting::Rate { min_mbps: 0, max_mbps: 0 })?;
            say("igb accepted a 100 Mbps rate (the PF link has a speed) and it read back");
        }
        other => anyhow::bail!("expected a typed refusal of the tx rate or success, got {other:?}"),
    }
    // 802.1ad needs driver support igb lacks.
    match nl.set_vf(pfi, 2, &VfSetting::Vlan { vlan: 10, qos: 0, proto: VlanProto::Dot1Ad }) {
        Err(e @ NetlinkError::VfSettingRefused { setting: "vlan", .. }) => say(format_args!("igb refused: {e}")),
        other => anyhow::bail!("expected a refusal of an 802.1ad VLAN, got {other:?}"),
    }
    let st = nl.vf_states(pfi)?.into_iter().find(|s| s.index == 2).context("VF 2")?;
    ensure!(st.vlan == 0, "a refused VLAN must not stick: {st:?}");
    Ok(())
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn moves_a_vf_netdev_into_a_namespace_renames_it_and_back() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let vf = pf.vfs[3].clone();
    let host_name = vf.netdev.clone().context("VF 3 netdev")?;
    let host = Netns::current()?;
    let pod = Netns::create_anonymous()?;
    let host_nl = Netlink::new()?;
    let pod_nl = Netlink::in_netns(&pod)?;

    let link = host_nl.link_by_name(&host_name)?;
    host_nl.set_netns(link.index, &pod)?;
    // Gone from the host's view, sysfs and netlink alike; present in the pod by PCI address.
    ensure!(host_nl.link_by_name(&host_name).is_err(), "{host_name} still in the host namespace");
    ensure!(sysfs().vf(&vf.pci)?.netdev.is_none(), "sysfs still shows a host netdev for {}", vf.pci);
    let in_pod = pod_nl.link_by_pci(&vf.pci)?;
    pod_nl.rename(in_pod.index, "net1")?;
    pod_nl.set_up(in_pod.index, true)?;
    let renamed = pod_nl.link_by_name("net1")?;
    ensure!(renamed.up && renamed.pci() == Some(vf.pci), "net1 in the pod: {renamed:?}");
    say(format_args!("VF {} netdev {host_name} moved into a namespace as net1 (parentdev {})", vf.pci, vf.pci));

    pod_nl.set_up(renamed.index, false)?;
    pod_nl.rename(renamed.index, &host_name)?;
    pod_nl.set_netns(renamed.index, &host)?;
    let back = host_nl.link_by_pci(&vf.pci)?;
    ensure!(back.name == host_name, "back in the host as {}", back.name);
    // sysfs shows it again (the kernel re-adds the class link on return).
    let start = std::time::Instant::now();
    while sysfs().vf(&vf.pci)?.netdev.as_deref() != Some(host_name.as_str()) {
        ensure!(start.elapsed() < Duration::from_secs(5), "sysfs never showed {host_name} again");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
