//! IPAM delegation through Debian's real `host-local` (`/usr/lib/cni/host-local`, package
//! `containernetworking-plugins`, which `cargo xtask test` installs), with the fake node: no root
//! needed. Debian's host-local (1.1.1) speaks CNI up to 1.0.0, so a 1.1.0 configuration also
//! proves the version fallback. A plain `cargo test` lists them as ignored with that reason;
//! `cargo xtask test` runs them (`--ignored`), and run without the binary they fail, naming it.

#![allow(clippy::unwrap_used)] // test helpers panic on broken fixtures by design

mod common;

use std::path::{Path, PathBuf};

use common::{CTR, DEBIAN_CNI_DIR, Rig};
use nix::errno::Errno;
use serde_json::{Value, json};

const MAC: &str = "02:00:00:aa:00:01";

/// Fails the test unless Debian's host-local is installed.
#[track_caller]
fn require_host_local() {
    vfnet_testkit::privileged::require_program(
        &Path::new(DEBIAN_CNI_DIR).join("host-local"),
        "Debian's containernetworking-plugins",
    );
}

fn conf(rig: &Rig, vf: u32, version: &str) -> (Value, PathBuf) {
    let data_dir = rig.dir.path().join("host-local");
    let c = rig.conf_for(
        rig.vf(vf),
        json!({
            "cniVersion": version,
            "mac": MAC,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": data_dir,
            }
        }),
    );
    (c, data_dir.join("net-a"))
}

/// The addresses host-local has reserved (its files named after the IP).
fn reserved(dir: &Path) -> Vec<String> {
    let mut ips: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    ips.sort();
    ips
}

#[test]
#[ignore = "needs Debian's host-local (containernetworking-plugins); cargo xtask test runs it"]
fn host_local_allocates_on_add_and_releases_on_del_with_the_1_1_0_fallback() {
    require_host_local();
    let rig = Rig::new();
    let before = rig.host.snapshot();
    let (conf, store) = conf(&rig, 1, "1.1.0");
    let result = rig.add(&conf);
    assert_eq!(
        result,
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "net1", "mac": MAC, "mtu": 1500, "sandbox": rig.netns.display().to_string(), "pciID": "0000:02:00.1"}],
            "ips": [{"address": "10.77.0.2/24", "gateway": "10.77.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0"}]
        })
    );
    assert_eq!(reserved(&store), ["10.77.0.2"]);
    assert_eq!(std::fs::read_to_string(store.join("10.77.0.2")).unwrap().lines().next(), Some(CTR));
    assert_eq!(rig.host.addresses(&rig.pod, "net1"), ["10.77.0.2/24".parse().unwrap()]);
    assert_eq!(rig.host.routes(&rig.pod)[0].dst.to_string(), "0.0.0.0/0");
    let j = rig.journal(rig.vf(1)).unwrap();
    let ipam = j.ipam.unwrap();
    assert_eq!(ipam.config["cniVersion"], "1.0.0", "the version host-local accepted is journaled");

    // CHECK is forwarded to host-local, which knows the reservation.
    let mut check = conf.clone();
    check["prevResult"] = result;
    rig.exec("CHECK", &check, &[]).ok();

    rig.del(&conf);
    assert!(reserved(&store).is_empty(), "DEL released the address");
    assert_eq!(rig.host.snapshot(), before);
    // A repeated DEL, and a DEL vfnet never journaled, still reach host-local in a version it
    // speaks, and succeed.
    rig.del(&conf);
    rig.exec("DEL", &conf, &[("CNI_CONTAINERID", "never-added")]).ok();
}

#[test]
#[ignore = "needs Debian's host-local (containernetworking-plugins); cargo xtask test runs it"]
fn host_local_in_the_versions_it_speaks_needs_no_fallback() {
    require_host_local();
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        let rig = Rig::new();
        let (conf, store) = conf(&rig, 2, version);
        let result = rig.add(&conf);
        assert_eq!(result["cniVersion"], version);
        assert_eq!(result["ips"][0]["address"], "10.77.0.2/24", "{version}");
        assert_eq!(rig.journal(rig.vf(2)).unwrap().ipam.unwrap().config["cniVersion"], version);
        if version != "0.3.1" {
            let mut check = conf.clone();
            check["prevResult"] = result;
            rig.exec("CHECK", &check, &[]).ok();
        }
        rig.del(&conf);
        assert!(reserved(&store).is_empty(), "{version}");
    }
}

#[test]
#[ignore = "needs Debian's host-local (containernetworking-plugins); cargo xtask test runs it"]
fn a_failed_add_gives_its_address_back() {
    require_host_local();
    let rig = Rig::new();
    let before = rig.host.snapshot();
    let (conf, store) = conf(&rig, 1, "1.1.0");
    rig.host.fail_nth("add_route", 1, Errno::ENETUNREACH);
    rig.exec("ADD", &conf, &[]).fails(106, &["add route", "0.0.0.0/0"]);
    assert!(reserved(&store).is_empty(), "the rollback ran host-local DEL");
    assert_eq!(rig.host.snapshot(), before);
    // And the runtime's DEL after the failed ADD is fine.
    rig.del(&conf);
}

#[test]
#[ignore = "needs Debian's host-local (containernetworking-plugins); cargo xtask test runs it"]
fn gc_and_status_with_host_local() {
    require_host_local();
    let rig = Rig::new();
    let (conf_a, store) = conf(&rig, 0, "1.1.0");
    rig.add(&conf_a);
    let (pod_b, _) = rig.new_pod("pod-b");
    let (conf_b, _) = conf(&rig, 1, "1.1.0");
    rig.exec("ADD", &conf_b, &[("CNI_CONTAINERID", "ctr-b"), ("CNI_NETNS", pod_b.to_str().unwrap())]).ok();
    assert_eq!(reserved(&store), ["10.77.0.2", "10.77.0.3"]);

    rig.exec("STATUS", &conf_a, &[]).ok();
    let mut gc = conf_a.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": CTR, "ifname": "net1"}]);
    // host-local stops at 1.0.0: GC is not forwarded, but the stale attachment's IPAM DEL runs.
    rig.exec("GC", &gc, &[]).ok();
    assert_eq!(reserved(&store), ["10.77.0.2"]);
    assert!(rig.journal(rig.vf(1)).is_none());
    rig.del(&conf_a);
    assert!(reserved(&store).is_empty());
}
