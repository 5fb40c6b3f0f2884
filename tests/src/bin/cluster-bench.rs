//! `cargo xtask bench --cluster`, inside the node's guest: vfnet against the reference SR-IOV
//! stack (sriov-network-device-plugin + sriov-cni) on the real Kubernetes node, one run, the
//! same two VFs of the emulated igb, the same VLAN (100), the same pod and the same way of
//! timing it, so the figures compare the stacks and not two machines.
//!
//! 1. vfnet as installed by its DaemonSet: a VfProfile, a VfPool over VFs 0-1, a
//!    NetworkAttachmentDefinition; [`ROUNDS`] sequential pods, each timed from just before
//!    `kubectl apply` until `kubectl wait` sees it Running, then from just before
//!    `kubectl delete --wait=false` until its VF is clean on the host (its netdev back in the
//!    host namespace and the PF's VF table at VLAN 0, polled every 20 ms); the device plugin's
//!    resident memory after the rounds.
//! 2. The same pool switched to `mode: dra` (same VFs, same profile through a DeviceClass's
//!    VfConfig, same CNI through Multus with no resourceName): the same rounds with pods claiming
//!    their VF through a ResourceClaimTemplate, so the DRA path (ResourceSlices, the scheduler's
//!    allocator, the claim controller, kubelet's NodePrepareResources, CDI) is timed against the
//!    device-plugin path on the same node. The reference SR-IOV DRA driver
//!    (k8snetworkplumbingwg/dra-driver-sriov) is not beside it: the Go module proxy here refuses
//!    that module (403), so it cannot be built.
//! 3. The pool deleted, sriovdp started as a host process over the same VFs and sriov-cni
//!    (v2.1.0, CNI 0.3.1) installed in /opt/cni/bin: the same rounds, the same measures.
//! 4. Both CNI plugins invoked directly on VF 0, ADD then DEL, VLAN 100, no IPAM, interleaved
//!    (each round alternates which goes first), [`CNI_ROUNDS`] rounds.
//!
//! Statistics: the median is the middle sample (the mean of the two middle ones for an even
//! count); p95 is the nearest-rank percentile, the `ceil(0.95 n)`-th smallest sample, which
//! for 10 samples is the largest.
//!
//! Environment: the real-cluster suite's (`VFNET_KUBECTL`, `KUBECONFIG`, `VFNET_NODE_NAME`,
//! `VFNET_SANDBOX_IMAGE`, `VFNET_INSTALL_OVERLAY`), plus `VFNET_SRIOVDP` and `VFNET_SRIOV_CNI`
//! (the reference binaries) and, for the report, `VFNET_SRIOVDP_VERSION` and
//! `VFNET_SRIOV_CNI_VERSION`. Every line goes out as `vfnet-vm: ...`, which the harness echoes.
//! Any failure exits non-zero, naming the pod, VF and step.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sriov::PciAddress;
use sriov::sysfs::Pf;
use vfnet_e2e::cluster::{
    apply, container_pid, ensure_installed, environ, get_json, kubectl, kubectl_output, kubectl_stdin, node_name,
    node_resource, wait_for,
};
use vfnet_e2e::cni::{Invocation, VfSnapshot, snapshot};
use vfnet_e2e::netns::NamedNetns;
use vfnet_e2e::node_files::NodeFiles;
use vfnet_e2e::{igb_pf, say};

/// Pods per stack.
const ROUNDS: usize = 10;
/// Direct ADD/DEL pairs per plugin.
const CNI_ROUNDS: usize = 21;
const NS: &str = "bench";
const VLAN: u16 = 100;
/// VFs the PF gets (the pool's `numVfs`); the benchmark uses VFs 0-1 of them.
const NUM_VFS: usize = 4;
const POOL_VFS: u64 = 2;
const POOL_RANGE: &str = "0-1";
const VFNET_RESOURCE: &str = "vfnet.dev/bench_net";
const REF_PREFIX: &str = "ref.vfnet.test";
const REF_NAME: &str = "bench_ref";
const REF_RESOURCE: &str = "ref.vfnet.test/bench_ref";
/// Where Multus finds CNI plugins on this node (a tmpfs; the DaemonSet installs vfnet there).
const CNI_BIN: &str = "/opt/cni/bin";
const POD_TIMEOUT: &str = "--timeout=180s";
const CLEAN_TIMEOUT: Duration = Duration::from_secs(120);
const CLEAN_POLL: Duration = Duration::from_millis(20);
/// The kernel truncates `comm` to 15 bytes: `vfnet-device-plugin` reads so.
const VFNET_DP_COMM: &str = "vfnet-device-pl";
/// Where ghw's pcidb looks for the PCI ID database after `~/.cache/pci.ids` (pcidb v0.5.0,
/// context.go `setSearchPaths`). sriovdp's `discoverHostDevices` fails without one (and
/// with `PCIDB_DISABLE_NETWORK_FETCH` it does not try to download one).
const PCI_IDS: [&str; 2] = ["/usr/share/hwdata/pci.ids", "/usr/share/misc/pci.ids"];

/// One stack's pod rounds: what it advertises, the network its pods attach, its pods' names.
struct Stack {
    label: &'static str,
    resource: &'static str,
    network: &'static str,
    pod_prefix: &'static str,
    /// Pods claim their VF through a ResourceClaimTemplate (DRA) instead of requesting
    /// `resource`; the container's `PCIDEVICE_*` variable comes from the claim's CDI spec.
    dra: bool,
}

impl Stack {
    /// `PCIDEVICE_<PREFIX>_<NAME>`, the variable both device plugins set to the allocated PCI
    /// addresses (sriovdp: `getEnvs`, pkg/resources/server.go; vfnet: device-plugin/src/allocate.rs).
    fn env_key(&self) -> String {
        format!("PCIDEVICE_{}", self.resource.to_uppercase().replace(['.', '/'], "_"))
    }
}

const VFNET: Stack =
    Stack { label: "vfnet", resource: VFNET_RESOURCE, network: "bench-vfnet", pod_prefix: "bench-vfnet", dra: false };
/// The same pool in `mode: dra`: same VFs, same profile, same CNI, claimed instead of counted.
const VFNET_DRA: Stack = Stack {
    label: "vfnet DRA claim",
    resource: VFNET_RESOURCE,
    network: "bench-dra",
    pod_prefix: "bench-dra",
    dra: true,
};
const REFERENCE: Stack = Stack {
    label: "sriovdp + sriov-cni",
    resource: REF_RESOURCE,
    network: "bench-ref",
    pod_prefix: "bench-ref",
    dra: false,
};
/// The DRA stack's DeviceClass and ResourceClaimTemplate.
const DRA_CLASS: &str = "bench-vfnet";
const DRA_TEMPLATE: &str = "bench-vf";

/// One stack's figures.
struct PodFigures {
    create: Vec<Duration>,
    clean: Vec<Duration>,
    rss_kib: u64,
}

/// The direct invocations' wall times.
#[derive(Default)]
struct CniFigures {
    vfnet_add: Vec<Duration>,
    vfnet_del: Vec<Duration>,
    sriov_add: Vec<Duration>,
    sriov_del: Vec<Duration>,
}

/// The node's igb PF and its name.
struct Node {
    pf: Pf,
    pf_name: String,
}

impl Node {
    fn read() -> Result<Self> {
        let pf = igb_pf()?;
        let pf_name = pf.netdev.clone().context("the igb PF has no netdev")?;
        Ok(Self { pf, pf_name })
    }

    fn vf_index(&self, vf: &PciAddress) -> Result<u32> {
        self.pf
            .vfs
            .iter()
            .find(|v| &v.pci == vf)
            .map(|v| v.index)
            .with_context(|| format!("{vf} is not a VF of {} ({})", self.pf.pci, self.pf_name))
    }

    fn snapshot(&self, vf: &PciAddress) -> Result<VfSnapshot> {
        snapshot(&self.pf_name, self.vf_index(vf)?, vf).with_context(|| format!("reading VF {vf}'s state"))
    }

    /// The pool's VFs (0-1), each clean: netdev in the host namespace, VLAN 0.
    fn check_pool_vfs_clean(&self, when: &str) -> Result<()> {
        for vf in self.pf.vfs.iter().filter(|v| v.index < POOL_VFS as u32) {
            let s = self.snapshot(&vf.pci)?;
            ensure!(
                is_clean(&s),
                "{when}: VF {} (index {}) is not clean: netdev {:?}, vlan {}",
                vf.pci,
                vf.index,
                s.netdev,
                s.pf_side.vlan
            );
        }
        Ok(())
    }
}

fn is_clean(s: &VfSnapshot) -> bool {
    s.netdev.is_some() && s.pf_side.vlan == 0
}

fn env_path(name: &str) -> Result<PathBuf> {
    let path = PathBuf::from(
        std::env::var_os(name)
            .with_context(|| format!("${name} is not set (`cargo xtask bench --cluster` sets it)"))?,
    );
    ensure!(path.is_file(), "${name}={} is not a file", path.display());
    Ok(path)
}

fn main() -> Result<()> {
    let sriovdp = env_path("VFNET_SRIOVDP")?;
    let sriov_cni = env_path("VFNET_SRIOV_CNI")?;
    let image =
        std::env::var("VFNET_SANDBOX_IMAGE").context("$VFNET_SANDBOX_IMAGE is not set (the harness sets it)")?;
    // Before anything takes minutes: sriovdp cannot start without it.
    let pci_ids = pci_ids_file().context("the PCI ID database sriovdp needs (Debian package pci.ids)")?;
    let scratch =
        std::env::var_os("VFNET_SCRATCH").map_or_else(std::env::temp_dir, PathBuf::from).join("cluster-bench");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let version = |k: &str| std::env::var(k).unwrap_or_else(|_| "unknown".into());
    say(format_args!(
        "cluster benchmark on node {}: Kubernetes {}, sriovdp {}, sriov-cni {}, {ROUNDS} pods per stack, \
         {CNI_ROUNDS} direct CNI rounds; PCI IDs from {}",
        node_name()?,
        version("VFNET_K8S_VERSION"),
        version("VFNET_SRIOVDP_VERSION"),
        version("VFNET_SRIOV_CNI_VERSION"),
        pci_ids.display()
    ));

    let (node, vfnet) = vfnet_stack(&image)?;
    let dra = dra_stack(&node, &image)?;
    let reference = reference_stack(&node, &image, &sriovdp, &sriov_cni, &scratch)?;
    delete_bench_objects()?;
    let cni = direct_cni(&Node::read()?, &scratch)?;
    report(&vfnet, &dra, &reference, &cni);
    Ok(())
}

/// The first PCI ID database pcidb would read.
fn pci_ids_file() -> Result<PathBuf> {
    let home_cache = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/pci.ids"));
    let candidates: Vec<PathBuf> = home_cache.into_iter().chain(PCI_IDS.iter().map(PathBuf::from)).collect();
    candidates.iter().find(|p| p.is_file()).cloned().with_context(|| {
        format!(
            "none of {} exists; on Debian `apt-get install pci.ids` provides /usr/share/misc/pci.ids",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })
}

fn apply_objects(objects: &[Value]) -> Result<()> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    for line in apply(&list.to_string())?.lines() {
        say(format_args!("  {line}"));
    }
    Ok(())
}

fn nad(name: &str, resource: &str, config: &Value) -> Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": NS,
            "annotations": {"k8s.v1.cni.cncf.io/resourceName": resource}},
        "spec": {"config": config.to_string()}
    })
}

/// Part 1: vfnet's objects, its pool advertised, its rounds and its device plugin's memory.
fn vfnet_stack(image: &str) -> Result<(Node, PodFigures)> {
    say("== vfnet: installing and configuring");
    ensure_installed()?;
    let node = Node::read()?;
    let pool_selector = format!("{}#{POOL_RANGE}", node.pf_name);
    // The namespace first: its NetworkAttachmentDefinition must find it.
    apply_objects(&[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})])?;
    apply_objects(&[
        json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile", "metadata": {"name": "bench"},
            "spec": {"vlan": VLAN, "allowedNamespaces": [NS]}}),
        json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfPool", "metadata": {"name": "bench"},
            "spec": {"resourceName": "bench_net", "deviceType": "netdevice", "numVfs": NUM_VFS,
                "requireProfile": true, "allowedProfiles": ["bench"],
                "selector": {"pfNames": [pool_selector]}}}),
        nad(
            VFNET.network,
            VFNET_RESOURCE,
            &json!({"cniVersion": "1.0.0", "name": VFNET.network, "type": "vfnet", "profile": "bench",
                "ipam": {"type": "host-local", "subnet": "10.57.0.0/24"}}),
        ),
    ])?;
    wait_for(&format!("{NUM_VFS} VFs with igbvf netdevs on {}", node.pf_name), Duration::from_secs(180), || {
        let pf = igb_pf()?;
        Ok((pf.vfs.len() >= NUM_VFS
            && pf.vfs.iter().all(|v| v.driver.as_deref() == Some("igbvf") && v.netdev.is_some()))
        .then_some(()))
    })?;
    wait_for(&format!("Node allocatable {VFNET_RESOURCE} = {POOL_VFS}"), Duration::from_secs(180), || {
        Ok((node_resource("allocatable", VFNET_RESOURCE)? == Some(POOL_VFS)
            && node_resource("capacity", VFNET_RESOURCE)? == Some(POOL_VFS))
        .then_some(()))
    })?;
    let node = Node::read()?;
    node.check_pool_vfs_clean("before vfnet's rounds")?;
    let (create, clean) = pod_rounds(&VFNET, &node, image)?;
    let pid = vfnet_device_plugin_pid()?;
    let rss_kib = rss_kib(pid).context("vfnet's device plugin")?;
    say(format_args!("vfnet device plugin (pid {pid}): VmRSS {rss_kib} kB after the rounds"));
    Ok((node, PodFigures { create, clean, rss_kib }))
}

/// Part 2: the same pool switched to `mode: dra`, its pods claiming their VF through a
/// ResourceClaimTemplate whose DeviceClass names the profile; the same CNI attaches it through
/// Multus with no resourceName.
fn dra_stack(node: &Node, image: &str) -> Result<PodFigures> {
    say("== vfnet DRA: the same pool in mode dra, pods claiming a VF");
    kubectl(&["patch", "vfpool", "bench", "--type=merge", "-p", r#"{"spec":{"mode":"dra"}}"#])?;
    wait_for(&format!("Node allocatable {VFNET_RESOURCE} 0 or absent"), Duration::from_secs(120), || {
        Ok((node_resource("allocatable", VFNET_RESOURCE)?.unwrap_or(0) == 0).then_some(()))
    })?;
    apply_objects(&[
        json!({"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": DRA_CLASS},
            "spec": {"selectors": [{"cel": {"expression":
                "device.driver == 'vfnet.dev' && device.attributes['vfnet.dev'].pool == 'bench' && device.attributes['vfnet.dev'].healthy == true"}}],
                "config": [{"opaque": {"driver": "vfnet.dev", "parameters":
                    {"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfConfig", "profile": "bench"}}}]}}),
        json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": DRA_TEMPLATE, "namespace": NS},
            "spec": {"spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": DRA_CLASS}}]}}}}),
        json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": VFNET_DRA.network, "namespace": NS},
            "spec": {"config": json!({"cniVersion": "1.0.0", "name": VFNET_DRA.network, "type": "vfnet",
                "ipam": {"type": "host-local", "subnet": "10.57.2.0/24"}}).to_string()}}),
    ])?;
    let pool = vfnet_e2e::examples::dra_devices;
    wait_for(&format!("the bench pool's ResourceSlices with {POOL_VFS} devices"), Duration::from_secs(120), || {
        Ok((pool("bench")?.len() as u64 == POOL_VFS).then_some(()))
    })?;
    node.check_pool_vfs_clean("before the DRA rounds")?;
    let (create, clean) = pod_rounds(&VFNET_DRA, node, image)?;
    let pid = vfnet_device_plugin_pid()?;
    let rss_kib = rss_kib(pid).context("vfnet's daemon")?;
    say(format_args!("vfnet daemon (pid {pid}) as DRA driver: VmRSS {rss_kib} kB after the rounds"));
    kubectl(&["-n", NS, "delete", "resourceclaimtemplate", DRA_TEMPLATE, "--ignore-not-found"])?;
    kubectl(&["delete", "deviceclass", DRA_CLASS, "--ignore-not-found"])?;
    Ok(PodFigures { create, clean, rss_kib })
}

/// The pod, requesting one VF of `stack`'s resource (or claiming one) and attaching its network.
fn bench_pod(stack: &Stack, name: &str, image: &str) -> Value {
    if stack.dra {
        return json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS,
                "annotations": {"k8s.v1.cni.cncf.io/networks": stack.network}},
            "spec": {"resourceClaims": [{"name": "vf", "resourceClaimTemplateName": DRA_TEMPLATE}],
                "containers": [{"name": "c", "image": image, "resources": {"claims": [{"name": "vf"}]}}]}
        });
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS,
            "annotations": {"k8s.v1.cni.cncf.io/networks": stack.network}},
        "spec": {"containers": [{"name": "c", "image": image,
            "resources": {"requests": {stack.resource: "1"}, "limits": {stack.resource: "1"}}}]}
    })
}

/// [`ROUNDS`] pods one after the other: (create -> Running, delete -> VF clean) of each.
fn pod_rounds(stack: &Stack, node: &Node, image: &str) -> Result<(Vec<Duration>, Vec<Duration>)> {
    say(format_args!("== {}: {ROUNDS} pods, one at a time", stack.label));
    let (mut create, mut clean) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let name = format!("{}-{round}", stack.pod_prefix);
        let pod = bench_pod(stack, &name, image).to_string();
        let target = format!("pod/{name}");

        let started = Instant::now();
        kubectl_stdin(&["apply", "-f", "-"], Some(&pod))
            .with_context(|| format!("{}: creating pod {NS}/{name}", stack.label))?;
        let waited =
            kubectl_output(&["-n", NS, "wait", "--for=jsonpath={.status.phase}=Running", &target, POD_TIMEOUT], None)?;
        let created = started.elapsed();
        if !waited.status.success() {
            bail!(
                "{}: pod {NS}/{name} (round {round}) never ran: {}\n{}",
                stack.label,
                String::from_utf8_lossy(&waited.stderr).trim(),
                pod_diagnosis(&name)
            );
        }

        let vf = pod_vf(stack, &name).with_context(|| format!("{}: the VF of pod {NS}/{name}", stack.label))?;
        let s = node.snapshot(&vf)?;
        ensure!(
            s.netdev.is_none() && s.pf_side.vlan == VLAN,
            "{}: pod {NS}/{name} runs but its VF {vf} is not attached as configured: host netdev {:?}, vlan {} \
             (want none, {VLAN})",
            stack.label,
            s.netdev,
            s.pf_side.vlan
        );

        let started = Instant::now();
        kubectl(&["-n", NS, "delete", "pod", &name, "--wait=false"])
            .with_context(|| format!("{}: deleting pod {NS}/{name}", stack.label))?;
        let cleaned = wait_clean(node, &vf, started)
            .with_context(|| format!("{}: VF {vf} after deleting pod {NS}/{name} (round {round})", stack.label))?;
        // The next round starts from an empty node.
        wait_for(&format!("pod {NS}/{name} gone"), Duration::from_secs(120), || {
            Ok((!vfnet_e2e::api::exists(&["-n", NS, "pod", &name])?).then_some(()))
        })?;
        say(format_args!(
            "{} round {round}: {name} on VF {vf}: create->Running {}, delete->VF clean {}",
            stack.label,
            secs(created),
            secs(cleaned)
        ));
        create.push(created);
        clean.push(cleaned);
    }
    Ok((create, clean))
}

/// Polls the VF every [`CLEAN_POLL`] until its netdev is back on the host and its VLAN is 0;
/// returns the time from `since` (just before the delete) until then.
fn wait_clean(node: &Node, vf: &PciAddress, since: Instant) -> Result<Duration> {
    let index = node.vf_index(vf)?;
    loop {
        let last = match snapshot(&node.pf_name, index, vf) {
            Ok(s) if is_clean(&s) => return Ok(since.elapsed()),
            Ok(s) => format!("host netdev {:?}, vlan {}", s.netdev, s.pf_side.vlan),
            Err(e) => format!("{e:#}"),
        };
        if since.elapsed() > CLEAN_TIMEOUT {
            bail!("not clean within {} s (last: {last})", CLEAN_TIMEOUT.as_secs());
        }
        std::thread::sleep(CLEAN_POLL);
    }
}

/// The VF a running pod got: the device plugin's `PCIDEVICE_*` variable in its container,
/// else Multus' network-status annotation (device-info of net1).
fn pod_vf(stack: &Stack, name: &str) -> Result<PciAddress> {
    let pod = get_json(&["-n", NS, "pod", name])?;
    let key = stack.env_key();
    let from_env = env_vf(&pod, &key);
    let text = match from_env {
        Ok(v) => v,
        Err(env_err) => network_status_pci(&pod).with_context(|| format!("and {env_err:#}"))?,
    };
    ensure!(!text.contains(','), "pod {NS}/{name} got several VFs: {text}");
    text.parse().with_context(|| format!("{key}={text} is not a PCI address"))
}

/// `key`'s value in the pod's first container's environment.
fn env_vf(pod: &Value, key: &str) -> Result<String> {
    let uid = pod["metadata"]["uid"].as_str().context("pod without uid")?;
    let id = pod["status"]["containerStatuses"][0]["containerID"].as_str().context("no container id")?;
    let env = environ(container_pid(uid, id)?)?;
    env.iter()
        .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .map(str::to_owned)
        .with_context(|| format!("no {key} in the container's environment"))
}

fn network_status_pci(pod: &Value) -> Result<String> {
    let raw = pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
        .as_str()
        .context("the pod has no network-status annotation")?;
    let all: Vec<Value> = serde_json::from_str(raw).context("network-status is not a JSON list")?;
    all.iter()
        .find(|s| s["interface"] == "net1")
        .and_then(|s| s["device-info"]["pci"]["pci-address"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("network-status has no PCI address for net1: {raw}"))
}

/// What a pod that never ran shows: its phase, conditions, container states and events.
fn pod_diagnosis(name: &str) -> String {
    let status = get_json(&["-n", NS, "pod", name])
        .map(|p| {
            format!(
                "phase {}; conditions {}; containers {}",
                p["status"]["phase"], p["status"]["conditions"], p["status"]["containerStatuses"]
            )
        })
        .unwrap_or_else(|e| format!("cannot read the pod: {e:#}"));
    let events = vfnet_e2e::examples::events(NS, name);
    format!("{status}\nevents:\n{events}")
}

/// The pid of vfnet's device plugin (the DaemonSet's container, a host process seen in /proc).
fn vfnet_device_plugin_pid() -> Result<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| c.trim_end().starts_with(VFNET_DP_COMM)) {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("no process whose comm starts with {VFNET_DP_COMM} (vfnet's device plugin)"),
        many => bail!("several processes named {VFNET_DP_COMM}: {many:?}; which one is the DaemonSet's?"),
    }
}

/// `VmRSS` of process `pid`, in kB.
fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("{path} has no VmRSS line"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// sriovdp as a host process, stopped (SIGTERM) when dropped if [`Sriovdp::stop`] was not called.
struct Sriovdp {
    child: Child,
    log: PathBuf,
    stopped: bool,
}

impl Sriovdp {
    /// Flags from cmd/sriovdp/main.go (`--config-file`, `--resource-prefix`) and glog's
    /// (`--logtostderr`, `-v`: upstream's entrypoint.sh default is level 10).
    fn start(binary: &Path, config: &Path, log: &Path) -> Result<Self> {
        let file = fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(binary)
            .arg("--config-file")
            .arg(config)
            .args(["--resource-prefix", REF_PREFIX, "--logtostderr", "-v=10"])
            // pcidb would otherwise try to download pci.ids when it finds none.
            .env("PCIDB_DISABLE_NETWORK_FETCH", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        say(format_args!("sriovdp started (pid {}), log {}", child.id(), log.display()));
        Ok(Self { child, log: log.to_path_buf(), stopped: false })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if it exited, with its log's tail.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            self.stopped = true;
            bail!("sriovdp exited ({status}); last lines of {}:\n{}", self.log.display(), self.log_tail());
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGTERM, then up to 10 s for it to exit (SIGKILL after that).
    fn terminate(&mut self) -> Result<ExitStatus> {
        self.stopped = true;
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).context("SIGTERM to sriovdp")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        let status = self.child.wait()?;
        bail!("sriovdp did not exit within 10 s of SIGTERM; killed ({status})")
    }

    fn stop(mut self) -> Result<()> {
        let status = self.terminate()?;
        say(format_args!("sriovdp stopped: {status}"));
        Ok(())
    }
}

impl Drop for Sriovdp {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.terminate();
        }
    }
}

/// Installs `from` as `<CNI_BIN>/<name>`: a temporary file renamed into place, as an installer
/// does, so Multus never runs a half-written plugin.
fn install_plugin(from: &Path, name: &str) -> Result<PathBuf> {
    let dir = Path::new(CNI_BIN);
    let tmp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(name);
    fs::copy(from, &tmp).with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, &dest).with_context(|| format!("cannot install {}", dest.display()))?;
    Ok(dest)
}

/// Part 2: vfnet's pool gone, sriovdp and sriov-cni on the same VFs, the same rounds.
fn reference_stack(node: &Node, image: &str, sriovdp: &Path, sriov_cni: &Path, scratch: &Path) -> Result<PodFigures> {
    say("== reference: vfnet's pool deleted, sriovdp and sriov-cni on the same VFs");
    kubectl(&["delete", "vfpool", "bench", "--wait=true", "--timeout=120s"])?;
    // kubelet keeps a resource whose plugin went away in capacity (as unhealthy devices) for
    // its endpointStopGracePeriod (5 minutes, pkg/kubelet/cm/devicemanager/types.go), so
    // "vfnet no longer offers these VFs" is allocatable reaching 0.
    wait_for(&format!("Node allocatable {VFNET_RESOURCE} 0 or absent"), Duration::from_secs(120), || {
        Ok((node_resource("allocatable", VFNET_RESOURCE)?.unwrap_or(0) == 0).then_some(()))
    })?;
    say(format_args!(
        "vfnet's pool withdrawn: capacity {VFNET_RESOURCE} {:?} (kubelet's grace period), allocatable 0",
        node_resource("capacity", VFNET_RESOURCE)?
    ));
    node.check_pool_vfs_clean("before the reference rounds")?;

    let sriov = install_plugin(sriov_cni, "sriov")?;
    say(format_args!("sriov-cni installed as {}", sriov.display()));
    // sriovdp's ResourceConfList (pkg/types/types.go): deviceType defaults to netDevice; the
    // pfNames selector takes the same `<pf>#<first>-<last>` range (pkg/resources/deviceSelectors.go).
    let config = scratch.join("sriovdp.json");
    let resource_list = json!({"resourceList": [{"resourceName": REF_NAME,
        "selectors": {"pfNames": [format!("{}#{POOL_RANGE}", node.pf_name)], "drivers": ["igbvf"]}}]});
    fs::write(&config, serde_json::to_vec_pretty(&resource_list)?)
        .with_context(|| format!("cannot write {}", config.display()))?;
    let mut dp = Sriovdp::start(sriovdp, &config, &scratch.join("sriovdp.log"))?;
    let figures = reference_rounds(node, image, &mut dp).inspect_err(|_| {
        say(format_args!("last lines of sriovdp's log ({}):\n{}", dp.log.display(), dp.log_tail()));
    })?;
    dp.stop()?;
    Ok(figures)
}

fn reference_rounds(node: &Node, image: &str, dp: &mut Sriovdp) -> Result<PodFigures> {
    let want = format!("Node allocatable {REF_RESOURCE} = {POOL_VFS}");
    let started = Instant::now();
    loop {
        dp.check_alive()?;
        if node_resource("allocatable", REF_RESOURCE)? == Some(POOL_VFS) {
            say(format_args!("{want}: after {:.1} s", started.elapsed().as_secs_f64()));
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("{want}: not within 120 s (allocatable {:?})", node_resource("allocatable", REF_RESOURCE)?);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // sriov-cni v2.1.0 speaks CNI up to 0.3.1 (cni v0.6.0's version.All); Multus adds deviceID
    // from the resourceName annotation (pkg/types/conf.go, delegateAddDeviceID).
    apply_objects(&[nad(
        REFERENCE.network,
        REF_RESOURCE,
        &json!({"cniVersion": "0.3.1", "name": REFERENCE.network, "type": "sriov", "vlan": VLAN,
            "ipam": {"type": "host-local", "subnet": "10.57.1.0/24"}}),
    )])?;
    let (create, clean) = pod_rounds(&REFERENCE, node, image)?;
    dp.check_alive()?;
    let rss_kib = rss_kib(dp.pid()).context("sriovdp")?;
    say(format_args!("sriovdp (pid {}): VmRSS {rss_kib} kB after the rounds", dp.pid()));
    Ok(PodFigures { create, clean, rss_kib })
}

fn delete_bench_objects() -> Result<()> {
    kubectl(&["delete", "vfprofile", "bench", "--ignore-not-found"])?;
    kubectl(&["delete", "namespace", NS, "--ignore-not-found", "--wait=false"])?;
    say("bench objects deleted (namespace bench with its NetworkAttachmentDefinitions, VfProfile bench)");
    Ok(())
}

/// Part 3: vfnet and sriov-cni run by hand on VF 0, ADD then DEL, VLAN 100, no IPAM.
fn direct_cni(node: &Node, scratch: &Path) -> Result<CniFigures> {
    let vf = node.pf.vfs.iter().find(|v| v.index == 0).context("the PF has no VF 0")?.pci;
    say(format_args!(
        "== direct CNI: vfnet vs sriov-cni on VF {vf} ({} VF 0), VLAN {VLAN}, no IPAM, {CNI_ROUNDS} interleaved rounds",
        node.pf_name
    ));
    let s = node.snapshot(&vf)?;
    ensure!(is_clean(&s), "VF {vf} is not clean before the direct CNI rounds: {s:?}");
    let vfnet = Path::new(CNI_BIN).join("vfnet");
    let sriov = Path::new(CNI_BIN).join("sriov");
    for p in [&vfnet, &sriov] {
        ensure!(p.is_file(), "{} is missing", p.display());
    }
    fs::create_dir_all(scratch.join("profiles"))?;
    // The DaemonSet's node configuration requires device records, which no kubelet allocation
    // wrote for these calls. For the rounds, journals, records and locks go to scratch directories
    // with no records required, as cni-bench does in the plain VM; the file is put back after.
    let config = json!({"stateDir": scratch.join("state"), "runDir": scratch.join("run"),
        "profileDir": scratch.join("profiles")});
    let mut swap = NodeFiles::new();
    swap.set(vfnet_types::layout::NODE_CONFIG, Some(&serde_json::to_vec_pretty(&config)?))?;
    let figures = direct_rounds(node, &vf, &vfnet, &sriov);
    swap.restore().context("restoring the node configuration")?;
    figures
}

fn direct_rounds(node: &Node, vf: &PciAddress, vfnet: &Path, sriov: &Path) -> Result<CniFigures> {
    let vfnet_conf =
        json!({"cniVersion": "1.0.0", "name": "bench-direct", "type": "vfnet", "deviceID": vf, "vlan": VLAN});
    // sriov-cni v2.1.0's NetConf (pkg/types/types.go): deviceID and vlan; its DEL reads the
    // ADD's cached copy under /var/lib/cni/sriov (pkg/config/config.go, DefaultCNIDir).
    let sriov_conf =
        json!({"cniVersion": "0.3.1", "name": "bench-direct", "type": "sriov", "deviceID": vf, "vlan": VLAN});
    let mut f = CniFigures::default();
    for round in 0..CNI_ROUNDS {
        let pod = NamedNetns::create("vfnet-cluster-bench")?;
        let pair = |plugin: &Path, label: &str, conf: &Value| -> Result<(Duration, Duration)> {
            let id = format!("cluster-bench-{label}-{round}");
            let run = |cmd: &str| -> Result<Duration> {
                let mut inv = Invocation::vfnet(cmd, &id, Some(pod.path()), "net1");
                inv.plugin = plugin.to_path_buf();
                let out = inv.run(conf)?;
                ensure!(
                    out.code == Some(0),
                    "{label} {cmd} on VF {vf} (round {round}) failed ({:?}): stdout {} stderr {}",
                    out.code,
                    out.stdout.trim(),
                    out.stderr.trim()
                );
                Ok(out.elapsed)
            };
            let add = run("ADD")?;
            let s = node.snapshot(vf)?;
            ensure!(
                s.netdev.is_none() && s.pf_side.vlan == VLAN,
                "{label} ADD on VF {vf} (round {round}) left host netdev {:?}, vlan {} (want none, {VLAN})",
                s.netdev,
                s.pf_side.vlan
            );
            let del = run("DEL")?;
            let s = node.snapshot(vf)?;
            ensure!(
                is_clean(&s),
                "{label} DEL on VF {vf} (round {round}) left host netdev {:?}, vlan {} (want it back, 0)",
                s.netdev,
                s.pf_side.vlan
            );
            Ok((add, del))
        };
        // Alternate which plugin goes first, so drift hits both alike.
        let vfnet_first = round % 2 == 0;
        for is_vfnet in [vfnet_first, !vfnet_first] {
            if is_vfnet {
                let (add, del) = pair(vfnet, "vfnet", &vfnet_conf)?;
                f.vfnet_add.push(add);
                f.vfnet_del.push(del);
            } else {
                let (add, del) = pair(sriov, "sriov-cni", &sriov_conf)?;
                f.sriov_add.push(add);
                f.sriov_del.push(del);
            }
        }
    }
    Ok(f)
}

/// The middle sample; the mean of the two middle ones for an even count.
fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let n = s.len();
    match n {
        0 => Duration::ZERO,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2,
    }
}

/// The nearest-rank percentile: the `ceil(pct/100 * n)`-th smallest sample.
fn nearest_rank(samples: &[Duration], pct: usize) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    if s.is_empty() {
        return Duration::ZERO;
    }
    let rank = (pct * s.len()).div_ceil(100).clamp(1, s.len());
    s[rank - 1]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() { "-".into() } else { format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()) }
}

fn report(vfnet: &PodFigures, dra: &PodFigures, reference: &PodFigures, cni: &CniFigures) {
    say(format_args!(
        "== results ({ROUNDS} pods per stack; median = middle sample, p95 = nearest rank, of {ROUNDS}: the largest)"
    ));
    say(format_args!(
        "{:<22} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "stack", "create med", "create p95", "clean med", "clean p95", "plugin RSS"
    ));
    for (label, f) in [(VFNET.label, vfnet), (VFNET_DRA.label, dra), (REFERENCE.label, reference)] {
        say(format_args!(
            "{label:<22} {:>12} {:>12} {:>12} {:>12} {:>12}",
            secs(median(&f.create)),
            secs(nearest_rank(&f.create, 95)),
            secs(median(&f.clean)),
            secs(nearest_rank(&f.clean, 95)),
            mib(f.rss_kib)
        ));
    }
    say(format_args!(
        "{:<22} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "vfnet / reference",
        ratio(median(&vfnet.create), median(&reference.create)),
        ratio(nearest_rank(&vfnet.create, 95), nearest_rank(&reference.create, 95)),
        ratio(median(&vfnet.clean), median(&reference.clean)),
        ratio(nearest_rank(&vfnet.clean, 95), nearest_rank(&reference.clean, 95)),
        if reference.rss_kib == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}", vfnet.rss_kib as f64 / reference.rss_kib as f64)
        }
    ));
    say(format_args!(
        "{:<22} {:>12} {:>12} {:>12} {:>12}",
        "DRA / device plugin",
        ratio(median(&dra.create), median(&vfnet.create)),
        ratio(nearest_rank(&dra.create, 95), nearest_rank(&vfnet.create, 95)),
        ratio(median(&dra.clean), median(&vfnet.clean)),
        ratio(nearest_rank(&dra.clean, 95), nearest_rank(&vfnet.clean, 95)),
    ));
    say(
        "create = kubectl apply until kubectl wait sees Running; clean = kubectl delete until the VF's netdev is back \
         on the host and its VLAN 0; RSS = the device plugin's VmRSS after its rounds",
    );
    say(format_args!("direct CNI, VLAN {VLAN}, no IPAM, medians of {CNI_ROUNDS}:"));
    say(format_args!("{:<8} {:>12} {:>12} {:>7}", "", "vfnet", "sriov-cni", "ratio"));
    for (name, v, s) in [("ADD", &cni.vfnet_add, &cni.sriov_add), ("DEL", &cni.vfnet_del, &cni.sriov_del)] {
        let (v, s) = (median(v), median(s));
        say(format_args!("{name:<8} {:>12} {:>12} {:>7}", ms(v), ms(s), ratio(v, s)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn medians_and_nearest_rank_percentiles() {
        let twelve = ms_list(&[12, 1, 11, 2, 10, 3, 9, 4, 8, 5, 7, 6]);
        assert_eq!(median(&twelve), Duration::from_micros(6500));
        assert_eq!(nearest_rank(&twelve, 95), Duration::from_millis(12), "ceil(11.4) = 12th of 12");
        assert_eq!(nearest_rank(&twelve, 50), Duration::from_millis(6));
        let twenty = ms_list(&(1..=20).collect::<Vec<_>>());
        assert_eq!(nearest_rank(&twenty, 95), Duration::from_millis(19), "ceil(19.0) = 19th of 20");
        assert_eq!(median(&ms_list(&[3, 1, 2])), Duration::from_millis(2));
        assert_eq!(median(&[]), Duration::ZERO);
        assert_eq!(nearest_rank(&[], 95), Duration::ZERO);
    }

    #[test]
    fn reads_vm_rss_and_env_keys() {
        let status = "Name:\tsriovdp\nVmPeak:\t  900 kB\nVmRSS:\t   23456 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(23456));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(VFNET.env_key(), "PCIDEVICE_VFNET_DEV_BENCH_NET");
        assert_eq!(REFERENCE.env_key(), "PCIDEVICE_REF_VFNET_TEST_BENCH_REF");
    }
}
