//! The real-cluster suite, DRA: vfnet as the DRA driver `vfnet.dev` on the real node, with the
//! real scheduler's allocator, the real kubelet's DRA manager, containerd's CDI and Multus.
//! One test, in steps that build on each other (each says what it proves).
//!
//! The example and its adaptation to this node: [`vfnet_e2e::examples::dra_objects`].
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sriov::PciAddress;
use sriov::netlink::{LinkOps, Netlink};
use sriov::sysfs::Pf;
use vfnet_e2e::cluster::{DirectCni, get_json, kubectl, restart_daemon, wait_for};
use vfnet_e2e::examples::*;
use vfnet_e2e::{igb_pf, pf_index, say, sysfs};

const CDI_DIR: &str = "/var/run/cdi";
const CHECKPOINT: &str = "/var/lib/vfnet/dra/dra-checkpoint.json";

/// The example pod under another name.
fn dra_pod(name: &str) -> Result<Value> {
    let pf = igb_pf()?;
    let mut pod =
        dra_objects(&pf_name(&pf)?)?.into_iter().find(|o| o["kind"] == "Pod").context("dra.yaml has no pod")?;
    pod["metadata"]["name"] = json!(name);
    Ok(pod)
}

/// The claim generated for pod `ns/name`'s `vf` claim.
fn claim_of(ns: &str, name: &str) -> Result<Value> {
    let p = pod(ns, name)?;
    let claim = p["status"]["resourceClaimStatuses"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == "vf"))
        .and_then(|c| c["resourceClaimName"].as_str())
        .with_context(|| format!("pod {ns}/{name} has no claim yet: {}", p["status"]))?
        .to_owned();
    get_json(&["-n", ns, "resourceclaim", &claim])
}

/// The VF of this PF with index `index`.
fn vf(pf: &Pf, index: u32) -> Result<PciAddress> {
    pf.vfs.iter().find(|v| v.index == index).map(|v| v.pci).with_context(|| format!("no VF {index}"))
}

fn device_name(vf: &PciAddress) -> String {
    format!("vf-{}", vf.to_string().replace([':', '.'], "-"))
}

fn cdi_spec(claim_uid: &str) -> std::path::PathBuf {
    Path::new(CDI_DIR).join(format!("vfnet.dev-{claim_uid}.json"))
}

/// Checks a running claim pod: its VF `index` is net1 on VLAN 112, the claim's allocation names
/// `request`, its device status carries the network data, and the container got the VF.
fn check_running(name: &str, index: u32, request: &str) -> Result<Value> {
    let p = wait_running("tenant-a", name)?;
    let pf = igb_pf()?;
    let vf = vf(&pf, index)?;
    let claim = claim_of("tenant-a", name)?;
    let result = &claim["status"]["allocation"]["devices"]["results"][0];
    ensure!(result["request"] == request, "{name}'s claim was allocated {}, expected request {request}", result);
    ensure!(result["device"] == device_name(&vf).as_str(), "{name}'s claim got {}, expected VF {vf}", result["device"]);
    let (vlan, _) = vf_vlan(&pf, &vf)?;
    ensure!(vlan == 112, "VF {vf} is on VLAN {vlan}, not the claim's 112");
    let (pid, env) = container(&p)?;
    ensure!(interfaces(pid)?.iter().any(|i| i == "net1"), "{name} has no net1");
    let var = "PCIDEVICE_VFNET_DEV_DRA_PHYSNET".to_owned() + if request.ends_with("physnet1") { "1" } else { "2" };
    ensure!(env_value(&env, &var) == Some(vf.to_string().as_str()), "{name}'s environment lacks {var}={vf}");
    let status = wait_for(&format!("{name}'s claim device status"), Duration::from_secs(60), || {
        let c = claim_of("tenant-a", name)?;
        Ok(c["status"]["devices"].as_array().and_then(|d| d.first()).cloned())
    })?;
    let net = &status["networkData"];
    ensure!(net["interfaceName"] == "net1", "device status interface: {status}");
    ensure!(
        net["ips"][0].as_str().is_some_and(|ip| ip.starts_with("10.56.110.") && ip.ends_with("/24")),
        "device status ips: {status}"
    );
    ensure!(net["hardwareAddress"].as_str().is_some_and(|m| m.len() == 17), "device status MAC: {status}");
    ensure!(status["data"]["vfIndex"] == index && status["data"]["vlan"] == 112, "device status data: {status}");
    let uid = claim["metadata"]["uid"].as_str().context("claim uid")?;
    ensure!(cdi_spec(uid).exists(), "no CDI spec {} for {name}'s claim", cdi_spec(uid).display());
    say(format_args!(
        "{name}: claim {} ({request}) -> VF {vf} as net1 on VLAN 112, {var} set, status {} {} {}",
        claim["metadata"]["name"].as_str().unwrap_or_default(),
        net["interfaceName"],
        net["ips"][0],
        net["hardwareAddress"]
    ));
    Ok(claim)
}

/// Deletes pod `name` and waits until its claim is gone (deallocated with the pod) and its VF
/// untagged.
fn delete_and_check_clean(name: &str, claim: &Value, index: u32) -> Result<()> {
    delete_pods("tenant-a", &[name])?;
    let claim_name = claim["metadata"]["name"].as_str().context("claim name")?;
    let uid = claim["metadata"]["uid"].as_str().context("claim uid")?;
    wait_for(&format!("claim {claim_name} deleted"), Duration::from_secs(120), || {
        Ok((!vfnet_e2e::api::exists(&["-n", "tenant-a", "resourceclaim", claim_name])?).then_some(()))
    })?;
    let pf = igb_pf()?;
    let vf = vf(&pf, index)?;
    ensure!(vf_vlan(&pf, &vf)? == (0, 0), "VF {vf} left tagged after {name}");
    ensure!(!cdi_spec(uid).exists(), "CDI spec of {claim_name} left behind");
    let checkpoint = std::fs::read_to_string(CHECKPOINT).unwrap_or_default();
    ensure!(!checkpoint.contains(uid), "the checkpoint still holds {claim_name}");
    say(format_args!(
        "{name} deleted: claim {claim_name} gone, VF {vf} untagged, CDI spec and checkpoint entry removed"
    ));
    Ok(())
}

fn set_pf(pf: &Pf, up: bool) -> Result<()> {
    let nl = Netlink::new()?;
    nl.set_up(pf_index(&nl, pf)?, up)?;
    Ok(())
}

/// The health kubelet shows for pod `name`'s claimed device.
fn kubelet_health(name: &str) -> Result<Option<String>> {
    let p = pod("tenant-a", name)?;
    Ok(p["status"]["containerStatuses"][0]["allocatedResourcesStatus"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("claim:"))))
        .and_then(|s| s["resources"][0]["health"].as_str())
        .map(str::to_owned))
}

fn restart_kubelet() -> Result<()> {
    let script = std::env::var("VFNET_NODE_SCRIPT").context("$VFNET_NODE_SCRIPT")?;
    let out = std::process::Command::new("sh").arg(&script).arg("restart-kubelet").output()?;
    ensure!(out.status.success(), "restart-kubelet failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn set_num_vfs(n: u32) -> Result<()> {
    let pf = igb_pf()?;
    sysfs().set_num_vfs(&pf.pci, 0)?;
    if n > 0 {
        sysfs().set_num_vfs(&pf.pci, n)?;
    }
    Ok(())
}

fn wait_devices(pool: &str, n: usize) -> Result<Vec<Value>> {
    wait_for(&format!("{pool}'s slices listing {n} devices"), Duration::from_secs(120), || {
        let d = dra_devices(pool)?;
        Ok((d.len() == n && !dra_slices(pool)?.is_empty()).then_some(d))
    })
}

#[test]
#[ignore = "needs the real Kubernetes node (cargo xtask test)"]
fn dra_claims_get_governed_vfs_through_the_real_scheduler_and_kubelet() -> Result<()> {
    let pf = setup_dra()?;
    let name = pf_name(&pf)?;

    // Publishing: one pool per node and VfPool, standard and vfnet attributes.
    let d = &dra_devices("dra-physnet1")?[0];
    let vf0 = vf(&pf, 0)?;
    let attrs = &d["attributes"];
    ensure!(d["name"] == device_name(&vf0).as_str(), "dra-physnet1 publishes {}, expected VF {vf0}", d["name"]);
    ensure!(attrs["resource.kubernetes.io/pciBusID"]["string"] == vf0.to_string().as_str(), "pciBusID: {attrs}");
    ensure!(
        attrs["resource.kubernetes.io/pcieRoot"]["string"].as_str().is_some_and(|r| r.starts_with("pci")),
        "pcieRoot: {attrs}"
    );
    ensure!(attrs["pfName"]["string"] == name.as_str() && attrs["vfIndex"]["int"] == 0, "PF attributes: {attrs}");
    ensure!(
        attrs["physicalNetwork"]["string"] == "physnet1" && attrs["driver"]["string"] == "igbvf",
        "attributes: {attrs}"
    );
    let slice = &dra_slices("dra-physnet1")?[0];
    say(format_args!(
        "ResourceSlice {} (pool {}, generation {}): {} with {} attributes",
        slice["metadata"]["name"].as_str().unwrap_or_default(),
        slice["spec"]["pool"]["name"],
        slice["spec"]["pool"]["generation"],
        d["name"],
        attrs.as_object().map_or(0, |a| a.len())
    ));

    // A claim pod runs with its VF on the claim's VLAN, through Multus; its status carries the
    // network data.
    apply_objects(&[dra_pod("dra-web")?])?;
    let web_claim = check_running("dra-web", 0, "vf/physnet1")?;

    // firstAvailable: physnet1 is full, the next claim falls back to physnet2.
    apply_objects(&[dra_pod("dra-web2")?])?;
    let web2_claim = check_running("dra-web2", 1, "vf/physnet2")?;

    // N+1: no VF left on either network: the pod stays Pending, with the scheduler's reason.
    apply_objects(&[dra_pod("dra-web3")?])?;
    let reason = wait_for("dra-web3 unschedulable", Duration::from_secs(120), || {
        let p = pod("tenant-a", "dra-web3")?;
        let cond = p["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled" && c["status"] == "False"))
            .cloned();
        Ok(cond.map(|c| c["message"].as_str().unwrap_or_default().to_owned()))
    })?;
    ensure!(reason.contains("claim"), "dra-web3 Pending for another reason: {reason}");
    ensure!(pod("tenant-a", "dra-web3")?["status"]["phase"] == "Pending", "dra-web3 not Pending");
    say(format_args!("dra-web3 Pending: {reason}"));
    delete_pods("tenant-a", &["dra-web3"])?;

    // Deleting a pod returns its VF clean and deallocates its claim.
    delete_and_check_clean("dra-web2", &web2_claim, 1)?;

    // A namespace the profile does not allow: the claim is allocated (the scheduler knows no
    // profiles) but never prepared; the pod's events carry vfnet's 102 refusal; no VF touched.
    let template = json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
        "metadata": {"name": "vf", "namespace": "tenant-b"},
        "spec": {"spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": "vfnet-physnet2"}}]}}}});
    let mut intruder = dra_pod("dra-intruder")?;
    intruder["metadata"]["namespace"] = json!("tenant-b");
    intruder["metadata"]["annotations"] = json!({});
    apply_objects(&[template, intruder])?;
    let refused = wait_for("dra-intruder's prepare refused", Duration::from_secs(180), || {
        let ev = events("tenant-b", "dra-intruder");
        Ok(ev.contains("may not use VfProfile tenant-a-dra").then_some(ev))
    })?;
    ensure!(refused.contains("vfnet error 102"), "the refusal lacks the 102 code: {refused}");
    let p = pod("tenant-b", "dra-intruder")?;
    ensure!(p["status"]["phase"] == "Pending", "dra-intruder is {}", p["status"]["phase"]);
    let vf1 = vf(&igb_pf()?, 1)?;
    ensure!(vf_vlan(&igb_pf()?, &vf1)? == (0, 0), "the refused claim's VF {vf1} was tagged");
    say(format_args!(
        "dra-intruder (tenant-b) refused: {}",
        refused.lines().find(|l| l.contains("102")).unwrap_or_default().trim()
    ));
    let intruder_claim =
        claim_of("tenant-b", "dra-intruder")?["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    kubectl(&["-n", "tenant-b", "delete", "pod", "dra-intruder", "--wait=true", "--timeout=180s"])?;
    wait_for(&format!("the refused claim {intruder_claim} deleted"), Duration::from_secs(120), || {
        Ok((!vfnet_e2e::api::exists(&["-n", "tenant-b", "resourceclaim", &intruder_claim])?).then_some(()))
    })?;

    // Health: the PF goes down, the VF turns Unhealthy in the slices and in kubelet's pod status;
    // back up, Healthy.
    set_pf(&pf, false)?;
    let down = (|| -> Result<()> {
        wait_for("dra-physnet1's device unhealthy in its slice", Duration::from_secs(60), || {
            Ok(dra_devices("dra-physnet1")?
                .first()
                .is_some_and(|d| d["attributes"]["healthy"]["bool"] == false)
                .then_some(()))
        })?;
        wait_for("kubelet's health of dra-web's VF Unhealthy", Duration::from_secs(120), || {
            Ok((kubelet_health("dra-web")?.as_deref() == Some("Unhealthy")).then_some(()))
        })?;
        Ok(())
    })();
    set_pf(&pf, true)?;
    down?;
    wait_for("kubelet's health of dra-web's VF Healthy again", Duration::from_secs(120), || {
        Ok((kubelet_health("dra-web")?.as_deref() == Some("Healthy")).then_some(()))
    })?;
    wait_for("dra-physnet1's device healthy again in its slice", Duration::from_secs(60), || {
        Ok(dra_devices("dra-physnet1")?
            .first()
            .is_some_and(|d| d["attributes"]["healthy"]["bool"] == true)
            .then_some(()))
    })?;
    say("PF down: dra-web's VF Unhealthy in its slice and in the pod status; PF up: Healthy");

    // Restarts: the daemon restarts with the CDI directory wiped (as by a reboot) and rebuilds
    // dra-web's spec from its checkpoint; kubelet restarts; a new claim pod still starts.
    let uid = web_claim["metadata"]["uid"].as_str().context("claim uid")?.to_owned();
    for entry in std::fs::read_dir(CDI_DIR)? {
        std::fs::remove_file(entry?.path())?;
    }
    restart_daemon()?;
    wait_for("dra-web's CDI spec rewritten", Duration::from_secs(60), || Ok(cdi_spec(&uid).exists().then_some(())))?;
    restart_kubelet()?;
    ensure!(pod("tenant-a", "dra-web")?["status"]["phase"] == "Running", "dra-web stopped across the restarts");
    // kubelet wipes its node's ResourceSlices when it starts; the driver publishes them again.
    for pool in DRA_POOLS {
        wait_devices(pool, 1)?;
    }
    apply_objects(&[dra_pod("dra-web2")?])?;
    let web2_claim = check_running("dra-web2", 1, "vf/physnet2")?;
    say("after the daemon restart (CDI wiped) and the kubelet restart: dra-web kept its VF, dra-web2 started");
    delete_and_check_clean("dra-web2", &web2_claim, 1)?;
    delete_and_check_clean("dra-web", &web_claim, 0)?;

    // Without Multus: vfnet is the node's only network, with no deviceID and no resourceName; it
    // finds the pod's claimed VF from the pod alone, and the claim's configuration governs.
    let conflist = json!({"cniVersion": "1.0.0", "name": "dra-direct", "plugins": [{"type": "vfnet",
        "ipam": {"type": "host-local", "subnet": "10.56.111.0/24"}}]});
    let guard = DirectCni::install(&conflist)?;
    let mut direct = dra_pod("dra-direct")?;
    direct["metadata"]["annotations"] = json!({});
    apply_objects(&[direct])?;
    let p = wait_running("tenant-a", "dra-direct")?;
    let (pid, _) = container(&p)?;
    ensure!(interfaces(pid)?.iter().any(|i| i == "eth0"), "dra-direct has no eth0");
    let direct_claim = claim_of("tenant-a", "dra-direct")?;
    let pf_now = igb_pf()?;
    let vf0 = vf(&pf_now, 0)?;
    ensure!(vf_vlan(&pf_now, &vf0)?.0 == 112, "dra-direct's VF {vf0} is not on VLAN 112");
    let status = wait_for("dra-direct's claim device status", Duration::from_secs(60), || {
        Ok(claim_of("tenant-a", "dra-direct")?["status"]["devices"].as_array().and_then(|d| d.first()).cloned())
    })?;
    ensure!(status["networkData"]["interfaceName"] == "eth0", "dra-direct's device status: {status}");
    say(format_args!("dra-direct without Multus: eth0 = VF {vf0} on VLAN 112, found from the pod's claim"));
    delete_and_check_clean("dra-direct", &direct_claim, 0)?;
    drop(guard);

    // numVfs 4 -> 0 -> 6: the slices follow without a restart (dra-physnet2 selects VFs 1, 4, 5).
    set_num_vfs(0)?;
    wait_devices("dra-physnet1", 0)?;
    wait_devices("dra-physnet2", 0)?;
    set_num_vfs(6)?;
    wait_devices("dra-physnet1", 1)?;
    let six = wait_devices("dra-physnet2", 3)?;
    say(format_args!(
        "numVfs 4 -> 0 -> 6: dra-physnet2 publishes {}",
        six.iter().filter_map(|d| d["name"].as_str()).collect::<Vec<_>>().join(", ")
    ));

    // Back to the suite's node: 4 VFs, no DRA pools.
    let mut args = vec!["delete", "vfpool", "--wait=true"];
    args.extend(DRA_POOLS);
    kubectl(&args)?;
    set_num_vfs(NUM_VFS)?;
    wait_for("the DRA pools' slices deleted", Duration::from_secs(60), || {
        Ok(DRA_POOLS.iter().all(|p| dra_slices(p).is_ok_and(|s| s.is_empty())).then_some(()))
    })?;
    if igb_pf()?.num_vfs != NUM_VFS {
        bail!("the PF did not get its {NUM_VFS} VFs back");
    }
    Ok(())
}
