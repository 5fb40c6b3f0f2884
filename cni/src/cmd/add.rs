//! ADD: validate, resolve, lock, journal, apply; roll everything back on any failure.

use serde_json::Value;
use sriov::PciAddress;
use sriov::netlink::LinkOps;
use sriov::netns::NetnsError;

use crate::attach;
use crate::cmd::{Ctx, release, resolve_vf};
use crate::config::VnicType;
use crate::error::{CniError, Code, Result};
use crate::fault;
use crate::host::Host;
use crate::ipam::Ipam;
use crate::journal::{IpamState, Journal};
use crate::lock::{LOCK_WAIT, lock_vf};
use crate::policy;
use crate::result::CniResult;
use crate::timing;
use crate::vf;

/// Runs ADD and returns the result to print.
pub fn add<H: Host>(host: &H, ctx: &Ctx<'_>) -> Result<Value> {
    let (env, conf) = (ctx.env, ctx.conf);
    let container_id = env.container_id.clone().unwrap_or_default();
    let ifname = env.ifname.clone().unwrap_or_default();
    let netns =
        env.netns.clone().ok_or_else(|| CniError::new(Code::InvalidEnvironment, "CNI_NETNS is required for ADD"))?;

    // Everything that can be refused is refused before the VF is touched.
    let profile = policy::load_profile(conf)?;
    let desired = policy::resolve(conf, profile.as_ref(), env.pod_namespace())?;
    let vf_pci = resolve_vf(conf, env)?;
    policy::check_pool(conf, profile.as_ref(), &vf_pci)?;
    timing::mark("profile");
    let sysfs_vf = host.sysfs().vf(&vf_pci)?;
    let pf_name = sysfs_vf.pf_netdev.clone().ok_or_else(|| {
        CniError::new(
            Code::DeviceNotFound,
            format!("PF {} of VF {vf_pci} has no netdev to configure VFs through", sysfs_vf.pf_pci),
        )
    })?;
    let driver = sysfs_vf.driver.clone().unwrap_or_default();
    let userspace_driver = vfnet_types::is_userspace_driver(&driver);
    let vnic = conf.vnic_type.unwrap_or(if userspace_driver { VnicType::Userspace } else { VnicType::Direct });
    match (vnic, userspace_driver) {
        (VnicType::Userspace, false) => {
            return Err(CniError::new(
                Code::WrongDriver,
                format!(
                    "vnicType userspace needs VF {vf_pci} bound to vfio-pci, but it is bound to {}",
                    if driver.is_empty() { "no driver" } else { &driver }
                ),
            ));
        }
        (VnicType::Direct | VnicType::Macvtap, true) => {
            return Err(CniError::new(
                Code::WrongDriver,
                format!(
                    "vnicType {} needs a VF netdev, but VF {vf_pci} is bound to {driver}",
                    if vnic == VnicType::Direct { "direct" } else { "macvtap" }
                ),
            ));
        }
        _ => {}
    }
    timing::mark("sysfs");
    let pod = host.open_ns(&netns)?;
    let pod_links = host.links(&pod)?;
    if vnic != VnicType::Userspace && pod_links.link_by_name(&ifname).is_ok() {
        return Err(CniError::new(
            Code::InterfaceExists,
            format!("interface {ifname} already exists in {}", netns.display()),
        ));
    }
    let mut ipam = match &conf.ipam_type {
        Some(t) => Some(Ipam::new(t, &env.path, &ctx.ipam_config(), conf.ipam_timeout)?),
        None => None,
    };

    timing::mark("pod-ns");
    let _lock = lock_vf(&conf.run_dir, &vf_pci, LOCK_WAIT)?;
    reclaim_if_stale(host, ctx, &vf_pci, &container_id, &ifname)?;
    timing::mark("lock");

    let host_links = host.links(&host.host_ns()?)?;
    // The PF and its VF table in one request.
    let pf = host_links.pf_with_vfs(&pf_name)?;
    let pf_index = pf.index;
    let original = vf::of(pf.vfs, &pf_name, sysfs_vf.index)?;
    let netdev = match vnic {
        VnicType::Userspace => None,
        _ => Some(attach::host_netdev(host, &vf_pci, sysfs_vf.netdev.as_deref())?),
    };
    timing::mark("vf-state");
    let mut journal = Journal {
        container_id,
        ifname,
        netns: Some(netns.clone()),
        network: conf.name.clone(),
        vf: vf_pci,
        pf: sysfs_vf.pf_pci,
        pf_name,
        vf_index: sysfs_vf.index,
        vnic_type: vnic,
        applied: desired.pf_settings(&original),
        original,
        netdev: netdev.as_ref().map(|(_, s)| s.clone()),
        mac: desired.mac,
        mtu: desired.mtu,
        ipam: ipam.as_ref().map(|i| IpamState { plugin: i.plugin.clone(), config: i.config.clone() }),
        device_info_file: conf.device_info_file.clone(),
        complete: false,
        result: None,
    };
    journal.store(&conf.state_dir)?;
    timing::mark("journal");
    tracing::debug!("journal written");
    fault::point("journaled");
    tracing::info!(vf = %vf_pci, pf = %journal.pf_name, index = journal.vf_index, vnic = ?vnic, "attaching VF");

    let attached = attach_all(host, ctx, &mut journal, pf_index, &pod, netdev.map(|(l, _)| l), ipam.as_mut());
    match attached {
        Ok(result) => {
            fault::point("complete");
            Ok(result.render(conf.cni_version))
        }
        Err(e) => {
            tracing::warn!(%e, vf = %vf_pci, "ADD failed; rolling back");
            let errors = release(host, ctx, &journal);
            if errors.is_empty() {
                Journal::remove(&conf.state_dir, &vf_pci)?;
                Err(e)
            } else {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                Err(e.details(format!(
                    "rollback incomplete, journal {} kept for DEL: {}",
                    conf.state_dir.journal(&vf_pci).display(),
                    list.join("; ")
                )))
            }
        }
    }
}

/// Frees the VF from a journal of another attachment whose pod namespace is gone (or of an
/// earlier ADD of this same attachment that was never deleted). A live owner makes the VF busy.
fn reclaim_if_stale<H: Host>(host: &H, ctx: &Ctx<'_>, vf: &PciAddress, container_id: &str, ifname: &str) -> Result<()> {
    let Some(old) = Journal::load(&ctx.conf.state_dir, vf)? else { return Ok(()) };
    // Only a namespace that is gone frees the VF: another failure to open it (EMFILE, EACCES, ...)
    // says nothing about its pod.
    let alive = !old.is(container_id, ifname)
        && old.netns.as_ref().is_some_and(|p| {
            !matches!(host.open_ns(p), Err(NetnsError::Gone { .. } | NetnsError::NotNamespace { .. }))
        });
    if alive {
        return Err(CniError::new(
            Code::VfBusy,
            format!(
                "VF {vf} is attached to container {} as {} (namespace {})",
                old.container_id,
                old.ifname,
                old.netns.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
            ),
        ));
    }
    tracing::info!(vf = %vf, owner = %old.container_id, "reclaiming VF from an attachment whose namespace is gone");
    let errors = release(host, ctx, &old);
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(CniError::new(
            Code::RestoreFailed,
            format!("cannot reclaim VF {vf} from container {}", old.container_id),
        )
        .details(list.join("; ")));
    }
    Journal::remove(&ctx.conf.state_dir, vf)
}

fn attach_all<H: Host>(
    host: &H,
    ctx: &Ctx<'_>,
    j: &mut Journal,
    pf_index: u32,
    pod: &H::Ns,
    host_link: Option<sriov::netlink::Link>,
    ipam: Option<&mut Ipam>,
) -> Result<CniResult> {
    let conf = ctx.conf;
    let host_links = host.links(&host.host_ns()?)?;
    let mut n = 0;
    vf::apply(&host_links, pf_index, j.vf_index, &j.applied.clone(), |_| {
        n += 1;
        if n == 1 {
            fault::point("pf-partial");
        }
    })?;
    timing::mark("pf-settings");
    tracing::debug!("PF-side settings applied");
    fault::point("pf-configured");

    let pod_index = match (j.vnic_type, &host_link) {
        (VnicType::Direct, Some(link)) => Some(attach::move_into_pod(host, link, &j.vf, pod, j)?),
        (VnicType::Macvtap, Some(link)) => Some(attach::macvtap_into_pod(host, link.index, pod, j, conf.macvtap_mode)?),
        _ => None,
    };
    fault::point("netdev-configured");

    // In a chain, an earlier plugin's result comes as prevResult: vfnet's interface and
    // addresses are added to it (spec: "pass it through or modify it").
    let prev = match &conf.prev_result {
        Some(p) => CniResult::parse(p, "prevResult")?,
        None => CniResult::default(),
    };
    let own_index = prev.interfaces.len();
    let mut result = CniResult::default();
    if let Some(ipam) = ipam {
        let out = ipam.add(ctx.env)?;
        timing::mark("ipam");
        tracing::debug!("IPAM ADD done");
        j.ipam = Some(IpamState { plugin: ipam.plugin.clone(), config: ipam.config.clone() });
        fault::point("ipam-added");
        let parsed = CniResult::parse(&out, &format!("IPAM plugin {}", ipam.plugin))?;
        if parsed.ips.is_empty() {
            return Err(CniError::new(Code::Ipam, format!("IPAM plugin {} returned no IP configuration", ipam.plugin)));
        }
        result.ips = parsed
            .ips
            .into_iter()
            .map(|mut ip| {
                ip.interface = Some(own_index);
                ip
            })
            .collect();
        result.routes = parsed.routes;
        result.dns = parsed.dns;
    }
    let link = match pod_index {
        Some(index) => {
            if result.ips.is_empty() {
                attach::up(host, pod, index)?;
            } else {
                attach::configure_ips(host, pod, index, &j.ifname, &result)?;
            }
            let link = host.links(pod)?.link_by_index(index)?;
            timing::mark("addresses+up");
            Some(link)
        }
        None => None,
    };
    let sandbox = j.netns.as_ref().map(|p| p.display().to_string());
    result.interfaces = vec![attach::interface(j, link.as_ref(), sandbox)];
    let result = CniResult {
        interfaces: prev.interfaces.into_iter().chain(result.interfaces).collect(),
        ips: prev.ips.into_iter().chain(result.ips).collect(),
        routes: prev.routes.into_iter().chain(result.routes).collect(),
        dns: result.dns.or(prev.dns),
    };
    if let Some(path) = &j.device_info_file {
        write_device_info(path, &j.vf, &j.pf)?;
        fault::point("device-info");
    }
    j.complete = true;
    j.result = Some(result.clone());
    j.update(&conf.state_dir)?;
    timing::mark("journal-complete");
    Ok(result)
}

/// Writes the device-info file (device-info spec 1.1.0) Multus passes to the pod.
fn write_device_info(path: &std::path::Path, vf: &PciAddress, pf: &PciAddress) -> Result<()> {
    let info = serde_json::json!({
        "type": "pci",
        "version": "1.1.0",
        "pci": {"pci-address": vf.to_string(), "pf-pci-address": pf.to_string()}
    });
    Ok(sriov::persist::write_json(path, &info)?)
}
