//! vfnet's `manifests/examples/` on the test cluster's node, for the real-cluster suite and the
//! demo: applied as users write them, adapted to this node in three documented ways only. The
//! pools select this node's igb PF (its name and 7-VF limit are not the examples' `ens1f0` with
//! 16); the example pods run the test bed's sandbox image (there is no registry to pull
//! `registry.k8s.io/pause` from); and tenant-a's profile loses its `maxTxRateMbps` (the emulated
//! igb has no link speed and refuses any rate with EINVAL, which vfnet rightly reports as a failed
//! ADD; the VM suite proves that refusal). The userspace pool's VFs are bound to vfio-pci by the
//! node administrator's step in [`setup`], as with the reference device plugin. The DRA example
//! (`dra.yaml`, [`setup_dra`]) is adapted the same way: its pools select VFs of this PF, its pod
//! runs the sandbox image.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sriov::PciAddress;
use sriov::sysfs::Pf;

use crate::cluster::{
    apply, container_pid, ensure_installed, environ, get_json, kubectl, node_resource, repo_root, wait_for,
};
use crate::{igb_pf, rebind, say};

/// The netdevice pool's resource.
pub const NET: &str = "vfnet.dev/sriov_net";
/// The userspace (vfio-pci) pool's resource.
pub const DPDK: &str = "vfnet.dev/sriov_dpdk";
/// VFs the adapted pools take from the igb PF: 0-1 netdevice (sriov-net), 2-3 vfio (sriov-dpdk).
pub const NUM_VFS: u32 = 4;
/// VFs in the netdevice pool.
pub const NET_VFS: u64 = 2;
/// VFs in the userspace pool.
pub const DPDK_VFS: u64 = 2;
/// How long a pod may take to run (TCG: sandbox, Multus, vfnet, the container).
pub const POD_TIMEOUT: Duration = Duration::from_secs(240);

/// An example file as JSON objects (kubectl parses the YAML: one parser, the real one).
pub fn example(file: &str) -> Result<Vec<Value>> {
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

/// `kubectl apply` of `objects` (as one List), echoing what kubectl did.
pub fn apply_objects(objects: &[Value]) -> Result<()> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let out = apply(&list.to_string())?;
    for line in out.lines() {
        say(format_args!("  {line}"));
    }
    Ok(())
}

/// The PF's netdev name.
pub fn pf_name(pf: &Pf) -> Result<String> {
    pf.netdev.clone().context("the igb PF has no netdev")
}

/// The example pools, selecting this node's igb PF.
pub fn pools(pf: &str) -> Result<Vec<Value>> {
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

/// The example profiles, without tenant-a's rate (see the module doc).
pub fn profiles() -> Result<Vec<Value>> {
    let mut profiles = example("profiles.yaml")?;
    for p in &mut profiles {
        if let Some(spec) = p["spec"].as_object_mut() {
            spec.remove("maxTxRateMbps");
        }
    }
    Ok(profiles)
}

/// The test bed's sandbox image (imported into the node's containerd).
pub fn sandbox_image() -> Result<String> {
    std::env::var("VFNET_SANDBOX_IMAGE").context("$VFNET_SANDBOX_IMAGE is not set (the harness sets it)")
}

/// The example pods, running the sandbox image.
pub fn example_pods() -> Result<Vec<Value>> {
    let image = sandbox_image()?;
    let mut pods = example("pods.yaml")?;
    for pod in &mut pods {
        for c in pod["spec"]["containers"].as_array_mut().into_iter().flatten() {
            c["image"] = json!(image);
        }
    }
    Ok(pods)
}

/// The DRA example's pools (`manifests/examples/dra.yaml`).
pub const DRA_POOLS: [&str; 2] = ["dra-physnet1", "dra-physnet2"];

/// The DRA example's objects for this node: its pools on this PF (dra-physnet1 VF 0, dra-physnet2
/// VFs 1, 4 and 5, which exist only with 6 VFs; numVfs 4), and its pod on the sandbox image. The
/// rest (profile, DeviceClasses, template, network) as written.
pub fn dra_objects(pf: &str) -> Result<Vec<Value>> {
    let image = sandbox_image()?;
    let mut objects = example("dra.yaml")?;
    for o in &mut objects {
        match (o["kind"].as_str(), o["metadata"]["name"].as_str()) {
            (Some("VfPool"), Some("dra-physnet1")) => {
                o["spec"]["selector"]["pfNames"] = json!([format!("{pf}#0")]);
                o["spec"]["numVfs"] = json!(NUM_VFS);
            }
            (Some("VfPool"), Some("dra-physnet2")) => o["spec"]["selector"]["pfNames"] = json!([format!("{pf}#1,4-5")]),
            (Some("VfPool"), other) => bail!("unexpected DRA example pool {other:?}"),
            (Some("Pod"), _) => {
                for c in o["spec"]["containers"].as_array_mut().into_iter().flatten() {
                    c["image"] = json!(image);
                }
            }
            _ => {}
        }
    }
    Ok(objects)
}

/// Deletes every tenant pod (each scenario starts with none, whatever an earlier one left after
/// failing) and the DRA example's pools (they would take the device-plugin pools' VFs).
fn clean_slate() -> Result<()> {
    for ns in ["tenant-a", "tenant-b"] {
        if crate::api::exists(&["namespace", ns])? {
            kubectl(&["-n", ns, "delete", "pods", "--all", "--wait=true", "--timeout=180s"])?;
        }
    }
    let mut args = vec!["delete", "vfpool", "--ignore-not-found", "--wait=true"];
    args.extend(DRA_POOLS);
    kubectl(&args)?;
    Ok(())
}

/// Waits for the igb PF to have its `NUM_VFS` VFs, with the userspace pool's (2-3) on vfio-pci and
/// the others on igbvf.
fn vfs_ready(name: &str) -> Result<Pf> {
    let pf = wait_for(&format!("{NUM_VFS} VFs on {name}"), Duration::from_secs(120), || {
        let pf = igb_pf()?;
        Ok((pf.vfs.len() == NUM_VFS as usize).then_some(pf))
    })?;
    for vf in &pf.vfs {
        let want = if (2..4).contains(&vf.index) { Some("vfio-pci") } else { None };
        let is_vfio = vf.driver.as_deref() == Some("vfio-pci");
        if want.is_some() != is_vfio {
            rebind(&vf.pci, want)?;
        }
    }
    Ok(pf)
}

/// The DRA scenarios' node: vfnet installed, the example namespaces and profiles, the userspace
/// device-plugin pool on VFs 2-3 beside the DRA example (VFs 0 and 1; the netdevice device-plugin
/// pool removed, since its VFs are now the DRA pools'); waits for both DRA pools' slices.
pub fn setup_dra() -> Result<Pf> {
    ensure_installed()?;
    clean_slate()?;
    let pf = igb_pf()?;
    let name = pf_name(&pf)?;
    apply_objects(&example("namespaces.yaml")?)?;
    apply_objects(&profiles()?)?;
    kubectl(&["delete", "vfpool", "sriov-net", "--ignore-not-found", "--wait=true"])?;
    let dpdk: Vec<Value> = pools(&name)?.into_iter().filter(|p| p["metadata"]["name"] == "sriov-dpdk").collect();
    apply_objects(&dpdk)?;
    let objects: Vec<Value> = dra_objects(&name)?.into_iter().filter(|o| o["kind"] != "Pod").collect();
    apply_objects(&objects)?;
    vfs_ready(&name)?;
    for pool in DRA_POOLS {
        wait_for(&format!("the ResourceSlice of {pool} with 1 healthy device"), Duration::from_secs(120), || {
            let devices = dra_devices(pool)?;
            Ok((devices.len() == 1 && devices[0]["attributes"]["healthy"]["bool"] == true).then_some(()))
        })?;
    }
    igb_pf()
}

/// This node's ResourceSlices of DRA pool `pool` (the VfPool's name).
pub fn dra_slices(pool: &str) -> Result<Vec<Value>> {
    let node = crate::cluster::node_name()?;
    let list = get_json(&["resourceslices", "-l", &format!("vfnet.dev/node={node},vfnet.dev/pool={pool}")])?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// The devices of DRA pool `pool` on this node, from its slices (after checking that they are one
/// complete generation).
pub fn dra_devices(pool: &str) -> Result<Vec<Value>> {
    let slices = dra_slices(pool)?;
    let Some(first) = slices.first() else { return Ok(Vec::new()) };
    let generation = &first["spec"]["pool"]["generation"];
    let count = first["spec"]["pool"]["resourceSliceCount"].as_u64().unwrap_or_default();
    if slices.len() as u64 != count || slices.iter().any(|s| &s["spec"]["pool"]["generation"] != generation) {
        return Ok(Vec::new());
    }
    Ok(slices.iter().flat_map(|s| s["spec"]["devices"].as_array().cloned().unwrap_or_default()).collect())
}

/// Installs vfnet, the example namespaces, profiles and pools; waits for the pools' capacity.
pub fn setup() -> Result<Pf> {
    ensure_installed()?;
    clean_slate()?;
    let pf = igb_pf()?;
    let name = pf_name(&pf)?;
    apply_objects(&example("namespaces.yaml")?)?;
    apply_objects(&profiles()?)?;
    apply_objects(&pools(&name)?)?;
    // The daemon creates the pools' VFs; the node administrator binds the userspace pool's VFs
    // to vfio-pci (vfnet, like the reference device plugin, leaves driver binding to the admin).
    vfs_ready(&name)?;
    for (resource, want) in [(NET, NET_VFS), (DPDK, DPDK_VFS)] {
        wait_for(&format!("Node allocatable {resource} = {want}"), Duration::from_secs(120), || {
            Ok((node_resource("allocatable", resource)? == Some(want)
                && node_resource("capacity", resource)? == Some(want))
            .then_some(()))
        })?;
    }
    igb_pf()
}

/// Pod `ns/name` as JSON.
pub fn pod(ns: &str, name: &str) -> Result<Value> {
    get_json(&["-n", ns, "pod", name])
}

/// Waits for pod `ns/name` to run; fails early if it failed, with its events meanwhile.
pub fn wait_running(ns: &str, name: &str) -> Result<Value> {
    wait_for(&format!("pod {ns}/{name} Running"), POD_TIMEOUT, || {
        let p = pod(ns, name)?;
        match p["status"]["phase"].as_str() {
            Some("Running") => Ok(Some(p)),
            Some("Failed") => bail!("pod {ns}/{name} failed: {}", p["status"]),
            _ => Err(anyhow::anyhow!("phase {}; events: {}", p["status"]["phase"], events(ns, name))),
        }
    })
}

/// The pod's events, one line each, `<reason>  <message>` (for failure messages and the 102
/// check); empty if they cannot be read.
pub fn events(ns: &str, name: &str) -> String {
    let selector = format!("involvedObject.name={name}");
    let Ok(Some(list)) = crate::api::get(&["-n", ns, "events", "--field-selector", &selector]) else {
        return String::new();
    };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let message = e["message"].as_str().unwrap_or_default().replace('\n', " ");
            format!("{}  {message}\n", e["reason"].as_str().unwrap_or_default())
        })
        .collect()
}

/// Deletes pods and waits until they are gone.
pub fn delete_pods(ns: &str, names: &[&str]) -> Result<()> {
    let mut args = vec!["-n", ns, "delete", "pod", "--ignore-not-found", "--wait=true", "--timeout=180s"];
    args.extend_from_slice(names);
    kubectl(&args)?;
    Ok(())
}

/// The VF index of `vf` under `pf`.
pub fn vf_index(pf: &Pf, vf: &PciAddress) -> Result<u32> {
    pf.vfs.iter().find(|v| &v.pci == vf).map(|v| v.index).with_context(|| format!("{vf} is not a VF of {}", pf.pci))
}

/// The PF's VF table entry of `vf`: (vlan, qos).
pub fn vf_vlan(pf: &Pf, vf: &PciAddress) -> Result<(u16, u8)> {
    let s = crate::cni::snapshot(&pf_name(pf)?, vf_index(pf, vf)?, vf)?;
    Ok((s.pf_side.vlan, s.pf_side.qos))
}

/// The `k8s.v1.cni.cncf.io/network-status` entry of `interface`.
pub fn network_status(p: &Value, interface: &str) -> Result<Value> {
    let raw = p["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
        .as_str()
        .context("the pod has no network-status annotation")?;
    let all: Vec<Value> = serde_json::from_str(raw)?;
    all.into_iter()
        .find(|s| s["interface"] == interface)
        .with_context(|| format!("network-status lists no {interface}: {raw}"))
}

/// The first container's host pid and environment.
pub fn container(p: &Value) -> Result<(u32, Vec<String>)> {
    let uid = p["metadata"]["uid"].as_str().context("pod without uid")?;
    let id = p["status"]["containerStatuses"][0]["containerID"].as_str().context("no container id")?;
    let pid = container_pid(uid, id)?;
    Ok((pid, environ(pid)?))
}

/// The interface names in process `pid`'s network namespace.
pub fn interfaces(pid: u32) -> Result<Vec<String>> {
    let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))?;
    Ok(dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(|s| s.trim().to_owned()).collect())
}

/// The value of `key` in an environment.
pub fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter().find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Every VF of the pools untagged in the PF's table (vlan 0, qos 0).
pub fn assert_vfs_untagged(pf: &Pf) -> Result<()> {
    for vf in pf.vfs.iter().take(NUM_VFS as usize) {
        let (vlan, qos) = vf_vlan(pf, &vf.pci)?;
        ensure!(vlan == 0 && qos == 0, "VF {} (index {}) is left tagged: vlan {vlan} qos {qos}", vf.pci, vf.index);
    }
    say(format_args!("VFs 0-{} of {} untagged", NUM_VFS - 1, pf.pci));
    Ok(())
}

/// A pod asking one VF of the netdevice pool, attached to `network` (Multus's annotation).
pub fn vf_pod(ns: &str, name: &str, network: &str) -> Result<Value> {
    Ok(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns,
            "annotations": {"k8s.v1.cni.cncf.io/networks": network}},
        "spec": {"containers": [{"name": "c", "image": sandbox_image()?,
            "resources": {"requests": {NET: "1"}, "limits": {NET: "1"}}}]}
    }))
}
