//! The `vfnet` CNI plugin binary on real igb VFs (emulated 82576), driven the way a runtime
//! drives it: environment, config on stdin, real network namespaces under /run/netns, Debian's
//! host-local for IPAM. Runs in the VM only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use sriov::netlink::{LinkOps, Netlink, VfSetting, VlanProto};
use sriov::netns::Netns;
use sriov::sysfs::Pf;
use vfnet_e2e::cni::{Invocation, VfSnapshot, snapshot, wait_for_host_netdev};
use vfnet_e2e::netns::NamedNetns;
use vfnet_e2e::{igb_pf_with_vfs, rebind, say};

/// A test's private directories and config builder.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Result<Self> {
        let base = std::env::var_os("VFNET_SCRATCH").map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = base.join(format!("vm-cni-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["state", "run", "profiles", "ipam"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        Ok(Self { dir })
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn config(&self, name: &str, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.1.0",
            "name": name,
            "type": "vfnet",
            "stateDir": self.dir.join("state"),
            "runDir": self.dir.join("run"),
            "profileDir": self.dir.join("profiles"),
            "logLevel": "debug",
        });
        if let (Value::Object(m), Value::Object(e)) = (&mut c, extra) {
            m.extend(e);
        }
        c
    }

    fn host_local(&self, subnet: &str) -> Value {
        json!({"type": "host-local", "subnet": subnet, "dataDir": self.dir.join("ipam"), "routes": [{"dst": "10.99.0.0/16"}]})
    }

    fn profile(&self, name: &str, spec: Value) -> Result<()> {
        let obj =
            json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile", "metadata": {"name": name}, "spec": spec});
        std::fs::write(self.dir.join("profiles").join(format!("{name}.json")), obj.to_string())?;
        Ok(())
    }

    fn journal_exists(&self, vf: &sriov::PciAddress) -> bool {
        self.state().join("vfs").join(format!("{vf}.json")).exists()
    }

    /// IPs host-local still has reserved (files named after addresses in its network dir).
    fn reservations(&self, network: &str) -> usize {
        std::fs::read_dir(self.dir.join("ipam").join(network))
            .map(|d| {
                d.flatten().filter(|e| e.file_name().to_string_lossy().parse::<std::net::IpAddr>().is_ok()).count()
            })
            .unwrap_or(0)
    }
}

fn pf_name(pf: &Pf) -> Result<String> {
    pf.netdev.clone().context("igb PF without netdev")
}

fn pod_links(ns: &NamedNetns) -> Result<Netlink> {
    Ok(Netlink::in_netns(&Netns::open(ns.path())?)?)
}

fn with_prev(mut conf: Value, prev: &Value) -> Value {
    conf["prevResult"] = prev.clone();
    conf
}

fn del(id: &str, ns: Option<&Path>, conf: &Value) -> Result<()> {
    Invocation::vfnet("DEL", id, ns, "net1").run(conf)?.ok()?;
    Ok(())
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn direct_add_check_del_under_a_profile() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let pfn = pf_name(&pf)?;
    let vf = pf.vfs[0].clone();
    let before = snapshot(&pfn, vf.index, &vf.pci)?;
    let s = Scratch::new("direct")?;
    s.profile("tenant-a", json!({"vlan": 100, "vlanQoS": 3, "spoofChk": true, "trust": false, "mtu": 1400, "allowedNamespaces": ["tenant-a"]}))?;
    let pod = NamedNetns::create("vfnet-direct")?;
    let conf = s.config("net-a", json!({"deviceID": vf.pci, "profile": "tenant-a", "mac": "02:00:5e:00:00:aa", "ipam": s.host_local("10.56.1.0/24")}));
    let mut add = Invocation::vfnet("ADD", "ctr-direct", Some(pod.path()), "net1");
    add.args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=tenant-a;K8S_POD_NAME=web-0".into();
    let out = add.run(&conf)?.ok()?;
    let res = out.json()?;
    say(format_args!("ADD of VF {} ({} VF {}) took {:?}: {res}", vf.pci, pfn, vf.index, out.elapsed));
    ensure!(res["cniVersion"] == "1.1.0");
    ensure!(
        res["interfaces"][0]["name"] == "net1" && res["interfaces"][0]["pciID"] == vf.pci.to_string(),
        "interfaces: {res}"
    );
    ensure!(
        res["interfaces"][0]["mac"] == "02:00:5e:00:00:aa" && res["interfaces"][0]["mtu"] == 1400,
        "interface: {res}"
    );
    let ip = res["ips"][0]["address"].as_str().context("no IP")?.to_owned();
    ensure!(ip.starts_with("10.56.1."), "ip {ip}");

    // During the attachment: the PF's VF table shows the profile's VLAN and QoS.
    let during = snapshot(&pfn, vf.index, &vf.pci)?;
    ensure!((during.pf_side.vlan, during.pf_side.qos) == (100, 3), "VF table during attachment: {:?}", during.pf_side);
    ensure!(during.pf_side.spoofchk && !during.pf_side.trust, "spoofchk/trust: {:?}", during.pf_side);
    ensure!(during.netdev.is_none(), "VF netdev still in the host: {:?}", during.netdev);
    let links = pod_links(&pod)?;
    let net1 = links.link_by_name("net1")?;
    ensure!(net1.pci() == Some(vf.pci) && net1.up && net1.mtu == 1400, "net1 in the pod: {net1:?}");
    ensure!(links.addresses(net1.index)?.iter().any(|a| a.to_string() == ip), "pod address {ip} missing");
    ensure!(links.routes(net1.index)?.iter().any(|r| r.dst.to_string() == "10.99.0.0/16"), "IPAM route missing");
    say(format_args!("pod sees net1 = VF {} with {ip}, mtu 1400; PF table VF {}: vlan 100 qos 3", vf.pci, vf.index));

    // CHECK agrees, and notices a VLAN changed behind its back.
    Invocation::vfnet("CHECK", "ctr-direct", Some(pod.path()), "net1").run(&with_prev(conf.clone(), &res))?.ok()?;
    let nl = Netlink::new()?;
    let pfi = nl.link_by_name(&pfn)?.index;
    nl.set_vf(pfi, vf.index, &VfSetting::Vlan { vlan: 200, qos: 3, proto: VlanProto::Dot1Q })?;
    let check =
        Invocation::vfnet("CHECK", "ctr-direct", Some(pod.path()), "net1").run(&with_prev(conf.clone(), &res))?;
    ensure!(check.error_code() == Some(109), "CHECK after drift: {check:?}");
    say(format_args!("CHECK after a VLAN change behind vfnet's back: {}", check.stdout));

    // DEL puts everything back.
    let out =
        Invocation::vfnet("DEL", "ctr-direct", Some(pod.path()), "net1").run(&with_prev(conf.clone(), &res))?.ok()?;
    let after = snapshot(&pfn, vf.index, &vf.pci)?;
    ensure!(after == before, "after DEL {after:?} != before {before:?}");
    ensure!(!s.journal_exists(&vf.pci), "journal left after DEL");
    ensure!(s.reservations("net-a") == 0, "host-local still holds an address");
    say(format_args!(
        "DEL took {:?}; VF {} back as {:?} with vlan {} qos {}",
        out.elapsed, vf.pci, after.netdev, after.pf_side.vlan, after.pf_side.qos
    ));
    // A repeated DEL, and a DEL that never had an ADD, succeed.
    del("ctr-direct", Some(pod.path()), &conf)?;
    del("never-added", None, &conf)?;
    Ok(())
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn macvtap_on_a_vf() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let pfn = pf_name(&pf)?;
    let vf = pf.vfs[1].clone();
    let before = snapshot(&pfn, vf.index, &vf.pci)?;
    let s = Scratch::new("macvtap")?;
    let pod = NamedNetns::create("vfnet-macvtap")?;
    let conf = s.config(
        "net-m",
        json!({"deviceID": vf.pci, "vnicType": "macvtap", "vlan": 120, "ipam": s.host_local("10.56.2.0/24")}),
    );
    let res = Invocation::vfnet("ADD", "ctr-mvt", Some(pod.path()), "net1").run(&conf)?.ok()?.json()?;
    let links = pod_links(&pod)?;
    let tap = links.link_by_name("net1")?;
    ensure!(tap.kind.as_deref() == Some("macvtap") && tap.up, "net1 in the pod: {tap:?}");
    let during = snapshot(&pfn, vf.index, &vf.pci)?;
    ensure!(
        during.netdev.as_ref().map(|n| &n.0) == before.netdev.as_ref().map(|n| &n.0),
        "the VF must stay on the host"
    );
    ensure!(during.pf_side.vlan == 120, "vlan during: {:?}", during.pf_side);
    say(format_args!("macvtap net1 on VF {} ({:?}) in the pod, VF vlan 120", vf.pci, during.netdev));
    Invocation::vfnet("CHECK", "ctr-mvt", Some(pod.path()), "net1").run(&with_prev(conf.clone(), &res))?.ok()?;
    del("ctr-mvt", Some(pod.path()), &conf)?;
    ensure!(pod_links(&pod)?.link_by_name("net1").is_err(), "macvtap left in the pod");
    let after = snapshot(&pfn, vf.index, &vf.pci)?;
    ensure!(after.pf_side == before.pf_side, "VF table after DEL: {:?}", after.pf_side);
    Ok(())
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn userspace_vf_on_vfio_pci() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let pfn = pf_name(&pf)?;
    let vf = pf.vfs[3].clone();
    rebind(&vf.pci, Some("vfio-pci"))?;
    let group = vfnet_e2e::sysfs().vf(&vf.pci)?.iommu_group.context("no IOMMU group")?;
    ensure!(Path::new(&format!("/dev/vfio/{group}")).exists(), "/dev/vfio/{group} missing");
    let s = Scratch::new("userspace")?;
    let pod = NamedNetns::create("vfnet-dpdk")?;
    let conf =
        s.config("net-u", json!({"deviceID": vf.pci, "vlan": 300, "vlanQoS": 1, "ipam": s.host_local("10.56.3.0/24")}));
    let result = (|| -> Result<()> {
        let res = Invocation::vfnet("ADD", "ctr-dpdk", Some(pod.path()), "net1").run(&conf)?.ok()?.json()?;
        ensure!(
            res["ips"][0]["address"].as_str().is_some_and(|a| a.starts_with("10.56.3.")),
            "IPAM result reported: {res}"
        );
        ensure!(res["interfaces"][0]["pciID"] == vf.pci.to_string(), "{res}");
        ensure!(pod_links(&pod)?.links()?.len() == 1, "a userspace attachment must not put links in the pod");
        let during = snapshot(&pfn, vf.index, &vf.pci)?;
        ensure!((during.pf_side.vlan, during.pf_side.qos) == (300, 1), "{:?}", during.pf_side);
        say(format_args!(
            "userspace VF {} on vfio-pci (/dev/vfio/{group}): vlan 300 qos 1, IPAM {} reported",
            vf.pci, res["ips"][0]["address"]
        ));
        // A userspace vnicType on a netdev VF, and direct on a vfio VF, are refused.
        let wrong = Invocation::vfnet("ADD", "ctr-wrong", Some(pod.path()), "net2")
            .run(&s.config("net-u2", json!({"deviceID": vf.pci, "vnicType": "direct"})))?;
        ensure!(wrong.error_code() == Some(111), "direct on vfio: {wrong:?}");
        del("ctr-dpdk", Some(pod.path()), &conf)?;
        ensure!(snapshot(&pfn, vf.index, &vf.pci)?.pf_side.vlan == 0, "vlan not restored");
        Ok(())
    })();
    rebind(&vf.pci, None)?;
    wait_for_host_netdev(&vf.pci, Duration::from_secs(30))?;
    result
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn del_after_the_pod_namespace_is_gone() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let pfn = pf_name(&pf)?;
    let vf = pf.vfs[2].clone();
    let before = snapshot(&pfn, vf.index, &vf.pci)?;
    let s = Scratch::new("gone")?;
    let mut pod = NamedNetns::create("vfnet-gone")?;
    let conf = s.config(
        "net-g",
        json!({"deviceID": vf.pci, "vlan": 130, "mac": "02:00:5e:00:00:bb", "ipam": s.host_local("10.56.4.0/24")}),
    );
    Invocation::vfnet("ADD", "ctr-gone", Some(pod.path()), "net1").run(&conf)?.ok()?;
    pod.delete()?;
    let back = wait_for_host_netdev(&vf.pci, Duration::from_secs(10))?;
    say(format_args!("pod namespace deleted: the kernel returned VF {} to the host as {back}", vf.pci));
    del("ctr-gone", Some(pod.path()), &conf)?;
    let after = snapshot(&pfn, vf.index, &vf.pci)?;
    ensure!(after == before, "after DEL {after:?} != before {before:?}");
    ensure!(s.reservations("net-g") == 0, "IPAM not released");
    Ok(())
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn driver_refusal_mid_add_rolls_back() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let pfn = pf_name(&pf)?;
    let vf = pf.vfs[0].clone();
    let before = snapshot(&pfn, vf.index, &vf.pci)?;
    let s = Scratch::new("refusal")?;
    let pod = NamedNetns::create("vfnet-refusal")?;
    // VLAN first (applied), then link state: igb refuses it.
    let conf = s.config(
        "net-r",
        json!({"deviceID": vf.pci, "vlan": 140, "link_state": "enable", "ipam": s.host_local("10.56.5.0/24")}),
    );
    let out = Invocation::vfnet("ADD", "ctr-refused", Some(pod.path()), "net1").run(&conf)?;
    ensure!(out.error_code() == Some(104), "expected code 104: {out:?}");
    ensure!(out.stdout.contains("link state"), "the error must name the setting: {}", out.stdout);
    let after = snapshot(&pfn, vf.index, &vf.pci)?;
    ensure!(after == before, "VLAN not rolled back: {after:?} vs {before:?}");
    ensure!(!s.journal_exists(&vf.pci), "journal left after a rolled-back ADD");
    say(format_args!("igb refused link state mid-ADD: {}; VLAN 140 rolled back", out.stdout));
    del("ctr-refused", Some(pod.path()), &conf)?;
    Ok(())
}

/// A crash at every step of ADD, each followed by DEL, leaves the VF exactly as before.
#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn crash_at_every_add_step_then_del_restores() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let pfn = pf_name(&pf)?;
    let vf = pf.vfs[1].clone();
    let before = snapshot(&pfn, vf.index, &vf.pci)?;
    let s = Scratch::new("crash")?;
    let info = s.dir.join("devinfo.json");
    for &point in vfnet_cni::fault::ADD_POINTS {
        let pod = NamedNetns::create("vfnet-crash")?;
        let conf = s.config(
            "net-c",
            json!({"deviceID": vf.pci, "vlan": 150, "vlanQoS": 2, "spoofchk": "off", "trust": "on", "mac": "02:00:5e:00:00:cc",
                   "mtu": 1300, "ipam": s.host_local("10.56.6.0/24"), "runtimeConfig": {"CNIDeviceInfoFile": info}}),
        );
        let id = format!("ctr-crash-{point}");
        let mut add = Invocation::vfnet("ADD", &id, Some(pod.path()), "net1");
        add.env.push(("VFNET_FAULT".into(), point.into()));
        let out = add.run(&conf)?;
        ensure!(out.code.is_none(), "ADD should have crashed at {point}: {out:?}");
        del(&id, Some(pod.path()), &conf)?;
        wait_for_host_netdev(&vf.pci, Duration::from_secs(10))?;
        let after = snapshot(&pfn, vf.index, &vf.pci)?;
        ensure!(after == before, "crash at {point} then DEL: {after:?} != {before:?}");
        ensure!(
            !s.journal_exists(&vf.pci) && !info.exists() && s.reservations("net-c") == 0,
            "state left after crash at {point}"
        );
        ensure!(pod_links(&pod)?.links()?.len() == 1, "pod not empty after crash at {point}");
        say(format_args!("crash at {point:<17} then DEL: VF {} exactly as before", vf.pci));
    }
    Ok(())
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn busy_vf_is_refused_and_a_dead_owner_is_reclaimed() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let pfn = pf_name(&pf)?;
    let vf = pf.vfs[2].clone();
    let before = snapshot(&pfn, vf.index, &vf.pci)?;
    let s = Scratch::new("busy")?;
    let mut pod_a = NamedNetns::create("vfnet-a")?;
    let pod_b = NamedNetns::create("vfnet-b")?;
    let conf = s.config("net-b", json!({"deviceID": vf.pci, "vlan": 160, "ipam": s.host_local("10.56.7.0/24")}));
    Invocation::vfnet("ADD", "ctr-a", Some(pod_a.path()), "net1").run(&conf)?.ok()?;
    let busy = Invocation::vfnet("ADD", "ctr-b", Some(pod_b.path()), "net1").run(&conf)?;
    ensure!(busy.error_code() == Some(100), "second ADD on a live VF: {busy:?}");
    ensure!(busy.stdout.contains("ctr-a"), "the error names the owner: {}", busy.stdout);
    pod_a.delete()?; // pod A dies without a DEL
    Invocation::vfnet("ADD", "ctr-b", Some(pod_b.path()), "net1").run(&conf)?.ok()?;
    ensure!(pod_links(&pod_b)?.link_by_name("net1")?.pci() == Some(vf.pci), "pod B did not get the VF");
    // Pod A's late DEL must not touch the VF pod B now has.
    del("ctr-a", Some(pod_a.path()), &conf)?;
    ensure!(pod_links(&pod_b)?.link_by_name("net1").is_ok(), "a late DEL of the old owner took the VF from pod B");
    del("ctr-b", Some(pod_b.path()), &conf)?;
    ensure!(snapshot(&pfn, vf.index, &vf.pci)? == before, "VF not clean at the end");
    say(format_args!("VF {} busy while pod A lived (code 100), reclaimed for pod B after A's namespace died", vf.pci));
    Ok(())
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn gc_releases_what_the_runtime_no_longer_knows() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let pfn = pf_name(&pf)?;
    let (keep, stale) = (pf.vfs[0].clone(), pf.vfs[1].clone());
    let stale_before = snapshot(&pfn, stale.index, &stale.pci)?;
    let s = Scratch::new("gc")?;
    let pod_keep = NamedNetns::create("vfnet-keep")?;
    let pod_stale = NamedNetns::create("vfnet-stale")?;
    let ipam = s.host_local("10.56.8.0/24");
    let conf_keep = s.config("net-gc", json!({"deviceID": keep.pci, "vlan": 170, "ipam": ipam}));
    let conf_stale = s.config("net-gc", json!({"deviceID": stale.pci, "vlan": 171, "ipam": ipam}));
    Invocation::vfnet("ADD", "ctr-keep", Some(pod_keep.path()), "net1").run(&conf_keep)?.ok()?;
    Invocation::vfnet("ADD", "ctr-stale", Some(pod_stale.path()), "net1").run(&conf_stale)?.ok()?;
    let gc_conf = s.config(
        "net-gc",
        json!({"ipam": ipam, "cni.dev/valid-attachments": [{"containerID": "ctr-keep", "ifname": "net1"}]}),
    );
    let mut gc = Invocation::vfnet("GC", "", None, "");
    gc.container_id.clear();
    gc.run(&gc_conf)?.ok()?;
    ensure!(snapshot(&pfn, stale.index, &stale.pci)? == stale_before, "stale attachment not released");
    ensure!(!s.journal_exists(&stale.pci) && s.journal_exists(&keep.pci), "GC touched the wrong journal");
    ensure!(pod_links(&pod_keep)?.link_by_name("net1").is_ok(), "GC took a valid attachment's VF");
    ensure!(s.reservations("net-gc") == 1, "GC should leave exactly the valid attachment's address");
    del("ctr-keep", Some(pod_keep.path()), &conf_keep)?;
    let status = Invocation::vfnet("STATUS", "", None, "").run(&s.config("net-gc", json!({})))?;
    ensure!(status.code == Some(0), "STATUS: {status:?}");
    say(format_args!("GC released VF {} (not in valid-attachments) and kept VF {}", stale.pci, keep.pci));
    Ok(())
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn adds_on_all_vfs_at_once() -> Result<()> {
    let pf = igb_pf_with_vfs(7)?;
    let pfn = pf_name(&pf)?;
    let befores: Vec<VfSnapshot> = pf.vfs.iter().map(|v| snapshot(&pfn, v.index, &v.pci)).collect::<Result<_>>()?;
    let s = Scratch::new("parallel")?;
    let pods: Vec<NamedNetns> =
        (0..pf.vfs.len()).map(|i| NamedNetns::create(&format!("vfnet-par{i}"))).collect::<Result<_>>()?;
    let ipam = s.host_local("10.56.9.0/24");
    let confs: Vec<Value> = pf
        .vfs
        .iter()
        .enumerate()
        .map(|(i, v)| s.config("net-p", json!({"deviceID": v.pci, "vlan": 200 + i, "ipam": ipam})))
        .collect();
    let start = std::time::Instant::now();
    let outs: Vec<Result<vfnet_e2e::cni::Output>> = std::thread::scope(|sc| {
        let handles: Vec<_> = pods
            .iter()
            .zip(&confs)
            .enumerate()
            .map(|(i, (pod, conf))| {
                sc.spawn(move || Invocation::vfnet("ADD", &format!("ctr-par{i}"), Some(pod.path()), "net1").run(conf))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("thread panicked")))).collect()
    });
    let took = start.elapsed();
    let mut ips = Vec::new();
    for (i, out) in outs.into_iter().enumerate() {
        let res = out?.ok()?.json()?;
        ips.push(res["ips"][0]["address"].as_str().unwrap_or_default().to_owned());
        let vf = &pf.vfs[i];
        ensure!(
            pod_links(&pods[i])?.link_by_name("net1")?.pci() == Some(vf.pci),
            "pod {i} does not hold VF {}",
            vf.pci
        );
        ensure!(snapshot(&pfn, vf.index, &vf.pci)?.pf_side.vlan == 200 + i as u16, "VF {} vlan", vf.pci);
    }
    ips.sort();
    ips.dedup();
    ensure!(ips.len() == pf.vfs.len(), "duplicate addresses: {ips:?}");
    say(format_args!("{} ADDs in parallel on all VFs of {pfn} took {took:?} in all", pf.vfs.len()));
    std::thread::scope(|sc| -> Result<()> {
        let handles: Vec<_> = pods
            .iter()
            .zip(&confs)
            .enumerate()
            .map(|(i, (pod, conf))| sc.spawn(move || del(&format!("ctr-par{i}"), Some(pod.path()), conf)))
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("thread panicked"))??;
        }
        Ok(())
    })?;
    for (vf, before) in pf.vfs.iter().zip(&befores) {
        ensure!(&snapshot(&pfn, vf.index, &vf.pci)? == before, "VF {} not restored after parallel DEL", vf.pci);
    }
    // Leave the PF with 4 VFs for the other tests.
    igb_pf_with_vfs(4)?;
    Ok(())
}
