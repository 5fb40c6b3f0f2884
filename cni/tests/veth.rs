//! Privileged tests of the plugin on the real kernel, with veth pairs standing in for the VF and
//! its PF (the host has no SR-IOV device; real igb VFs are tested in the VM). They need root, so
//! each is `#[ignore]`d with that reason in a plain `cargo test`; `cargo xtask test` runs them
//! (`--ignored`), and run without root they fail, naming the test.
//!
//! [`VethHost`] is the real node ([`Netlink`], [`Netns`]) except for what veths cannot do: it
//! maps `link_by_pci` of the fixture VF's PCI address to the veth standing in for it, wherever
//! it has moved and however it was renamed, and keeps the PF's VF table in memory. Its "host"
//! namespace is a fresh anonymous one, so the machine's own namespace is never touched; the pod
//! namespace is another, passed to the plugin as `/proc/<pid>/fd/<fd>`. Both vanish, with every
//! veth in them, when the test ends.

#![allow(clippy::unwrap_used)] // test helpers panic on broken fixtures by design

mod common;

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{REC_IPAM, Rig, merge};
use nix::errno::Errno;
use serde_json::{Value, json};
use sriov::fixture::{Fixture, FixtureBuilder, PfSpec};
use sriov::netlink::{
    IpPrefix, Link, LinkOps, MacvtapMode, Netlink, NetlinkError, Route, VfLinkState, VfSetting, VfState,
};
use sriov::netns::{Netns, NetnsError};
use sriov::sysfs::Sysfs;
use sriov::{MacAddr, PciAddress};
use vfnet_cni::error::{CniError, Code, Result};
use vfnet_cni::host::Host;
use vfnet_cni::node_config::{NodeConfig, NodeConfigError};

const PF: PciAddress = PciAddress { domain: 0, bus: 1, device: 0, function: 0 };
const MAC: &str = "02:00:00:aa:00:01";

/// A namespace's identity: its nsfs inode.
type NsKey = (u64, u64);

fn ns_key(ns: &Netns) -> NsKey {
    let m = std::fs::metadata(fd_path(ns)).unwrap();
    (m.dev(), m.ino())
}

/// A path that opens `ns` from this process and its children while the handle lives.
fn fd_path(ns: &Netns) -> PathBuf {
    PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), ns.as_fd().as_raw_fd()))
}

/// State shared by every [`VethLinks`] of one [`VethHost`].
#[derive(Debug)]
struct Shared {
    /// The fixture VF the veth stands in for.
    vf: PciAddress,
    /// The PF stand-in's name (in the host namespace).
    pf: String,
    /// Where the VF stand-in is now: namespace and name.
    at: (NsKey, String),
    /// The PF's VF table.
    vfs: Vec<VfState>,
    /// An operation to fail once with EIO (`set_mtu`, ...), to test rollbacks.
    fail: Option<&'static str>,
}

#[derive(Debug)]
struct VethHost {
    _fixture: Fixture,
    sysfs: Sysfs,
    host: Netns,
    shared: Arc<Mutex<Shared>>,
}

impl Host for VethHost {
    type Ns = Netns;
    type Links = VethLinks;

    fn sysfs(&self) -> &Sysfs {
        &self.sysfs
    }

    fn host_ns(&self) -> Result<Netns> {
        Ok(Netns::open(fd_path(&self.host))?)
    }

    fn open_ns(&self, path: &Path) -> Result<Netns, NetnsError> {
        Netns::open(path)
    }

    fn temp_ns(&self) -> Result<Netns> {
        Ok(Netns::create_anonymous()?)
    }

    fn links(&self, ns: &Netns) -> Result<VethLinks> {
        Ok(VethLinks { inner: Netlink::in_netns(ns)?, ns: ns_key(ns), shared: Arc::clone(&self.shared) })
    }

    fn node_config(&self) -> std::result::Result<NodeConfig, NodeConfigError> {
        // The tests name their scratch directories in their network definitions.
        Ok(NodeConfig { allow_network_overrides: true, ..NodeConfig::default() })
    }

    fn sysctl(&self, ns: &Netns, key: &str, value: &str) -> Result<()> {
        let path = Path::new("/proc/sys").join(key);
        ns.run(|| std::fs::write(&path, value))?
            .map_err(|e| CniError::new(Code::Kernel, format!("cannot write {value} to {}: {e}", path.display())))
    }
}

/// Netlink in one namespace, with the VF stand-in's PCI identity and the PF's VF table added.
#[derive(Debug)]
struct VethLinks {
    inner: Netlink,
    ns: NsKey,
    shared: Arc<Mutex<Shared>>,
}

impl VethLinks {
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap()
    }

    /// Gives the VF stand-in its PCI parent, as the kernel reports one for a real VF netdev.
    fn decorate(&self, mut link: Link) -> Link {
        let s = self.shared();
        if s.at == (self.ns, link.name.clone()) {
            link.parent_bus = Some("pci".into());
            link.parent_dev = Some(s.vf.to_string());
        }
        link
    }

    fn is_pf(&self, index: u32) -> bool {
        self.inner.link_by_index(index).is_ok_and(|l| l.name == self.shared().pf)
    }

    fn injected(&self, op: &str) -> Result<(), NetlinkError> {
        let mut s = self.shared();
        if s.fail == Some(op) {
            s.fail = None;
            return Err(NetlinkError::Kernel { op: "injected", target: op.to_owned(), errno: Errno::EIO });
        }
        Ok(())
    }
}

impl LinkOps for VethLinks {
    type Ns = Netns;

    fn link_by_name(&self, name: &str) -> Result<Link, NetlinkError> {
        self.inner.link_by_name(name).map(|l| self.decorate(l))
    }

    fn link_by_index(&self, index: u32) -> Result<Link, NetlinkError> {
        self.inner.link_by_index(index).map(|l| self.decorate(l))
    }

    fn link_by_pci(&self, pci: &PciAddress) -> Result<Link, NetlinkError> {
        let at = {
            let s = self.shared();
            (s.vf == *pci && s.at.0 == self.ns).then(|| s.at.1.clone())
        };
        match at {
            Some(name) => self.link_by_name(&name),
            None => Err(NetlinkError::LinkNotFound(format!("with PCI address {pci}"))),
        }
    }

    fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        Ok(self.inner.links()?.into_iter().map(|l| self.decorate(l)).collect())
    }

    fn vf_states(&self, pf_index: u32) -> Result<Vec<VfState>, NetlinkError> {
        if self.is_pf(pf_index) {
            return Ok(self.shared().vfs.clone());
        }
        self.inner.vf_states(pf_index)
    }

    fn set_vf(&self, pf_index: u32, vf: u32, setting: &VfSetting) -> Result<(), NetlinkError> {
        self.injected("set_vf")?;
        if !self.is_pf(pf_index) {
            return self.inner.set_vf(pf_index, vf, setting);
        }
        let mut s = self.shared();
        let st = s.vfs.iter_mut().find(|st| st.index == vf).unwrap();
        sriov::fake::apply_setting(st, setting);
        Ok(())
    }

    fn set_netns(&self, index: u32, ns: &Netns) -> Result<(), NetlinkError> {
        self.injected("set_netns")?;
        let name = self.inner.link_by_index(index)?.name;
        self.inner.set_netns(index, ns)?;
        let mut s = self.shared();
        if s.at == (self.ns, name) {
            s.at.0 = ns_key(ns);
        }
        Ok(())
    }

    fn rename(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.injected("rename")?;
        let old = self.inner.link_by_index(index)?.name;
        self.inner.rename(index, name)?;
        let mut s = self.shared();
        if s.at == (self.ns, old) {
            s.at.1 = name.to_owned();
        }
        Ok(())
    }

    fn set_mac(&self, index: u32, mac: MacAddr) -> Result<(), NetlinkError> {
        self.injected("set_mac")?;
        self.inner.set_mac(index, mac)
    }

    fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        self.injected("set_mtu")?;
        self.inner.set_mtu(index, mtu)
    }

    fn set_up(&self, index: u32, up: bool) -> Result<(), NetlinkError> {
        self.inner.set_up(index, up)
    }

    fn add_altname(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        LinkOps::add_altname(&self.inner, index, name)
    }

    fn del_altname(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.inner.del_altname(index, name)
    }

    fn add_macvtap(&self, name: &str, parent: u32, mode: MacvtapMode) -> Result<(), NetlinkError> {
        self.inner.add_macvtap(name, parent, mode)
    }

    fn del_link(&self, index: u32) -> Result<(), NetlinkError> {
        LinkOps::del_link(&self.inner, index)
    }

    fn add_address(&self, index: u32, addr: IpPrefix) -> Result<(), NetlinkError> {
        self.injected("add_address")?;
        self.inner.add_address(index, addr)
    }

    fn del_address(&self, index: u32, addr: IpPrefix) -> Result<(), NetlinkError> {
        self.inner.del_address(index, addr)
    }

    fn addresses(&self, index: u32) -> Result<Vec<IpPrefix>, NetlinkError> {
        self.inner.addresses(index)
    }

    fn add_route(&self, route: &Route) -> Result<(), NetlinkError> {
        self.inner.add_route(route)
    }

    fn routes(&self, oif: u32) -> Result<Vec<Route>, NetlinkError> {
        self.inner.routes(oif)
    }
}

/// The stand-in node: a "host" namespace with veth `pf0` (the PF) and veth `pf0v1` (VF 1, with
/// altname `enp2s0f1`, up, its peer up too), and a pod namespace. Fails the test when not root.
struct Node {
    rig: Rig<VethHost>,
    pod: Netns,
    /// Netlink in the host namespace (plain, for assertions).
    host_nl: Netlink,
    pod_nl: Netlink,
    /// The VF stand-in as it was.
    original: Link,
}

#[track_caller]
fn node() -> Node {
    vfnet_testkit::privileged::require_root();
    let host = Netns::create_anonymous().expect("create a network namespace");
    let pod = Netns::create_anonymous().unwrap();
    let host_nl = Netlink::in_netns(&host).unwrap();
    host_nl.add_veth("pf0", "pf0p").unwrap();
    host_nl.add_veth("pf0v1", "pf0v1p").unwrap();
    let vf = host_nl.link_by_name("pf0v1").unwrap();
    host_nl.set_mac(vf.index, "02:00:00:00:00:01".parse().unwrap()).unwrap();
    Netlink::add_altname(&host_nl, vf.index, "enp2s0f1").unwrap();
    host_nl.set_up(vf.index, true).unwrap();
    host_nl.set_up(host_nl.link_by_name("pf0v1p").unwrap().index, true).unwrap();
    let original = host_nl.link_by_name("pf0v1").unwrap();

    let fixture = FixtureBuilder::new().pf(PfSpec::igb(PF, "pf0").vfs(7, 2)).build().unwrap();
    let vf_pci = fixture.pfs()[0].vf_pci(1);
    let vfs = (0..2)
        .map(|index| VfState { index, spoofchk: true, link_state: Some(VfLinkState::Auto), ..Default::default() })
        .collect();
    let shared = Shared { vf: vf_pci, pf: "pf0".into(), at: (ns_key(&host), "pf0v1".into()), vfs, fail: None };
    let veth_host = VethHost { sysfs: fixture.sysfs(), _fixture: fixture, host, shared: Arc::new(Mutex::new(shared)) };
    let pod_nl = Netlink::in_netns(&pod).unwrap();
    let rig = Rig::other(veth_host, fd_path(&pod));
    Node { rig, pod, host_nl, pod_nl, original }
}

impl Node {
    fn conf(&self) -> Value {
        let rig = &self.rig;
        rig.recording_ipam(
            &json!({
                "cniVersion": "1.0.0",
                "ips": [{"address": "10.9.0.5/24", "gateway": "10.9.0.1"}, {"address": "fd00:9::5/64"}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}, {"dst": "10.99.0.0/16", "gw": "10.9.0.254"}]
            }),
            "1.0.0",
        );
        let mut c = rig.conf_for(self.vf(), json!({"vlan": 100, "vlanQoS": 2, "mac": MAC, "mtu": 9000}));
        merge(&mut c, json!({"ipam": {"type": REC_IPAM}}));
        c
    }

    fn vf(&self) -> PciAddress {
        self.rig.host.shared.lock().unwrap().vf
    }

    fn vf_table(&self) -> VfState {
        self.rig.host.shared.lock().unwrap().vfs[1].clone()
    }

    /// The VF stand-in is back in the host namespace exactly as it was (but its index).
    #[track_caller]
    fn assert_restored(&self) {
        let back = self.host_nl.link_by_name("pf0v1").expect("pf0v1 is back on the host");
        assert_eq!(
            (&back.name, back.mac, back.mtu, &back.altnames, back.up),
            (&self.original.name, self.original.mac, self.original.mtu, &self.original.altnames, self.original.up)
        );
        let pod_links: Vec<String> = self.pod_nl.links().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(pod_links, ["lo"]);
        let t = self.vf_table();
        assert_eq!((t.vlan, t.qos, t.mac), (0, 0, MacAddr::ZERO), "PF-side settings restored");
        assert!(self.rig.journal(self.vf()).is_none());
    }
}

#[test]
#[ignore = "privileged: needs root (network namespaces, veth); cargo xtask test runs it"]
fn add_check_del_with_a_veth_standing_in_for_the_vf() {
    let node = node();
    let conf = node.conf();
    let result = node.rig.add(&conf);

    // In the pod as net1, with MAC, MTU, addresses and routes; gone from the host.
    let link = node.pod_nl.link_by_name("net1").unwrap();
    assert_eq!((link.mac.unwrap().to_string().as_str(), link.mtu, link.up), (MAC, 9000, true));
    assert!(link.altnames.is_empty(), "stale altnames dropped: {:?}", link.altnames);
    let addrs = node.pod_nl.addresses(link.index).unwrap();
    for a in ["10.9.0.5/24", "fd00:9::5/64"] {
        assert!(addrs.contains(&a.parse().unwrap()), "{a} in {addrs:?}");
    }
    let routes = node.pod_nl.routes(link.index).unwrap();
    for (dst, gw) in [("0.0.0.0/0", "10.9.0.1"), ("10.99.0.0/16", "10.9.0.254")] {
        assert!(
            routes.iter().any(|r| r.dst.to_string() == dst && r.gateway == Some(gw.parse().unwrap())),
            "{dst} via {gw} in {routes:?}"
        );
    }
    let arp_notify = node.pod.run(|| std::fs::read_to_string("/proc/sys/net/ipv4/conf/net1/arp_notify")).unwrap();
    assert_eq!(arp_notify.unwrap().trim(), "1", "gratuitous ARP on up");
    assert!(node.host_nl.link_by_name("pf0v1").is_err());
    assert_eq!((node.vf_table().vlan, node.vf_table().qos), (100, 2));
    assert_eq!(result["interfaces"][0]["mac"], MAC);
    assert_eq!(result["interfaces"][0]["mtu"], 9000);
    assert_eq!(result["interfaces"][0]["pciID"], node.vf().to_string());

    let mut check = conf.clone();
    check["prevResult"] = result;
    node.rig.exec("CHECK", &check, &[]).ok();
    // CHECK sees a change made behind the plugin's back, on the real link.
    node.pod_nl.set_mtu(link.index, 1500).unwrap();
    node.rig.exec("CHECK", &check, &[]).fails(109, &["MTU is 1500, ADD set 9000"]);

    node.rig.del(&conf);
    node.assert_restored();
    node.rig.del(&conf);
    node.assert_restored();
}

#[test]
#[ignore = "privileged: needs root (network namespaces, veth); cargo xtask test runs it"]
fn a_failed_add_on_the_real_kernel_puts_the_veth_back() {
    // After the move into the pod (IPAM fails) and inside the temporary namespace (the MTU
    // fails): a veth dies with a namespace instead of returning to the host, so this also proves
    // that ADD brings the VF out of its temporary namespace itself.
    for (what, arm) in [("IPAM", None), ("set_mtu", Some("set_mtu")), ("rename", Some("rename"))] {
        let node = node();
        let conf = node.conf();
        match arm {
            Some(op) => node.rig.host.shared.lock().unwrap().fail = Some(op),
            None => node.rig.ipam_fail("ADD", true),
        }
        let (code, msg) = node.rig.exec("ADD", &conf, &[]).err();
        assert!(!msg.contains("rollback incomplete"), "{what}: {msg}");
        assert!([106, 107].contains(&code), "{what}: {code} {msg}");
        node.assert_restored();
        node.rig.ipam_fail("ADD", false);
        node.rig.del(&conf);
        node.assert_restored();
    }
}

#[test]
#[ignore = "privileged: needs root (network namespaces, veth); cargo xtask test runs it"]
fn a_failed_del_keeps_the_journal_and_the_retry_finishes_on_the_real_kernel() {
    let node = node();
    let conf = node.conf();
    node.rig.add(&conf);
    node.rig.host.shared.lock().unwrap().fail = Some("set_netns");
    node.rig.exec("DEL", &conf, &[]).fails(112, &["kept"]);
    assert!(node.rig.journal(node.vf()).is_some());
    node.rig.del(&conf);
    node.assert_restored();
}

#[test]
#[ignore = "privileged: needs root (network namespaces, veth); cargo xtask test runs it"]
fn macvtap_on_a_veth_standing_in_for_the_vf() {
    let node = node();
    // Not every kernel has macvtap (CONFIG_MACVTAP): probe in a scratch namespace. Only the errno
    // of a missing link kind is a skip: rtnl_newlink() answers EOPNOTSUPP ("Unknown device type")
    // when no rtnl_link_ops is registered for the kind, even after request_module("rtnl-link-
    // macvtap"). Any other error is a failure of the function under test.
    let scratch = Netns::create_anonymous().unwrap();
    let nl = Netlink::in_netns(&scratch).unwrap();
    nl.add_veth("probe0", "probe1").unwrap();
    let lower = nl.link_by_name("probe0").unwrap().index;
    match nl.add_macvtap("probetap", lower, MacvtapMode::Passthru) {
        Ok(()) => {}
        Err(e) if e.errno() == Some(Errno::EOPNOTSUPP) => {
            return vfnet_testkit::privileged::kernel_lacks("macvtap (CONFIG_MACVTAP)", &e);
        }
        Err(e) => panic!("creating a macvtap on a veth failed: {e}"),
    }
    let mut conf = node.conf();
    merge(&mut conf, json!({"vnicType": "macvtap"}));
    let result = node.rig.add(&conf);
    let tap = node.pod_nl.link_by_name("net1").unwrap();
    assert_eq!((tap.kind.as_deref(), tap.mtu, tap.up), (Some("macvtap"), 9000, true));
    assert!(node.pod_nl.addresses(tap.index).unwrap().contains(&"10.9.0.5/24".parse().unwrap()));
    let vf = node.host_nl.link_by_name("pf0v1").unwrap();
    assert_eq!((vf.mtu, vf.up), (9000, true), "the VF stays on the host, up");
    let mut check = conf.clone();
    check["prevResult"] = result;
    node.rig.exec("CHECK", &check, &[]).ok();
    node.rig.del(&conf);
    node.assert_restored();
}
