//! The profile fallback: a VfProfile missing from `profileDir` is fetched from the API server of
//! the config's `kubeconfig` and applied like a file profile; when the API server is down, hangs,
//! or has no such profile, ADD fails with 101 naming the file and the API server's answer.
//!
//! The API server is an in-test HTTP server on 127.0.0.1 that serves
//! `GET /apis/vfnet.dev/v1alpha1/vfprofiles/<name>` as the real one does (the object, or a 404
//! `Status`), reached through a kubeconfig file, so the plugin's real client path runs.

#![allow(clippy::unwrap_used)] // test helpers panic on broken fixtures by design

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Rig;
use serde_json::{Value, json};

/// How the mock API server behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answers.
    Serve,
    /// Accepts connections and never answers.
    Hang,
}

/// A minimal API server serving VfProfiles by name.
struct MockApi {
    addr: SocketAddr,
    /// Request lines received (`GET /apis/...`).
    requests: Arc<Mutex<Vec<String>>>,
}

impl MockApi {
    fn start(profiles: BTreeMap<String, Value>, mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (profiles, log) = (profiles.clone(), Arc::clone(&log));
                std::thread::spawn(move || serve(conn, &profiles, &log, mode));
            }
        });
        Self { addr, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, profiles: &BTreeMap<String, Value>, log: &Mutex<Vec<String>>, mode: Mode) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
            break;
        }
    }
    log.lock().unwrap().push(request.trim_end().to_owned());
    if mode == Mode::Hang {
        std::thread::sleep(Duration::from_secs(10));
        return;
    }
    let path = request.split(' ').nth(1).unwrap_or_default();
    let name = path.strip_prefix("/apis/vfnet.dev/v1alpha1/vfprofiles/").unwrap_or_default();
    let (status, body) = match profiles.get(name) {
        Some(obj) => ("200 OK", obj.clone()),
        None => (
            "404 Not Found",
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": format!("vfprofiles.vfnet.dev \"{name}\" not found"), "reason": "NotFound",
                   "details": {"name": name, "group": "vfnet.dev", "kind": "vfprofiles"}, "code": 404}),
        ),
    };
    let body = body.to_string();
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A kubeconfig for the API server at `addr`, in the rig's directory.
fn kubeconfig(rig: &Rig, addr: SocketAddr) -> PathBuf {
    let path = rig.dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster: {{server: \"http://{addr}\"}}\n\
             users:\n- name: mock\n  user: {{token: test-token}}\ncontexts:\n- name: mock\n  context: {{cluster: mock, user: mock}}\n\
             current-context: mock\n"
        ),
    )
    .unwrap();
    path
}

fn profile(name: &str, spec: Value) -> (String, Value) {
    (
        name.to_owned(),
        json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile",
               "metadata": {"name": name, "uid": "5d1c", "resourceVersion": "17"}, "spec": spec}),
    )
}

const GET_TENANT_A: &str = "GET /apis/vfnet.dev/v1alpha1/vfprofiles/tenant-a HTTP/1.1";

#[test]
fn a_profile_missing_from_the_directory_is_fetched_and_applied() {
    let api =
        MockApi::start([profile("tenant-a", json!({"vlan": 100, "vlanQoS": 3, "mtu": 9000}))].into(), Mode::Serve);
    let rig = Rig::new();
    let kc = kubeconfig(&rig, api.addr);
    let conf = rig.conf_for(rig.vf(1), json!({"profile": "tenant-a", "kubeconfig": kc}));
    rig.add(&conf);
    assert_eq!(api.requests(), [GET_TENANT_A]);
    let changes = rig.host.changes();
    assert!(changes.iter().any(|c| c == "host: set_vf pf0 vf=1 vlan 100 qos 3 proto 802.1Q"), "{changes:?}");
    assert_eq!(rig.host.link(&rig.pod, "net1").unwrap().mtu, 9000, "the profile's MTU");
    assert!(!rig.profile_dir().profile("tenant-a").exists(), "the plugin leaves profileDir to the daemon");
    rig.del(&conf);
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().vlan, 0);

    // A contradicting key is refused as for a file profile.
    let conf = rig.conf_for(rig.vf(1), json!({"profile": "tenant-a", "kubeconfig": kc, "vlan": 200}));
    rig.exec("ADD", &conf, &[]).fails(7, &["vlan=200 contradicts VfProfile tenant-a (vlan=100)"]);
}

#[test]
fn a_profile_file_is_used_without_asking_the_api_server() {
    let api = MockApi::start([profile("tenant-a", json!({"vlan": 300}))].into(), Mode::Serve);
    let rig = Rig::new();
    rig.profile("tenant-a", json!({"vlan": 100}));
    let conf = rig.conf_for(rig.vf(1), json!({"profile": "tenant-a", "kubeconfig": kubeconfig(&rig, api.addr)}));
    rig.add(&conf);
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().vlan, 100, "the file's VLAN");
    assert!(api.requests().is_empty(), "{:?}", api.requests());
    rig.del(&conf);
}

#[test]
fn api_server_down_fails_101_naming_the_file_and_the_api_error() {
    // A port nothing listens on.
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let rig = Rig::new();
    let kc = kubeconfig(&rig, addr);
    let conf = rig.conf_for(rig.vf(1), json!({"profile": "tenant-a", "kubeconfig": kc}));
    let t = Instant::now();
    let reply = rig.exec("ADD", &conf, &[]);
    let file = rig.profile_dir().profile("tenant-a").display().to_string();
    reply.fails(101, &["profile tenant-a not found", &file, "did not serve it", &kc.display().to_string()]);
    let (_, msg) = reply.err();
    assert!(msg.contains("Connection refused"), "the API error and its cause: {msg}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(rig.host.changes().is_empty());
    assert!(rig.journal(rig.vf(1)).is_none());
}

#[test]
fn an_api_server_that_does_not_answer_is_given_3_seconds() {
    let api = MockApi::start(BTreeMap::new(), Mode::Hang);
    let rig = Rig::new();
    let conf = rig.conf_for(rig.vf(1), json!({"profile": "tenant-a", "kubeconfig": kubeconfig(&rig, api.addr)}));
    let t = Instant::now();
    let reply = rig.exec("ADD", &conf, &[]);
    let took = t.elapsed();
    reply.fails(101, &["profile tenant-a not found", "did not serve it"]);
    assert_eq!(api.requests(), [GET_TENANT_A]);
    assert!(took >= Duration::from_millis(2500) && took < Duration::from_secs(5), "took {took:?}");
    assert!(rig.host.changes().is_empty());
}

#[test]
fn a_profile_the_api_server_lacks_or_serves_invalid_is_refused() {
    let api = MockApi::start(
        [profile("bad", json!({"vlanQoS": 3})), profile("odd", json!({"vlan": 10, "vlans": [1]}))].into(),
        Mode::Serve,
    );
    let rig = Rig::new();
    let kc = kubeconfig(&rig, api.addr);
    let conf = |name: &str| rig.conf_for(rig.vf(1), json!({"profile": name, "kubeconfig": kc}));
    rig.exec("ADD", &conf("nope"), &[]).fails(
        101,
        &["profile nope not found", &rig.profile_dir().profile("nope").display().to_string(), "has no VfProfile nope"],
    );
    rig.exec("ADD", &conf("bad"), &[]).fails(
        7,
        &["VfProfile bad from the API server is not valid: spec.vlanQoS: a non-zero QoS needs a non-zero vlan"],
    );
    rig.exec("ADD", &conf("odd"), &[]).fails(7, &["VfProfile odd from the API server is not valid", "vlans"]);
    // An unreadable kubeconfig is named.
    let missing = rig.dir.path().join("no-such-kubeconfig");
    rig.exec("ADD", &rig.conf_for(rig.vf(1), json!({"profile": "x", "kubeconfig": missing})), &[])
        .fails(101, &["profile x not found", &missing.display().to_string()]);
    assert!(rig.host.changes().is_empty());
}
