//! A VF from a DRA claim: with no `deviceID` (Multus passes none for a claim) and no
//! `resourceName`, ADD asks the node daemon, the `vfnet.dev` DRA driver, which VFs it prepared for
//! the pod (by `K8S_POD_NAMESPACE`, `K8S_POD_NAME` and, when given, `K8S_POD_UID`).
//!
//! The claim's configuration governs: its VfProfile, vnic type and VLAN choice were merged and
//! checked against the profile when the claim was prepared, and become the attachment's
//! `profile`, `vnicType` and `args.cni.vlan`; a network definition that says otherwise is refused,
//! naming the key and the claim. With several VFs the first one no other interface of the pod
//! holds is taken. After ADD the daemon is told what the interface got, for the claim's device
//! status (KEP-4817); that report is best effort (the pod has its network either way).

use std::time::Duration;

use serde_json::Value;
use vfnet_types::node_socket::{Attachment, DraDevice, PodRef, Request, Response};

use crate::config::{NetConf, VnicType};
use crate::env::Env;
use crate::error::{CniError, Code, Result, bad_config};
use crate::journal::Journal;
use crate::node_socket;

/// How long the daemon gets to answer.
pub const TIMEOUT: Duration = Duration::from_secs(3);

fn contradiction(
    key: &str,
    ours: impl std::fmt::Display,
    claim: &DraDevice,
    theirs: impl std::fmt::Display,
) -> CniError {
    bad_config(
        key,
        format!(
            "the network definition sets {ours} but ResourceClaim {}'s configuration sets {theirs}, and the claim governs",
            claim.claim_name
        ),
    )
}

/// For ADD without `deviceID` and `resourceName`: the pod's prepared claim VF, with the claim's
/// settings put into `conf`; `None` when the daemon prepared nothing for the pod (or none runs).
pub fn claim_for_add(conf: &mut NetConf, env: &Env) -> Result<Option<DraDevice>> {
    if conf.device_id.is_some() || conf.resource_name.is_some() {
        return Ok(None);
    }
    let (Some(namespace), Some(name)) = (env.pod_namespace(), env.pod_name()) else { return Ok(None) };
    let socket = conf.run_dir.daemon_socket();
    if !socket.exists() {
        return Ok(None);
    }
    let pod =
        PodRef { namespace: namespace.to_owned(), name: name.to_owned(), uid: env.args.get("K8S_POD_UID").cloned() };
    let devices = match node_socket::ask(&socket, &Request::DraDevices(pod), TIMEOUT) {
        Ok(Response::DraDevices(d)) => d,
        Ok(Response::Error(e)) => {
            return Err(CniError::new(
                Code::TryAgainLater,
                format!("the node daemon cannot list pod {namespace}/{name}'s claimed VFs: {e}"),
            ));
        }
        Ok(other) => {
            return Err(CniError::new(
                Code::TryAgainLater,
                format!("the node daemon answered {other:?} to a claimed-VF request"),
            ));
        }
        Err(e) => {
            return Err(CniError::new(
                Code::TryAgainLater,
                format!("cannot ask the node daemon for pod {namespace}/{name}'s claimed VFs: {e}"),
            ));
        }
    };
    let container = env.container_id.as_deref().unwrap_or_default();
    let ifname = env.ifname.as_deref().unwrap_or_default();
    let mut chosen = None;
    for d in devices {
        match Journal::load(&conf.state_dir, &d.vf)? {
            Some(j) if j.container_id == container && j.ifname != ifname => continue,
            Some(j) if j.container_id != container => continue,
            _ => {
                chosen = Some(d);
                break;
            }
        }
    }
    let Some(d) = chosen else {
        return Err(CniError::new(
            Code::DeviceNotFound,
            format!(
                "pod {namespace}/{name} has no claimed VF left for interface {ifname}: every one is attached already"
            ),
        ));
    };
    let vnic: VnicType = serde_json::from_value(Value::String(d.vnic_type.clone()))
        .map_err(|e| CniError::new(Code::Decode, format!("vnic type {:?} from the node daemon: {e}", d.vnic_type)))?;
    match (&conf.profile, &d.profile) {
        (Some(ours), Some(theirs)) if ours != theirs => return Err(contradiction("profile", ours, &d, theirs)),
        (Some(ours), None) => return Err(contradiction("profile", ours, &d, "none")),
        _ => conf.profile.clone_from(&d.profile),
    }
    match conf.vnic_type {
        Some(ours) if ours != vnic => return Err(contradiction("vnicType", format!("{ours:?}"), &d, &d.vnic_type)),
        _ => conf.vnic_type = Some(vnic),
    }
    match (conf.pod_vlan, d.vlan) {
        (Some(ours), Some(theirs)) if ours != theirs => return Err(contradiction("args.cni.vlan", ours, &d, theirs)),
        (_, Some(theirs)) => conf.pod_vlan = Some(theirs),
        _ => {}
    }
    conf.device_id = Some(d.vf);
    tracing::info!(claim = %d.claim_name, vf = %d.vf, device = %d.device, "VF from a DRA claim");
    Ok(Some(d))
}

/// Tells the daemon what ADD gave the pod for `device` (from ADD's result), for the claim's
/// status. Failures are logged, not returned.
pub fn report(conf: &NetConf, env: &Env, device: &DraDevice, result: &Value) {
    let ifname = env.ifname.clone();
    let iface = result["interfaces"]
        .as_array()
        .and_then(|all| all.iter().position(|i| i.get("sandbox").is_some() && i["name"].as_str() == ifname.as_deref()));
    let mac = iface.and_then(|i| result["interfaces"][i]["mac"].as_str()).map(str::to_owned);
    let ips = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str().map(str::to_owned))
        .take(16)
        .collect();
    let attachment = Attachment {
        claim: device.claim.clone(),
        pool: device.pool.clone(),
        device: device.device.clone(),
        interface: iface.and(ifname),
        ips,
        mac,
        // The daemon knows the claim's VLAN from the configuration it prepared.
        vlan: None,
    };
    match node_socket::ask(&conf.run_dir.daemon_socket(), &Request::DraAttached(attachment), TIMEOUT) {
        Ok(Response::Done) => tracing::debug!(claim = %device.claim_name, "claim device status reported"),
        Ok(other) => {
            tracing::warn!(claim = %device.claim_name, answer = ?other, "the claim's device status was not recorded")
        }
        Err(e) => tracing::warn!(claim = %device.claim_name, error = %e, "cannot report the claim's device status"),
    }
}
