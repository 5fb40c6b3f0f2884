//! Privileged tests of the netlink and namespace layers with veth pairs in fresh network
//! namespaces (the host kernel has no SR-IOV device; real VFs are tested in the VM). They need
//! root, so each is `#[ignore]`d with that reason in a plain `cargo test`; `cargo xtask test` runs
//! them (`--ignored`), and run without root they fail, naming the test.

#![allow(clippy::unwrap_used)] // test helpers panic on broken fixtures by design

use std::net::IpAddr;

use nix::errno::Errno;
use sriov::MacAddr;
use sriov::netlink::{IpPrefix, LinkOps, Netlink, NetlinkError, Route, VfSetting, VlanProto};
use sriov::netns::Netns;

/// A fresh namespace with a netlink socket in it; fails the test when not root.
#[track_caller]
fn fresh_ns() -> (Netns, Netlink) {
    vfnet_testkit::privileged::require_root();
    let ns = Netns::create_anonymous().expect("create a network namespace");
    let nl = Netlink::in_netns(&ns).expect("netlink socket in the namespace");
    (ns, nl)
}

fn prefix(s: &str) -> IpPrefix {
    let (addr, len) = s.split_once('/').unwrap();
    IpPrefix { addr: addr.parse().unwrap(), prefix: len.parse().unwrap() }
}

#[test]
#[ignore = "privileged: needs root (network namespaces, veth); cargo xtask test runs it"]
fn moves_a_link_between_namespaces_by_fd() {
    let (ns_a, nl_a) = fresh_ns();
    let ns_b = Netns::create_anonymous().unwrap();
    let nl_b = Netlink::in_netns(&ns_b).unwrap();
    nl_a.add_veth("vf0", "peer0").unwrap();
    let vf = nl_a.link_by_name("vf0").unwrap();
    nl_a.set_netns(vf.index, &ns_b).unwrap();
    assert!(matches!(nl_a.link_by_name("vf0"), Err(NetlinkError::LinkNotFound(_))));
    let moved = nl_b.link_by_name("vf0").unwrap();
    assert_eq!(moved.mac, vf.mac, "the same device arrived");
    // And back.
    nl_b.set_netns(moved.index, &ns_a).unwrap();
    assert!(nl_a.link_by_name("vf0").is_ok());
    assert!(!ns_a.same_as(&ns_b));
}

#[test]
#[ignore = "privileged: needs root (network namespaces, veth); cargo xtask test runs it"]
fn renames_by_index_and_drops_altnames() {
    let (_ns, nl) = fresh_ns();
    nl.add_veth("vf1", "peer1").unwrap();
    let link = nl.link_by_name("vf1").unwrap();
    nl.rename(link.index, "net1").unwrap();
    let renamed = nl.link_by_index(link.index).unwrap();
    assert_eq!(renamed.name, "net1");
    nl.add_altname(link.index, "vf1-old").unwrap();
    assert_eq!(nl.link_by_index(link.index).unwrap().altnames, vec!["vf1-old".to_owned()]);
    nl.del_altname(link.index, "vf1-old").unwrap();
    assert!(nl.link_by_index(link.index).unwrap().altnames.is_empty());
    // Renaming onto an existing name is refused with the kernel's errno.
    let err = nl.rename(link.index, "peer1").unwrap_err();
    assert_eq!(err.errno(), Some(Errno::EEXIST), "{err}");
    assert!(err.to_string().starts_with("rename on link"), "{err}");
}

#[test]
#[ignore = "privileged: needs root (network namespaces, veth); cargo xtask test runs it"]
fn sets_mac_mtu_and_state() {
    let (_ns, nl) = fresh_ns();
    nl.add_veth("vf2", "peer2").unwrap();
    let idx = nl.link_by_name("vf2").unwrap().index;
    let mac: MacAddr = "02:00:00:aa:bb:cc".parse().unwrap();
    nl.set_mac(idx, mac).unwrap();
    nl.set_mtu(idx, 9000).unwrap();
    nl.set_up(idx, true).unwrap();
    let link = nl.link_by_index(idx).unwrap();
    assert_eq!((link.mac, link.mtu, link.up), (Some(mac), 9000, true));
    nl.set_up(idx, false).unwrap();
    assert!(!nl.link_by_index(idx).unwrap().up);
    let err = nl.set_mtu(idx, 70_000).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::EINVAL), "{err}");
}

#[test]
#[ignore = "privileged: needs root (network namespaces, veth); cargo xtask test runs it"]
fn adds_addresses_and_routes() {
    let (_ns, nl) = fresh_ns();
    nl.add_veth("vf3", "peer3").unwrap();
    let idx = nl.link_by_name("vf3").unwrap().index;
    let peer = nl.link_by_name("peer3").unwrap().index;
    nl.set_up(idx, true).unwrap();
    nl.set_up(peer, true).unwrap();
    nl.add_address(idx, prefix("10.1.2.3/24")).unwrap();
    nl.add_address(idx, prefix("fd00::3/64")).unwrap();
    let addrs = nl.addresses(idx).unwrap();
    assert!(addrs.contains(&prefix("10.1.2.3/24")), "{addrs:?}");
    assert!(addrs.contains(&prefix("fd00::3/64")), "{addrs:?}");
    let route =
        Route { dst: prefix("10.9.0.0/16"), gateway: Some("10.1.2.1".parse().unwrap()), oif: Some(idx), metric: None };
    nl.add_route(&route).unwrap();
    let routes = nl.routes(idx).unwrap();
    assert!(routes.iter().any(|r| r.dst == route.dst && r.gateway == route.gateway), "{routes:?}");
    let default6 = Route {
        dst: prefix("::/0"),
        gateway: Some("fd00::1".parse::<IpAddr>().unwrap()),
        oif: Some(idx),
        metric: Some(10),
    };
    nl.add_route(&default6).unwrap();
    assert!(nl.routes(idx).unwrap().iter().any(|r| r.dst == default6.dst && r.metric == Some(10)));
    nl.del_address(idx, prefix("10.1.2.3/24")).unwrap();
    assert!(!nl.addresses(idx).unwrap().contains(&prefix("10.1.2.3/24")));
    let err = nl.add_address(9999, prefix("10.0.0.1/8")).unwrap_err();
    assert!(err.to_string().contains("10.0.0.1/8 on link 9999"), "{err}");
}

#[test]
#[ignore = "privileged: needs root (network namespaces, veth); cargo xtask test runs it"]
fn vf_settings_on_a_link_without_vfs_are_a_typed_refusal() {
    let (_ns, nl) = fresh_ns();
    nl.add_veth("pf4", "peer4").unwrap();
    let pf = nl.link_by_name("pf4").unwrap();
    let err = nl.set_vf(pf.index, 0, &VfSetting::Vlan { vlan: 100, qos: 0, proto: VlanProto::Dot1Q }).unwrap_err();
    match &err {
        NetlinkError::VfSettingRefused { pf, vf, setting, errno, .. } => {
            assert_eq!((pf.as_str(), *vf, *setting, *errno), ("pf4", 0, "vlan", Errno::EOPNOTSUPP));
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert!(nl.vf_states(pf.index).unwrap().is_empty());
}

#[test]
#[ignore = "privileged: needs root (network namespaces, veth); cargo xtask test runs it"]
fn lookups_of_missing_links_say_what_was_looked_for() {
    let (_ns, nl) = fresh_ns();
    assert_eq!(nl.link_by_name("nope0").unwrap_err().to_string(), "network device nope0 not found");
    assert_eq!(nl.link_by_index(4242).unwrap_err().to_string(), "network device index 4242 not found");
    let pci = "0000:00:09.0".parse().unwrap();
    assert_eq!(nl.link_by_pci(&pci).unwrap_err().to_string(), "network device with PCI address 0000:00:09.0 not found");
    // Only loopback exists in a fresh namespace.
    assert_eq!(nl.links().unwrap().iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), vec!["lo"]);
}

#[test]
#[ignore = "privileged: needs root (network namespaces, veth); cargo xtask test runs it"]
fn running_in_a_namespace_leaves_the_caller_where_it_was() {
    let (ns, _nl) = fresh_ns();
    let before = Netns::current().unwrap();
    let inside = ns.run(|| Netns::current().unwrap()).unwrap();
    assert!(inside.same_as(&ns));
    assert!(!inside.same_as(&before));
    assert!(Netns::current().unwrap().same_as(&before));
}

#[test]
#[ignore = "privileged: needs root (network namespaces, veth); cargo xtask test runs it"]
fn usable_from_inside_an_async_runtime() {
    let (_ns, nl) = fresh_ns();
    // Blocking on the socket's own runtime from inside another would panic; it must not.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let lo = rt.block_on(async { nl.link_by_name("lo") }).unwrap();
    assert_eq!(lo.name, "lo");
    // Nor may dropping the last handle (its runtime) there.
    rt.block_on(async move { drop(nl) });
}
