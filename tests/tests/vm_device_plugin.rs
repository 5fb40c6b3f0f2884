//! The device plugin on the real igb/igbvf drivers (emulated 82576). Runs in the VM only.
//!
//! The daemon runs in-process (the library the binary wraps) against a fake kubelet on a
//! scratch directory, with kernel events on and the periodic rescan pushed out to a minute: every
//! update these tests wait for (well under that) is driven by uevents and netlink link events.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use kubelet_api::deviceplugin::v1beta1::device_plugin_client::DevicePluginClient;
use kubelet_api::deviceplugin::v1beta1::{AllocateRequest, ContainerAllocateRequest, Empty, ListAndWatchResponse};
use sriov::PciAddress;
use tonic::Streaming;
use tonic::transport::Channel;
use vfnet_device_plugin::{Config, DaemonHandle};
use vfnet_e2e::{VF_TIMEOUT, igb_pf, igb_pf_with_vfs, rebind, say, sysfs};
use vfnet_testkit::kubelet::FakeKubelet;

/// The periodic rescan, far longer than any wait below.
const RESCAN: Duration = Duration::from_secs(60);

struct Plugin {
    _dir: tempfile::TempDir,
    daemon: DaemonHandle,
    kubelet: FakeKubelet,
    client: DevicePluginClient<Channel>,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Starts the daemon with `pools` (YAML) and a fake kubelet; waits for the one pool to register.
async fn start(pools: &str) -> Result<Plugin> {
    let scratch = std::env::var_os("VFNET_SCRATCH").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(scratch)?;
    let plugins = dir.path().join("kubelet/device-plugins");
    fs::create_dir_all(&plugins)?;
    let pools_file = dir.path().join("pools.yaml");
    fs::write(&pools_file, pools)?;
    let mut config = Config::new(&pools_file);
    config.kubelet_dir = dir.path().join("kubelet");
    config.run_dir = vfnet_types::RunDir::new(dir.path().join("run"));
    config.devinfo_dir = dir.path().join("devinfo");
    config.metrics_addr = Some("127.0.0.1:0".parse()?);
    config.rescan_interval = RESCAN;
    let kubelet = FakeKubelet::start(&plugins)?;
    let daemon = vfnet_device_plugin::start(config).await?;
    let regs = kubelet.wait_for_registrations(1, Duration::from_secs(10)).await.context("no registration")?;
    let client = kubelet.plugin(&regs[0].endpoint).await?;
    say(format_args!("device plugin registered {} on {}", regs[0].resource_name, regs[0].endpoint));
    Ok(Plugin { _dir: dir, daemon, kubelet, client })
}

fn summary(msg: &ListAndWatchResponse) -> String {
    msg.devices.iter().map(|d| format!("{}={}", d.id, d.health)).collect::<Vec<_>>().join(" ")
}

/// Reads ListAndWatch messages until one satisfies `want`; returns it and the time it took.
async fn until(
    stream: &mut Streaming<ListAndWatchResponse>,
    timeout: Duration,
    what: &str,
    want: impl Fn(&ListAndWatchResponse) -> bool,
) -> Result<(ListAndWatchResponse, Duration)> {
    let start = Instant::now();
    loop {
        let left = timeout.checked_sub(start.elapsed()).with_context(|| format!("timed out waiting for {what}"))?;
        let msg = tokio::time::timeout(left, stream.message())
            .await
            .with_context(|| format!("timed out waiting for {what}"))??
            .context("ListAndWatch ended")?;
        if want(&msg) {
            return Ok((msg, start.elapsed()));
        }
        say(format_args!("  (waiting for {what}) ListAndWatch: [{}]", summary(&msg)));
    }
}

fn ids(msg: &ListAndWatchResponse) -> Vec<String> {
    msg.devices.iter().map(|d| d.id.clone()).collect()
}

fn all(msg: &ListAndWatchResponse, health: &str) -> bool {
    msg.devices.iter().all(|d| d.health == health)
}

fn events(p: &Plugin) -> String {
    p.daemon
        .metrics()
        .render()
        .lines()
        .filter(|l| l.starts_with("vfnet_dp_events_total{"))
        .map(|l| l.trim_start_matches("vfnet_dp_events_total"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn pool_yaml(name: &str, extra: &str, selector: &str) -> String {
    format!("- metadata: {{name: {name}}}\n  spec: {{resourceName: {name}{extra}, selector: {selector}}}\n")
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn advertises_pool_vfs_and_follows_numvfs_without_restart() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let pf_name = pf.netdev.clone().context("PF netdev")?;
    let _up = PfUp::new(&pf_name)?;
    runtime()?.block_on(async {
        let mut p = start(&pool_yaml("igb", "", &format!("{{pfNames: [{pf_name}]}}"))).await?;
        let mut stream = p.client.list_and_watch(Empty {}).await?.into_inner();
        let want: Vec<String> = pf.vfs.iter().map(|v| v.pci.to_string()).collect();
        let (msg, _) =
            until(&mut stream, Duration::from_secs(60), "4 healthy VFs", |m| ids(m) == want && all(m, "Healthy"))
                .await?;
        say(format_args!("ListAndWatch advertises [{}]", summary(&msg)));

        sysfs().set_num_vfs(&pf.pci, 0)?;
        let (_, took) = until(&mut stream, VF_TIMEOUT, "no VFs", |m| m.devices.is_empty()).await?;
        say(format_args!("sriov_numvfs 4 -> 0 reached ListAndWatch in {} ms", took.as_millis()));
        ensure!(took < Duration::from_secs(5), "4 -> 0 took {took:?}");

        let t = Instant::now();
        sysfs().set_num_vfs(&pf.pci, 6)?;
        let (msg, took) =
            until(&mut stream, VF_TIMEOUT, "6 healthy VFs", |m| m.devices.len() == 6 && all(m, "Healthy")).await?;
        say(format_args!(
            "sriov_numvfs 0 -> 6 reached ListAndWatch (6 healthy VFs) in {} ms after the write: [{}]",
            took.max(t.elapsed()).as_millis(),
            summary(&msg)
        ));
        let now = sysfs().pf(&pf.pci)?;
        let expected: Vec<String> = now.vfs.iter().map(|v| v.pci.to_string()).collect();
        ensure!(ids(&msg) == expected, "advertised {:?}, sysfs has {expected:?}", ids(&msg));
        ensure!(p.kubelet.registrations().len() == 1, "the plugin re-registered: it should not need to");
        say(format_args!("scan triggers: {}", events(&p)));
        p.daemon.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    igb_pf_with_vfs(4).map(drop)
}

/// Sets the PF administratively up or down, through vfnet's own netlink layer.
fn ip_link(pf: &str, state: &str) -> Result<()> {
    use sriov::netlink::{LinkOps, Netlink};
    let nl = Netlink::new()?;
    let index = nl.link_by_name(pf)?.index;
    nl.set_up(index, state == "up")?;
    Ok(())
}

/// Brings the PF up (VFs are healthy only while it is up with carrier) and puts its
/// administrative state back when dropped: other VM tests expect the PF as the VM booted it
/// (down, so igb has no link speed and refuses VF rates).
struct PfUp {
    name: String,
    was_up: bool,
}

impl PfUp {
    fn new(name: &str) -> Result<Self> {
        let flags = fs::read_to_string(format!("/sys/class/net/{name}/flags"))?;
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)?;
        ip_link(name, "up")?;
        Ok(Self { name: name.to_owned(), was_up: flags & 1 != 0 })
    }
}

impl Drop for PfUp {
    fn drop(&mut self) {
        let _ = ip_link(&self.name, if self.was_up { "up" } else { "down" });
    }
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn pf_down_makes_its_vfs_unhealthy_and_up_healthy_again() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let pf_name = pf.netdev.clone().context("PF netdev")?;
    let _up = PfUp::new(&pf_name)?;
    runtime()?.block_on(async {
        let mut p = start(&pool_yaml("igb", "", &format!("{{pfNames: ['{pf_name}#0-3']}}"))).await?;
        let mut stream = p.client.list_and_watch(Empty {}).await?.into_inner();
        until(&mut stream, Duration::from_secs(60), "4 healthy VFs (PF carrier up)", |m| {
            m.devices.len() == 4 && all(m, "Healthy")
        })
        .await?;

        ip_link(&pf_name, "down")?;
        let (msg, took) = until(&mut stream, Duration::from_secs(10), "4 unhealthy VFs", |m| {
            m.devices.len() == 4 && all(m, "Unhealthy")
        })
        .await?;
        say(format_args!("PF {pf_name} down: all VFs Unhealthy in {} ms", took.as_millis()));
        ensure!(took < Duration::from_secs(1), "PF down took {took:?} to reach ListAndWatch");
        let err = p
            .client
            .allocate(AllocateRequest {
                container_requests: vec![ContainerAllocateRequest { devices_ids: vec![msg.devices[0].id.clone()] }],
            })
            .await
            .unwrap_err();
        say(format_args!("Allocate of an unhealthy VF: {:?}: {}", err.code(), err.message()));
        ensure!(err.code() == tonic::Code::FailedPrecondition, "{err:?}");

        ip_link(&pf_name, "up")?;
        let (_, took) = until(&mut stream, Duration::from_secs(60), "4 healthy VFs again", |m| {
            m.devices.len() == 4 && all(m, "Healthy")
        })
        .await?;
        say(format_args!("PF {pf_name} up: all VFs Healthy in {} ms (includes carrier negotiation)", took.as_millis()));
        say(format_args!("scan triggers: {}", events(&p)));
        p.daemon.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })
}

/// Binds `vf` to `driver` (or back to its default driver with `None`) the way an admin does:
/// driver_override, unbind, reprobe.
fn wait_driver(vf: &PciAddress, want: &str) -> Result<()> {
    let t = Instant::now();
    loop {
        let driver = fs::read_link(format!("/sys/bus/pci/devices/{vf}/driver"))
            .ok()
            .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
        if driver.as_deref() == Some(want) {
            return Ok(());
        }
        if t.elapsed() > VF_TIMEOUT {
            bail!("{vf} is bound to {driver:?}, not {want}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn vfio_pool_hands_out_device_nodes() -> Result<()> {
    let pf = igb_pf_with_vfs(2)?;
    let vf = pf.vfs[1].pci;
    ensure!(Path::new("/sys/bus/pci/drivers/vfio-pci").exists(), "vfio-pci is not loaded");
    let _up = PfUp::new(pf.netdev.as_deref().context("PF netdev")?)?;
    let result = runtime()?.block_on(async {
        let mut p = start(&pool_yaml("dpdk", ", deviceType: vfio-pci", &format!("{{pciAddresses: ['{vf}']}}"))).await?;
        let mut stream = p.client.list_and_watch(Empty {}).await?.into_inner();
        let (msg, _) = until(&mut stream, Duration::from_secs(60), "the VF, unhealthy on igbvf", |m| {
            m.devices.len() == 1 && all(m, "Unhealthy")
        })
        .await?;
        say(format_args!("{vf} on igbvf in a vfio-pci pool: [{}]", summary(&msg)));

        let t = Instant::now();
        rebind(&vf, Some("vfio-pci"))?;
        wait_driver(&vf, "vfio-pci")?;
        let (_, took) =
            until(&mut stream, Duration::from_secs(60), "the VF healthy on vfio-pci", |m| all(m, "Healthy")).await?;
        say(format_args!(
            "{vf} bound to vfio-pci: Healthy {} ms after the rebind began",
            took.max(t.elapsed()).as_millis()
        ));

        let resp = p
            .client
            .allocate(AllocateRequest {
                container_requests: vec![ContainerAllocateRequest { devices_ids: vec![vf.to_string()] }],
            })
            .await?
            .into_inner();
        let c = &resp.container_responses[0];
        let group = sysfs().vf(&vf)?.iommu_group.context("the VF has no IOMMU group")?;
        let nodes: Vec<(String, String)> =
            c.devices.iter().map(|d| (d.host_path.clone(), d.container_path.clone())).collect();
        say(format_args!("Allocate device nodes: {nodes:?}, env {:?}", c.envs.get("PCIDEVICE_VFNET_DEV_DPDK")));
        let g = format!("/dev/vfio/{group}");
        ensure!(nodes.contains(&(g.clone(), g.clone())), "no {g} in {nodes:?}");
        ensure!(nodes.contains(&("/dev/vfio/vfio".into(), "/dev/vfio/vfio".into())), "no /dev/vfio/vfio in {nodes:?}");
        for (host, _) in &nodes {
            ensure!(Path::new(host).exists(), "{host} does not exist on the node");
        }
        ensure!(c.envs.get("PCIDEVICE_VFNET_DEV_DPDK") == Some(&vf.to_string()));
        p.daemon.shutdown().await;
        Ok::<_, anyhow::Error>(())
    });
    rebind(&vf, None)?;
    wait_driver(&vf, "igbvf")?;
    ensure!(igb_pf()?.vfs.len() == 2);
    result
}

/// Allocate's answer is what Multus hands the CNI plugin: the VF it names, with the device
/// record the daemon wrote, passes vfnet's physical-network check and attaches; a profile for
/// another physical network is refused.
#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn allocate_output_feeds_a_vfnet_add() -> Result<()> {
    use serde_json::json;
    use vfnet_e2e::cni::Invocation;
    use vfnet_e2e::netns::NamedNetns;

    let pf = igb_pf_with_vfs(4)?;
    let _up = PfUp::new(pf.netdev.as_deref().context("PF netdev")?)?;
    runtime()?.block_on(async {
        let mut p = start(&pool_yaml(
            "tenant-net",
            ", physicalNetwork: physnet1",
            &format!("{{pfNames: ['{}#0-1']}}", pf.netdev.as_deref().unwrap_or_default()),
        ))
        .await?;
        let mut stream = p.client.list_and_watch(Empty {}).await?.into_inner();
        until(&mut stream, Duration::from_secs(60), "2 healthy VFs", |m| m.devices.len() == 2 && all(m, "Healthy"))
            .await?;
        let resp = p
            .client
            .allocate(AllocateRequest {
                container_requests: vec![ContainerAllocateRequest { devices_ids: vec![pf.vfs[1].pci.to_string()] }],
            })
            .await?
            .into_inner();
        let env = &resp.container_responses[0].envs;
        // `.` and `/` become `_`; the `-` of the pool name stays, as in the reference plugin.
        let (key, vf) = env
            .iter()
            .find(|(k, _)| k.starts_with("PCIDEVICE_") && !k.ends_with("_INFO"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .with_context(|| format!("no PCIDEVICE_ variable in {env:?}"))?;
        ensure!(key == "PCIDEVICE_VFNET_DEV_TENANT-NET", "variable {key}");
        say(format_args!("Allocate gave {key}={vf}"));

        let run_dir = p._dir.path().join("run");
        let base = p._dir.path().to_owned();
        for (name, net) in [("physnet1", "physnet1"), ("other", "physnet2")] {
            std::fs::create_dir_all(base.join("profiles"))?;
            std::fs::write(
                base.join("profiles").join(format!("{name}.json")),
                json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile", "metadata": {"name": name},
                       "spec": {"vlan": 110, "physicalNetwork": net}})
                .to_string(),
            )?;
        }
        let conf = |profile: &str| {
            json!({"cniVersion": "1.1.0", "name": "dp-net", "type": "vfnet", "deviceID": vf, "profile": profile,
            "runDir": run_dir, "stateDir": base.join("state"), "profileDir": base.join("profiles")})
        };
        let pod = NamedNetns::create("vfnet-dp")?;
        let refused = Invocation::vfnet("ADD", "ctr-other", Some(pod.path()), "net1").run(&conf("other"))?;
        ensure!(refused.error_code() == Some(103), "a profile for physnet2 on a physnet1 VF: {refused:?}");
        let res = Invocation::vfnet("ADD", "ctr-dp", Some(pod.path()), "net1").run(&conf("physnet1"))?.ok()?.json()?;
        ensure!(res["interfaces"][0]["pciID"] == vf.as_str(), "{res}");
        say(format_args!(
            "vfnet ADD on the allocated VF {vf} under physnet1: ok; physnet2 profile refused: {}",
            refused.stdout
        ));
        Invocation::vfnet("DEL", "ctr-dp", Some(pod.path()), "net1").run(&conf("physnet1"))?.ok()?;
        p.daemon.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    igb_pf_with_vfs(4).map(drop)
}

/// Tenants write network definitions: on a pool that requires profiles, a definition's raw
/// `vlan` is refused and the VF stays untouched, a profile the pool does not allow is refused, and
/// the pool's profile attaches; the same raw definition on a pool without the rule still works,
/// as sriov-cni's would (the drop-in, single-tenant case). Records come from Allocate, as on a
/// node.
#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn a_pool_that_requires_profiles_refuses_raw_settings() -> Result<()> {
    use serde_json::json;
    use vfnet_e2e::cni::{Invocation, snapshot};
    use vfnet_e2e::netns::NamedNetns;

    let pf = igb_pf_with_vfs(4)?;
    let pf_name = pf.netdev.clone().context("PF netdev")?;
    let _up = PfUp::new(&pf_name)?;
    let vf = pf.vfs[1].clone();
    let before = snapshot(&pf_name, vf.index, &vf.pci)?;
    let attach = |locked: bool| -> Result<()> {
        runtime()?.block_on(async {
            let (name, extra) =
                if locked { ("locked", ", requireProfile: true, allowedProfiles: [tenant-a]") } else { ("open", "") };
            let mut p = start(&pool_yaml(name, extra, &format!("{{pfNames: ['{pf_name}#1']}}"))).await?;
            let mut stream = p.client.list_and_watch(Empty {}).await?.into_inner();
            until(&mut stream, Duration::from_secs(60), "1 healthy VF", |m| m.devices.len() == 1 && all(m, "Healthy"))
                .await?;
            p.client
                .allocate(AllocateRequest {
                    container_requests: vec![ContainerAllocateRequest { devices_ids: vec![vf.pci.to_string()] }],
                })
                .await?;
            let base = p._dir.path().to_owned();
            std::fs::create_dir_all(base.join("profiles"))?;
            for (profile, vlan) in [("tenant-a", 120), ("tenant-b", 130)] {
                std::fs::write(
                    base.join("profiles").join(format!("{profile}.json")),
                    json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile", "metadata": {"name": profile},
                           "spec": {"vlan": vlan}})
                    .to_string(),
                )?;
            }
            let conf = |extra: serde_json::Value| {
                let mut c = json!({"cniVersion": "1.1.0", "name": "tenant-net", "type": "vfnet", "deviceID": vf.pci,
                    "runDir": base.join("run"), "stateDir": base.join("state"), "profileDir": base.join("profiles")});
                c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
                c
            };
            let pod = NamedNetns::create("vfnet-tenant")?;
            let add = |id: &str, c: &serde_json::Value| Invocation::vfnet("ADD", id, Some(pod.path()), "net1").run(c);
            let raw = conf(json!({"vlan": 200}));
            if locked {
                let refused = add("ctr-raw", &raw)?;
                ensure!(refused.error_code() == Some(7), "raw vlan on a pool that requires profiles: {refused:?}");
                ensure!(
                    refused.stdout.contains("network definition key vlan")
                        && refused.stdout.contains("vfnet.dev/locked"),
                    "the error names the key and the pool: {}",
                    refused.stdout
                );
                ensure!(snapshot(&pf_name, vf.index, &vf.pci)? == before, "the refused ADD touched VF {}", vf.pci);
                let other = add("ctr-other", &conf(json!({"profile": "tenant-b"})))?;
                ensure!(other.error_code() == Some(114), "a profile the pool does not allow: {other:?}");
                ensure!(snapshot(&pf_name, vf.index, &vf.pci)? == before, "the refused ADD touched VF {}", vf.pci);
                let own = conf(json!({"profile": "tenant-a"}));
                add("ctr-a", &own)?.ok()?;
                let during = snapshot(&pf_name, vf.index, &vf.pci)?;
                ensure!(during.pf_side.vlan == 120, "the pool's profile sets VLAN 120: {during:?}");
                say(format_args!(
                    "pool locked: raw vlan refused ({}), tenant-b refused (114), tenant-a on VLAN {}",
                    refused.stdout, during.pf_side.vlan
                ));
                Invocation::vfnet("DEL", "ctr-a", Some(pod.path()), "net1").run(&own)?.ok()?;
            } else {
                add("ctr-raw", &raw)?.ok()?;
                let during = snapshot(&pf_name, vf.index, &vf.pci)?;
                ensure!(during.pf_side.vlan == 200, "drop-in: the definition's VLAN 200 applies: {during:?}");
                say(format_args!("pool open: raw vlan 200 applied, as sriov-cni would"));
                Invocation::vfnet("DEL", "ctr-raw", Some(pod.path()), "net1").run(&raw)?.ok()?;
            }
            p.daemon.shutdown().await;
            Ok::<_, anyhow::Error>(())
        })?;
        let after = snapshot(&pf_name, vf.index, &vf.pci)?;
        ensure!(after.pf_side == before.pf_side, "DEL restored the PF side: {after:?} vs {before:?}");
        Ok(())
    };
    attach(true)?;
    attach(false)?;
    igb_pf_with_vfs(4).map(drop)
}
