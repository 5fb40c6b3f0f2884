//! The CNI commands. ADD, DEL, CHECK and GC share [`release`]: the one routine that puts a VF
//! back from its journal, used for ADD's rollback, DEL, GC, and reclaiming a VF whose pod died.

use serde_json::{Map, Value};
use sriov::PciAddress;
use sriov::netlink::LinkOps;

use crate::attach;
use crate::config::NetConf;
use crate::env::{Command, Env};
use crate::error::{CniError, Code, Result};
use crate::host::Host;
use crate::ipam::Ipam;
use crate::journal::{IpamState, Journal};
use crate::timing;
use crate::vf;

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;

/// One invocation's inputs.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The environment.
    pub env: &'a Env,
    /// The configuration.
    pub conf: &'a NetConf,
}

impl Ctx<'_> {
    /// The configuration to hand to IPAM (and keep in the journal): as received, without the
    /// per-call keys.
    pub fn ipam_config(&self) -> Map<String, Value> {
        let mut c = self.conf.raw.clone();
        for key in ["prevResult", "cni.dev/valid-attachments", "cni.dev/attachments"] {
            c.remove(key);
        }
        c
    }
}

/// The VF this attachment uses: `deviceID` (from Multus, the runtime, or a DRA claim: see
/// [`crate::dra`]), else the pod's allocated VF of `resourceName`, asked of kubelet's PodResources
/// API.
pub fn resolve_vf(conf: &NetConf, env: &Env) -> Result<PciAddress> {
    if let Some(vf) = conf.device_id {
        return Ok(vf);
    }
    match &conf.resource_name {
        Some(resource) => crate::podresources::allocated_vf(env, resource, &conf.state_dir, &conf.pod_resources_socket),
        None => Err(CniError::new(
            Code::InvalidConfig,
            "invalid deviceID: missing (set deviceID, or resourceName to look the VF up through kubelet's PodResources API; and the node daemon prepared no DRA claim VF for this pod)",
        )),
    }
}

/// Runs IPAM `command` for the attachment a journal describes.
fn ipam_for(ctx: &Ctx<'_>, j: &Journal, ipam: &IpamState, command: Command) -> Result<Option<Value>> {
    let env = Env {
        container_id: Some(j.container_id.clone()),
        netns: j.netns.clone(),
        ifname: Some(j.ifname.clone()),
        args: ctx.env.args.clone(),
        path: ctx.env.path.clone(),
    };
    let mut plugin = Ipam {
        plugin: ipam.plugin.clone(),
        path: crate::ipam::find_plugin(&ipam.plugin, &env.path)?,
        config: ipam.config.clone(),
        timeout: ctx.conf.ipam_timeout,
    };
    plugin.call(command, &env)
}

/// Puts the VF of journal `j` back: device-info file, IPAM addresses, PF-side settings, netdev.
/// Keeps going past failures and returns them all (empty: fully restored).
pub fn release<H: Host>(host: &H, ctx: &Ctx<'_>, j: &Journal) -> Vec<CniError> {
    let mut errors = Vec::new();
    if let Some(path) = &j.device_info_file
        && let Err(e) = sriov::persist::remove(path)
    {
        errors.push(e.into());
    }
    if let Some(ipam) = &j.ipam
        && let Err(e) = ipam_for(ctx, j, ipam, Command::Del)
    {
        errors.push(e);
    }
    timing::mark("ipam");
    match host.host_ns().and_then(|ns| host.links(&ns)) {
        Ok(links) => match links.link_by_name(&j.pf_name) {
            Ok(pf) => errors.extend(vf::restore(&links, pf.index, &j.pf_name, j.vf_index, &j.applied, &j.original)),
            Err(e) => errors.push(CniError::from(e).details(format!("PF of VF {}", j.vf))),
        },
        Err(e) => errors.push(e),
    }
    tracing::debug!("PF-side settings restored");
    timing::mark("pf-restore");
    errors.extend(attach::take_back(host, j));
    for e in &errors {
        tracing::warn!(vf = %j.vf, %e, "restore step failed");
    }
    errors
}

/// Releases a journal's VF under its lock and deletes the journal if that worked.
pub fn release_and_forget<H: Host>(host: &H, ctx: &Ctx<'_>, j: &Journal) -> Result<()> {
    let _lock = crate::lock::lock_vf(&ctx.conf.run_dir, &j.vf, crate::lock::LOCK_WAIT)?;
    // Re-read under the lock: another operation may have reclaimed the VF meanwhile.
    let current = Journal::load(&ctx.conf.state_dir, &j.vf)?;
    timing::mark("lock+journal");
    match current {
        Some(current) if current.is(&j.container_id, &j.ifname) => {
            let errors = release(host, ctx, &current);
            if errors.is_empty() {
                let removed = Journal::remove(&ctx.conf.state_dir, &j.vf);
                timing::mark("journal-remove");
                removed
            } else {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                Err(CniError::new(
                    Code::RestoreFailed,
                    format!(
                        "cannot fully restore VF {} of container {} ({}); journal {} kept for a retry",
                        j.vf,
                        j.container_id,
                        j.ifname,
                        ctx.conf.state_dir.journal(&j.vf).display()
                    ),
                )
                .details(list.join("; ")))
            }
        }
        _ => Ok(()),
    }
}

/// IPAM for a configuration without a journal (DEL of an attachment vfnet never recorded).
pub fn ipam_without_journal(ctx: &Ctx<'_>, command: Command) -> Result<()> {
    let Some(plugin) = &ctx.conf.ipam_type else { return Ok(()) };
    Ipam::new(plugin, &ctx.env.path, &ctx.conf.raw, ctx.conf.ipam_timeout)?.call(command, ctx.env).map(|_| ())
}
