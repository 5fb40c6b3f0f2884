//! The daemon as the DRA driver `vfnet.dev`, in cluster mode against the stand-in API server
//! (`vfnet_testkit::apiserver`) over a fixture sysfs, with the test playing kubelet 1.34+'s side
//! as kubelet does it: the plugin watcher's GetInfo and NotifyRegistrationStatus on the
//! registration socket, NodePrepareResources / NodeUnprepareResources (v1) and the health stream
//! (NodeWatchResources, v1) on the driver's socket, all gRPC over unix sockets with `:authority`
//! localhost; and the CNI plugin's side of the node socket (`draDevices`, `draAttached`).
//!
//! One PF with 4 VFs: VFs 0-1 are the `mode: dra` pool `dra-a` (published as ResourceSlices),
//! VFs 2-3 a device-plugin pool beside it (advertised to kubelet's device plugin registry).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kubelet_api::dra::v1::{
    Claim, NodePrepareResourceResponse, NodePrepareResourcesRequest, NodeUnprepareResourcesRequest,
};
use kubelet_api::dra_health::v1::{HealthStatus, NodeWatchResourcesRequest, NodeWatchResourcesResponse};
use kubelet_api::{dra, dra_health, pluginregistration};
use serde_json::{Value, json};
use sriov::PciAddress;
use sriov::fixture::{Fixture, FixtureBuilder, PfSpec};
use tonic::Streaming;
use vfnet_device_plugin::dra::{cdi, checkpoint, slices};
use vfnet_device_plugin::{Config, DaemonHandle};
use vfnet_testkit::apiserver::{ApiServer, NODES, POOLS, PROFILES, SLICES, node, pool, profile};
use vfnet_testkit::kubelet::FakeKubelet;
use vfnet_types::node_socket::{Attachment, PodRef, Request, Response};
use vfnet_types::{RunDir, StateDir};

const NODE: &str = "node-a";
/// The Node's UID: the slices' owner.
const NODE_UID: &str = "node-uid-1";
const PF: &str = "0000:01:00.0";
/// The daemon pod's UID: the per-pod socket names (kubelet 1.33+ rolling updates).
const POD_UID: &str = "daemon-pod-1";
/// How long anything the daemon does on its own may take (it takes well under a second).
const WAIT: Duration = Duration::from_secs(10);

fn pci(s: &str) -> PciAddress {
    s.parse().unwrap()
}

/// A node: one igb-like PF with 4 VFs, and the daemon's directories.
struct Node {
    tmp: tempfile::TempDir,
    kubelet: PathBuf,
    run: RunDir,
    state: StateDir,
    cdi: PathBuf,
    fixture: Fixture,
}

impl Node {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let fixture = FixtureBuilder::new().pf(PfSpec::igb(pci(PF), "eth0").vfs(7, 4)).build().unwrap();
        let n = Self {
            kubelet: tmp.path().join("kubelet"),
            run: RunDir::new(tmp.path().join("run")),
            state: StateDir::new(tmp.path().join("state")),
            cdi: tmp.path().join("cdi"),
            fixture,
            tmp,
        };
        std::fs::create_dir_all(n.device_plugins()).unwrap();
        n
    }

    fn device_plugins(&self) -> PathBuf {
        self.kubelet.join("device-plugins")
    }

    /// The per-pod registration socket, in kubelet's plugin watcher directory.
    fn registration(&self) -> PathBuf {
        self.kubelet.join("plugins_registry").join(format!("vfnet.dev-{POD_UID}-reg.sock"))
    }

    /// The per-pod DRA service socket.
    fn service(&self) -> PathBuf {
        self.kubelet.join("plugins").join("vfnet.dev").join(format!("dra-{POD_UID}.sock"))
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.state.path().join("dra")
    }

    /// VF `index`'s PCI address and its DRA device name.
    fn vf(&self, index: u32) -> (PciAddress, String) {
        let pci = self.fixture.pfs()[0].vf_pci(index);
        (pci, slices::device_name(&pci))
    }

    async fn start(&self, api: &ApiServer) -> DaemonHandle {
        let kubeconfig = api.kubeconfig(self.tmp.path());
        let mut c = Config::new("/nonexistent/pools.yaml");
        c.cluster = vfnet_device_plugin::cluster::client_config(Some(&kubeconfig)).await.unwrap();
        c.node_name = Some(NODE.to_owned());
        c.kubelet_dir = self.kubelet.clone();
        c.run_dir = self.run.clone();
        c.devinfo_dir = self.tmp.path().join("devinfo");
        c.sysfs_root = self.fixture.root().to_owned();
        c.metrics_addr = None;
        c.rescan_interval = Duration::from_millis(100);
        c.kernel_events = false;
        c.dra = true;
        c.cdi_dir = self.cdi.clone();
        c.state_dir = self.state.clone();
        c.pod_uid = Some(POD_UID.to_owned());
        vfnet_device_plugin::start(c).await.unwrap()
    }

    /// The checkpoint's claims (empty without a file).
    fn checkpointed(&self) -> Value {
        std::fs::read(checkpoint::path(&self.checkpoint_dir()))
            .map_or(json!({}), |b| serde_json::from_slice::<Value>(&b).unwrap()["claims"].clone())
    }

    /// Claim `uid`'s CDI spec, parsed, if there is one.
    fn cdi_spec(&self, uid: &str) -> Option<Value> {
        std::fs::read(cdi::spec_path(&self.cdi, uid)).ok().map(|b| serde_json::from_slice(&b).unwrap())
    }

    /// One exchange on the node socket, as the CNI plugin has it: one line out, one line in.
    async fn node_socket(&self, request: Request) -> Response {
        let socket = self.run.daemon_socket();
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.write_all(&request.to_line()).unwrap();
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).unwrap();
            Response::parse(&answer).unwrap()
        })
        .await
        .unwrap()
    }
}

/// The cluster: the Node, the pools (DRA on VFs 0-1, device plugin on 2-3) and profile p1.
async fn cluster() -> ApiServer {
    let api = ApiServer::start().await;
    let mut node = node(NODE, json!({}));
    node["metadata"]["uid"] = json!(NODE_UID);
    api.apply(NODES, node);
    api.apply(
        POOLS,
        pool(
            "dra-a",
            json!({"resourceName": "dra_a", "mode": "dra", "physicalNetwork": "physnet1",
                   "requireProfile": true, "allowedProfiles": ["p1"],
                   "selector": {"pfNames": ["eth0#0-1"]}}),
        ),
    );
    api.apply(POOLS, pool("dp", json!({"resourceName": "dp", "selector": {"pfNames": ["eth0#2-3"]}})));
    api.apply(PROFILES, profile("p1", json!({"vlan": 100, "allowedNamespaces": ["tenant-a"]})));
    api
}

/// The DRA pool's name.
fn dra_pool() -> String {
    format!("{NODE}/dra-a")
}

/// A VfConfig as opaque parameters.
fn vfconfig(keys: Value) -> Value {
    let mut v = json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfConfig"});
    v.as_object_mut().unwrap().extend(keys.as_object().unwrap().clone());
    v
}

/// ResourceClaim `namespace/name` (UID `uid`) as the scheduler leaves it: request `vf` of class
/// `vfnet-p1` allocated to `device` of the DRA pool, the class's config naming profile p1 and the
/// claim's asking for vnicType direct, reserved for pod `pod` (`pod_uid`).
fn claim(namespace: &str, name: &str, uid: &str, device: &str, pod: &str, pod_uid: &str) -> Value {
    json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": "vfnet-p1"}}]}},
        "status": {
            "allocation": {"devices": {
                "results": [{"request": "vf", "driver": "vfnet.dev", "pool": dra_pool(), "device": device}],
                "config": [
                    {"source": "FromClass", "requests": ["vf"],
                     "opaque": {"driver": "vfnet.dev", "parameters": vfconfig(json!({"profile": "p1"}))}},
                    {"source": "FromClaim",
                     "opaque": {"driver": "vfnet.dev", "parameters": vfconfig(json!({"vnicType": "direct"}))}},
                ],
            }},
            "reservedFor": [{"resource": "pods", "name": pod, "uid": pod_uid}],
        },
    })
}

fn kubelet_claim(namespace: &str, name: &str, uid: &str) -> Claim {
    Claim { namespace: namespace.to_owned(), uid: uid.to_owned(), name: name.to_owned() }
}

/// Waits until `check` holds.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let t = Instant::now();
    while !check() {
        assert!(t.elapsed() < WAIT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A v1 DRAPlugin client on `socket`, once it is served.
async fn dra_client(socket: &Path) -> dra::v1::dra_plugin_client::DraPluginClient<tonic::transport::Channel> {
    let t = Instant::now();
    loop {
        match dra::v1::client(socket).await {
            Ok(c) => return c,
            Err(e) => assert!(t.elapsed() < WAIT, "the DRA socket is not served: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// NodePrepareResources for one claim: kubelet's reply entry for it (keyed by its UID).
async fn prepare(socket: &Path, c: Claim) -> NodePrepareResourceResponse {
    let uid = c.uid.clone();
    let mut client = dra_client(socket).await;
    let reply = client.node_prepare_resources(NodePrepareResourcesRequest { claims: vec![c] }).await.unwrap();
    let mut claims = reply.into_inner().claims;
    assert_eq!(claims.keys().collect::<Vec<_>>(), [&uid], "the reply is keyed by the claim's UID");
    claims.remove(&uid).unwrap()
}

/// NodeUnprepareResources for one claim: its error ("" on success).
async fn unprepare(socket: &Path, c: Claim) -> String {
    let uid = c.uid.clone();
    let mut client = dra_client(socket).await;
    let reply = client.node_unprepare_resources(NodeUnprepareResourcesRequest { claims: vec![c] }).await.unwrap();
    let mut claims = reply.into_inner().claims;
    assert_eq!(claims.keys().collect::<Vec<_>>(), [&uid], "the reply is keyed by the claim's UID");
    claims.remove(&uid).unwrap().error
}

/// A slice of `node`'s pool `pool` as another publisher left it.
fn foreign_slice(name: &str, node: &str, pool: &str) -> Value {
    json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": {"name": name, "labels": {"vfnet.dev/node": node, "vfnet.dev/pool": pool}},
        "spec": {"driver": "vfnet.dev", "nodeName": node,
                 "pool": {"name": format!("{node}/{pool}"), "generation": 7, "resourceSliceCount": 1}},
    })
}

/// The published slices of the DRA pool.
fn dra_slices(api: &ApiServer) -> Vec<Value> {
    api.slices().into_iter().filter(|s| s["spec"]["pool"]["name"] == dra_pool()).collect()
}

/// Device `i` of the (one) slice's devices: its `healthy` attribute.
fn healthy(slice: &Value, i: usize) -> Option<bool> {
    slice["spec"]["devices"][i]["attributes"]["healthy"]["bool"].as_bool()
}

/// The next health message, within [`WAIT`].
async fn next_health(stream: &mut Streaming<NodeWatchResourcesResponse>) -> NodeWatchResourcesResponse {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("no health message in time")
        .expect("the health stream failed")
        .expect("the health stream ended")
}

/// `(device name, health, message)` of a health message, by device name.
fn health_of(msg: &NodeWatchResourcesResponse) -> Vec<(String, HealthStatus, String)> {
    let mut out: Vec<_> = msg
        .devices
        .iter()
        .map(|d| {
            let id = d.device.clone().expect("a device without identifier");
            assert_eq!(id.pool_name, dra_pool(), "{d:?}");
            (id.device_name, d.health(), d.message.clone())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_registers_prepares_unprepares_and_watches_health() {
    let api = cluster().await;
    let n = Node::new();
    let kubelet = FakeKubelet::start(&n.device_plugins()).unwrap();
    let daemon = n.start(&api).await;
    let ((vf0, dev0), (vf1, dev1)) = (n.vf(0), n.vf(1));
    let (vf2, vf3) = (n.vf(2).0, n.vf(3).0);

    // --- ResourceSlices for the DRA pool; the device-plugin pool beside it.
    eventually("the DRA pool's slice published with both devices", || {
        dra_slices(&api).first().is_some_and(|s| s["spec"]["devices"].as_array().is_some_and(|d| d.len() == 2))
    })
    .await;
    let all = api.slices();
    assert_eq!(all.len(), 1, "one slice in all, the DRA pool's: {all:#?}");
    let slice = &all[0];
    assert_eq!(slice["spec"]["driver"], "vfnet.dev", "{slice}");
    assert_eq!(slice["spec"]["nodeName"], NODE, "{slice}");
    assert_eq!(slice["spec"]["pool"]["name"], dra_pool(), "{slice}");
    assert_eq!(slice["spec"]["pool"]["resourceSliceCount"], 1, "{slice}");
    let generation = slice["spec"]["pool"]["generation"].as_i64().unwrap();
    assert!(generation >= 1, "generation {generation}");
    assert_eq!(slice["metadata"]["labels"]["vfnet.dev/node"], NODE, "{slice}");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Node", "owned by the Node: {slice}");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["uid"], NODE_UID, "{slice}");
    for (i, (vf, dev, index)) in [(vf0, &dev0, 0), (vf1, &dev1, 1)].into_iter().enumerate() {
        let d = &slice["spec"]["devices"][i];
        assert_eq!(d["name"], *dev, "device {i}: {d}");
        let attrs = &d["attributes"];
        assert_eq!(attrs["resource.kubernetes.io/pciBusID"]["string"], vf.to_string(), "device {i}: {d}");
        assert_eq!(attrs["vfIndex"]["int"], index, "device {i}: {d}");
        assert_eq!(attrs["physicalNetwork"]["string"], "physnet1", "device {i}: {d}");
        assert_eq!(healthy(slice, i), Some(true), "device {i}: {d}");
    }
    let regs = kubelet.wait_for_registrations(1, WAIT).await.expect("the device-plugin pool registers");
    assert_eq!(regs[0].resource_name, "vfnet.dev/dp", "only the device-plugin pool registers: {regs:?}");
    assert!(n.device_plugins().join("vfnet-dp.sock").exists(), "the device-plugin pool's socket");
    let text = serde_json::to_string(&all).unwrap();
    for vf in [vf2, vf3] {
        assert!(!text.contains(&vf.to_string()), "no slice names the device-plugin pool's VF {vf}");
    }

    // --- Registration, as kubelet's plugin watcher does it.
    let info = pluginregistration::get_info(&n.registration()).await.expect("GetInfo on the per-pod socket");
    assert_eq!(info.r#type, "DRAPlugin");
    assert_eq!(info.name, "vfnet.dev");
    assert_eq!(PathBuf::from(&info.endpoint), n.service(), "the endpoint is the per-pod DRA socket");
    assert_eq!(
        info.supported_versions.first().map(String::as_str),
        Some("v1.DRAPlugin"),
        "v1 first, so kubelet 1.34+ picks it: {:?}",
        info.supported_versions
    );
    for v in ["v1beta1.DRAPlugin", "v1.DRAResourceHealth"] {
        assert!(info.supported_versions.iter().any(|s| s == v), "{v} missing: {:?}", info.supported_versions);
    }
    pluginregistration::notify(&n.registration(), true, String::new()).await.expect("NotifyRegistrationStatus");

    // --- NodePrepareResources for a tenant-a claim on VF 0.
    api.apply_claim(claim("tenant-a", "web-vf", "claim-a", &dev0, "web", "pod-1"));
    let a = || kubelet_claim("tenant-a", "web-vf", "claim-a");
    let reply = prepare(&n.service(), a()).await;
    assert_eq!(reply.error, "", "prepare refused: {reply:?}");
    assert_eq!(reply.devices.len(), 1, "{reply:?}");
    let d = &reply.devices[0];
    assert_eq!(d.pool_name, dra_pool(), "{reply:?}");
    assert_eq!(d.device_name, dev0, "{reply:?}");
    assert!(d.device_name.starts_with("vf-"), "{reply:?}");
    assert_eq!(d.request_names, ["vf"], "{reply:?}");
    assert_eq!(d.cdi_device_ids, [format!("vfnet.dev/vf=claim-a-{dev0}")], "{reply:?}");
    let spec = n.cdi_spec("claim-a").expect("the claim's CDI spec in the CDI directory");
    assert_eq!(spec["kind"], "vfnet.dev/vf", "{spec}");
    assert_eq!(spec["devices"][0]["name"], format!("claim-a-{dev0}"), "{spec}");
    let env: Vec<&str> =
        spec["devices"][0]["containerEdits"]["env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(env.contains(&format!("PCIDEVICE_VFNET_DEV_DRA_A={vf0}").as_str()), "the VF's PCI address: {env:?}");
    assert!(checkpoint::path(&n.checkpoint_dir()).exists(), "the checkpoint under state_dir/dra/");
    assert_eq!(n.checkpointed()["claim-a"]["devices"][0]["pci"], vf0.to_string(), "{}", n.checkpointed());
    assert!(n.run.device_record(&vf0).exists(), "VF 0's device record in the run directory");

    // kubelet retries (a lost reply, a restart): the same answer.
    let again = prepare(&n.service(), a()).await;
    assert_eq!(again, reply, "prepare is idempotent");

    // --- The CNI plugin asks for the pod's VFs, then reports what ADD attached.
    let pod = PodRef { namespace: "tenant-a".into(), name: "web".into(), uid: Some("pod-1".into()) };
    let answer = n.node_socket(Request::DraDevices(pod)).await;
    let Response::DraDevices(devices) = answer else { panic!("draDevices answered {answer:?}") };
    assert_eq!(devices.len(), 1, "{devices:?}");
    let got = &devices[0];
    assert_eq!((got.claim.as_str(), got.claim_name.as_str()), ("claim-a", "tenant-a/web-vf"), "{got:?}");
    assert_eq!((got.pool.as_str(), got.device.as_str(), got.vf), (dra_pool().as_str(), dev0.as_str(), vf0), "{got:?}");
    assert_eq!(got.profile.as_deref(), Some("p1"), "{got:?}");
    assert_eq!(got.vnic_type, "direct", "{got:?}");
    let other = PodRef { namespace: "tenant-a".into(), name: "web".into(), uid: Some("pod-recreated".into()) };
    assert_eq!(n.node_socket(Request::DraDevices(other)).await, Response::DraDevices(vec![]), "another pod's UID");

    let attached = Attachment {
        claim: "claim-a".into(),
        pool: dra_pool(),
        device: dev0.clone(),
        interface: Some("net1".into()),
        ips: vec!["10.1.0.5/24".into()],
        mac: Some("02:00:00:00:00:01".into()),
        vlan: None,
    };
    assert_eq!(n.node_socket(Request::DraAttached(attached)).await, Response::Done);
    let patches = api.claim_status_patches();
    assert_eq!(patches.len(), 1, "one status apply: {patches:#?}");
    let status = &patches[0]["status"]["devices"][0];
    assert_eq!(
        (&status["driver"], &status["pool"], &status["device"]),
        (&json!("vfnet.dev"), &json!(dra_pool()), &json!(dev0)),
        "{status}"
    );
    assert_eq!(status["networkData"]["interfaceName"], "net1", "{status}");
    assert_eq!(status["networkData"]["ips"], json!(["10.1.0.5/24"]), "{status}");
    assert_eq!(status["networkData"]["hardwareAddress"], "02:00:00:00:00:01", "{status}");
    assert_eq!(status["data"]["vfIndex"], 0, "{status}");
    assert_eq!(status["data"]["vf"], vf0.to_string(), "{status}");
    assert_eq!(status["data"]["vlan"], 100, "the profile's VLAN: {status}");
    assert_eq!(status["conditions"][0]["type"], "Ready", "{status}");

    // --- A tenant-b claim naming tenant-a's profile: refused, nothing written.
    api.apply_claim(claim("tenant-b", "intruder", "claim-b", &dev1, "evil", "pod-2"));
    let refused = prepare(&n.service(), kubelet_claim("tenant-b", "intruder", "claim-b")).await;
    assert!(refused.devices.is_empty(), "{refused:?}");
    for part in ["tenant-b/intruder", "namespace tenant-b", "VfProfile p1", "vfnet error 102"] {
        assert!(refused.error.contains(part), "the error names {part:?}: {}", refused.error);
    }
    assert!(n.cdi_spec("claim-b").is_none(), "no CDI spec for a refused claim");
    assert!(n.checkpointed().get("claim-b").is_none(), "not checkpointed: {}", n.checkpointed());
    assert!(!n.run.device_record(&vf1).exists(), "no device record for a refused claim");

    // --- NodeUnprepareResources: refused while the CNI's journal holds the VF.
    let journal = n.state.journal(&vf0);
    std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
    std::fs::write(&journal, "{}").unwrap();
    let error = unprepare(&n.service(), a()).await;
    assert!(error.contains("still attached") && error.contains(&vf0.to_string()), "{error}");
    assert!(n.cdi_spec("claim-a").is_some(), "kept while attached");
    std::fs::remove_file(&journal).unwrap();
    assert_eq!(unprepare(&n.service(), a()).await, "", "unprepare once DEL restored the VF");
    assert!(n.cdi_spec("claim-a").is_none(), "the CDI spec is removed");
    assert!(n.checkpointed().get("claim-a").is_none(), "the checkpoint entry is removed: {}", n.checkpointed());
    let patches = api.claim_status_patches();
    assert_eq!(patches.last().map(|p| &p["status"]["devices"]), Some(&json!([])), "status cleared: {patches:#?}");
    assert_eq!(unprepare(&n.service(), a()).await, "", "unprepare again (kubelet retry): fine");
    let pod = PodRef { namespace: "tenant-a".into(), name: "web".into(), uid: Some("pod-1".into()) };
    assert_eq!(n.node_socket(Request::DraDevices(pod)).await, Response::DraDevices(vec![]), "nothing prepared");

    // --- The health stream: both devices healthy, then the PF goes down.
    let mut health = dra_health::v1::client(&n.service()).await.unwrap();
    let mut stream = health.node_watch_resources(NodeWatchResourcesRequest {}).await.unwrap().into_inner();
    let first = health_of(&next_health(&mut stream).await);
    let mut names = vec![dev0.clone(), dev1.clone()];
    names.sort();
    assert_eq!(first.iter().map(|h| h.0.clone()).collect::<Vec<_>>(), names, "both DRA devices: {first:?}");
    assert!(first.iter().all(|h| h.1 == HealthStatus::Healthy), "{first:?}");

    n.fixture.set_pf_link(&pci(PF), "down", false).unwrap();
    daemon.rescan();
    let down = health_of(&next_health(&mut stream).await);
    assert_eq!(down.len(), 2, "{down:?}");
    for (name, status, message) in &down {
        assert_eq!(*status, HealthStatus::Unhealthy, "{name}: {down:?}");
        assert!(message.contains("PF eth0 is down"), "{name}: the message says why: {message}");
    }
    eventually("the slice's healthy attributes turn false", || {
        dra_slices(&api).first().is_some_and(|s| healthy(s, 0) == Some(false) && healthy(s, 1) == Some(false))
    })
    .await;
    let later = dra_slices(&api)[0]["spec"]["pool"]["generation"].as_i64().unwrap();
    assert!(later > generation, "a new generation for the change: {later} after {generation}");
    // An unhealthy VF is not prepared.
    api.apply_claim(claim("tenant-a", "late", "claim-late", &dev1, "late", "pod-3"));
    let late = prepare(&n.service(), kubelet_claim("tenant-a", "late", "claim-late")).await;
    assert!(late.error.contains("is unhealthy"), "{late:?}");

    drop(stream);
    daemon.shutdown().await;
    // `shutdown` waits for the DRA plugin's task, which removes its sockets as it ends.
    assert!(!n.registration().exists() && !n.service().exists(), "the DRA sockets removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_rewrites_the_cdi_specs_from_the_checkpoint() {
    let api = cluster().await;
    let n = Node::new();
    let _kubelet = FakeKubelet::start(&n.device_plugins()).unwrap();
    let daemon = n.start(&api).await;
    let (vf1, dev1) = n.vf(1);
    eventually("the DRA pool's slice published", || !dra_slices(&api).is_empty()).await;
    let generation = dra_slices(&api)[0]["spec"]["pool"]["generation"].as_i64().unwrap();

    api.apply_claim(claim("tenant-a", "db-vf", "claim-c", &dev1, "db", "pod-9"));
    let c = || kubelet_claim("tenant-a", "db-vf", "claim-c");
    let reply = prepare(&n.service(), c()).await;
    assert_eq!(reply.error, "", "{reply:?}");
    let before = n.cdi_spec("claim-c").expect("the CDI spec");

    // The daemon restarts; a reboot wiped the CDI directory (a tmpfs) meanwhile.
    daemon.shutdown().await;
    // The old daemon's sockets are gone before the new one starts, so kubelet cannot dial the
    // old one's as it goes away. (Checked by presence, not by inode: a new file often gets the
    // freed inode number back.)
    assert!(!n.registration().exists() && !n.service().exists(), "the old daemon's DRA sockets removed");
    std::fs::remove_dir_all(&n.cdi).unwrap();
    // Meanwhile: a slice of this node's that no pool wants (a pool deleted while the daemon was
    // down), and another node's slice.
    api.apply(SLICES, foreign_slice("node-a-vfnet.dev-gone-0", NODE, "gone"));
    api.apply(SLICES, foreign_slice("node-b-vfnet.dev-dra-a-0", "node-b", "dra-a"));
    let daemon = n.start(&api).await;
    eventually("the new daemon serves its sockets", || n.service().exists() && n.registration().exists()).await;
    let after = n.cdi_spec("claim-c").expect("the CDI spec rewritten from the checkpoint at start");
    assert_eq!(after, before, "the same spec as prepared");
    let env = after["devices"][0]["containerEdits"]["env"].to_string();
    assert!(env.contains(&format!("PCIDEVICE_VFNET_DEV_DRA_A={vf1}")), "{env}");

    // kubelet, which still counts the claim prepared, may ask again: the same answer.
    assert_eq!(prepare(&n.service(), c()).await, reply, "the checkpoint answers after a restart");
    let pod = PodRef { namespace: "tenant-a".into(), name: "db".into(), uid: Some("pod-9".into()) };
    let Response::DraDevices(devices) = n.node_socket(Request::DraDevices(pod)).await else { panic!("not devices") };
    assert_eq!(devices.iter().map(|d| d.vf).collect::<Vec<_>>(), [vf1], "the CNI still finds the VF");
    eventually("the slice republished with a higher generation", || {
        dra_slices(&api).first().and_then(|s| s["spec"]["pool"]["generation"].as_i64()).is_some_and(|g| g > generation)
    })
    .await;
    eventually("this node's stale slice deleted", || {
        api.slices().iter().all(|s| s["metadata"]["name"] != "node-a-vfnet.dev-gone-0")
    })
    .await;
    let names: Vec<Value> = api.slices().iter().map(|s| s["metadata"]["name"].clone()).collect();
    assert_eq!(names, [json!("node-a-vfnet.dev-dra-a-0"), json!("node-b-vfnet.dev-dra-a-0")], "another node's stays");
    let listed = format!("GET {SLICES}?&labelSelector=vfnet.dev%2Fnode%3D{NODE} ");
    assert!(api.requests().iter().any(|r| r.starts_with(&listed)), "the publisher lists its node's slices by label");

    assert_eq!(unprepare(&n.service(), c()).await, "", "unprepare after the restart");
    assert!(n.cdi_spec("claim-c").is_none(), "the CDI spec is removed");
    assert!(n.checkpointed().get("claim-c").is_none(), "{}", n.checkpointed());
    daemon.shutdown().await;
}
