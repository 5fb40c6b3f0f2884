//! The real-cluster suite: vfnet on a real Kubernetes node (kubelet, containerd, the scheduler,
//! Multus, all built from their published modules), with the emulated igb's real VFs. Run by
//! `cargo xtask test` inside the node's guest, against the control plane it started on the host.
//!
//! The examples are applied as users write them (`manifests/examples/`), adapted to this node in
//! three documented ways only: the pools select this node's igb PF (its name and 7-VF limit are
//! not the examples' `ens1f0` with 16), the example pods run the test bed's sandbox image (there
//! is no registry to pull `registry.k8s.io/pause` from), and tenant-a's profile loses its
//! `maxTxRateMbps` (the emulated igb has no link speed and refuses any rate with EINVAL, which
//! vfnet rightly reports as a failed ADD; the VM suite proves that refusal).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sriov::PciAddress;
use sriov::sysfs::Pf;
use vfnet_e2e::cluster::{
    apply, container_pid, daemon_pods, ensure_installed, environ, get_json, kubectl, kubectl_output, node_name,
    node_resource, repo_root, wait_for,
};
use vfnet_e2e::{igb_pf, rebind, say};

const NET: &str = "vfnet.dev/sriov_net";
const DPDK: &str = "vfnet.dev/sriov_dpdk";
/// VFs the adapted pools take from the igb PF: 0-1 netdevice (sriov-net), 2-3 vfio (sriov-dpdk).
const NUM_VFS: u32 = 4;
const NET_VFS: u64 = 2;
const DPDK_VFS: u64 = 2;
const POD_TIMEOUT: Duration = Duration::from_secs(240);

/// An example file as JSON objects (kubectl parses the YAML: one parser, the real one).
fn example(file: &str) -> Result<Vec<Value>> {
    let path = repo_root().join("manifests/examples").join(file);
    let text = kubectl(&["create", "--dry-run=client", "-o", "json", "-f", &path.to_string_lossy()])?;
    // One JSON document per object (a List only when the file is one).
    let mut objects = Vec::new();
    for v in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
        let v = v.with_context(|| format!("kubectl's JSON for {}", path.display()))?;
        match v["kind"].as_str() {
            Some("List") => objects.extend(v["items"].as_array().cloned().unwrap_or_default()),
            _ => objects.push(v),
        }
    }
    Ok(objects)
}

fn apply_objects(objects: &[Value]) -> Result<()> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let out = apply(&list.to_string())?;
    for line in out.lines() {
        say(format_args!("  {line}"));
    }
    Ok(())
}

fn pf_name(pf: &Pf) -> Result<String> {
    pf.netdev.clone().context("the igb PF has no netdev")
}

/// The example pools, selecting this node's igb PF.
fn pools(pf: &str) -> Result<Vec<Value>> {
    let mut pools = example("pools.yaml")?;
    for pool in &mut pools {
        let range = match pool["metadata"]["name"].as_str() {
            Some("sriov-net") => "0-1",
            Some("sriov-dpdk") => "2-3",
            other => bail!("unexpected example pool {other:?}"),
        };
        pool["spec"]["selector"]["pfNames"] = json!([format!("{pf}#{range}")]);
        pool["spec"]["numVfs"] = json!(NUM_VFS);
    }
    Ok(pools)
}

fn profiles() -> Result<Vec<Value>> {
    let mut profiles = example("profiles.yaml")?;
    for p in &mut profiles {
        if let Some(spec) = p["spec"].as_object_mut() {
            spec.remove("maxTxRateMbps");
        }
    }
    Ok(profiles)
}

fn sandbox_image() -> Result<String> {
    std::env::var("VFNET_SANDBOX_IMAGE").context("$VFNET_SANDBOX_IMAGE is not set (the harness sets it)")
}

fn example_pods() -> Result<Vec<Value>> {
    let image = sandbox_image()?;
    let mut pods = example("pods.yaml")?;
    for pod in &mut pods {
        for c in pod["spec"]["containers"].as_array_mut().into_iter().flatten() {
            c["image"] = json!(image);
        }
    }
    Ok(pods)
}

/// Installs vfnet, the example namespaces, profiles and pools; waits for the pools' capacity.
fn setup() -> Result<Pf> {
    ensure_installed()?;
    let pf = igb_pf()?;
    let name = pf_name(&pf)?;
    apply_objects(&example("namespaces.yaml")?)?;
    apply_objects(&profiles()?)?;
    apply_objects(&pools(&name)?)?;
    // The daemon creates the pools' VFs; the node administrator binds the userspace pool's VFs
    // to vfio-pci (vfnet, like the reference device plugin, leaves driver binding to the admin).
    let pf = wait_for(&format!("{NUM_VFS} VFs on {name}"), Duration::from_secs(120), || {
        let pf = igb_pf()?;
        Ok((pf.vfs.len() == NUM_VFS as usize).then_some(pf))
    })?;
    for vf in pf.vfs.iter().filter(|v| (2..4).contains(&v.index)) {
        if vf.driver.as_deref() != Some("vfio-pci") {
            rebind(&vf.pci, Some("vfio-pci"))?;
        }
    }
    for (resource, want) in [(NET, NET_VFS), (DPDK, DPDK_VFS)] {
        wait_for(&format!("Node allocatable {resource} = {want}"), Duration::from_secs(120), || {
            Ok((node_resource("allocatable", resource)? == Some(want)
                && node_resource("capacity", resource)? == Some(want))
            .then_some(()))
        })?;
    }
    igb_pf()
}

fn pod(ns: &str, name: &str) -> Result<Value> {
    get_json(&["-n", ns, "pod", name])
}

fn wait_running(ns: &str, name: &str) -> Result<Value> {
    wait_for(&format!("pod {ns}/{name} Running"), POD_TIMEOUT, || {
        let p = pod(ns, name)?;
        match p["status"]["phase"].as_str() {
            Some("Running") => Ok(Some(p)),
            Some("Failed") => bail!("pod {ns}/{name} failed: {}", p["status"]),
            _ => Err(anyhow::anyhow!("phase {}; events: {}", p["status"]["phase"], events(ns, name))),
        }
    })
}

/// The pod's events, one line each (for failure messages and the 102 check).
fn events(ns: &str, name: &str) -> String {
    kubectl(&[
        "-n",
        ns,
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "custom-columns=REASON:.reason,MESSAGE:.message",
        "--no-headers",
    ])
    .unwrap_or_default()
}

fn delete_pods(ns: &str, names: &[&str]) -> Result<()> {
    let mut args = vec!["-n", ns, "delete", "pod", "--ignore-not-found", "--wait=true", "--timeout=180s"];
    args.extend_from_slice(names);
    kubectl(&args)?;
    Ok(())
}

/// The VF index of `vf` under `pf`.
fn vf_index(pf: &Pf, vf: &PciAddress) -> Result<u32> {
    pf.vfs.iter().find(|v| &v.pci == vf).map(|v| v.index).with_context(|| format!("{vf} is not a VF of {}", pf.pci))
}

/// The PF's VF table entry of `vf`: (vlan, qos).
fn vf_vlan(pf: &Pf, vf: &PciAddress) -> Result<(u16, u8)> {
    let s = vfnet_e2e::cni::snapshot(&pf_name(pf)?, vf_index(pf, vf)?, vf)?;
    Ok((s.pf_side.vlan, s.pf_side.qos))
}

/// The `k8s.v1.cni.cncf.io/network-status` entry of `interface`.
fn network_status(p: &Value, interface: &str) -> Result<Value> {
    let raw = p["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
        .as_str()
        .context("the pod has no network-status annotation")?;
    let all: Vec<Value> = serde_json::from_str(raw)?;
    all.into_iter()
        .find(|s| s["interface"] == interface)
        .with_context(|| format!("network-status lists no {interface}: {raw}"))
}

/// The first container's host pid and environment.
fn container(p: &Value) -> Result<(u32, Vec<String>)> {
    let uid = p["metadata"]["uid"].as_str().context("pod without uid")?;
    let id = p["status"]["containerStatuses"][0]["containerID"].as_str().context("no container id")?;
    let pid = container_pid(uid, id)?;
    Ok((pid, environ(pid)?))
}

/// The interface names in process `pid`'s network namespace.
fn interfaces(pid: u32) -> Result<Vec<String>> {
    let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))?;
    Ok(dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(|s| s.trim().to_owned()).collect())
}

fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter().find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Every VF of the pools untagged in the PF's table (vlan 0, qos 0).
fn assert_vfs_untagged(pf: &Pf) -> Result<()> {
    for vf in pf.vfs.iter().take(NUM_VFS as usize) {
        let (vlan, qos) = vf_vlan(pf, &vf.pci)?;
        ensure!(vlan == 0 && qos == 0, "VF {} (index {}) is left tagged: vlan {vlan} qos {qos}", vf.pci, vf.index);
    }
    say(format_args!("VFs 0-{} of {} untagged", NUM_VFS - 1, pf.pci));
    Ok(())
}

#[test]
#[ignore = "needs the real Kubernetes node (cargo xtask test)"]
fn a_install_registers_the_pools_and_the_crds_document_and_validate() -> Result<()> {
    say(format_args!("Kubernetes {}", std::env::var("VFNET_K8S_VERSION").unwrap_or_default()));
    ensure_installed()?;
    // The init container installed the plugin and the node configuration.
    let vfnet = std::fs::metadata("/opt/cni/bin/vfnet").context("the DaemonSet installed no /opt/cni/bin/vfnet")?;
    ensure!(std::os::unix::fs::PermissionsExt::mode(&vfnet.permissions()) & 0o111 != 0, "vfnet is not executable");
    let node_json = std::fs::read_to_string("/etc/vfnet/node.json").context("no /etc/vfnet/node.json")?;
    ensure!(node_json.contains("requireDeviceRecords"), "node.json is not the ConfigMap's: {node_json}");
    let pf = setup()?;
    say(format_args!(
        "node {} reports {NET}={NET_VFS} and {DPDK}={DPDK_VFS} from PF {} ({})",
        node_name()?,
        pf.pci,
        pf_name(&pf)?
    ));

    // `kubectl explain` documents every field of the profile's spec.
    let crd = get_json(&["crd", "vfprofiles.vfnet.dev"])?;
    let props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_object()
        .context("the VfProfile CRD has no spec properties")?
        .clone();
    let explain = kubectl(&["explain", "vfprofile.spec"])?;
    for (field, schema) in &props {
        ensure!(explain.contains(&format!("  {field}\t")), "kubectl explain vfprofile.spec lists no {field}");
        let description = schema["description"].as_str().unwrap_or_default();
        ensure!(!description.is_empty(), "VfProfile spec.{field} has no description");
        let first_words: String = description.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
        ensure!(
            explain.split_whitespace().collect::<Vec<_>>().join(" ").contains(&first_words),
            "kubectl explain does not show spec.{field}'s description ({first_words}...)"
        );
    }
    say(format_args!("kubectl explain vfprofile.spec documents all {} fields", props.len()));

    // The API server evaluates the CRD's CEL rules.
    let bad = json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile",
        "metadata": {"name": "qos-without-vlan"}, "spec": {"vlanQoS": 3}});
    let out = kubectl_output(&["apply", "-f", "-"], Some(&bad.to_string()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the API server accepted a VfProfile breaking a CEL rule");
    ensure!(
        stderr.contains("a non-zero vlanQoS needs a non-zero vlan"),
        "refused without the rule's message: {stderr}"
    );
    say(format_args!("the API server refused the VfProfile: {}", stderr.trim()));
    Ok(())
}

#[test]
#[ignore = "needs the real Kubernetes node (cargo xtask test)"]
fn b_example_pods_run_with_their_vfs_and_return_them_clean() -> Result<()> {
    let pf = setup()?;
    apply_objects(&example("networks.yaml")?)?;
    apply_objects(&example_pods()?)?;

    // web: the VF's netdev in the pod as net1, on tenant-a's VLAN 100.
    let web = wait_running("tenant-a", "web")?;
    let status = network_status(&web, "net1")?;
    let pci: PciAddress = status["device-info"]["pci"]["pci-address"]
        .as_str()
        .with_context(|| format!("net1's network-status has no PCI address: {status}"))?
        .parse()?;
    let (pid, env) = container(&web)?;
    let env_pci = env_value(&env, "PCIDEVICE_VFNET_DEV_SRIOV_NET").context("no PCIDEVICE_VFNET_DEV_SRIOV_NET")?;
    ensure!(env_pci == pci.to_string(), "PCIDEVICE_VFNET_DEV_SRIOV_NET={env_pci}, network-status says {pci}");
    let ifaces = interfaces(pid)?;
    ensure!(ifaces.iter().any(|i| i == "net1"), "the pod has no net1: {ifaces:?}");
    ensure!(vf_vlan(&pf, &pci)? == (100, 0), "VF {pci} is not on VLAN 100: {:?}", vf_vlan(&pf, &pci)?);
    say(format_args!("tenant-a/web: net1 = VF {pci} on VLAN 100; PCIDEVICE_VFNET_DEV_SRIOV_NET={env_pci}; {ifaces:?}"));

    // vm-launcher: a macvtap on the VF as net1, the VF itself on the host, also on VLAN 100.
    let vm = wait_running("tenant-a", "vm-launcher")?;
    let status = network_status(&vm, "net1")?;
    let (pid, env) = container(&vm)?;
    let vm_pci: PciAddress =
        env_value(&env, "PCIDEVICE_VFNET_DEV_SRIOV_NET").context("no PCIDEVICE_VFNET_DEV_SRIOV_NET")?.parse()?;
    ensure!(vm_pci != pci, "two pods got VF {pci}");
    ensure!(interfaces(pid)?.iter().any(|i| i == "net1"), "vm-launcher has no net1");
    ensure!(vf_vlan(&pf, &vm_pci)? == (100, 0), "VF {vm_pci} is not on VLAN 100");
    say(format_args!("tenant-a/vm-launcher: macvtap net1 on VF {vm_pci}, VLAN 100 ({status})"));

    // dpdk: a vfio-bound VF, PF-side VLAN 200 QoS 3, nothing moved.
    let dpdk = wait_running("tenant-b", "dpdk")?;
    let (_, env) = container(&dpdk)?;
    let dpdk_pci: PciAddress =
        env_value(&env, "PCIDEVICE_VFNET_DEV_SRIOV_DPDK").context("no PCIDEVICE_VFNET_DEV_SRIOV_DPDK")?.parse()?;
    ensure!(vf_vlan(&pf, &dpdk_pci)? == (200, 3), "VF {dpdk_pci} is not on VLAN 200 QoS 3");
    say(format_args!("tenant-b/dpdk: VF {dpdk_pci} (vfio-pci) on VLAN 200 QoS 3"));

    delete_pods("tenant-a", &["web", "vm-launcher"])?;
    delete_pods("tenant-b", &["dpdk"])?;
    wait_for("every VF back untagged", Duration::from_secs(60), || Ok(assert_vfs_untagged(&igb_pf()?).ok()))?;
    Ok(())
}

fn vf_pod(ns: &str, name: &str, network: &str) -> Result<Value> {
    Ok(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns,
            "annotations": {"k8s.v1.cni.cncf.io/networks": network}},
        "spec": {"containers": [{"name": "c", "image": sandbox_image()?,
            "resources": {"requests": {NET: "1"}, "limits": {NET: "1"}}}]}
    }))
}

#[test]
#[ignore = "needs the real Kubernetes node (cargo xtask test)"]
fn c_limits_pending_past_the_pool_and_refused_outside_the_profile() -> Result<()> {
    setup()?;
    apply_objects(&example("networks.yaml")?)?;
    let names: Vec<String> = (0..=NET_VFS).map(|i| format!("fill-{i}")).collect();
    let pods: Vec<Value> = names.iter().map(|n| vf_pod("tenant-a", n, "tenant-a-direct")).collect::<Result<_>>()?;
    apply_objects(&pods)?;
    for n in &names[..NET_VFS as usize] {
        wait_running("tenant-a", n)?;
    }
    let last = names.last().unwrap();
    let why = wait_for(&format!("{last} unschedulable"), Duration::from_secs(60), || {
        let p = pod("tenant-a", last)?;
        let cond =
            p["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled")).cloned();
        Ok(cond.filter(|c| c["status"] == "False").map(|c| c["message"].as_str().unwrap_or_default().to_owned()))
    })?;
    ensure!(why.contains(&format!("Insufficient {NET}")), "{last} is Pending for another reason: {why}");
    say(format_args!("tenant-a/{last} Pending: {why}"));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    delete_pods("tenant-a", &refs)?;

    // tenant-b may not use tenant-a's profile: the pod never starts; vfnet's 102 is in its events.
    let intruder = vf_pod("tenant-b", "intruder", "tenant-a/tenant-a-direct")?;
    apply_objects(&[intruder])?;
    let seen = wait_for("tenant-b/intruder's sandbox refused by vfnet", Duration::from_secs(180), || {
        let ev = events("tenant-b", "intruder");
        Ok(ev.lines().find(|l| l.contains("FailedCreatePodSandBox") && l.contains("102")).map(str::to_owned))
    })?;
    let p = pod("tenant-b", "intruder")?;
    ensure!(p["status"]["phase"] != "Running", "tenant-b/intruder runs");
    say(format_args!("tenant-b/intruder refused: {seen}"));
    delete_pods("tenant-b", &["intruder"])?;
    wait_for("every VF back untagged", Duration::from_secs(60), || Ok(assert_vfs_untagged(&igb_pf()?).ok()))?;
    Ok(())
}

#[test]
#[ignore = "needs the real Kubernetes node (cargo xtask test)"]
fn d_lifecycle_kubelet_and_daemon_restarts_and_pool_changes() -> Result<()> {
    setup()?;
    apply_objects(&example("networks.yaml")?)?;
    apply_objects(&[vf_pod("tenant-a", "keeper", "tenant-a-direct")?])?;
    let keeper = wait_running("tenant-a", "keeper")?;
    let (_, env) = container(&keeper)?;
    let kept = env_value(&env, "PCIDEVICE_VFNET_DEV_SRIOV_NET").context("no PCIDEVICE")?.to_owned();

    // kubelet restarts: the running pod keeps its VF, the plugin registers again.
    let script = std::env::var("VFNET_NODE_SCRIPT").context("$VFNET_NODE_SCRIPT")?;
    let out = std::process::Command::new("sh").arg(&script).arg("restart-kubelet").output()?;
    ensure!(out.status.success(), "restart-kubelet failed: {}", String::from_utf8_lossy(&out.stderr));
    wait_for("the node Ready again, allocatable restored", Duration::from_secs(180), || {
        Ok((node_resource("allocatable", NET)? == Some(NET_VFS)).then_some(()))
    })?;
    let keeper = pod("tenant-a", "keeper")?;
    ensure!(keeper["status"]["phase"] == "Running", "keeper stopped across the kubelet restart");
    let (_, env) = container(&keeper)?;
    ensure!(env_value(&env, "PCIDEVICE_VFNET_DEV_SRIOV_NET") == Some(kept.as_str()), "keeper's VF changed");

    // The daemon restarts (its pod deleted): the next pod gets the other VF, not keeper's.
    let old: Vec<String> =
        daemon_pods()?.iter().filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned)).collect();
    for name in &old {
        kubectl(&["-n", "vfnet-system", "delete", "pod", name, "--wait=true"])?;
    }
    wait_for("a new vfnet daemon pod ready", Duration::from_secs(180), || {
        Ok(daemon_pods()?
            .iter()
            .any(|p| {
                !old.iter().any(|o| p["metadata"]["name"] == o.as_str())
                    && p["status"]["containerStatuses"][0]["ready"] == true
            })
            .then_some(()))
    })?;
    apply_objects(&[vf_pod("tenant-a", "second", "tenant-a-direct")?])?;
    let second = wait_running("tenant-a", "second")?;
    let (_, env) = container(&second)?;
    let got = env_value(&env, "PCIDEVICE_VFNET_DEV_SRIOV_NET").context("no PCIDEVICE")?;
    ensure!(got != kept, "after the daemon restart, second got keeper's VF {kept}");
    say(format_args!("after restarts: keeper kept {kept}, second got {got}"));
    delete_pods("tenant-a", &["keeper", "second"])?;

    // A VfPool edited with kubectl changes the Node's capacity, nothing restarted.
    let pf = igb_pf()?;
    let patch = json!({"spec": {"selector": {"pfNames": [format!("{}#0-0", pf_name(&pf)?)]}}});
    kubectl(&["patch", "vfpool", "sriov-net", "--type=merge", "-p", &patch.to_string()])?;
    wait_for(&format!("Node capacity {NET} = 1"), Duration::from_secs(120), || {
        Ok((node_resource("capacity", NET)? == Some(1)).then_some(()))
    })?;
    apply_objects(&pools(&pf_name(&pf)?)?)?;
    wait_for(&format!("Node capacity {NET} = {NET_VFS}"), Duration::from_secs(120), || {
        Ok((node_resource("capacity", NET)? == Some(NET_VFS)).then_some(()))
    })?;
    Ok(())
}
