//! Device plugin benchmarks over a fixture node of 1024 VFs (4 PFs × 256, 4 pools), against an
//! in-process fake kubelet. Not timed tests: they print figures.
//!
//! - resident memory (VmRSS, VmHWM) of the release binary serving the 4 pools, with kubelet's
//!   4 ListAndWatch streams open, after a burst of Allocate calls;
//! - Allocate latency over the unix socket (median, p99, max), device record and device-info
//!   file written to a tmpfs as on a node's /run;
//! - time from a VF change to the ListAndWatch update, when an event triggers the scan (what a
//!   uevent or link event does on a node), and the scan time itself.
//!
//! Run with `cargo bench -p vfnet-device-plugin`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kubelet_api::deviceplugin::v1beta1::device_plugin_client::DevicePluginClient;
use kubelet_api::deviceplugin::v1beta1::{AllocateRequest, ContainerAllocateRequest, Empty};
use sriov::fixture::{Fixture, FixtureBuilder};
use tonic::transport::Channel;
use vfnet_testkit::kubelet::FakeKubelet;

const PFS: u32 = 4;
const VFS: u32 = 1024;
const ALLOCATIONS: usize = 2000;
const CHANGES: usize = 30;

fn pools(fixture: &Fixture) -> String {
    fixture
        .pfs()
        .iter()
        .enumerate()
        .map(|(i, pf)| {
            format!(
                "- metadata: {{name: pool{i}}}\n  spec: {{resourceName: pool{i}, selector: {{pfNames: [{}]}}}}\n",
                pf.netdev.as_deref().unwrap()
            )
        })
        .collect()
}

/// A scratch directory on a tmpfs when there is one (a node's /run is one).
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    println!(
        "bench: {what}: n={} median={:.3} ms p99={:.3} ms max={:.3} ms",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()))
        .unwrap()
}

async fn connect_all(kubelet: &FakeKubelet) -> Vec<DevicePluginClient<Channel>> {
    let mut clients = Vec::new();
    for reg in kubelet.registrations() {
        clients.push(kubelet.plugin(&reg.endpoint).await.unwrap());
    }
    clients
}

/// The binary: RSS while serving, and Allocate latency over its socket.
async fn binary(fixture: &Fixture) {
    let dir = scratch();
    let plugins = dir.path().join("kubelet/device-plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let pools_file = dir.path().join("pools.yaml");
    std::fs::write(&pools_file, pools(fixture)).unwrap();
    let kubelet = FakeKubelet::start(&plugins).unwrap();
    let arg = |p: PathBuf| p.display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vfnet-device-plugin"))
        .args(["--pools", &arg(pools_file)])
        .args(["--kubelet-dir", &arg(dir.path().join("kubelet"))])
        .args(["--run-dir", &arg(dir.path().join("run"))])
        .args(["--devinfo-dir", &arg(dir.path().join("devinfo"))])
        .args(["--sysfs-root", &arg(fixture.root().to_owned())])
        .args(["--metrics-addr", "127.0.0.1:0", "--rescan-interval", "1s", "--log-level", "warn"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let t = Instant::now();
    kubelet.wait_for_registrations(PFS as usize, Duration::from_secs(30)).await.expect("4 pools register");
    println!("bench: binary start to 4 pools registered: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let ids: Vec<Vec<String>> =
        fixture.pfs().iter().map(|pf| (0..pf.num_vfs).map(|i| pf.vf_pci(i).to_string()).collect()).collect();
    // kubelet keeps one ListAndWatch stream per pool open; registrations arrive in any order, so
    // each client's pool is told by its first device.
    let mut streams = Vec::new();
    let mut by_pool = Vec::new();
    for mut c in connect_all(&kubelet).await {
        let mut s = c.list_and_watch(Empty {}).await.unwrap().into_inner();
        let first = s.message().await.unwrap().unwrap();
        assert_eq!(first.devices.len(), (VFS / PFS) as usize);
        let pool = ids.iter().position(|list| list.contains(&first.devices[0].id)).unwrap();
        by_pool.push((pool, c));
        streams.push(s);
    }
    let mut samples = Vec::with_capacity(ALLOCATIONS);
    for n in 0..ALLOCATIONS {
        let pools = by_pool.len();
        let (pool, client) = &mut by_pool[n % pools];
        let id = ids[*pool][(n / PFS as usize) % ids[*pool].len()].clone();
        let t = Instant::now();
        client
            .allocate(AllocateRequest { container_requests: vec![ContainerAllocateRequest { devices_ids: vec![id] }] })
            .await
            .unwrap();
        samples.push(t.elapsed());
    }
    report("Allocate of 1 VF over the unix socket (release binary, records on tmpfs)", samples);
    // Let a few periodic rescans of the 1024 VFs run, then read the memory figures.
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "bench: RSS of the daemon serving {VFS} VFs in {PFS} pools: VmRSS {} KiB, VmHWM {} KiB (target < 10240 KiB)",
        status_kib(pid, "VmRSS:"),
        status_kib(pid, "VmHWM:")
    );
    drop(streams);
    Command::new("kill").arg(pid.to_string()).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "the daemon exits cleanly on SIGTERM: {status}");
}

/// In-process: a VF change, the scan an event triggers, the ListAndWatch update.
async fn change_to_update(fixture: &Fixture) {
    let dir = scratch();
    let plugins = dir.path().join("kubelet/device-plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let pools_file = dir.path().join("pools.yaml");
    std::fs::write(&pools_file, pools(fixture)).unwrap();
    let kubelet = FakeKubelet::start(&plugins).unwrap();
    let mut config = vfnet_device_plugin::Config::new(&pools_file);
    config.kubelet_dir = dir.path().join("kubelet");
    config.run_dir = vfnet_types::RunDir::new(dir.path().join("run"));
    config.devinfo_dir = dir.path().join("devinfo");
    config.sysfs_root = fixture.root().to_owned();
    config.metrics_addr = None;
    config.rescan_interval = Duration::from_secs(3600);
    config.kernel_events = false;
    let daemon = vfnet_device_plugin::start(config).await.unwrap();
    kubelet.wait_for_registrations(PFS as usize, Duration::from_secs(30)).await.unwrap();
    let pf0 = fixture.pfs()[0].pci;
    let pf0_first = fixture.pfs()[0].vf_pci(0).to_string();
    let mut stream = None;
    for mut c in connect_all(&kubelet).await {
        let mut s = c.list_and_watch(Empty {}).await.unwrap().into_inner();
        if s.message().await.unwrap().unwrap().devices[0].id == pf0_first {
            stream = Some(s);
        }
    }
    let mut stream = stream.unwrap();
    let mut samples = Vec::with_capacity(CHANGES);
    for n in 0..CHANGES {
        let up = n % 2 == 1;
        let t = Instant::now();
        fixture.set_pf_link(&pf0, if up { "up" } else { "down" }, up).unwrap();
        daemon.rescan();
        let want = if up { "Healthy" } else { "Unhealthy" };
        loop {
            let msg = stream.message().await.unwrap().unwrap();
            if msg.devices.iter().all(|d| d.health == want) {
                break;
            }
        }
        samples.push(t.elapsed());
    }
    report(
        "VF change (PF link of 256 VFs) to ListAndWatch update, event-triggered scan of 1024 VFs incl. 20 ms debounce",
        samples,
    );
    let text = daemon.metrics().render();
    let last = text.lines().find_map(|l| l.strip_prefix("vfnet_dp_rescan_duration_seconds_last ")).unwrap();
    let (sum, count) = (
        text.lines().find_map(|l| l.strip_prefix("vfnet_dp_rescan_duration_seconds_sum ")).unwrap(),
        text.lines().find_map(|l| l.strip_prefix("vfnet_dp_rescans_total ")).unwrap(),
    );
    let mean = sum.parse::<f64>().unwrap() / count.parse::<f64>().unwrap();
    println!(
        "bench: scan of {VFS} fixture VFs: mean {:.2} ms over {count} scans, last {:.2} ms",
        mean * 1e3,
        last.parse::<f64>().unwrap() * 1e3
    );
    daemon.shutdown().await;
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too and must stay short.
    let quick = !std::env::args().any(|a| a == "--bench");
    if quick {
        println!("bench: skipped (run with cargo bench -p vfnet-device-plugin)");
        return;
    }
    let fixture = FixtureBuilder::many(PFS, VFS).build().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(binary(&fixture));
    rt.block_on(change_to_update(&fixture));
}
