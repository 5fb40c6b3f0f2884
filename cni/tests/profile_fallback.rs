//! The profile fallback: a VfProfile missing from `profileDir` is asked of the node daemon on
//! `<runDir>/daemon.sock` and applied like a file profile; with the daemon away, silent, or
//! unable to reach the API server, or without such a profile, ADD fails with 101 naming the file,
//! the socket and the daemon's answer (or the connect error), within 3 s.
//!
//! The daemon is the real one (`vfnet_device_plugin`, in cluster mode, in-process) against the
//! list/watch API server stand-in (`vfnet_testkit::apiserver`), with the rig's `runDir` as its run
//! directory. The rig's `profileDir` is not the daemon's mirror (`<runDir>/profiles`), so the
//! plugin finds no file and asks the daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on broken fixtures by design

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Rig;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use vfnet_device_plugin::{Config, DaemonHandle};
use vfnet_testkit::apiserver::{ApiServer, PROFILES, profile};

/// The node daemon and its API server, on their own runtime (the plugin under test blocks).
struct Cluster {
    rt: Runtime,
    api: ApiServer,
    daemon: Option<DaemonHandle>,
}

impl Cluster {
    /// An API server with `profiles`, and the daemon syncing with it into `rig`'s run directory;
    /// returns once the daemon has mirrored every profile (its watch holds them).
    fn start(rig: &Rig, profiles: &[Value]) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let api = rt.block_on(ApiServer::start());
        for p in profiles {
            api.apply(PROFILES, p.clone());
        }
        let daemon = rt.block_on(start_daemon(rig, &api));
        let mirror = rig.run_dir().profiles();
        let t = Instant::now();
        while !profiles.iter().all(|p| mirror.profile(p["metadata"]["name"].as_str().unwrap()).exists()) {
            assert!(t.elapsed() < Duration::from_secs(20), "the daemon did not mirror the profiles");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { rt, api, daemon: Some(daemon) }
    }

    /// Whether the daemon asked the API server for VfProfile `name` by name.
    fn got(&self, name: &str) -> bool {
        self.api.requests().iter().any(|r| r.starts_with(&format!("GET {PROFILES}/{name} ")))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            self.rt.block_on(d.shutdown());
        }
    }
}

async fn start_daemon(rig: &Rig, api: &ApiServer) -> DaemonHandle {
    let base = rig.dir.path().join("daemon");
    let sysfs = base.join("root");
    std::fs::create_dir_all(sysfs.join("sys/bus/pci/devices")).unwrap();
    std::fs::create_dir_all(sysfs.join("sys/class/net")).unwrap();
    let mut c = Config::new(base.join("unused-pools.yaml"));
    c.cluster = vfnet_device_plugin::cluster::client_config(Some(&api.kubeconfig(&base))).await.unwrap();
    c.node_name = Some("node-a".to_owned());
    c.kubelet_dir = base.join("kubelet");
    c.run_dir = rig.run_dir();
    c.devinfo_dir = base.join("devinfo");
    c.sysfs_root = sysfs;
    c.metrics_addr = None;
    c.kernel_events = false;
    vfnet_device_plugin::start(c).await.unwrap()
}

fn conf(rig: &Rig, name: &str) -> Value {
    rig.conf_for(rig.vf(1), json!({"profile": name}))
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_profile_on_the_node_needs_no_daemon() {
    let rig = Rig::new();
    rig.profile("tenant-a", json!({"vlan": 100}));
    assert!(!rig.run_dir().daemon_socket().exists());
    let c = conf(&rig, "tenant-a");
    rig.add(&c);
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().vlan, 100, "the file's VLAN");
    rig.del(&c);
}

#[test]
fn a_missing_profile_is_served_by_the_daemon_from_its_watch_or_the_api_server() {
    let rig = Rig::new();
    let cluster = Cluster::start(&rig, &[profile("tenant-a", json!({"vlan": 100, "vlanQoS": 3, "mtu": 9000}))]);

    // Held by the daemon's watch: no request to the API server.
    let c = conf(&rig, "tenant-a");
    rig.add(&c);
    let changes = rig.host.changes();
    assert!(changes.iter().any(|c| c == "host: set_vf pf0 vf=1 vlan 100 qos 3 proto 802.1Q"), "{changes:?}");
    assert_eq!(rig.host.link(&rig.pod, "net1").unwrap().mtu, 9000, "the profile's MTU");
    assert!(!cluster.got("tenant-a"), "{:?}", cluster.api.requests());
    assert!(!rig.profile_dir().profile("tenant-a").exists(), "the plugin writes no profile file");
    rig.del(&c);
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().vlan, 0);
    // A contradicting key is refused as for a file profile.
    let c = rig.conf_for(rig.vf(1), json!({"profile": "tenant-a", "vlan": 200}));
    rig.exec("ADD", &c, &[]).fails(7, &["vlan=200 contradicts VfProfile tenant-a (vlan=100)"]);

    // Not seen by the watch yet: the daemon GETs it, and mirrors it.
    cluster.api.freeze();
    cluster.api.apply(PROFILES, profile("tenant-b", json!({"vlan": 200})));
    cluster.api.apply(PROFILES, profile("bad", json!({"vlanQoS": 3})));
    cluster.api.apply(PROFILES, profile("odd", json!({"vlan": 10, "vlans": [1]})));
    let c = conf(&rig, "tenant-b");
    rig.add(&c);
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().vlan, 200);
    assert!(cluster.got("tenant-b"), "{:?}", cluster.api.requests());
    let mirrored: Value =
        serde_json::from_slice(&std::fs::read(rig.run_dir().profiles().profile("tenant-b")).unwrap()).unwrap();
    assert_eq!(mirrored["spec"], json!({"vlan": 200}), "the daemon mirrored what it fetched");
    rig.del(&c);

    // Invalid as served: the network's error (7), as for a file.
    rig.exec("ADD", &conf(&rig, "bad"), &[]).fails(
        7,
        &["VfProfile bad from the API server is not valid: spec.vlanQoS: a non-zero QoS needs a non-zero vlan"],
    );
    rig.exec("ADD", &conf(&rig, "odd"), &[]).fails(7, &["VfProfile odd from the API server is not valid", "vlans"]);
    // No such profile.
    let socket = path(&rig.run_dir().daemon_socket());
    rig.exec("ADD", &conf(&rig, "nope"), &[]).fails(
        101,
        &[
            "profile nope not found",
            &path(&rig.profile_dir().profile("nope")),
            &socket,
            "says the API server has no VfProfile nope",
        ],
    );
    assert!(rig.journal(rig.vf(1)).is_none());
}

#[test]
fn daemon_away_fails_101_within_the_bound() {
    let rig = Rig::new();
    let (file, socket) = (path(&rig.profile_dir().profile("tenant-a")), rig.run_dir().daemon_socket());
    let reply = rig.exec("ADD", &conf(&rig, "tenant-a"), &[]);
    reply.fails(101, &["profile tenant-a not found", &file, &path(&socket), "did not answer: cannot connect"]);

    // A socket whose daemon never answers (hung): 3 s, then 101.
    std::fs::create_dir_all(rig.run_dir()).unwrap();
    let _hung = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let t = Instant::now();
    let reply = rig.exec("ADD", &conf(&rig, "tenant-a"), &[]);
    let took = t.elapsed();
    reply.fails(101, &["profile tenant-a not found", &file, &path(&socket), "did not answer: no answer within 3s"]);
    assert!(took >= Duration::from_millis(2900) && took < Duration::from_secs(4), "took {took:?}");
    assert!(rig.host.changes().is_empty());
    assert!(rig.journal(rig.vf(1)).is_none());
}

#[test]
fn api_server_away_fails_101_naming_the_daemons_answer() {
    let rig = Rig::new();
    let mut cluster = Cluster::start(&rig, &[]);
    cluster.rt.block_on(cluster.api.stop());
    let t = Instant::now();
    let reply = rig.exec("ADD", &conf(&rig, "tenant-a"), &[]);
    let took = t.elapsed();
    reply.fails(
        101,
        &[
            "profile tenant-a not found",
            &path(&rig.profile_dir().profile("tenant-a")),
            &path(&rig.run_dir().daemon_socket()),
            "could not get it: the API server did not serve it",
        ],
    );
    let (_, msg) = reply.err();
    assert!(msg.contains("Connection refused"), "the daemon's answer, with its cause: {msg}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(rig.host.changes().is_empty());
}
