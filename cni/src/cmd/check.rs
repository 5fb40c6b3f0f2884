//! CHECK: the pod interface exists with its name, MAC and MTU; the VF's PF-side settings equal
//! what ADD applied; `prevResult`'s addresses are present; IPAM agrees.

use crate::attach;
use crate::cmd::Ctx;
use crate::env::Command;
use crate::error::{CniError, Code, Result};
use crate::host::Host;
use crate::journal::Journal;
use crate::result::CniResult;
use crate::vf;
use sriov::netlink::LinkOps;

/// Runs CHECK.
pub fn check<H: Host>(host: &H, ctx: &Ctx<'_>) -> Result<()> {
    let container_id = ctx.env.container_id.as_deref().unwrap_or_default();
    let ifname = ctx.env.ifname.as_deref().unwrap_or_default();
    let j =
        Journal::find(&ctx.conf.state_dir, ctx.conf.device_id.as_ref(), container_id, ifname)?.ok_or_else(|| {
            CniError::new(
                Code::CheckFailed,
                format!("no vfnet attachment for container {container_id} interface {ifname}"),
            )
        })?;
    if !j.complete {
        return Err(CniError::new(
            Code::CheckFailed,
            format!("ADD of VF {} for container {container_id} never completed", j.vf),
        ));
    }
    let host_links = host.links(&host.host_ns()?)?;
    let pf = host_links.link_by_name(&j.pf_name)?;
    let now = vf::state(&host_links, pf.index, &j.pf_name, j.vf_index)?;
    for s in &j.applied {
        if !vf::shows(s, &now) {
            return Err(CniError::new(
                Code::CheckFailed,
                format!("VF {} ({} VF {}): {} is not {} any more", j.vf, j.pf_name, j.vf_index, s.name(), s.value()),
            ));
        }
    }
    let addresses = match &ctx.conf.prev_result {
        Some(prev) => CniResult::parse(prev, "prevResult")?.ips.into_iter().map(|ip| ip.address).collect(),
        None => Vec::new(),
    };
    if j.netdev.is_some() {
        let netns = ctx
            .env
            .netns
            .as_ref()
            .or(j.netns.as_ref())
            .ok_or_else(|| CniError::new(Code::InvalidEnvironment, "CNI_NETNS is required for CHECK"))?;
        let pod = host.open_ns(netns)?;
        attach::check_pod_interface(host, &pod, &j, &addresses)?;
    }
    if let Some(ipam) = &j.ipam {
        let mut config = ipam.config.clone();
        if let Some(prev) = &ctx.conf.prev_result {
            config.insert("prevResult".into(), prev.clone());
        }
        let mut plugin = crate::ipam::Ipam::new(&ipam.plugin, &ctx.env.path, &config, ctx.conf.ipam_timeout)?;
        plugin.call(Command::Check, ctx.env)?;
    }
    Ok(())
}
