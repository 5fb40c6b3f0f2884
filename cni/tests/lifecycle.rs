//! The CNI lifecycle against the recording fake of the node: ADD, DEL, CHECK, GC, STATUS and
//! VERSION through `vfnet_cni::run` (the real entry point), with every failure of ADD rolled
//! back, DEL idempotent and retryable, profiles enforced, each vnic type, and the error JSON of
//! every failure (the rig checks stdout on every call).

#![allow(clippy::unwrap_used)] // test helpers panic on broken fixtures by design

mod common;

use std::sync::{Arc, Mutex};

use common::{CTR, FakeHost, REC_IPAM, Rig, merge};
use nix::errno::Errno;
use serde_json::{Value, json};
use sriov::netlink::{LinkOps, VfLinkState, VfSetting, VlanProto};
use vfnet_cni::host::Host;
use vfnet_cni::journal::Journal;

const MAC: &str = "02:00:00:aa:00:01";

/// ADD's full PF-side and netdev configuration for VF 1.
fn full_conf(rig: &Rig) -> Value {
    rig.conf_for(
        rig.vf(1),
        json!({"vlan": 100, "vlanQoS": 3, "mac": MAC, "spoofchk": "off", "trust": "on", "max_tx_rate": 100, "mtu": 9000}),
    )
}

/// The recording IPAM plugin's ADD result.
fn ipam_result() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.9.0.5/24", "gateway": "10.9.0.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}],
        "dns": {"nameservers": ["10.9.0.53"]}
    })
}

fn with_ipam(rig: &Rig, mut conf: Value) -> Value {
    rig.recording_ipam(&ipam_result(), "1.0.0");
    merge(&mut conf, json!({"ipam": {"type": REC_IPAM}}));
    conf
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

// ----- ADD -----

#[test]
fn add_direct_applies_pf_settings_in_order_and_moves_the_vf_into_the_pod() {
    let rig = Rig::new();
    let result = rig.add(&full_conf(&rig));
    assert_eq!(
        rig.host.changes(),
        strs(&[
            "host: set_vf pf0 vf=1 vlan 100 qos 3 proto 802.1Q",
            "host: set_vf pf0 vf=1 mac 02:00:00:aa:00:01",
            "host: set_vf pf0 vf=1 tx rate min 0 max 100 Mbps",
            "host: set_vf pf0 vf=1 spoofchk off",
            "host: set_vf pf0 vf=1 trust on",
            // No name of the VF is taken in the pod: straight in, renamed there.
            "host: set_up pf0v1 down",
            "host: set_netns pf0v1 -> ns1",
            "ns1: del_altname pf0v1 enp2s0f1",
            "ns1: rename pf0v1 -> net1",
            "ns1: set_mac net1 02:00:00:aa:00:01",
            "ns1: set_mtu net1 9000",
            "ns1: set_up net1 up",
        ])
    );
    let link = rig.host.link(&rig.pod, "net1").unwrap();
    assert_eq!(link.pci(), Some(rig.vf(1)));
    assert_eq!((link.mac.unwrap().to_string().as_str(), link.mtu, link.up), (MAC, 9000, true));
    assert!(link.altnames.is_empty(), "{:?}", link.altnames);
    assert!(rig.host.link("host", "pf0v1").is_none());
    assert_eq!(rig.host.namespaces(), ["host", "ns1"], "no temporary namespace was needed");
    assert_eq!(result["interfaces"][0]["name"], "net1");
}

#[test]
fn add_goes_through_a_temp_namespace_when_a_vf_name_is_taken_in_the_pod() {
    let rig = Rig::new();
    // The pod already has an interface named like the VF's host netdev.
    rig.host.add_dummy(&rig.pod, "pf0v1");
    rig.host.clear_log();
    let before = rig.host.snapshot();
    let result = rig.add(&full_conf(&rig));
    assert_eq!(
        rig.host.changes(),
        strs(&[
            "host: set_vf pf0 vf=1 vlan 100 qos 3 proto 802.1Q",
            "host: set_vf pf0 vf=1 mac 02:00:00:aa:00:01",
            "host: set_vf pf0 vf=1 tx rate min 0 max 100 Mbps",
            "host: set_vf pf0 vf=1 spoofchk off",
            "host: set_vf pf0 vf=1 trust on",
            "temp_ns -> tmp2",
            "host: set_up pf0v1 down",
            "host: set_netns pf0v1 -> tmp2",
            "tmp2: del_altname pf0v1 enp2s0f1",
            "tmp2: rename pf0v1 -> net1",
            "tmp2: set_mac net1 02:00:00:aa:00:01",
            "tmp2: set_mtu net1 9000",
            "tmp2: set_netns net1 -> ns1",
            "ns1: set_up net1 up",
        ])
    );
    // The VF is in the pod as net1, configured; nothing is left on the host or in between.
    let link = rig.host.link(&rig.pod, "net1").unwrap();
    assert_eq!(link.pci(), Some(rig.vf(1)));
    assert_eq!((link.mac.unwrap().to_string().as_str(), link.mtu, link.up), (MAC, 9000, true));
    assert!(link.altnames.is_empty(), "{:?}", link.altnames);
    assert!(rig.host.link("host", "pf0v1").is_none());
    assert_eq!(rig.host.namespaces(), ["host", "ns1"], "the temporary namespace is gone");
    let vf = rig.host.vf_state("pf0", 1).unwrap();
    assert_eq!((vf.vlan, vf.qos, vf.proto, vf.spoofchk, vf.trust), (100, 3, VlanProto::Dot1Q, false, true));
    assert_eq!((vf.mac.to_string().as_str(), vf.max_tx_rate), (MAC, 100));
    assert_eq!(
        result,
        json!({"cniVersion": "1.1.0", "interfaces": [{"name": "net1", "mac": MAC, "mtu": 9000,
            "sandbox": rig.netns.display().to_string(), "pciID": "0000:02:00.1"}]})
    );
    let j = rig.journal(rig.vf(1)).unwrap();
    assert!(j.complete);
    assert_eq!((j.container_id.as_str(), j.ifname.as_str(), j.network.as_str()), (CTR, "net1", "net-a"));
    assert_eq!(j.netdev.as_ref().unwrap().name, "pf0v1");
    assert_eq!(j.netdev.as_ref().unwrap().altnames, ["enp2s0f1"]);
    assert!(rig.host.link(&rig.pod, "pf0v1").is_some(), "the pod's own pf0v1 is untouched");

    // DEL cannot rename the VF back to pf0v1 inside the pod either: through a temp namespace.
    rig.host.clear_log();
    rig.del(&full_conf(&rig));
    let changes = rig.host.changes();
    assert!(changes.iter().any(|c| c.starts_with("temp_ns")), "{changes:#?}");
    assert!(changes.iter().any(|c| c.ends_with("rename net1 -> pf0v1") && !c.starts_with("ns1")), "{changes:#?}");
    assert_eq!(rig.host.snapshot(), before, "everything back, the pod's dummy included");
}

#[test]
fn results_are_rendered_in_every_spec_version() {
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let rig = Rig::new();
        let mut conf = with_ipam(&rig, rig.conf_for(rig.vf(2), json!({"mac": MAC})));
        conf["cniVersion"] = json!(version);
        let result = rig.add(&conf);
        let sandbox = rig.netns.display().to_string();
        let legacy = version < "1.0.0";
        let mut ip = json!({"address": "10.9.0.5/24", "gateway": "10.9.0.1", "interface": 0});
        if legacy {
            ip["version"] = json!("4");
        }
        let interface = if version == "1.1.0" {
            json!({"name": "net1", "mac": MAC, "mtu": 1500, "sandbox": sandbox, "pciID": "0000:02:00.2"})
        } else {
            json!({"name": "net1", "mac": MAC, "sandbox": sandbox})
        };
        assert_eq!(
            result,
            json!({
                "cniVersion": version,
                "interfaces": [interface],
                "ips": [ip],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}],
                "dns": {"nameservers": ["10.9.0.53"]}
            }),
            "{version}"
        );
        rig.del(&conf);
    }
}

#[test]
fn the_journal_is_on_disk_before_the_first_kernel_change() {
    let rig = Rig::new();
    let path = rig.journal_path(rig.vf(1));
    type Seen = Vec<(String, Option<Journal>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let seen2 = Arc::clone(&seen);
    let state_dir = rig.state_dir();
    let vf = rig.vf(1);
    rig.host.on_change(move |line| {
        assert!(path.exists() || !line.contains("set_vf"), "{line} before the journal");
        seen2.lock().unwrap().push((line.to_owned(), Journal::load(&state_dir, &vf).unwrap()));
    });
    rig.add(&full_conf(&rig));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), rig.host.changes().len());
    for (line, journal) in seen.iter() {
        let j = journal.as_ref().unwrap_or_else(|| panic!("no journal at {line}"));
        // It holds the state to go back to, and what ADD is about to apply.
        assert_eq!((j.original.vlan, j.original.spoofchk, j.original.trust), (0, true, false), "{line}");
        assert_eq!(j.netdev.as_ref().unwrap().name, "pf0v1");
        assert_eq!(j.applied[0], VfSetting::Vlan { vlan: 100, qos: 3, proto: VlanProto::Dot1Q });
        assert!(!j.complete, "{line}");
    }
    assert!(seen[0].0.starts_with("host: set_vf"), "{:?}", seen[0]);
}

#[test]
fn a_driver_refusal_mid_pf_settings_rolls_back_the_vlan_already_set() {
    let rig = Rig::new();
    let before = rig.host.snapshot();
    rig.host.refuse("link state", Errno::EOPNOTSUPP);
    let conf = rig.conf_for(rig.vf(1), json!({"vlan": 100, "vlanQoS": 3, "link_state": "enable"}));
    rig.exec("ADD", &conf, &[]).fails(104, &["link state", "enable", "pf0", "VF 1", "EOPNOTSUPP"]);
    let changes = rig.host.changes();
    assert_eq!(
        changes[..3],
        strs(&[
            "host: set_vf pf0 vf=1 vlan 100 qos 3 proto 802.1Q",
            "host: set_vf pf0 vf=1 link state enable (failed: EOPNOTSUPP)",
            "host: set_vf pf0 vf=1 vlan 0 qos 0 proto 802.1Q",
        ])
    );
    assert!(changes[3..].iter().all(|c| !c.contains("set_vf")), "{changes:#?}");
    assert_eq!(rig.host.snapshot(), before);
    assert!(rig.journal(rig.vf(1)).is_none(), "a rolled-back ADD leaves no journal");
    // The runtime's DEL after the failed ADD is a no-op success.
    rig.host.clear_log();
    rig.del(&conf);
    assert!(rig.host.changes().is_empty(), "{:?}", rig.host.changes());
}

/// Where ADD fails: the Nth call of a kernel operation, or the IPAM plugin's ADD.
#[derive(Debug, Clone, Copy)]
enum FailAt {
    Nth(&'static str, usize, Errno),
    IpamAdd,
}

#[test]
fn every_failure_of_add_is_rolled_back_in_reverse_and_leaves_no_journal() {
    use FailAt::{IpamAdd, Nth};
    // The PF-side settings ADD applies, undone newest first.
    let undo_all = [
        "host: set_vf pf0 vf=1 trust off",
        "host: set_vf pf0 vf=1 spoofchk on",
        "host: set_vf pf0 vf=1 tx rate min 0 max 0 Mbps",
        "host: set_vf pf0 vf=1 mac 00:00:00:00:00:00",
        "host: set_vf pf0 vf=1 vlan 0 qos 0 proto 802.1Q",
    ];
    // Each case twice: with the VF moving straight into the pod, and through a temporary
    // namespace (a dummy in the pod holds one of the VF's names).
    let cases: [(&str, FailAt, u64, &str, bool); 15] = [
        ("second PF setting", Nth("set_vf", 2, Errno::EINVAL), 104, "refused to set mac", false),
        ("host link down", Nth("set_up", 1, Errno::EIO), 106, "set down", false),
        ("move into the pod", Nth("set_netns", 1, Errno::EINVAL), 106, "move to namespace", false),
        ("altname removal", Nth("del_altname", 1, Errno::ENOENT), 106, "delete altname", false),
        ("rename", Nth("rename", 1, Errno::EEXIST), 106, "rename", false),
        ("MAC", Nth("set_mac", 1, Errno::EADDRNOTAVAIL), 106, "set MAC", false),
        ("MTU", Nth("set_mtu", 1, Errno::EINVAL), 106, "set MTU", false),
        ("IPAM ADD", IpamAdd, 107, "injected IPAM failure", false),
        ("address", Nth("add_address", 1, Errno::EEXIST), 106, "10.9.0.5/24", false),
        ("pod link up", Nth("set_up", 2, Errno::EIO), 106, "set up", false),
        ("route", Nth("add_route", 1, Errno::ENETUNREACH), 106, "0.0.0.0/0", false),
        ("temp namespace", Nth("temp_ns", 1, Errno::ENOMEM), 106, "ENOMEM", true),
        ("move to the temp namespace", Nth("set_netns", 1, Errno::EINVAL), 106, "move to namespace", true),
        ("rename in the temp namespace", Nth("rename", 1, Errno::EEXIST), 106, "rename", true),
        (
            "move from the temp namespace into the pod",
            Nth("set_netns", 2, Errno::EEXIST),
            106,
            "move to namespace",
            true,
        ),
    ];
    for (what, at, code, mentions, through_temp) in cases {
        let rig = Rig::new();
        if through_temp {
            rig.host.add_dummy(&rig.pod, "enp2s0f1");
        }
        let conf = with_ipam(&rig, full_conf(&rig));
        let before = rig.host.snapshot();
        match at {
            Nth(op, n, errno) => rig.host.fail_nth(op, n, errno),
            IpamAdd => rig.ipam_fail("ADD", true),
        }
        rig.exec("ADD", &conf, &[]).fails(code, &[mentions]);
        assert_eq!(rig.host.snapshot(), before, "{what}: the node is exactly as before");
        assert_eq!(rig.host.namespaces(), ["host", "ns1"], "{what}: no temporary namespace left");
        assert!(rig.journal(rig.vf(1)).is_none(), "{what}: journal left behind");
        assert_eq!(rig.ipam_calls().last().map(String::as_str), Some("DEL ctr-a net1"), "{what}: IPAM DEL runs");
        // The PF-side settings are undone newest first (only the VLAN, when the MAC failed).
        let changes = rig.host.changes();
        let applied = ["vlan 100", "mac 02:00:00:aa", "max 100", "spoofchk off", "trust on"];
        let undone: Vec<&str> = changes
            .iter()
            .map(String::as_str)
            .filter(|c| c.contains("set_vf") && !c.contains("(failed") && !applied.iter().any(|a| c.contains(a)))
            .collect();
        let want = if undone.len() == 1 { &undo_all[4..] } else { &undo_all[..] };
        assert_eq!(undone, want, "{what}: {changes:#?}");
        // The runtime's DEL after a failed ADD succeeds and changes nothing.
        rig.host.clear_log();
        rig.ipam_fail("ADD", false);
        rig.del(&conf);
        assert!(rig.host.changes().is_empty(), "{what}: {:?}", rig.host.changes());
        assert_eq!(rig.host.snapshot(), before, "{what}");
    }
}

#[test]
fn an_incomplete_rollback_keeps_the_original_error_and_its_details() {
    // The original failure's cause (the plugin's own error) or appended detail (the route) comes
    // first in `details`, then the rollback's failures; nothing is overwritten.
    for (what, code, original_msg, original_detail) in [
        ("IPAM ADD", 107, "IPAM plugin rec-ipam (ADD) failed", "code 11: injected IPAM failure"),
        ("route", 106, "ENETUNREACH", "route 0.0.0.0/0 via Some(10.9.0.1)"),
    ] {
        let rig = Rig::new();
        let conf = with_ipam(&rig, full_conf(&rig));
        match what {
            "route" => rig.host.fail_nth("add_route", 1, Errno::ENETUNREACH),
            _ => rig.ipam_fail("ADD", true),
        }
        rig.ipam_fail("DEL", true);
        let reply = rig.exec("ADD", &conf, &[]);
        reply.fails(code, &[original_msg]);
        let details = reply.json["details"].as_str().unwrap();
        let journal = rig.journal_path(rig.vf(1)).display().to_string();
        let rollback =
            format!("rollback incomplete, journal {journal} kept for DEL: IPAM plugin rec-ipam (DEL) failed");
        assert!(
            details.starts_with(&format!("{original_detail}; {rollback}")),
            "{what}: the original detail once, then the rollback's: {details:?}"
        );
        assert!(rig.journal(rig.vf(1)).is_some(), "{what}: the journal is kept for DEL");
        rig.ipam_fail("DEL", false);
        rig.ipam_fail("ADD", false);
        rig.del(&conf);
        assert!(rig.journal(rig.vf(1)).is_none(), "{what}: DEL finishes the rollback");
    }
}

#[test]
fn a_failure_in_the_temp_namespace_rolls_back_without_waiting_for_the_kernel_to_empty_it() {
    // The kernel returns a dead namespace's netdevs asynchronously; ADD's rollback must not
    // depend on that having happened.
    let rig = Rig::new();
    rig.host.defer_netns_cleanup(true);
    let before = rig.host.snapshot();
    rig.host.fail_nth("set_mtu", 1, Errno::EINVAL);
    let conf = full_conf(&rig);
    rig.exec("ADD", &conf, &[]).fails(106, &["set MTU"]);
    assert!(rig.journal(rig.vf(1)).is_none(), "{:?}", rig.host.calls());
    rig.host.settle();
    assert_eq!(rig.host.snapshot(), before);
}

#[test]
fn announcements_are_enabled_but_optional() {
    let rig = Rig::new();
    let conf = with_ipam(&rig, full_conf(&rig));
    rig.host.fail_nth("sysctl", 1, Errno::EROFS);
    rig.add(&conf);
    assert_eq!(rig.host.sysctls(), ["ns1 net/ipv6/conf/net1/ndisc_notify=1"]);
    let changes = rig.host.changes();
    let tail = &changes[changes.len() - 5..];
    assert_eq!(
        tail,
        strs(&[
            "ns1: sysctl net/ipv4/conf/net1/arp_notify=1 (failed: cannot write 1 to /proc/sys/net/ipv4/conf/net1/arp_notify: Read-only file system)",
            "ns1: sysctl net/ipv6/conf/net1/ndisc_notify=1",
            "ns1: add_address net1 10.9.0.5/24",
            "ns1: set_up net1 up",
            "ns1: add_route 0.0.0.0/0 via 10.9.0.1 dev net1",
        ])
    );
    assert_eq!(rig.host.addresses(&rig.pod, "net1"), ["10.9.0.5/24".parse().unwrap()]);
    assert_eq!(rig.host.routes(&rig.pod).len(), 1);
}

#[test]
fn ipam_gets_the_network_configuration_and_its_result_must_have_ips() {
    let rig = Rig::new();
    let conf = with_ipam(&rig, full_conf(&rig));
    rig.add(&conf);
    let (cmd, sent) = rig.ipam_stdin().into_iter().find(|(c, _)| c == "ADD").unwrap();
    assert_eq!(cmd, "ADD");
    assert_eq!(sent["name"], "net-a");
    assert_eq!(sent["ipam"]["type"], REC_IPAM);
    assert_eq!(sent["vlan"], 100, "the whole network configuration");
    assert_eq!(rig.ipam_calls(), ["ADD ctr-a net1"]);
    rig.del(&conf);
    assert_eq!(rig.ipam_calls(), ["ADD ctr-a net1", "DEL ctr-a net1"]);

    // An IPAM result without IPs is an error, rolled back like any other.
    let rig = Rig::new();
    let conf = with_ipam(&rig, full_conf(&rig));
    rig.recording_ipam(&json!({"cniVersion": "1.0.0"}), "1.0.0");
    let before = rig.host.snapshot();
    rig.exec("ADD", &conf, &[]).fails(107, &["returned no IP configuration", REC_IPAM]);
    assert_eq!(rig.host.snapshot(), before);
    assert_eq!(rig.ipam_calls(), ["ADD ctr-a net1", "DEL ctr-a net1"]);

    // A missing IPAM plugin is a configuration error, found before anything is touched.
    let rig = Rig::new();
    let conf = rig.conf_for(rig.vf(1), json!({"ipam": {"type": "no-such-ipam"}}));
    rig.exec("ADD", &conf, &[]).fails(7, &["ipam.type", "no-such-ipam"]);
    assert!(rig.host.changes().is_empty());
}

#[test]
fn the_device_info_file_is_written_for_multus_and_removed_by_del() {
    let rig = Rig::new();
    let path = rig.dir.path().join("devinfo/net-a-ctr-a-net1.json");
    let conf = rig.conf_for(rig.vf(1), json!({"runtimeConfig": {"CNIDeviceInfoFile": path}}));
    rig.add(&conf);
    let info: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        info,
        json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:02:00.1", "pf-pci-address": "0000:01:00.0"}})
    );
    rig.del(&conf);
    assert!(!path.exists());
}

// ----- DEL -----

#[test]
fn del_restores_pf_settings_and_the_netdev_and_is_idempotent() {
    let rig = Rig::new();
    let before = rig.host.snapshot();
    let conf = full_conf(&rig);
    rig.add(&conf);
    rig.host.clear_log();
    rig.del(&conf);
    assert_eq!(
        rig.host.changes(),
        strs(&[
            "host: set_vf pf0 vf=1 trust off",
            "host: set_vf pf0 vf=1 spoofchk on",
            "host: set_vf pf0 vf=1 tx rate min 0 max 0 Mbps",
            "host: set_vf pf0 vf=1 mac 00:00:00:00:00:00",
            "host: set_vf pf0 vf=1 vlan 0 qos 0 proto 802.1Q",
            // Nothing in the pod or the host holds its names: restored in place, then home.
            "ns1: set_up net1 down",
            "ns1: rename net1 -> pf0v1",
            "ns1: set_mac pf0v1 02:00:00:00:00:01",
            "ns1: set_mtu pf0v1 1500",
            "ns1: add_altname pf0v1 enp2s0f1",
            "ns1: set_netns pf0v1 -> host",
            "host: set_up pf0v1 up",
        ])
    );
    assert_eq!(rig.host.snapshot(), before, "name, MAC, MTU, altnames, state and VF settings are back");
    assert!(rig.journal(rig.vf(1)).is_none());

    // Again: nothing to do, success.
    rig.host.clear_log();
    rig.del(&conf);
    assert!(rig.host.changes().is_empty());
    // DEL of an attachment vfnet never saw, without deviceID (the runtime may not pass it).
    let mut unknown = conf.clone();
    unknown.as_object_mut().unwrap().remove("deviceID");
    rig.exec("DEL", &unknown, &[("CNI_CONTAINERID", "never-added")]).ok();
    assert!(rig.host.changes().is_empty());
    assert_eq!(rig.host.snapshot(), before);
}

#[test]
fn del_without_device_id_finds_the_attachment_by_container_and_ifname() {
    let rig = Rig::new();
    let before = rig.host.snapshot();
    let conf = full_conf(&rig);
    rig.add(&conf);
    let mut bare = conf.clone();
    bare.as_object_mut().unwrap().remove("deviceID");
    rig.del(&bare);
    assert_eq!(rig.host.snapshot(), before);
}

#[test]
fn del_after_the_pod_namespace_is_gone_finds_the_vf_back_on_the_host_under_the_pod_ifname() {
    for (netns_on_del, collide) in [(true, false), (false, false), (true, true)] {
        let rig = Rig::new();
        let host_before = rig.host.snapshot_of("host");
        let conf = full_conf(&rig);
        rig.add(&conf);
        if collide {
            rig.host.add_dummy("host", "net1");
        }
        rig.host.delete_netns(&rig.netns);
        let (ns, link) = rig.host.locate(&rig.vf(1)).unwrap();
        assert_eq!(ns, "host", "the kernel returned the VF");
        if collide {
            assert!(link.name.starts_with("dev"), "{link:?}");
        } else {
            assert_eq!(link.name, "net1");
        }
        let env: &[(&str, &str)] = if netns_on_del { &[] } else { &[("CNI_NETNS", "")] };
        rig.exec("DEL", &conf, env).ok();
        if collide {
            rig.host.remove_link("host", "net1");
        }
        assert_eq!(rig.host.snapshot_of("host"), host_before, "netns passed on DEL: {netns_on_del}");
        assert!(rig.journal(rig.vf(1)).is_none());
    }
}

#[test]
fn a_failing_restore_step_keeps_the_journal_and_a_retried_del_finishes() {
    for (op, n, errno, mentions) in [
        ("rename", 1, Errno::EBUSY, "rename"),
        ("set_vf", 1, Errno::EIO, "trust"),
        ("set_netns", 1, Errno::EINVAL, "move to namespace"),
        ("add_altname", 1, Errno::EEXIST, "add altname"),
    ] {
        let rig = Rig::new();
        let before = rig.host.snapshot();
        let conf = full_conf(&rig);
        rig.add(&conf);
        rig.host.fail_nth(op, n, errno);
        let journal = rig.journal_path(rig.vf(1));
        rig.exec("DEL", &conf, &[]).fails(
            112,
            &["cannot fully restore VF 0000:02:00.1", CTR, &journal.display().to_string(), "kept", mentions],
        );
        assert!(journal.exists(), "{op}: the journal is kept for the retry");
        rig.del(&conf);
        assert!(!journal.exists(), "{op}");
        assert_eq!(rig.host.snapshot(), before, "{op}");
    }
}

// ----- CHECK -----

#[test]
fn check_passes_on_a_healthy_attachment_and_names_each_difference() {
    let rig = Rig::new();
    let conf = with_ipam(&rig, full_conf(&rig));
    let result = rig.add(&conf);
    let mut check = conf.clone();
    check["prevResult"] = result;
    rig.exec("CHECK", &check, &[]).ok();
    let (cmd, sent) = rig.ipam_stdin().into_iter().rfind(|(c, _)| c != "VERSION").unwrap();
    assert_eq!(cmd, "CHECK", "CHECK is forwarded to IPAM");
    assert_eq!(sent["prevResult"]["ips"][0]["address"], "10.9.0.5/24");

    let pod = rig.pod.clone();
    // Behind the plugin's back: the VLAN, the MAC, the MTU, the state, an address.
    rig.host.tamper_vf("pf0", 1, &VfSetting::Vlan { vlan: 200, qos: 0, proto: VlanProto::Dot1Q });
    rig.exec("CHECK", &check, &[]).fails(109, &["VF 0000:02:00.1", "pf0 VF 1", "vlan is not 100 qos 3 proto 802.1Q"]);
    rig.host.tamper_vf("pf0", 1, &VfSetting::Vlan { vlan: 100, qos: 3, proto: VlanProto::Dot1Q });
    rig.host.tamper_vf("pf0", 1, &VfSetting::SpoofChk(true));
    rig.exec("CHECK", &check, &[]).fails(109, &["spoofchk is not off"]);
    rig.host.tamper_vf("pf0", 1, &VfSetting::SpoofChk(false));
    rig.exec("CHECK", &check, &[]).ok();

    rig.host.tamper_link(&pod, "net1", |l| l.mac = Some("02:00:00:bb:00:01".parse().unwrap()));
    rig.exec("CHECK", &check, &[]).fails(109, &["net1 in the pod", "MAC is", "02:00:00:bb:00:01", MAC]);
    rig.host.tamper_link(&pod, "net1", |l| l.mac = Some(MAC.parse().unwrap()));
    rig.host.tamper_link(&pod, "net1", |l| l.mtu = 1500);
    rig.exec("CHECK", &check, &[]).fails(109, &["MTU is 1500, ADD set 9000"]);
    rig.host.tamper_link(&pod, "net1", |l| l.mtu = 9000);
    rig.host.tamper_link(&pod, "net1", |l| l.up = false);
    rig.exec("CHECK", &check, &[]).fails(109, &["net1 in the pod: is down"]);
    rig.host.tamper_link(&pod, "net1", |l| l.up = true);
    rig.host.tamper_link(&pod, "net1", |l| l.addresses.clear());
    rig.exec("CHECK", &check, &[]).fails(109, &["address 10.9.0.5/24 is missing"]);
    rig.host.tamper_link(&pod, "net1", |l| l.addresses = vec!["10.9.0.5/24".parse().unwrap()]);
    rig.exec("CHECK", &check, &[]).ok();
    rig.ipam_fail("CHECK", true);
    rig.exec("CHECK", &check, &[]).fails(107, &["injected IPAM failure"]);
    rig.ipam_fail("CHECK", false);
    rig.host.remove_link(&pod, "net1");
    rig.exec("CHECK", &check, &[]).fails(109, &["net1 in the pod: interface is missing"]);
    rig.exec("CHECK", &check, &[("CNI_CONTAINERID", "ctr-zz")])
        .fails(109, &["no vfnet attachment for container ctr-zz interface net1"]);
}

#[test]
fn check_of_an_add_that_never_completed_fails() {
    let rig = Rig::new();
    let conf = full_conf(&rig);
    let mut j = {
        rig.add(&conf);
        rig.journal(rig.vf(1)).unwrap()
    };
    j.complete = false;
    j.store(&rig.state_dir()).unwrap();
    rig.exec("CHECK", &conf, &[]).fails(109, &["never completed"]);
}

// ----- GC and STATUS -----

#[test]
fn gc_releases_only_the_stale_attachments_of_its_own_network() {
    let rig = Rig::new();
    rig.recording_ipam(&ipam_result(), "1.1.0");
    let before = rig.host.snapshot_of("host");
    let conf_a = rig.conf_for(rig.vf(0), json!({"vlan": 10, "ipam": {"type": REC_IPAM}}));
    rig.add(&conf_a);
    let (pod_b, _) = rig.new_pod("pod-b");
    let conf_b = rig.conf_for(rig.vf(1), json!({"vlan": 11, "ipam": {"type": REC_IPAM}}));
    rig.exec("ADD", &conf_b, &[("CNI_CONTAINERID", "ctr-b"), ("CNI_NETNS", &pod_b.display().to_string())]).ok();
    let (pod_c, _) = rig.new_pod("pod-c");
    let conf_c = rig.conf_for(rig.vf(2), json!({"name": "net-b", "vlan": 12}));
    rig.exec("ADD", &conf_c, &[("CNI_CONTAINERID", "ctr-c"), ("CNI_NETNS", &pod_c.display().to_string())]).ok();

    let gc = rig.conf_for(
        rig.vf(0),
        json!({"deviceID": null, "ipam": {"type": REC_IPAM},
               "cni.dev/valid-attachments": [{"containerID": CTR, "ifname": "net1"}, {"containerID": "ctr-b", "ifname": "net9"}]}),
    );
    rig.exec("GC", &gc, &[("CNI_CONTAINERID", ""), ("CNI_NETNS", ""), ("CNI_IFNAME", "")]).ok();
    assert!(rig.journal(rig.vf(0)).is_some(), "valid attachment kept");
    assert!(rig.journal(rig.vf(1)).is_none(), "stale attachment released");
    assert!(rig.journal(rig.vf(2)).is_some(), "another network's attachment is not this GC's business");
    assert_eq!(rig.host.vf_state("pf0", 0).unwrap().vlan, 10);
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().vlan, 0);
    assert_eq!(rig.host.vf_state("pf0", 2).unwrap().vlan, 12);
    assert_eq!(rig.host.locate(&rig.vf(1)).unwrap().1.name, "pf0v1");
    let calls = rig.ipam_calls();
    assert!(calls.contains(&"DEL ctr-b net1".to_owned()), "{calls:?}");
    let (_, sent) = rig.ipam_stdin().into_iter().find(|(c, _)| c == "GC").expect("GC forwarded to a 1.1.0 IPAM");
    assert_eq!(sent["cni.dev/valid-attachments"][0]["containerID"], CTR);

    rig.del(&conf_a);
    rig.exec("DEL", &conf_c, &[("CNI_CONTAINERID", "ctr-c"), ("CNI_NETNS", &pod_c.display().to_string())]).ok();
    assert_eq!(rig.host.snapshot_of("host"), before);

    // GC needs 1.1.0 and the list.
    let mut old = gc.clone();
    old["cniVersion"] = json!("1.0.0");
    rig.exec("GC", &old, &[]).fails(1, &["GC needs cniVersion 1.1.0"]);
    let mut no_list = gc.clone();
    no_list.as_object_mut().unwrap().remove("cni.dev/valid-attachments");
    rig.exec("GC", &no_list, &[]).fails(7, &["cni.dev/valid-attachments"]);
}

#[test]
fn gc_reports_what_it_could_not_release_and_keeps_those_journals() {
    let rig = Rig::new();
    let conf = full_conf(&rig);
    rig.add(&conf);
    rig.host.fail_nth("rename", 1, Errno::EBUSY);
    let gc = rig.conf_for(rig.vf(1), json!({"cni.dev/valid-attachments": []}));
    rig.exec("GC", &gc, &[]).fails(112, &["GC could not release 1 attachment(s)", "0000:02:00.1"]);
    assert!(rig.journal(rig.vf(1)).is_some());
    rig.exec("GC", &gc, &[]).ok();
    assert!(rig.journal(rig.vf(1)).is_none());
}

#[test]
fn status_is_ready_unless_the_state_directory_is_unusable() {
    let rig = Rig::new();
    let conf = rig.conf_for(rig.vf(0), json!({}));
    let reply = rig.exec("STATUS", &conf, &[("CNI_CONTAINERID", ""), ("CNI_NETNS", ""), ("CNI_IFNAME", "")]);
    assert_eq!((reply.status, reply.stdout.as_str()), (0, ""));

    let file = rig.dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let bad = rig.conf_for(rig.vf(0), json!({"stateDir": file}));
    rig.exec("STATUS", &bad, &[]).fails(50, &["state directory", &file.display().to_string(), "unusable"]);

    let mut old = conf.clone();
    old["cniVersion"] = json!("1.0.0");
    rig.exec("STATUS", &old, &[]).fails(1, &["STATUS needs cniVersion 1.1.0"]);

    // IPAM that speaks 1.1.0 is asked too; one that is not ready makes vfnet not ready.
    rig.recording_ipam(&ipam_result(), "1.1.0");
    let with = rig.conf_for(rig.vf(0), json!({"ipam": {"type": REC_IPAM}}));
    rig.exec("STATUS", &with, &[]).ok();
    assert_eq!(rig.ipam_calls(), ["STATUS ctr-a net1"]);
    rig.ipam_fail("STATUS", true);
    rig.exec("STATUS", &with, &[]).fails(50, &["injected IPAM failure"]);
    rig.ipam_fail_with("STATUS", 51);
    rig.exec("STATUS", &with, &[]).fails(51, &["injected IPAM failure"]);
    // IPAM that stops at 1.0.0 is not asked.
    rig.recording_ipam(&ipam_result(), "1.0.0");
    rig.exec("STATUS", &with, &[]).ok();
}

// ----- ownership -----

#[test]
fn a_vf_owned_by_a_live_attachment_is_busy_and_reclaimed_once_its_pod_is_gone() {
    let rig = Rig::new();
    let before = rig.host.snapshot_of("host");
    let conf = full_conf(&rig);
    rig.add(&conf);
    let (pod_b, label_b) = rig.new_pod("pod-b");
    let b_env = [("CNI_CONTAINERID", "ctr-b"), ("CNI_NETNS", pod_b.to_str().unwrap())];
    rig.host.clear_log();
    rig.exec("ADD", &conf, &b_env)
        .fails(100, &["VF 0000:02:00.1 is attached to container ctr-a as net1", &rig.netns.display().to_string()]);
    assert!(rig.host.changes().is_empty(), "a busy VF is not touched");
    assert_eq!(rig.journal(rig.vf(1)).unwrap().container_id, CTR);

    // Pod A dies without a DEL: B reclaims the VF.
    rig.host.delete_netns(&rig.netns);
    rig.exec("ADD", &conf, &b_env).ok();
    assert_eq!(rig.journal(rig.vf(1)).unwrap().container_id, "ctr-b");
    assert_eq!(rig.host.link(&label_b, "net1").unwrap().pci(), Some(rig.vf(1)));
    let j = rig.journal(rig.vf(1)).unwrap();
    assert_eq!(j.original.vlan, 0, "B's journal holds the pristine state, not A's settings");
    assert_eq!(j.netdev.as_ref().unwrap().name, "pf0v1");
    rig.exec("DEL", &conf, &b_env).ok();
    assert_eq!(rig.host.snapshot_of("host"), before);
    // A's late DEL finds nothing of its own.
    rig.host.clear_log();
    rig.del(&conf);
    assert!(rig.host.changes().is_empty());
}

#[test]
fn adds_on_different_vfs_run_in_parallel_and_one_vf_goes_to_one_pod() {
    let rig = Rig::new();
    let before = rig.host.snapshot_of("host");
    let pods: Vec<_> = (0..4).map(|i| rig.new_pod(&format!("p{i}")).0).collect();
    std::thread::scope(|s| {
        for (i, pod) in pods.iter().enumerate() {
            let rig = &rig;
            s.spawn(move || {
                let conf = rig.conf_for(rig.vf(i as u32), json!({"vlan": 100 + i}));
                let ctr = format!("ctr-{i}");
                rig.exec("ADD", &conf, &[("CNI_CONTAINERID", &ctr), ("CNI_NETNS", pod.to_str().unwrap())]).ok();
            });
        }
    });
    for i in 0..4u32 {
        assert_eq!(rig.host.vf_state("pf0", i).unwrap().vlan, 100 + i as u16);
        assert_eq!(rig.journal(rig.vf(i)).unwrap().container_id, format!("ctr-{i}"));
    }
    for (i, pod) in pods.iter().enumerate() {
        let conf = rig.conf_for(rig.vf(i as u32), json!({}));
        let ctr = format!("ctr-{i}");
        rig.exec("DEL", &conf, &[("CNI_CONTAINERID", &ctr), ("CNI_NETNS", pod.to_str().unwrap())]).ok();
    }
    assert_eq!(rig.host.snapshot_of("host"), before);

    // Two pods racing for one VF: exactly one gets it, the other hears it is busy.
    let (x, y) = (rig.new_pod("x").0, rig.new_pod("y").0);
    let replies: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = [("ctr-x", &x), ("ctr-y", &y)]
            .into_iter()
            .map(|(ctr, pod)| {
                let rig = &rig;
                s.spawn(move || {
                    let conf = rig.conf_for(rig.vf(3), json!({"vlan": 7}));
                    rig.exec("ADD", &conf, &[("CNI_CONTAINERID", ctr), ("CNI_NETNS", pod.to_str().unwrap())])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won = replies.iter().filter(|r| r.status == 0).count();
    assert_eq!(won, 1, "{replies:?}");
    let lost = replies.iter().find(|r| r.status != 0).unwrap();
    assert_eq!(lost.err().0, 100, "{lost:?}");
}

// ----- profiles, through run() -----

fn tenant_env() -> [(&'static str, &'static str); 1] {
    [("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=tenant-a;K8S_POD_NAME=web-0")]
}

#[test]
fn a_profile_governs_the_vf_settings() {
    let rig = Rig::new();
    rig.profile(
        "tenant-a",
        json!({"vlan": 100, "vlanQoS": 3, "spoofChk": true, "trust": false, "mtu": 9000,
               "allowedNamespaces": ["tenant-a"], "physicalNetwork": "physnet1"}),
    );
    rig.record(rig.vf(1), Some("physnet1"));
    let conf = rig.conf_for(rig.vf(1), json!({"profile": "tenant-a", "spoofchk": "on"}));
    rig.exec("ADD", &conf, &tenant_env()).ok();
    assert_eq!(
        rig.host.changes()[..3],
        strs(&[
            "host: set_vf pf0 vf=1 vlan 100 qos 3 proto 802.1Q",
            "host: set_vf pf0 vf=1 spoofchk on",
            "host: set_vf pf0 vf=1 trust off",
        ])
    );
    assert_eq!(rig.host.link(&rig.pod, "net1").unwrap().mtu, 9000, "the profile's MTU");
    rig.exec("DEL", &conf, &tenant_env()).ok();
}

#[test]
fn profile_refusals_name_the_key_the_profile_and_touch_nothing() {
    let rig = Rig::new();
    rig.profile("tenant-a", json!({"vlan": 100, "allowedNamespaces": ["tenant-a"], "physicalNetwork": "physnet1"}));
    rig.record(rig.vf(1), Some("physnet1"));
    let env = tenant_env();
    let conf = |extra: Value| {
        let mut c = rig.conf_for(rig.vf(1), json!({"profile": "tenant-a"}));
        merge(&mut c, extra);
        c
    };
    rig.exec("ADD", &conf(json!({"vlan": 200})), &env)
        .fails(7, &["network definition key vlan=200 contradicts VfProfile tenant-a (vlan=100)"]);
    rig.exec("ADD", &conf(json!({"profile": "nope"})), &env)
        .fails(101, &["profile nope not found", &rig.profile_dir().to_string()]);
    rig.exec("ADD", &conf(json!({})), &[("CNI_ARGS", "K8S_POD_NAMESPACE=tenant-b;K8S_POD_NAME=x")])
        .fails(102, &["namespace tenant-b may not use VfProfile tenant-a"]);
    rig.exec("ADD", &conf(json!({})), &[]).fails(102, &["pod's namespace is unknown"]);
    rig.record(rig.vf(1), Some("physnet2"));
    rig.exec("ADD", &conf(json!({})), &env)
        .fails(103, &["VF 0000:02:00.1 is on physical network physnet2", "requires physnet1"]);
    std::fs::remove_dir_all(rig.run_dir().devices()).unwrap();
    rig.exec("ADD", &conf(json!({})), &env).fails(103, &["VF 0000:02:00.1 has no device record", "physnet1"]);
    // Without a profile, a pod may not choose its VLAN.
    rig.exec("ADD", &conf(json!({"profile": null, "args": {"cni": {"vlan": 5}}})), &env)
        .fails(7, &["args.cni.vlan", "needs a VfProfile"]);
    assert!(rig.host.changes().is_empty(), "{:?}", rig.host.changes());
    assert!(rig.journal(rig.vf(1)).is_none());
}

#[test]
fn a_pod_picks_its_vlan_inside_the_profile_range_only() {
    let rig = Rig::new();
    rig.profile("tenant-b", json!({"podVlanRange": {"min": 200, "max": 299}, "vlanQoS": 0}));
    let conf = |vlan: Option<u16>| {
        let mut c = rig.conf_for(rig.vf(1), json!({"profile": "tenant-b"}));
        if let Some(v) = vlan {
            c["args"] = json!({"cni": {"vlan": v}});
        }
        c
    };
    rig.exec("ADD", &conf(Some(300)), &[])
        .fails(7, &["invalid args.cni.vlan: 300 is outside VfProfile tenant-b's podVlanRange 200-299"]);
    rig.exec("ADD", &conf(None), &[]).fails(7, &["requires a VLAN"]);
    assert!(rig.host.changes().is_empty());
    rig.exec("ADD", &conf(Some(210)), &[]).ok();
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().vlan, 210);
    rig.exec("DEL", &conf(Some(210)), &[]).ok();
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().vlan, 0);
}

// ----- vnic types -----

#[test]
fn a_vfio_vf_is_userspace_pf_settings_only_and_ipam_is_reported_not_applied() {
    let rig = Rig::new();
    rig.host.rebind_vf(1, Some("vfio-pci")).unwrap();
    let before = rig.host.snapshot();
    let conf = with_ipam(&rig, rig.conf_for(rig.vf(1), json!({"vlan": 300, "mac": MAC})));
    let result = rig.add(&conf);
    assert_eq!(
        rig.host.changes(),
        strs(&["host: set_vf pf0 vf=1 vlan 300 qos 0 proto 802.1Q", "host: set_vf pf0 vf=1 mac 02:00:00:aa:00:01"])
    );
    assert_eq!(
        result,
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "net1", "mac": MAC, "sandbox": rig.netns.display().to_string(), "pciID": "0000:02:00.1"}],
            "ips": [{"address": "10.9.0.5/24", "gateway": "10.9.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}],
            "dns": {"nameservers": ["10.9.0.53"]}
        })
    );
    assert_eq!(rig.host.link_names(&rig.pod), ["lo"], "nothing enters the pod");
    assert_eq!(rig.journal(rig.vf(1)).unwrap().vnic_type, vfnet_cni::config::VnicType::Userspace);
    let mut check = conf.clone();
    check["prevResult"] = result;
    rig.exec("CHECK", &check, &[]).ok();
    rig.del(&conf);
    assert_eq!(rig.host.snapshot(), before);
    assert_eq!(rig.ipam_calls(), ["ADD ctr-a net1", "CHECK ctr-a net1", "DEL ctr-a net1"]);
}

#[test]
fn a_vnic_type_that_does_not_fit_the_driver_is_refused() {
    let rig = Rig::new();
    rig.host.rebind_vf(1, Some("vfio-pci")).unwrap();
    rig.host.rebind_vf(2, None).unwrap();
    let conf = |vf: u32, vnic: &str| rig.conf_for(rig.vf(vf), json!({"vnicType": vnic}));
    rig.exec("ADD", &conf(0, "userspace"), &[])
        .fails(111, &["vnicType userspace needs VF 0000:02:00.0 bound to vfio-pci, but it is bound to igbvf"]);
    rig.exec("ADD", &conf(1, "direct"), &[])
        .fails(111, &["vnicType direct needs a VF netdev, but VF 0000:02:00.1 is bound to vfio-pci"]);
    rig.exec("ADD", &conf(1, "macvtap"), &[]).fails(111, &["vnicType macvtap"]);
    rig.exec("ADD", &conf(2, "userspace"), &[]).fails(111, &["bound to no driver"]);
    assert!(rig.host.changes().is_empty());
}

#[test]
fn macvtap_is_created_on_the_vf_in_the_pod_and_deleted_by_del() {
    let rig = Rig::new();
    let before = rig.host.snapshot();
    let conf = rig.conf_for(rig.vf(1), json!({"vnicType": "macvtap", "mtu": 9000, "mac": MAC, "vlan": 5}));
    let result = rig.add(&conf);
    assert_eq!(
        rig.host.changes(),
        strs(&[
            "host: set_vf pf0 vf=1 vlan 5 qos 0 proto 802.1Q",
            "host: set_vf pf0 vf=1 mac 02:00:00:aa:00:01",
            "temp_ns -> tmp2",
            "host: set_mtu pf0v1 9000",
            "host: set_up pf0v1 up",
            "host: add_macvtap vft000002001 on pf0v1 mode passthru",
            "host: set_netns vft000002001 -> tmp2",
            "tmp2: rename vft000002001 -> net1",
            "tmp2: set_mac net1 02:00:00:aa:00:01",
            "tmp2: set_mtu net1 9000",
            "tmp2: set_netns net1 -> ns1",
            "ns1: set_up net1 up",
        ])
    );
    let tap = rig.host.link(&rig.pod, "net1").unwrap();
    assert_eq!((tap.kind.as_deref(), tap.mtu, tap.up), (Some("macvtap"), 9000, true));
    let vf = rig.host.link("host", "pf0v1").unwrap();
    assert_eq!((vf.mtu, vf.up), (9000, true), "the VF stays on the host, up, with room for the MTU");
    assert_eq!(result["interfaces"][0]["mac"], MAC);
    assert_eq!(result["interfaces"][0]["pciID"], "0000:02:00.1");
    rig.exec("CHECK", &conf, &[]).ok();
    rig.host.clear_log();
    rig.del(&conf);
    assert!(rig.host.changes().contains(&"ns1: del_link net1".to_owned()), "{:?}", rig.host.changes());
    assert_eq!(rig.host.snapshot(), before);
    assert_eq!(rig.host.namespaces(), ["host", "ns1"]);

    // A macvtap ADD that fails after the macvtap exists removes it.
    rig.host.fail_nth("rename", 1, Errno::EEXIST);
    rig.exec("ADD", &conf, &[]).fails(106, &["rename"]);
    assert_eq!(rig.host.snapshot(), before);
    assert!(rig.journal(rig.vf(1)).is_none());
}

// ----- environment and error JSON -----

#[test]
fn every_failure_prints_the_error_json_with_the_right_code() {
    let rig = Rig::new();
    let conf = rig.conf_for(rig.vf(1), json!({}));
    rig.exec("", &conf, &[("CNI_COMMAND", "")]).fails(4, &["CNI_COMMAND is not set"]);
    rig.exec("ADDD", &conf, &[]).fails(4, &["\"ADDD\""]);
    rig.exec("ADD", &conf, &[("CNI_NETNS", "")]).fails(4, &["CNI_NETNS is required for ADD"]);
    rig.exec("ADD", &conf, &[("CNI_IFNAME", "")]).fails(4, &["CNI_IFNAME is required for ADD"]);
    rig.exec("ADD", &conf, &[("CNI_CONTAINERID", "-x")]).fails(4, &["CNI_CONTAINERID \"-x\""]);
    rig.exec("ADD", &conf, &[("CNI_ARGS", "broken")]).fails(4, &["CNI_ARGS"]);
    let mut bad = conf.clone();
    bad["cniVersion"] = json!("0.2.0");
    rig.exec("ADD", &bad, &[]).fails(1, &["\"0.2.0\""]);
    rig.exec("ADD", &rig.conf_for(rig.vf(1), json!({"vlan": 5000})), &[]).fails(7, &["invalid vlan: 5000"]);
    rig.exec("ADD", &rig.conf_for(rig.vf(1), json!({"deviceID": null})), &[]).fails(7, &["invalid deviceID: missing"]);
    rig.exec("ADD", &rig.conf_for("0000:09:00.0".parse().unwrap(), json!({})), &[]).fails(105, &["0000:09:00.0"]);
    rig.exec("ADD", &conf, &[("CNI_NETNS", "/nonexistent/netns")]).fails(3, &["/nonexistent/netns", "gone"]);
    rig.host.add_dummy(&rig.pod, "net1");
    rig.exec("ADD", &conf, &[]).fails(110, &["interface net1 already exists"]);
    rig.host.remove_link(&rig.pod, "net1");
    // The VF netdev is not on the host (someone else moved it away).
    let (elsewhere_path, elsewhere) = rig.new_pod("elsewhere");
    let links = rig.host.links(&rig.host.host_ns().unwrap()).unwrap();
    let idx = links.link_by_name("pf0v1").unwrap().index;
    links.set_up(idx, false).unwrap();
    links.set_netns(idx, &rig.host.open_ns(&elsewhere_path).unwrap()).unwrap();
    assert!(rig.host.link(&elsewhere, "pf0v1").is_some());
    rig.exec("ADD", &conf, &[]).fails(105, &["VF 0000:02:00.1 has no netdev in the host namespace"]);
    assert!(rig.journal(rig.vf(1)).is_none());

    // Unparseable stdin: answered in the newest version.
    let out = vfnet_cni::run(&rig.host, |k| (k == "CNI_COMMAND").then(|| "ADD".to_owned()), b"{nope");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!((out.status, v["code"].as_u64(), v["cniVersion"].as_str()), (1, Some(6), Some("1.1.0")));
    // An error answers in the config's version.
    let mut old = conf.clone();
    old["cniVersion"] = json!("0.4.0");
    let reply = rig.exec("ADD", &old, &[("CNI_NETNS", "")]);
    assert_eq!(reply.json["cniVersion"], "0.4.0");
}

#[test]
fn version_reports_every_supported_version() {
    let rig = Rig::new();
    for (stdin, want) in [(json!({"cniVersion": "0.4.0"}), "0.4.0"), (json!({}), "1.1.0")] {
        let reply = rig.exec("VERSION", &stdin, &[("CNI_CONTAINERID", ""), ("CNI_NETNS", ""), ("CNI_IFNAME", "")]);
        assert_eq!(
            reply.ok(),
            &json!({"cniVersion": want, "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
        );
    }
    let out = vfnet_cni::run(&rig.host, |k| (k == "CNI_COMMAND").then(|| "VERSION".to_owned()), b"");
    assert_eq!(out.status, 0);
    assert_eq!(serde_json::from_str::<Value>(&out.stdout).unwrap()["cniVersion"], "1.1.0");
}

#[test]
fn a_fake_host_with_several_pfs_resolves_each_vf_to_its_own_pf() {
    use sriov::PciAddress;
    use sriov::fixture::{FixtureBuilder, PfSpec};
    let pf1: PciAddress = "0000:05:00.0".parse().unwrap();
    let fake = FakeHost::new(
        FixtureBuilder::new()
            .pf(PfSpec::igb("0000:01:00.0".parse().unwrap(), "pf0").vfs(7, 2))
            .pf(PfSpec::igb(pf1, "pf1").vfs(7, 2)),
    )
    .unwrap();
    let rig = Rig::with(fake);
    let vf = rig.host.fixture().pfs()[1].vf_pci(1);
    let conf = rig.conf_for(vf, json!({"vlan": 42, "link_state": "disable"}));
    rig.add(&conf);
    assert_eq!(rig.host.vf_state("pf1", 1).unwrap().vlan, 42);
    assert_eq!(rig.host.vf_state("pf1", 1).unwrap().link_state, Some(VfLinkState::Disable));
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().vlan, 0);
    assert_eq!(rig.host.link(&rig.pod, "net1").unwrap().pci(), Some(vf));
    rig.del(&conf);
    assert_eq!(rig.host.vf_state("pf1", 1).unwrap().link_state, Some(VfLinkState::Auto));
}

// ----- edges -----

#[test]
fn an_ifname_equal_to_an_altname_of_the_vf_is_usable() {
    // The kernel counts altnames, the device's own included, as taken names: the stale altnames
    // must go before the rename.
    let rig = Rig::new();
    let before = rig.host.snapshot();
    let conf = rig.conf_for(rig.vf(1), json!({}));
    let env = [("CNI_IFNAME", "enp2s0f1")];
    rig.exec("ADD", &conf, &env).ok();
    assert_eq!(rig.host.link(&rig.pod, "enp2s0f1").unwrap().pci(), Some(rig.vf(1)));
    rig.exec("CHECK", &conf, &env).ok();
    rig.exec("DEL", &conf, &env).ok();
    assert_eq!(rig.host.snapshot(), before);
}

#[test]
fn a_transient_failure_to_open_the_owners_namespace_does_not_hand_its_vf_to_another_pod() {
    let rig = Rig::new();
    let conf = full_conf(&rig);
    rig.add(&conf);
    let (pod_b, _) = rig.new_pod("pod-b");
    // ADD opens the new pod's namespace first, then the owner's: that one fails with EMFILE.
    rig.host.fail_nth("open_ns", 2, Errno::EMFILE);
    rig.exec("ADD", &conf, &[("CNI_CONTAINERID", "ctr-b"), ("CNI_NETNS", pod_b.to_str().unwrap())])
        .fails(100, &["attached to container ctr-a"]);
    assert_eq!(rig.journal(rig.vf(1)).unwrap().container_id, CTR);
    assert_eq!(rig.host.link(&rig.pod, "net1").unwrap().pci(), Some(rig.vf(1)), "still in pod A");
}

#[test]
fn a_crash_at_every_step_of_add_is_undone_by_del() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // How many changes a complete ADD makes.
    let steps = {
        let rig = Rig::new();
        let conf = with_ipam(&rig, full_conf(&rig));
        rig.add(&conf);
        rig.host.changes().len()
    };
    for crash_at in 0..steps {
        let rig = Rig::new();
        let conf = with_ipam(&rig, full_conf(&rig));
        let before = rig.host.snapshot();
        // The process dies just before change number `crash_at`: its namespace handles close
        // (the temporary namespace dies), its journal stays.
        let n = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&n);
        rig.host.on_change(move |line| {
            if counter.fetch_add(1, Ordering::SeqCst) == crash_at {
                panic!("crash before {line}");
            }
        });
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rig.exec("ADD", &conf, &[])));
        assert!(crashed.is_err(), "step {crash_at} was reached");
        n.store(usize::MAX / 2, Ordering::SeqCst);
        assert!(rig.journal(rig.vf(1)).is_some(), "step {crash_at}: the journal outlives the crash");
        rig.del(&conf);
        assert_eq!(rig.host.snapshot(), before, "crash before step {crash_at}: {:#?}", rig.host.changes());
        assert!(rig.journal(rig.vf(1)).is_none());
    }
}

#[test]
fn macvtap_del_after_the_pod_is_gone_restores_the_vf() {
    let rig = Rig::new();
    let before = rig.host.snapshot_of("host");
    let conf = rig.conf_for(rig.vf(1), json!({"vnicType": "macvtap", "mtu": 9000}));
    rig.add(&conf);
    rig.host.delete_netns(&rig.netns);
    rig.del(&conf);
    assert_eq!(rig.host.snapshot_of("host"), before);
}

#[test]
fn without_a_profile_an_absent_vlan_is_untouched_and_vlan_0_clears_it() {
    let rig = Rig::new();
    rig.host.tamper_vf("pf0", 1, &VfSetting::Vlan { vlan: 55, qos: 1, proto: VlanProto::Dot1Q });
    let untouched = rig.conf_for(rig.vf(1), json!({"spoofchk": "on"}));
    rig.add(&untouched);
    assert!(rig.host.changes().iter().all(|c| !c.contains("vlan")), "{:?}", rig.host.changes());
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().vlan, 55);
    rig.del(&untouched);

    let cleared = rig.conf_for(rig.vf(1), json!({"vlan": 0}));
    rig.add(&cleared);
    assert_eq!((rig.host.vf_state("pf0", 1).unwrap().vlan, rig.host.vf_state("pf0", 1).unwrap().qos), (0, 0));
    rig.del(&cleared);
    let vf = rig.host.vf_state("pf0", 1).unwrap();
    assert_eq!((vf.vlan, vf.qos), (55, 1), "DEL puts the administrator's VLAN back");
}

#[test]
fn sriov_cni_mac_sources_reach_the_vf_and_the_netdev() {
    let rig = Rig::new();
    let conf = rig.conf_for(rig.vf(1), json!({"mac": "02:00:00:00:00:aa"}));
    let env = [("CNI_ARGS", "IgnoreUnknown=true;MAC=02:00:00:00:00:bb")];
    let result = rig.exec("ADD", &conf, &env).ok().clone();
    assert_eq!(result["interfaces"][0]["mac"], "02:00:00:00:00:bb", "CNI_ARGS MAC beats the config's mac");
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().mac.to_string(), "02:00:00:00:00:bb");
    assert_eq!(rig.host.link(&rig.pod, "net1").unwrap().mac.unwrap().to_string(), "02:00:00:00:00:bb");
    rig.exec("DEL", &conf, &env).ok();
    let runtime = rig.conf_for(rig.vf(1), json!({"runtimeConfig": {"mac": "02:00:00:00:00:cc"}}));
    assert_eq!(rig.exec("ADD", &runtime, &env).ok()["interfaces"][0]["mac"], "02:00:00:00:00:cc");
}

#[test]
fn resource_name_without_device_id_asks_kubelet() {
    let rig = Rig::new();
    let socket = rig.dir.path().join("no-kubelet.sock");
    let conf = rig.conf_for(
        rig.vf(1),
        json!({"deviceID": null, "resourceName": "vfnet.dev/pool-a", "podResourcesSocket": socket}),
    );
    rig.exec("ADD", &conf, &[]).fails(4, &["resourceName vfnet.dev/pool-a needs K8S_POD_NAMESPACE and K8S_POD_NAME"]);
    rig.exec("ADD", &conf, &[("CNI_ARGS", "K8S_POD_NAMESPACE=tenant-a;K8S_POD_NAME=web-0")])
        .fails(11, &["cannot ask kubelet for pod tenant-a/web-0's vfnet.dev/pool-a"]);
    assert!(rig.host.changes().is_empty());
}

#[test]
fn del_right_after_the_pod_namespace_died_waits_for_the_kernel_to_return_the_vf() {
    let rig = Rig::new();
    let host_before = rig.host.snapshot_of("host");
    let conf = full_conf(&rig);
    rig.add(&conf);
    rig.host.defer_netns_cleanup(true);
    rig.host.delete_netns(&rig.netns);
    assert_eq!(rig.host.locate(&rig.vf(1)).unwrap().0, "limbo");
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(300));
            rig.host.settle();
        });
        rig.del(&conf);
    });
    assert_eq!(rig.host.snapshot_of("host"), host_before);
}

#[test]
fn a_chained_add_extends_the_previous_plugins_result() {
    let rig = Rig::new();
    let mut conf = with_ipam(&rig, rig.conf_for(rig.vf(1), json!({})));
    merge(
        &mut conf,
        json!({"prevResult": {"cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "sandbox": rig.netns.display().to_string()}],
            "ips": [{"address": "192.168.7.2/24", "interface": 0}],
            "dns": {"nameservers": ["192.168.7.53"]}}}),
    );
    let result = rig.add(&conf);
    assert_eq!(result["interfaces"][0]["name"], "eth0", "{result}");
    assert_eq!(result["interfaces"][1]["name"], "net1", "{result}");
    assert_eq!(result["ips"][0], json!({"address": "192.168.7.2/24", "interface": 0}));
    assert_eq!(result["ips"][1]["address"], "10.9.0.5/24");
    assert_eq!(result["ips"][1]["interface"], 1, "vfnet's address points at vfnet's interface");
    assert_eq!(result["dns"]["nameservers"][0], "10.9.0.53", "IPAM's DNS wins over the previous one");
}
