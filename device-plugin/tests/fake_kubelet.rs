//! The device plugin against an in-process fake kubelet (`vfnet_testkit::kubelet`), over fixture sysfs
//! trees: registration, ListAndWatch, GetPreferredAllocation, Allocate, kubelet restarts, live
//! changes, bad pools files and reloads, and the binary's start-up errors and SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kubelet_api::deviceplugin::v1beta1::device_plugin_client::DevicePluginClient;
use kubelet_api::deviceplugin::v1beta1::{
    AllocateRequest, ContainerAllocateRequest, ContainerPreferredAllocationRequest, Empty, ListAndWatchResponse,
    PreferredAllocationRequest,
};
use sriov::PciAddress;
use sriov::fixture::{Fixture, FixtureBuilder, PfSpec};
use tonic::transport::Channel;
use tonic::{Code, Streaming};
use vfnet_device_plugin::{Config, DaemonHandle};
use vfnet_testkit::kubelet::FakeKubelet;

const PF0: &str = "0000:01:00.0";
const PF1: &str = "0000:03:00.0";
const WAIT: Duration = Duration::from_secs(5);

fn pci(s: &str) -> PciAddress {
    s.parse().unwrap()
}

/// Two igb-like PFs: eth0 with 4 VFs on NUMA 0, eth1 with 4 VFs on NUMA 1.
fn two_pfs() -> Fixture {
    FixtureBuilder::new()
        .pf(PfSpec::igb(pci(PF0), "eth0").vfs(7, 4).numa(0))
        .pf(PfSpec::igb(pci(PF1), "eth1").vfs(7, 4).numa(1))
        .build()
        .unwrap()
}

struct Dirs {
    _tmp: tempfile::TempDir,
    kubelet: PathBuf,
    run: vfnet_types::RunDir,
    devinfo: PathBuf,
    pools: PathBuf,
}

impl Dirs {
    fn new(pools: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let d = Self {
            kubelet: tmp.path().join("kubelet"),
            run: vfnet_types::RunDir::new(tmp.path().join("run")),
            devinfo: tmp.path().join("devinfo"),
            pools: tmp.path().join("pools.yaml"),
            _tmp: tmp,
        };
        std::fs::create_dir_all(d.plugins()).unwrap();
        std::fs::write(&d.pools, pools).unwrap();
        d
    }

    fn plugins(&self) -> PathBuf {
        self.kubelet.join("device-plugins")
    }

    fn config(&self, fixture: &Fixture) -> Config {
        let mut c = Config::new(&self.pools);
        c.kubelet_dir = self.kubelet.clone();
        c.run_dir = self.run.clone();
        c.devinfo_dir = self.devinfo.clone();
        c.sysfs_root = fixture.root().to_owned();
        c.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
        c.rescan_interval = Duration::from_millis(100);
        c.pools_check_interval = Duration::from_millis(100);
        // Fixture trees produce no kernel events: the periodic rescan drives these tests.
        c.kernel_events = false;
        c
    }
}

const POOLS: &str = "\
- metadata: {name: tenant}
  spec:
    resourceName: tenant
    physicalNetwork: physnet1
    selector: {pfNames: ['eth0#0-2']}
- metadata: {name: dpdk}
  spec:
    resourceName: dpdk
    deviceType: vfio-pci
    selector: {rootDevices: ['0000:03:00.0#0-1']}
";

struct Running {
    daemon: DaemonHandle,
    kubelet: FakeKubelet,
}

async fn start(fixture: &Fixture, dirs: &Dirs, pools: usize) -> Running {
    let kubelet = FakeKubelet::start(&dirs.plugins()).unwrap();
    let daemon = vfnet_device_plugin::start(dirs.config(fixture)).await.unwrap();
    kubelet.wait_for_registrations(pools, WAIT).await.expect("the pools register");
    Running { daemon, kubelet }
}

async fn client(r: &Running, resource: &str) -> DevicePluginClient<Channel> {
    let reg = r.kubelet.registrations().into_iter().rev().find(|q| q.resource_name == resource).unwrap();
    r.kubelet.plugin(&reg.endpoint).await.unwrap()
}

async fn watch(c: &mut DevicePluginClient<Channel>) -> Streaming<ListAndWatchResponse> {
    c.list_and_watch(Empty {}).await.unwrap().into_inner()
}

/// `(id, health)` of each device in a ListAndWatch message.
fn devices(msg: &ListAndWatchResponse) -> Vec<(String, String)> {
    msg.devices.iter().map(|d| (d.id.clone(), d.health.clone())).collect()
}

/// Reads ListAndWatch messages until one satisfies `want`; returns it and how long it took.
async fn until(
    stream: &mut Streaming<ListAndWatchResponse>,
    want: impl Fn(&ListAndWatchResponse) -> bool,
) -> (ListAndWatchResponse, Duration) {
    let start = Instant::now();
    loop {
        let msg = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("a ListAndWatch update in time")
            .unwrap()
            .expect("the stream stays open");
        if want(&msg) {
            return (msg, start.elapsed());
        }
    }
}

async fn allocate(
    c: &mut DevicePluginClient<Channel>,
    ids: &[&str],
) -> Result<tonic::Response<kubelet_api::deviceplugin::v1beta1::AllocateResponse>, tonic::Status> {
    c.allocate(AllocateRequest {
        container_requests: vec![ContainerAllocateRequest {
            devices_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        }],
    })
    .await
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_advertises_and_allocates() {
    let f = two_pfs();
    for i in 0..2 {
        f.rebind_vf(&pci(PF1), i, Some("vfio-pci")).unwrap();
    }
    let dirs = Dirs::new(POOLS);
    let r = start(&f, &dirs, 2).await;

    let regs = r.kubelet.registrations();
    let mut names: Vec<&str> = regs.iter().map(|q| q.resource_name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["vfnet.dev/dpdk", "vfnet.dev/tenant"]);
    for q in &regs {
        assert_eq!(q.version, "v1beta1");
        assert!(q.options.as_ref().unwrap().get_preferred_allocation_available);
        let socket = dirs.plugins().join(&q.endpoint);
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", socket.display());
    }

    let mut tenant = client(&r, "vfnet.dev/tenant").await;
    let opts = tenant.get_device_plugin_options(Empty {}).await.unwrap().into_inner();
    assert!(opts.get_preferred_allocation_available && !opts.pre_start_required);
    let first = watch(&mut tenant).await.message().await.unwrap().unwrap();
    let vf = |pf: &str, i: u32| f.pfs().iter().find(|s| s.pci == pci(pf)).unwrap().vf_pci(i).to_string();
    assert_eq!(
        devices(&first),
        (0..3).map(|i| (vf(PF0, i), "Healthy".to_owned())).collect::<Vec<_>>(),
        "pfNames eth0#0-2 selects VFs 0-2 of eth0"
    );
    assert_eq!(first.devices[0].topology.as_ref().unwrap().nodes[0].id, 0);

    // Allocate: env, _INFO, device-info file, device record.
    let ids = [vf(PF0, 0), vf(PF0, 2)];
    let resp = allocate(&mut tenant, &[&ids[0], &ids[1]]).await.unwrap().into_inner();
    let c = &resp.container_responses[0];
    assert_eq!(c.envs["PCIDEVICE_VFNET_DEV_TENANT"], format!("{},{}", ids[0], ids[1]));
    let info: serde_json::Value = serde_json::from_str(&c.envs["PCIDEVICE_VFNET_DEV_TENANT_INFO"]).unwrap();
    assert_eq!(info[&ids[1]]["vfnet"]["pf"], PF0);
    assert_eq!(info[&ids[1]]["vfnet"]["vfIndex"], 2);
    assert_eq!(info[&ids[1]]["vfnet"]["physicalNetwork"], "physnet1");
    assert_eq!(info[&ids[1]]["vfnet"]["driver"], "igbvf");
    assert_eq!(info[&ids[1]]["generic"]["deviceID"], ids[1].as_str());
    assert!(c.devices.is_empty(), "netdevice VFs need no device nodes");
    let record = sriov::record::DeviceRecord::load(&dirs.run, &pci(&ids[1])).unwrap().unwrap();
    assert_eq!(record.resource_name, "vfnet.dev/tenant");
    assert_eq!(record.physical_network.as_deref(), Some("physnet1"));
    assert_eq!((record.pf, record.vf_index), (pci(PF0), 2));
    let devinfo: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dirs.devinfo.join(format!("vfnet.dev-tenant-{}-device.json", ids[1]))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        devinfo,
        serde_json::json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": ids[1], "pf-pci-address": PF0}})
    );

    // A file that cannot be written (written off the async workers) fails the Allocate, naming it.
    std::fs::remove_dir_all(&dirs.devinfo).unwrap();
    std::fs::write(&dirs.devinfo, "not a directory").unwrap();
    let err = allocate(&mut tenant, &[&ids[0]]).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    let named = [format!("cannot record the allocation of {}", ids[0]), dirs.devinfo.display().to_string()];
    assert!(named.iter().all(|n| err.message().contains(n.as_str())), "{}", err.message());
    std::fs::remove_file(&dirs.devinfo).unwrap();

    // Unknown IDs are refused by name; so is a VF of another pool.
    let err = allocate(&mut tenant, &["0000:99:00.1"]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("0000:99:00.1 is not a device of vfnet.dev/tenant"), "{}", err.message());
    assert_eq!(allocate(&mut tenant, &[&vf(PF0, 3)]).await.unwrap_err().code(), Code::InvalidArgument);

    // vfio-pci: device nodes for the container.
    let mut dpdk = client(&r, "vfnet.dev/dpdk").await;
    let list = watch(&mut dpdk).await.message().await.unwrap().unwrap();
    assert_eq!(devices(&list), vec![(vf(PF1, 0), "Healthy".into()), (vf(PF1, 1), "Healthy".into())]);
    let group = sriov::sysfs::Sysfs::new(f.root()).vf(&pci(&vf(PF1, 1))).unwrap().iommu_group.unwrap();
    let resp = allocate(&mut dpdk, &[&vf(PF1, 1)]).await.unwrap().into_inner();
    let c = &resp.container_responses[0];
    let nodes: Vec<(&str, &str, &str)> =
        c.devices.iter().map(|d| (d.host_path.as_str(), d.container_path.as_str(), d.permissions.as_str())).collect();
    let g = format!("/dev/vfio/{group}");
    assert_eq!(nodes, vec![(g.as_str(), g.as_str(), "rw"), ("/dev/vfio/vfio", "/dev/vfio/vfio", "rw")]);
    let info: serde_json::Value = serde_json::from_str(&c.envs["PCIDEVICE_VFNET_DEV_DPDK_INFO"]).unwrap();
    assert_eq!(info[vf(PF1, 1)]["vfio"]["dev-mount"], g.as_str());

    // Metrics and health over HTTP.
    let addr = r.daemon.metrics_addr().unwrap();
    let metrics = http_get(addr, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    for line in [
        "vfnet_dp_devices{resource=\"vfnet.dev/tenant\"} 3",
        "vfnet_dp_devices_healthy{resource=\"vfnet.dev/dpdk\"} 2",
        "vfnet_dp_allocations_total{resource=\"vfnet.dev/tenant\"} 1",
        "vfnet_dp_allocation_errors_total{resource=\"vfnet.dev/tenant\"} 3",
        "vfnet_dp_registrations_total{resource=\"vfnet.dev/tenant\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?}:\n{metrics}");
    }
    assert!(http_get(addr, "/healthz").await.starts_with("HTTP/1.1 200 OK"));
    assert!(http_get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

    let sockets: Vec<PathBuf> = regs.iter().map(|q| dirs.plugins().join(&q.endpoint)).collect();
    r.daemon.shutdown().await;
    for s in sockets {
        assert!(!s.exists(), "{} left behind", s.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_allocation_spreads_or_packs() {
    // No NUMA information, so only the PF policy decides.
    let f = FixtureBuilder::new()
        .pf(PfSpec::igb(pci(PF0), "eth0").vfs(7, 4))
        .pf(PfSpec::igb(pci(PF1), "eth1").vfs(7, 4))
        .build()
        .unwrap();
    let dirs = Dirs::new(
        "- metadata: {name: s}\n  spec: {resourceName: s, selector: {pfNames: ['eth0#0-1', 'eth1#0-1']}}\n\
         - metadata: {name: p}\n  spec: {resourceName: p, allocationPolicy: pack, selector: {pfNames: ['eth0#2-3', 'eth1#2-3']}}\n",
    );
    let r = start(&f, &dirs, 2).await;
    let vf = |pf: &str, i: u32| f.pfs().iter().find(|s| s.pci == pci(pf)).unwrap().vf_pci(i).to_string();
    let ask = |c: &mut DevicePluginClient<Channel>, available: Vec<String>, must: Vec<String>, size: i32| {
        let mut c = c.clone();
        async move {
            c.get_preferred_allocation(PreferredAllocationRequest {
                container_requests: vec![ContainerPreferredAllocationRequest {
                    available_device_i_ds: available,
                    must_include_device_i_ds: must,
                    allocation_size: size,
                }],
            })
            .await
            .unwrap()
            .into_inner()
            .container_responses
            .remove(0)
            .device_i_ds
        }
    };
    let mut spread = client(&r, "vfnet.dev/s").await;
    let all_s = vec![vf(PF0, 0), vf(PF0, 1), vf(PF1, 0), vf(PF1, 1)];
    assert_eq!(ask(&mut spread, all_s.clone(), vec![], 2).await, [vf(PF0, 0), vf(PF1, 0)], "one VF per PF");
    // eth0's VF 0 is in use: the next one comes from eth1.
    assert_eq!(ask(&mut spread, all_s[1..].to_vec(), vec![], 1).await, [vf(PF1, 0)]);
    assert_eq!(ask(&mut spread, all_s.clone(), vec![vf(PF1, 1)], 2).await, [vf(PF1, 1), vf(PF0, 0)]);

    let mut pack = client(&r, "vfnet.dev/p").await;
    let all_p = vec![vf(PF0, 2), vf(PF0, 3), vf(PF1, 2), vf(PF1, 3)];
    assert_eq!(ask(&mut pack, all_p.clone(), vec![], 2).await, [vf(PF0, 2), vf(PF0, 3)], "one PF filled first");
    // eth1's VF 2 is in use: pack fills eth1.
    let free = vec![vf(PF0, 2), vf(PF0, 3), vf(PF1, 3)];
    assert_eq!(ask(&mut pack, free, vec![], 1).await, [vf(PF1, 3)]);
    r.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reregisters_after_a_kubelet_restart_with_the_same_devices() {
    let f = two_pfs();
    let dirs = Dirs::new(POOLS);
    let mut r = start(&f, &dirs, 2).await;
    let before = watch(&mut client(&r, "vfnet.dev/tenant").await).await.message().await.unwrap().unwrap();

    let t = Instant::now();
    r.kubelet.restart().await.unwrap();
    let regs = r.kubelet.wait_for_registrations(4, WAIT).await.expect("both pools register again");
    let took = t.elapsed();
    println!("re-registration of 2 pools took {took:?} after the kubelet restart");
    assert!(took < Duration::from_secs(1), "re-registration took {took:?}");
    let again: Vec<&str> = regs[2..].iter().map(|q| q.resource_name.as_str()).collect();
    assert!(again.contains(&"vfnet.dev/tenant") && again.contains(&"vfnet.dev/dpdk"), "{again:?}");
    for q in &regs[2..] {
        assert!(dirs.plugins().join(&q.endpoint).exists(), "socket {} served again", q.endpoint);
    }
    let after = watch(&mut client(&r, "vfnet.dev/tenant").await).await.message().await.unwrap().unwrap();
    assert_eq!(devices(&before), devices(&after), "same device IDs after re-registration");
    // The fake kubelet records a Register when it arrives; the daemon counts it when the call
    // returns, a moment later.
    let counted = Instant::now();
    while r.daemon.metrics().registrations("vfnet.dev/tenant") < 2 && counted.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(r.daemon.metrics().registrations("vfnet.dev/tenant"), 2);
    r.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vf_and_link_changes_reach_list_and_watch() {
    let f = two_pfs();
    let dirs = Dirs::new(POOLS);
    let r = start(&f, &dirs, 2).await;
    let mut tenant = client(&r, "vfnet.dev/tenant").await;
    let mut stream = watch(&mut tenant).await;
    let (first, _) = until(&mut stream, |m| m.devices.len() == 3).await;
    let vf2 = first.devices[2].id.clone();

    // A VF removed from the tree (sriov_numvfs 4 -> 2) vanishes from the list.
    f.set_num_vfs(&pci(PF0), 2).unwrap();
    let (msg, took) = until(&mut stream, |m| m.devices.len() == 2).await;
    println!("VF removal reached ListAndWatch in {took:?}");
    assert!(msg.devices.iter().all(|d| d.id != vf2));
    assert!(took < Duration::from_secs(1), "{took:?}");

    // The PF down: Unhealthy; Allocate refuses; up again: Healthy.
    f.set_pf_link(&pci(PF0), "down", false).unwrap();
    let (msg, _) = until(&mut stream, |m| m.devices.iter().all(|d| d.health == "Unhealthy")).await;
    let id = msg.devices[0].id.clone();
    let err = allocate(&mut tenant, &[&id]).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("PF eth0 is down"), "{}", err.message());
    f.set_pf_link(&pci(PF0), "up", true).unwrap();
    until(&mut stream, |m| m.devices.iter().all(|d| d.health == "Healthy")).await;

    // A VF rebound to vfio-pci no longer fits a netdevice pool.
    f.rebind_vf(&pci(PF0), 1, Some("vfio-pci")).unwrap();
    let (msg, _) = until(&mut stream, |m| m.devices.iter().any(|d| d.health == "Unhealthy")).await;
    assert_eq!(msg.devices.iter().filter(|d| d.health == "Unhealthy").count(), 1);
    // VFs coming back are advertised again.
    f.set_num_vfs(&pci(PF0), 4).unwrap();
    until(&mut stream, |m| m.devices.len() == 3).await;
    r.daemon.shutdown().await;
}

const BAD: &[(&str, &str, &str)] = &[
    ("malformed", "- metadata: {name: a\n", "pools file"),
    (
        "unknown selector key",
        "- metadata: {name: a}\n  spec:\n    resourceName: a\n    selector: {pfName: [eth0]}\n",
        "unknown field `pfName`",
    ),
    (
        "invalid resource name",
        "- metadata: {name: a}\n  spec: {resourceName: 'a.b'}\n",
        "pools[0] (a): spec.resourceName: \"a.b\" is not a resource name",
    ),
    (
        "out-of-range VF range",
        "- metadata: {name: a}\n  spec: {resourceName: a, selector: {pfNames: ['eth0#0-9']}}\n",
        "pools[0] (a): spec.selector.pfNames[0]: VF range 0-9 names VF 7, but the PF has only 7 VFs",
    ),
    (
        "duplicate names",
        "- metadata: {name: a}\n  spec: {resourceName: a}\n- metadata: {name: a}\n  spec: {resourceName: b}\n",
        "pools[1] has metadata.name \"a\", as pools[0] has",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pools_files_fail_the_start_naming_the_place() {
    let f = two_pfs();
    for (what, text, needle) in BAD {
        let dirs = Dirs::new(text);
        let e = vfnet_device_plugin::start(dirs.config(&f)).await.unwrap_err().to_string();
        assert!(e.contains(needle), "{what}: {e}");
        assert!(e.contains(&dirs.pools.display().to_string()), "{what}: the file is named: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_last_good_pools() {
    let f = two_pfs();
    let dirs = Dirs::new(POOLS);
    let r = start(&f, &dirs, 2).await;
    let mut stream = watch(&mut client(&r, "vfnet.dev/tenant").await).await;
    let (before, _) = until(&mut stream, |m| m.devices.len() == 3).await;
    let errors = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("vfnet_dp_pool_reload_errors_total "))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap()
    };
    let addr = r.daemon.metrics_addr().unwrap();
    for (n, (what, text, _)) in BAD.iter().enumerate() {
        std::fs::write(&dirs.pools, text).unwrap();
        let t = Instant::now();
        while errors(&http_get(addr, "/metrics").await) <= u32::try_from(n).unwrap() {
            assert!(t.elapsed() < WAIT, "{what}: the reload was not refused");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Still serving the last good pools, same devices, no new registration.
    assert_eq!(r.kubelet.registrations().len(), 2);
    let mut again = watch(&mut client(&r, "vfnet.dev/tenant").await).await;
    assert_eq!(devices(&again.message().await.unwrap().unwrap()), devices(&before));

    // A good change is taken: tenant grows to VF 3, a new pool registers.
    std::fs::write(
        &dirs.pools,
        format!(
            "{POOLS}- metadata: {{name: more}}\n  spec: {{resourceName: more, selector: {{pfNames: ['eth1#2-3']}}}}\n"
        )
        .replace("eth0#0-2", "eth0#0-3"),
    )
    .unwrap();
    let regs = r.kubelet.wait_for_registrations(3, WAIT).await.expect("the new pool registers");
    assert_eq!(regs[2].resource_name, "vfnet.dev/more");
    until(&mut stream, |m| m.devices.len() == 4).await;
    // Removing a pool stops its server and removes its socket.
    std::fs::write(&dirs.pools, POOLS).unwrap();
    let socket = dirs.plugins().join(&regs[2].endpoint);
    let t = Instant::now();
    while socket.exists() {
        assert!(t.elapsed() < WAIT, "the removed pool's socket stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.daemon.shutdown().await;
}

fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vfnet-device-plugin"));
    // File mode even when the tests run in a pod (which would turn cluster mode on).
    c.env_remove("KUBERNETES_SERVICE_HOST").env_remove("VFNET_KUBECONFIG");
    c
}

fn run_args(dirs: &Dirs, root: &Path) -> Vec<String> {
    vec![
        "--pools".into(),
        dirs.pools.display().to_string(),
        "--kubelet-dir".into(),
        dirs.kubelet.display().to_string(),
        "--run-dir".into(),
        dirs.run.to_string(),
        "--devinfo-dir".into(),
        dirs.devinfo.display().to_string(),
        "--sysfs-root".into(),
        root.display().to_string(),
        "--metrics-addr".into(),
        "127.0.0.1:0".into(),
    ]
}

#[test]
fn the_binary_exits_non_zero_on_bad_input() {
    let f = two_pfs();
    for (what, text, needle) in BAD {
        let dirs = Dirs::new(text);
        let out = binary().args(run_args(&dirs, f.root())).stdin(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains(needle), "{what}: {stderr}");
    }
    let dirs = Dirs::new(POOLS);
    let out = binary().args(run_args(&dirs, f.root())).args(["--resource-prefix", "Bad/Prefix"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid resource prefix \"Bad/Prefix\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_and_cleans_up_on_sigterm() {
    let f = two_pfs();
    let dirs = Dirs::new(POOLS);
    let kubelet = FakeKubelet::start(&dirs.plugins()).unwrap();
    let mut child = binary()
        .args(run_args(&dirs, f.root()))
        .args(["--log-format", "json"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let regs = kubelet.wait_for_registrations(2, WAIT).await.expect("the binary registers both pools");
    let socket = dirs.plugins().join(&regs[0].endpoint);
    assert!(socket.exists());
    nix_kill(child.id(), 15);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < WAIT, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "socket removed on SIGTERM");
}

fn nix_kill(pid: u32, signal: i32) {
    let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}
