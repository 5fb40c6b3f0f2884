//! The real-cluster suite: vfnet on a real Kubernetes node (kubelet, containerd, the scheduler,
//! Multus, all built from their published modules), with the emulated igb's real VFs. Run by
//! `cargo xtask test` inside the node's guest, against the control plane it started on the host.
//!
//! The examples and their adaptation to this node: [`vfnet_e2e::examples`].
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use sriov::PciAddress;
use vfnet_e2e::cluster::{
    DirectCni, ensure_installed, get_json, kubectl, kubectl_output, node_name, node_resource, restart_daemon, wait_for,
};
use vfnet_e2e::examples::*;
use vfnet_e2e::{igb_pf, say};

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

    // tenant-b may not use tenant-a's profile: the pod never starts; vfnet's refusal (its error
    // 102) is in its events. Multus passes on the error's message, not its code.
    let intruder = vf_pod("tenant-b", "intruder", "tenant-a/tenant-a-direct")?;
    apply_objects(&[intruder])?;
    let seen = wait_for("tenant-b/intruder's sandbox refused by vfnet", Duration::from_secs(180), || {
        let ev = events("tenant-b", "intruder");
        Ok(ev.lines().find(|l| l.contains("FailedCreatePodSandBox") && l.contains(REFUSAL)).map(str::to_owned))
    })?;
    let p = pod("tenant-b", "intruder")?;
    ensure!(p["status"]["phase"] != "Running", "tenant-b/intruder runs");
    say(format_args!("tenant-b/intruder refused: {seen}"));
    delete_pods("tenant-b", &["intruder"])?;
    wait_for("every VF back untagged", Duration::from_secs(60), || Ok(assert_vfs_untagged(&igb_pf()?).ok()))?;
    Ok(())
}

/// vfnet's error 102 for tenant-b naming tenant-a's profile, as Multus relays it.
const REFUSAL: &str = "namespace tenant-b may not use VfProfile tenant-a";

/// kubelet's device-plugin directory: kubelet empties it and serves a new `kubelet.sock` when it
/// starts; the plugin then serves new sockets and registers again.
const PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";

fn inode(name: &str) -> Option<u64> {
    std::fs::metadata(std::path::Path::new(PLUGIN_DIR).join(name)).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

/// Restarts kubelet and measures, on the node's own tmpfs (polled every 5 ms), the time from the
/// new kubelet's `kubelet.sock` to both pools' new plugin sockets (served right before each
/// registration). Returns the delay in seconds.
fn restart_kubelet_and_time_reregistration() -> Result<f64> {
    let sockets = ["vfnet-sriov_net.sock", "vfnet-sriov_dpdk.sock"];
    let old_kubelet = inode("kubelet.sock").context("no kubelet.sock before the restart")?;
    let old: Vec<Option<u64>> = sockets.iter().map(|s| inode(s)).collect();
    ensure!(old.iter().all(Option::is_some), "the plugin's sockets are missing before the restart");
    let script = std::env::var("VFNET_NODE_SCRIPT").context("$VFNET_NODE_SCRIPT")?;
    // Its output captured: printed by libtest's side it would break the `test ... ok` lines.
    let restart = std::process::Command::new("sh")
        .arg(&script)
        .arg("restart-kubelet")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let poll = |done: &dyn Fn() -> bool, what: &str| -> Result<std::time::Instant> {
        while !done() {
            ensure!(std::time::Instant::now() < deadline, "{what}: not within 120 s of the restart");
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(std::time::Instant::now())
    };
    let kubelet_up = poll(&|| inode("kubelet.sock").is_some_and(|i| i != old_kubelet), "the new kubelet.sock")?;
    let registered = poll(
        &|| sockets.iter().zip(&old).all(|(s, o)| inode(s).is_some_and(|i| Some(i) != *o)),
        "the plugin's new sockets",
    )?;
    let out = restart.wait_with_output()?;
    ensure!(out.status.success(), "restart-kubelet failed: {}", String::from_utf8_lossy(&out.stderr));
    say(String::from_utf8_lossy(&out.stdout).trim());
    Ok((registered - kubelet_up).as_secs_f64())
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
    let delay = restart_kubelet_and_time_reregistration()?;
    wait_for("the node Ready again, allocatable restored", Duration::from_secs(180), || {
        Ok((node_resource("allocatable", NET)? == Some(NET_VFS)).then_some(()))
    })?;
    say(format_args!(
        "after the kubelet restart the plugin served its sockets again {:.0} ms after the new kubelet.sock",
        delay * 1e3
    ));
    ensure!(delay <= 1.0, "the device plugin registered again {delay:.2} s after the new kubelet.sock (> 1 s)");
    let keeper = pod("tenant-a", "keeper")?;
    ensure!(keeper["status"]["phase"] == "Running", "keeper stopped across the kubelet restart");
    let (_, env) = container(&keeper)?;
    ensure!(env_value(&env, "PCIDEVICE_VFNET_DEV_SRIOV_NET") == Some(kept.as_str()), "keeper's VF changed");

    // The daemon restarts (its pod deleted): the next pod gets the other VF, not keeper's.
    restart_daemon()?;
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

    // A VfPool deleted: the daemon sends kubelet an empty list before closing the pool's stream,
    // so capacity drops at once. A stream that just closed would leave the devices in capacity,
    // unhealthy, for kubelet's 5-minute endpoint grace period.
    kubectl(&["delete", "vfpool", "sriov-net", "--wait=true"])?;
    wait_for(&format!("Node capacity {NET} = 0 after the VfPool's deletion"), Duration::from_secs(90), || {
        Ok((node_resource("capacity", NET)?.unwrap_or(0) == 0).then_some(()))
    })?;
    apply_objects(&pools(&pf_name(&pf)?)?)?;
    wait_for(&format!("Node allocatable {NET} = {NET_VFS} again"), Duration::from_secs(120), || {
        Ok((node_resource("allocatable", NET)? == Some(NET_VFS)).then_some(()))
    })?;
    Ok(())
}

#[test]
#[ignore = "needs the real Kubernetes node (cargo xtask test)"]
fn e_without_multus_resource_name_finds_the_pods_vf() -> Result<()> {
    let pf = setup()?;
    // The node's only network: vfnet, finding each pod's VF of the pool through kubelet's
    // PodResources (no deviceID: nothing in between passes one).
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "direct-vf",
        "plugins": [{
            "type": "vfnet",
            "resourceName": NET,
            "profile": "tenant-a",
            "ipam": {"type": "host-local", "subnet": "10.56.102.0/24"}
        }]
    });
    let guard = DirectCni::install(&conflist)?;
    let mut pod = vf_pod("tenant-a", "direct", "")?;
    if let Some(annotations) = pod["metadata"].as_object_mut() {
        annotations.remove("annotations");
    }
    apply_objects(&[pod])?;
    let direct = wait_running("tenant-a", "direct")?;
    let (pid, env) = container(&direct)?;
    let pci: PciAddress = env_value(&env, "PCIDEVICE_VFNET_DEV_SRIOV_NET").context("no PCIDEVICE")?.parse()?;
    let ifaces = interfaces(pid)?;
    ensure!(ifaces.iter().any(|i| i == "eth0"), "the pod has no eth0: {ifaces:?}");
    let snap = vfnet_e2e::cni::snapshot(&pf_name(&pf)?, vf_index(&pf, &pci)?, &pci)?;
    ensure!(snap.netdev.is_none(), "VF {pci} is still in the host namespace: {:?}", snap.netdev);
    ensure!(snap.pf_side.vlan == 100, "VF {pci} is not on VLAN 100: {}", snap.pf_side.vlan);
    say(format_args!("tenant-a/direct without Multus: eth0 = VF {pci} on VLAN 100 (found through PodResources)"));
    delete_pods("tenant-a", &["direct"])?;
    drop(guard);
    wait_for("every VF back untagged", Duration::from_secs(60), || Ok(assert_vfs_untagged(&igb_pf()?).ok()))?;
    Ok(())
}
