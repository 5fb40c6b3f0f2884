//! Cluster mode against a stand-in API server (`vfnet_testkit::apiserver`, the real list/watch
//! protocol over HTTP) and the in-process fake kubelet, over fixture sysfs trees: VfProfiles mirrored, updated
//! and deleted; a watch that expires with 410 (re-list, files right); the API server going away
//! and coming back (devices stay advertised, the sync resumes); pools selected by the Node's
//! labels, live, with per-node Events; a restart while the API server is away; the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vfnet_types::{ProfileDir, RunDir};

use crds::VfProfile;
use kubelet_api::deviceplugin::v1beta1::{Empty, ListAndWatchResponse};
use serde_json::{Value, json};
use sriov::PciAddress;
use sriov::fixture::{Fixture, FixtureBuilder, PfSpec};
use tonic::Streaming;
use vfnet_device_plugin::{Config, DaemonHandle};
use vfnet_testkit::apiserver::{ApiServer, NODES, POOLS, PROFILES, node, pool, profile};
use vfnet_testkit::kubelet::FakeKubelet;

const NODE: &str = "node-a";
/// Long enough for the watchers' backoff (0.8 s, 1.6 s, 3.2 s, ...) after an outage.
const WAIT: Duration = Duration::from_secs(20);

fn pci(s: &str) -> PciAddress {
    s.parse().unwrap()
}

/// Two igb-like PFs with 4 VFs each: eth0 and eth1.
fn two_pfs() -> Fixture {
    FixtureBuilder::new()
        .pf(PfSpec::igb(pci("0000:01:00.0"), "eth0").vfs(7, 4))
        .pf(PfSpec::igb(pci("0000:03:00.0"), "eth1").vfs(7, 4))
        .build()
        .unwrap()
}

struct Node {
    _tmp: tempfile::TempDir,
    kubelet: PathBuf,
    run: RunDir,
    fixture: Fixture,
}

impl Node {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let n = Self {
            kubelet: tmp.path().join("kubelet"),
            run: RunDir::new(tmp.path().join("run")),
            fixture: two_pfs(),
            _tmp: tmp,
        };
        std::fs::create_dir_all(n.plugins()).unwrap();
        n
    }

    fn plugins(&self) -> PathBuf {
        self.kubelet.join("device-plugins")
    }

    fn profiles(&self) -> ProfileDir {
        self.run.profiles()
    }

    async fn config(&self, api: &ApiServer) -> Config {
        let kubeconfig = api.kubeconfig(self._tmp.path());
        let mut c = Config::new("/nonexistent/pools.yaml");
        c.cluster = vfnet_device_plugin::cluster::client_config(Some(&kubeconfig)).await.unwrap();
        assert!(c.cluster.is_some());
        c.node_name = Some(NODE.to_owned());
        c.kubelet_dir = self.kubelet.clone();
        c.run_dir = self.run.clone();
        c.devinfo_dir = self._tmp.path().join("devinfo");
        c.sysfs_root = self.fixture.root().to_owned();
        c.metrics_addr = None;
        c.rescan_interval = Duration::from_millis(100);
        c.kernel_events = false;
        c
    }

    async fn start(&self, api: &ApiServer) -> DaemonHandle {
        vfnet_device_plugin::start(self.config(api).await).await.unwrap()
    }

    /// The mirrored file of profile `name`, parsed.
    fn profile_file(&self, name: &str) -> Option<Value> {
        std::fs::read(self.profiles().profile(name)).ok().map(|b| serde_json::from_slice(&b).unwrap())
    }

    fn socket(&self, resource_name: &str) -> PathBuf {
        self.plugins().join(format!("vfnet-{resource_name}.sock"))
    }
}

/// Waits until `check` holds.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let t = Instant::now();
    while !check() {
        assert!(t.elapsed() < WAIT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Events with `reason` about pool `name`.
fn events(api: &ApiServer, reason: &str, name: &str) -> Vec<Value> {
    api.events().into_iter().filter(|e| e["reason"] == reason && e["regarding"]["name"] == name).collect()
}

async fn list_and_watch(kubelet: &FakeKubelet, resource: &str) -> Streaming<ListAndWatchResponse> {
    let reg = kubelet.registrations().into_iter().rev().find(|q| q.resource_name == resource).unwrap();
    let mut c = kubelet.plugin(&reg.endpoint).await.unwrap();
    c.list_and_watch(Empty {}).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_mirrored_updated_and_deleted() {
    let api = ApiServer::start().await;
    api.apply(NODES, node(NODE, json!({})));
    api.apply(PROFILES, profile("tenant-a", json!({"vlan": 100, "allowedNamespaces": ["tenant-a"]})));
    api.apply(PROFILES, profile("tenant-b", json!({"vlan": 200})));
    let n = Node::new();
    // A file of a profile that no longer exists: the first list removes it.
    std::fs::create_dir_all(n.profiles()).unwrap();
    std::fs::write(n.profiles().profile("gone"), "{}").unwrap();
    let daemon = n.start(&api).await;

    eventually("both profiles mirrored", || {
        n.profile_file("tenant-a").is_some() && n.profile_file("tenant-b").is_some()
    })
    .await;
    eventually("the stale file removed", || !n.profiles().profile("gone").exists()).await;
    let a = n.profile_file("tenant-a").unwrap();
    assert_eq!(
        (&a["apiVersion"], &a["kind"], &a["metadata"]["name"]),
        (&json!("vfnet.dev/v1alpha1"), &json!("VfProfile"), &json!("tenant-a"))
    );
    assert_eq!(a["spec"], json!({"vlan": 100, "allowedNamespaces": ["tenant-a"]}));
    assert!(a["metadata"]["uid"].is_string() && a["metadata"].get("managedFields").is_none(), "{a}");
    // The CNI plugin's loader takes the file as it is.
    assert_eq!(VfProfile::load(&n.profiles(), "tenant-a").unwrap().spec.vlan, Some(100));

    // Updated: the file follows.
    api.apply(PROFILES, profile("tenant-b", json!({"vlan": 201, "mtu": 9000})));
    eventually("tenant-b updated", || n.profile_file("tenant-b").is_some_and(|b| b["spec"]["vlan"] == 201)).await;
    assert_eq!(VfProfile::load(&n.profiles(), "tenant-b").unwrap().spec.mtu, Some(9000));
    // Deleted: the file goes; a new one comes.
    api.delete(PROFILES, "tenant-a");
    api.apply(PROFILES, profile("tenant-c", json!({"vlan": 300})));
    eventually("tenant-a removed", || n.profile_file("tenant-a").is_none()).await;
    eventually("tenant-c mirrored", || n.profile_file("tenant-c").is_some()).await;
    // No temporary files left behind.
    let mut names: Vec<String> = std::fs::read_dir(n.profiles().path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["tenant-b.json", "tenant-c.json"]);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_watch_relists_and_the_files_stay_right() {
    let api = ApiServer::start().await;
    api.apply(NODES, node(NODE, json!({})));
    api.apply(POOLS, pool("tenant", json!({"resourceName": "tenant", "selector": {"pfNames": ["eth0#0-2"]}})));
    api.apply(PROFILES, profile("tenant-a", json!({"vlan": 100})));
    api.apply(PROFILES, profile("tenant-b", json!({"vlan": 200})));
    let n = Node::new();
    let kubelet = FakeKubelet::start(&n.plugins()).unwrap();
    let daemon = n.start(&api).await;
    kubelet.wait_for_registrations(1, WAIT).await.expect("the pool registers");
    eventually("profiles mirrored", || n.profile_file("tenant-b").is_some()).await;
    let lists = api.lists(PROFILES);

    // Changes the open watch never delivers, then the history is compacted and the watch
    // answers 410 Gone: only a re-list can see them.
    api.freeze();
    api.delete(PROFILES, "tenant-a");
    api.apply(PROFILES, profile("tenant-b", json!({"vlan": 202})));
    api.apply(PROFILES, profile("tenant-c", json!({"vlan": 300})));
    api.compact();
    api.expire_watches();
    api.unfreeze();

    eventually("tenant-a removed after the re-list", || n.profile_file("tenant-a").is_none()).await;
    eventually("tenant-b updated", || n.profile_file("tenant-b").is_some_and(|b| b["spec"]["vlan"] == 202)).await;
    eventually("tenant-c mirrored", || n.profile_file("tenant-c").is_some()).await;
    assert!(api.lists(PROFILES) > lists, "the watcher listed again");
    // The pools were listed again too; nothing changed for kubelet.
    eventually("pools re-listed", || api.lists(POOLS) >= 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kubelet.registrations().len(), 1, "no re-registration");
    assert!(n.socket("tenant").exists());
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_going_away_keeps_devices_and_the_sync_resumes() {
    let mut api = ApiServer::start().await;
    api.apply(NODES, node(NODE, json!({"sriov": "true"})));
    api.apply(
        POOLS,
        pool(
            "tenant",
            json!({"resourceName": "tenant", "nodeSelector": {"sriov": "true"}, "selector": {"pfNames": ["eth0#0-2"]}}),
        ),
    );
    api.apply(PROFILES, profile("tenant-a", json!({"vlan": 100})));
    let n = Node::new();
    let kubelet = FakeKubelet::start(&n.plugins()).unwrap();
    let daemon = n.start(&api).await;
    kubelet.wait_for_registrations(1, WAIT).await.expect("the pool registers");
    eventually("profile mirrored", || n.profile_file("tenant-a").is_some()).await;
    let mut stream = list_and_watch(&kubelet, "vfnet.dev/tenant").await;
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.devices.len(), 3);

    api.stop().await;
    // While it is away: changes the daemon will only see when it is back.
    api.apply(PROFILES, profile("tenant-a", json!({"vlan": 101})));
    api.apply(POOLS, pool("more", json!({"resourceName": "more", "selector": {"pfNames": ["eth1#0-1"]}})));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Nothing dropped: the pool is served with its devices, the profile file is there.
    assert!(n.socket("tenant").exists());
    assert_eq!(n.profile_file("tenant-a").unwrap()["spec"]["vlan"], 100);
    let mut again = list_and_watch(&kubelet, "vfnet.dev/tenant").await;
    assert_eq!(again.message().await.unwrap().unwrap().devices.len(), 3, "devices still advertised");
    let quiet = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    assert!(quiet.is_err(), "no device list change during the outage: {quiet:?}");
    assert!(!daemon.is_finished());

    api.restart().await;
    eventually("the profile update arrives", || n.profile_file("tenant-a").is_some_and(|a| a["spec"]["vlan"] == 101))
        .await;
    let regs = kubelet.wait_for_registrations(2, WAIT).await.expect("the new pool registers");
    assert_eq!(regs[1].resource_name, "vfnet.dev/more");
    assert_eq!(kubelet.registrations().iter().filter(|r| r.resource_name == "vfnet.dev/tenant").count(), 1);
    daemon.shutdown().await;
    assert!(!n.socket("tenant").exists(), "sockets removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_follow_the_node_labels_with_events_per_node() {
    let api = ApiServer::start().await;
    api.apply(NODES, node(NODE, json!({"sriov": "true", "kubernetes.io/hostname": NODE})));
    api.apply(NODES, node("node-b", json!({"zone": "b"})));
    api.apply(
        POOLS,
        pool(
            "tenant",
            json!({"resourceName": "tenant", "nodeSelector": {"sriov": "true"},
                               "selector": {"pfNames": ["eth0#0-2"]}}),
        ),
    );
    api.apply(
        POOLS,
        pool(
            "zone-b",
            json!({"resourceName": "zone_b", "nodeSelector": {"zone": "b"},
                               "selector": {"pfNames": ["eth1#0-1"]}}),
        ),
    );
    api.apply(
        POOLS,
        pool("elsewhere", json!({"resourceName": "elsewhere", "nodeSelector": {"kubernetes.io/hostname": "node-b"}})),
    );
    // Selected, but names VFs eth0 can never have.
    api.apply(
        POOLS,
        pool(
            "broken",
            json!({"resourceName": "broken", "nodeSelector": {"sriov": "true"},
                               "selector": {"pfNames": ["eth0#0-9"]}}),
        ),
    );
    let n = Node::new();
    let kubelet = FakeKubelet::start(&n.plugins()).unwrap();
    let daemon = n.start(&api).await;

    let regs = kubelet.wait_for_registrations(1, WAIT).await.expect("the matching pool registers");
    assert_eq!(regs[0].resource_name, "vfnet.dev/tenant");
    let mut stream = list_and_watch(&kubelet, "vfnet.dev/tenant").await;
    assert_eq!(stream.message().await.unwrap().unwrap().devices.len(), 3);
    eventually("PoolAdvertised for tenant", || !events(&api, "PoolAdvertised", "tenant").is_empty()).await;
    eventually("PoolInvalid for broken", || !events(&api, "PoolInvalid", "broken").is_empty()).await;
    let e = &events(&api, "PoolAdvertised", "tenant")[0];
    assert_eq!(e["type"], "Normal");
    assert_eq!(e["reportingInstance"], NODE, "{e}");
    assert_eq!(e["reportingController"], "vfnet.dev/device-plugin");
    assert_eq!(
        (&e["regarding"]["kind"], &e["regarding"]["apiVersion"]),
        (&json!("VfPool"), &json!("vfnet.dev/v1alpha1"))
    );
    assert!(e["regarding"]["uid"].as_str().unwrap().starts_with("uid-tenant"), "{e}");
    assert!(e["note"].as_str().unwrap().contains("node node-a: advertising vfnet.dev/tenant (3 devices)"), "{e}");
    let e = &events(&api, "PoolInvalid", "broken")[0];
    assert_eq!(e["type"], "Warning");
    assert!(e["note"].as_str().unwrap().contains("spec.selector.pfNames[0]: VF range 0-9"), "{e}");
    assert!(!n.socket("broken").exists());
    for other in ["zone-b", "elsewhere"] {
        assert!(api.events().iter().all(|e| e["regarding"]["name"] != other), "no Event about {other}");
    }

    // The node's labels change: tenant no longer matches, zone-b does.
    api.apply(NODES, node(NODE, json!({"zone": "b", "kubernetes.io/hostname": NODE})));
    let regs = kubelet.wait_for_registrations(2, WAIT).await.expect("zone-b registers");
    assert_eq!(regs[1].resource_name, "vfnet.dev/zone_b");
    eventually("tenant withdrawn (its socket removed)", || !n.socket("tenant").exists()).await;
    // kubelet's stream gets an empty list before it ends, so the Node's capacity drops at once
    // instead of keeping the devices as unhealthy for kubelet's 5-minute grace period.
    let last = tokio::time::timeout(WAIT, stream.message()).await.expect("a last message").unwrap();
    assert_eq!(last.map(|m| m.devices.len()), Some(0), "the withdrawn pool's last list is empty");
    let end = tokio::time::timeout(WAIT, stream.message()).await.expect("the stream ends");
    assert!(matches!(end, Ok(None)), "the withdrawn pool's stream ends: {end:?}");
    eventually("PoolWithdrawn for tenant", || !events(&api, "PoolWithdrawn", "tenant").is_empty()).await;
    eventually("PoolAdvertised for zone-b", || !events(&api, "PoolAdvertised", "zone-b").is_empty()).await;
    let e = &events(&api, "PoolWithdrawn", "tenant")[0];
    assert!(
        e["note"].as_str().unwrap().contains("nodeSelector no longer matches the node; vfnet.dev/tenant withdrawn"),
        "{e}"
    );
    assert_eq!(events(&api, "PoolAdvertised", "tenant").len(), 1, "one Event per change, not per reload");

    // A pool's spec changes live: zone-b grows to 3 VFs.
    let mut zb = list_and_watch(&kubelet, "vfnet.dev/zone_b").await;
    assert_eq!(zb.message().await.unwrap().unwrap().devices.len(), 2);
    api.apply(
        POOLS,
        pool(
            "zone-b",
            json!({"resourceName": "zone_b", "nodeSelector": {"zone": "b"},
                               "selector": {"pfNames": ["eth1#0-2"]}}),
        ),
    );
    let t = Instant::now();
    loop {
        let msg = tokio::time::timeout(WAIT, zb.message()).await.unwrap().unwrap().unwrap();
        if msg.devices.len() == 3 {
            break;
        }
        assert!(t.elapsed() < WAIT);
    }
    // A change this node cannot take: refused, and the last good version stays served.
    api.apply(
        POOLS,
        pool(
            "zone-b",
            json!({"resourceName": "zone_b", "nodeSelector": {"zone": "b"},
                               "selector": {"pfNames": ["eth1#0-9"]}}),
        ),
    );
    eventually("PoolInvalid for zone-b", || !events(&api, "PoolInvalid", "zone-b").is_empty()).await;
    let e = &events(&api, "PoolInvalid", "zone-b")[0];
    assert!(e["note"].as_str().unwrap().contains("VF range 0-9"), "{e}");
    assert!(e["note"].as_str().unwrap().contains("its last good version stays advertised"), "{e}");
    assert!(n.socket("zone_b").exists());
    let mut zb = list_and_watch(&kubelet, "vfnet.dev/zone_b").await;
    assert_eq!(zb.message().await.unwrap().unwrap().devices.len(), 3);
    // The served pools are cached for a restart.
    let cache: Value = serde_json::from_slice(&std::fs::read(n.run.cluster_pools_cache()).unwrap()).unwrap();
    assert_eq!(cache.as_array().unwrap().len(), 1);
    assert_eq!(cache[0]["metadata"]["name"], "zone-b");
    assert_eq!(cache[0]["spec"]["selector"]["pfNames"], json!(["eth1#0-2"]));
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_the_api_server_is_away_serves_the_cached_pools() {
    let mut api = ApiServer::start().await;
    api.apply(NODES, node(NODE, json!({})));
    api.apply(POOLS, pool("tenant", json!({"resourceName": "tenant", "selector": {"pfNames": ["eth0#0-2"]}})));
    let n = Node::new();
    let kubelet = FakeKubelet::start(&n.plugins()).unwrap();
    let daemon = n.start(&api).await;
    kubelet.wait_for_registrations(1, WAIT).await.expect("the pool registers");
    daemon.shutdown().await;

    api.stop().await;
    let daemon = n.start(&api).await;
    let regs = kubelet.wait_for_registrations(2, WAIT).await.expect("the cached pool registers without the API server");
    assert_eq!(regs[1].resource_name, "vfnet.dev/tenant");
    let mut stream = list_and_watch(&kubelet, "vfnet.dev/tenant").await;
    assert_eq!(stream.message().await.unwrap().unwrap().devices.len(), 3);

    // Back, with the pool deleted: it is withdrawn.
    api.delete(POOLS, "tenant");
    api.restart().await;
    eventually("the deleted pool withdrawn", || !n.socket("tenant").exists()).await;
    daemon.shutdown().await;
}

fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vfnet-device-plugin"));
    c.env_remove("KUBERNETES_SERVICE_HOST").env_remove("VFNET_KUBECONFIG").env_remove("VFNET_POOLS");
    c
}

fn args(n: &Node, kubeconfig: &Path) -> Vec<String> {
    [
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--node-name",
        NODE,
        "--kubelet-dir",
        &n.kubelet.display().to_string(),
        "--run-dir",
        &n.run.to_string(),
        "--devinfo-dir",
        &n._tmp.path().join("devinfo").display().to_string(),
        "--sysfs-root",
        &n.fixture.root().display().to_string(),
        "--metrics-addr",
        "off",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_in_cluster_mode_syncs_and_ends_on_sigterm() {
    let api = ApiServer::start().await;
    api.apply(NODES, node(NODE, json!({})));
    api.apply(POOLS, pool("tenant", json!({"resourceName": "tenant", "selector": {"pfNames": ["eth0#0-2"]}})));
    api.apply(PROFILES, profile("tenant-a", json!({"vlan": 100})));
    let n = Node::new();
    let kubelet = FakeKubelet::start(&n.plugins()).unwrap();
    let kubeconfig = api.kubeconfig(n._tmp.path());
    let mut child = binary().args(args(&n, &kubeconfig)).stdin(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    kubelet.wait_for_registrations(1, WAIT).await.expect("the binary registers the cluster pool");
    eventually("profile mirrored", || n.profile_file("tenant-a").is_some()).await;
    let status = Command::new("kill").args(["-15", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    assert!(!n.socket("tenant").exists(), "socket removed on SIGTERM");
    assert!(n.profile_file("tenant-a").is_some(), "profiles stay for the CNI plugin");
}

#[test]
fn the_binary_needs_a_node_name_in_cluster_mode_and_pools_without_it() {
    let n = Node::new();
    let kubeconfig = n._tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"http://127.0.0.1:9\"}\n\
         users:\n- name: u\n  user: {}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n",
    )
    .unwrap();
    let mut a = args(&n, &kubeconfig);
    a.drain(2..4); // --node-name NODE
    let out = binary().args(&a).env_remove("VFNET_NODE_NAME").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cluster mode needs --node-name"), "{stderr}");

    let a = args(&n, &n._tmp.path().join("missing-kubeconfig"));
    let out = binary().args(&a).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing-kubeconfig"), "{stderr}");

    let mut a = args(&n, &kubeconfig);
    a.drain(0..2); // --kubeconfig FILE
    let out = binary().args(&a).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--pools is required without cluster mode"), "{stderr}");
}
