//! Putting the VF (or a macvtap on it) into the pod, and taking it back.
//!
//! Moves go through a private temporary namespace so that names never collide: the VF netdev is
//! renamed to `CNI_IFNAME` where nothing else lives (sriov-cni #111), its altnames are dropped
//! there (kernels add the old name as an altname on rename in some set-ups, and a stale one
//! blocks the next rename: sriov-cni #445), and only then enters the pod. The way back is the
//! same in reverse. If the plugin dies while the VF is in the temporary namespace, the kernel
//! returns the physical netdev to the host namespace, where DEL finds it by PCI address.

use sriov::PciAddress;
use sriov::netlink::{IpPrefix, Link, LinkOps, MacvtapMode, Route};

use crate::config::VnicType;
use crate::error::{CniError, Code, Result};
use crate::fault;
use crate::host::Host;
use crate::journal::{Journal, NetdevState};
use crate::result::{CniResult, Interface};
use crate::timing;

/// The VF netdev as it is in the host namespace now. `sysfs_name` is the netdev sysfs lists
/// under the VF: asked for by name (one request), and taken if its PCI parent is the VF; else
/// (renamed meanwhile, or sysfs lists none) every host link is dumped and searched by PCI address.
pub fn host_netdev<H: Host>(host: &H, vf: &PciAddress, sysfs_name: Option<&str>) -> Result<(Link, NetdevState)> {
    let links = host.links(&host.host_ns()?)?;
    let named = sysfs_name.and_then(|name| links.link_by_name(name).ok()).filter(|l| l.pci() == Some(*vf));
    let link = named.map_or_else(|| links.link_by_pci(vf), Ok).map_err(|_| {
        CniError::new(
            Code::DeviceNotFound,
            format!("VF {vf} has no netdev in the host namespace (attached elsewhere, or bound to a driver without netdevs?)"),
        )
    })?;
    let state = NetdevState {
        name: link.name.clone(),
        mac: link.mac,
        mtu: link.mtu,
        altnames: link.altnames.clone(),
        up: link.up,
    };
    Ok((link, state))
}

/// True if no link in the namespace of `links` uses any of `names` as name or altname.
fn names_free<L: LinkOps>(links: &L, names: &[&str]) -> Result<bool> {
    Ok(!links
        .links()?
        .iter()
        .any(|l| names.contains(&l.name.as_str()) || l.altnames.iter().any(|a| names.contains(&a.as_str()))))
}

/// Moves the VF netdev (`current`: as [`host_netdev`] just read it, under the VF's lock) into
/// `pod` as `ifname`, with MAC and MTU set and link down. Returns its index in the pod.
///
/// When no name of the VF (its name, its altnames, `CNI_IFNAME`) is in use in the pod, the VF
/// moves straight in and is renamed there: the runtime never runs two operations on one pod at a
/// time, so nothing can take a name meanwhile. Otherwise it goes through a private temporary
/// namespace.
pub fn move_into_pod<H: Host>(host: &H, current: &Link, vf: &PciAddress, pod: &H::Ns, j: &Journal) -> Result<u32> {
    let host_ns = host.host_ns()?;
    let host_links = host.links(&host_ns)?;
    let pod_links = host.links(pod)?;
    let index = current.index;
    let mut names: Vec<&str> = vec![current.name.as_str(), j.ifname.as_str()];
    names.extend(current.altnames.iter().map(String::as_str));
    if names_free(&pod_links, &names)? {
        // Renaming needs it down; a VF nobody uses usually is (and each request counts).
        if current.up {
            host_links.set_up(index, false)?;
        }
        host_links.set_netns(index, pod)?;
        timing::mark("move");
        tracing::debug!("VF netdev moved straight into the pod");
        fault::point("moved-to-temp");
        // A failure from here leaves the VF in the pod, where the rollback finds it by PCI.
        let link = pod_links.link_by_pci(vf)?;
        stage(&pod_links, &link, j)?;
        fault::point("moved-to-pod");
        timing::mark("rename/mac/mtu");
        // A rename keeps the index (only a namespace change makes a new one).
        return Ok(link.index);
    }
    let temp = host.temp_ns()?;
    let temp_links = host.links(&temp)?;
    if current.up {
        host_links.set_up(index, false)?;
    }
    host_links.set_netns(index, &temp)?;
    timing::mark("move");
    tracing::debug!("VF netdev moved to the private namespace");
    fault::point("moved-to-temp");
    let staged = (|| -> Result<()> {
        let link = temp_links.link_by_pci(vf)?;
        stage(&temp_links, &link, j)?;
        Ok(temp_links.set_netns(link.index, pod)?)
    })();
    if let Err(e) = staged {
        // Bring the VF back now: left in the temporary namespace, it would return to the host
        // only when the kernel's asynchronous namespace cleanup gets to it, after the rollback
        // has looked for it there.
        if let Ok(link) = temp_links.link_by_pci(vf) {
            let _ = temp_links.set_netns(link.index, &host_ns);
        }
        return Err(e);
    }
    fault::point("moved-to-pod");
    let index = pod_links.link_by_name(&j.ifname)?.index;
    timing::mark("rename/mac/mtu+move");
    Ok(index)
}

/// Renames the VF to `CNI_IFNAME` and sets MAC and MTU, where it now is.
fn stage<L: LinkOps>(links: &L, link: &Link, j: &Journal) -> Result<()> {
    // Altnames first: the kernel counts them, the device's own included, as taken names.
    for alt in &link.altnames {
        links.del_altname(link.index, alt)?;
    }
    links.rename(link.index, &j.ifname)?;
    fault::point("renamed");
    if let Some(mac) = j.mac {
        links.set_mac(link.index, mac)?;
    }
    if let Some(mtu) = j.mtu {
        links.set_mtu(link.index, mtu)?;
    }
    Ok(())
}

/// Creates a macvtap named `ifname` on the VF netdev and moves it into `pod`. The VF stays on
/// the host and must be up.
pub fn macvtap_into_pod<H: Host>(host: &H, vf_index: u32, pod: &H::Ns, j: &Journal, mode: MacvtapMode) -> Result<u32> {
    let host_links = host.links(&host.host_ns()?)?;
    let temp = host.temp_ns()?;
    let temp_links = host.links(&temp)?;
    if let Some(mtu) = j.mtu {
        host_links.set_mtu(vf_index, mtu)?;
    }
    host_links.set_up(vf_index, true)?;
    let tmp_name = macvtap_temp_name(&j.vf);
    host_links.add_macvtap(&tmp_name, vf_index, mode)?;
    let tap = host_links.link_by_name(&tmp_name)?;
    if let Err(e) = host_links.set_netns(tap.index, &temp) {
        let _ = host_links.del_link(tap.index);
        return Err(e.into());
    }
    fault::point("moved-to-temp");
    let tap = temp_links.link_by_name(&tmp_name)?;
    temp_links.rename(tap.index, &j.ifname)?;
    fault::point("renamed");
    if let Some(mac) = j.mac {
        temp_links.set_mac(tap.index, mac)?;
    }
    if let Some(mtu) = j.mtu {
        temp_links.set_mtu(tap.index, mtu)?;
    }
    temp_links.set_netns(tap.index, pod)?;
    fault::point("moved-to-pod");
    Ok(host.links(pod)?.link_by_name(&j.ifname)?.index)
}

/// The host-side name a macvtap has before it moves: unique per VF, so it cannot collide.
fn macvtap_temp_name(vf: &PciAddress) -> String {
    format!("vft{:04x}{:02x}{:02x}{:x}", vf.domain, vf.bus, vf.device, vf.function)
}

/// Configures IPAM's addresses and routes on the pod interface and brings it up: addresses
/// first, then up (with `arp_notify`/`ndisc_notify` set the kernel then announces them with a
/// gratuitous ARP and an unsolicited neighbour advertisement), then routes (which need the link
/// up).
pub fn configure_ips<H: Host>(host: &H, pod: &H::Ns, index: u32, ifname: &str, ipam: &CniResult) -> Result<()> {
    let links = host.links(pod)?;
    for key in [format!("net/ipv4/conf/{ifname}/arp_notify"), format!("net/ipv6/conf/{ifname}/ndisc_notify")] {
        if let Err(e) = host.sysctl(pod, &key, "1") {
            tracing::warn!(%e, "cannot enable announcements");
        }
    }
    timing::mark("announce");
    for ip in &ipam.ips {
        links.add_address(index, ip.address)?;
    }
    fault::point("addresses");
    links.set_up(index, true)?;
    for r in &ipam.routes {
        let route = Route { dst: r.dst, gateway: r.gw, oif: Some(index), metric: r.priority };
        links.add_route(&route).map_err(|e| CniError::from(e).details(format!("route {} via {:?}", r.dst, r.gw)))?;
    }
    Ok(())
}

/// Brings the pod interface up when there is no IPAM.
pub fn up<H: Host>(host: &H, pod: &H::Ns, index: u32) -> Result<()> {
    Ok(host.links(pod)?.set_up(index, true)?)
}

/// The result's interface entry.
pub fn interface(j: &Journal, link: Option<&Link>, sandbox: Option<String>) -> Interface {
    Interface {
        name: j.ifname.clone(),
        mac: link
            .and_then(|l| l.mac)
            .or(j.mac)
            .or(Some(j.original.mac).filter(|m| !m.is_zero()))
            .map(|m| m.to_string()),
        mtu: link.map(|l| l.mtu),
        sandbox,
        pci_id: Some(j.vf.to_string()),
        socket_path: None,
    }
}

/// Takes the VF netdev (or the macvtap) back: wherever it is now (the pod namespace, or the host
/// if the pod namespace is gone or ADD never got it out), it ends in the host namespace under its
/// original name, MAC, MTU, altnames and state. Errors are collected, not fatal.
pub fn take_back<H: Host>(host: &H, j: &Journal) -> Vec<CniError> {
    let mut errors = Vec::new();
    let Some(orig) = &j.netdev else { return errors };
    let pod = j.netns.as_ref().and_then(|p| match host.open_ns(p) {
        Ok(ns) => Some(ns),
        Err(e) => {
            tracing::info!(%e, "pod namespace is gone; looking for the VF in the host namespace");
            None
        }
    });
    let result = match j.vnic_type {
        VnicType::Direct => return_vf(host, j, orig, pod.as_ref()),
        VnicType::Macvtap => remove_macvtap(host, j, orig, pod.as_ref()),
        VnicType::Userspace => Ok(()),
    };
    if let Err(e) = result {
        errors.push(e);
    }
    errors
}

/// How long DEL waits for a VF netdev to come back from a namespace that was deleted.
const RETURN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn return_vf<H: Host>(host: &H, j: &Journal, orig: &NetdevState, pod: Option<&H::Ns>) -> Result<()> {
    let host_ns = host.host_ns()?;
    let host_links = host.links(&host_ns)?;
    if let Some(pod) = pod {
        let pod_links = host.links(pod)?;
        if let Ok(link) = pod_links.link_by_pci(&j.vf) {
            pod_links.set_up(link.index, false)?;
            timing::mark("down");
            tracing::debug!("VF netdev down in the pod");
            let mut names: Vec<&str> = vec![orig.name.as_str()];
            names.extend(orig.altnames.iter().map(String::as_str));
            let others: Vec<&str> =
                names.iter().copied().filter(|n| *n != link.name && !link.altnames.iter().any(|a| a == n)).collect();
            if names_free(&pod_links, &others)? && names_free(&host_links, &names)? {
                // Nothing in the pod or the host uses its names: restore in place, move home.
                restore_netdev(&pod_links, &link, orig)?;
                pod_links.set_netns(link.index, &host_ns)?;
            } else {
                let temp = host.temp_ns()?;
                let temp_links = host.links(&temp)?;
                pod_links.set_netns(link.index, &temp)?;
                let link = temp_links.link_by_pci(&j.vf)?;
                if let Err(e) = restore_netdev(&temp_links, &link, orig) {
                    // Home as it is, so that a retried DEL finds it there at once.
                    let _ = temp_links.set_netns(link.index, &host_ns);
                    return Err(e);
                }
                temp_links.set_netns(link.index, &host_ns)?;
            }
            timing::mark("restore+move-home");
            tracing::debug!("VF netdev restored and back in the host");
            let back = host_links.link_by_pci(&j.vf)?;
            if orig.up {
                host_links.set_up(back.index, true)?;
            }
            timing::mark("up");
            return Ok(());
        }
    }
    // A namespace that just died returns its physical netdevs to the host asynchronously (the
    // kernel's netns cleanup work): give it a moment.
    let start = std::time::Instant::now();
    let link = loop {
        match host_links.link_by_pci(&j.vf) {
            Ok(l) => break l,
            Err(_) if pod.is_none() && start.elapsed() < RETURN_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(_) => {
                return Err(CniError::new(
                    Code::DeviceNotFound,
                    format!("VF {} netdev is neither in the pod namespace nor in the host namespace", j.vf),
                ));
            }
        }
    };
    host_links.set_up(link.index, false)?;
    restore_netdev(&host_links, &link, orig)?;
    if orig.up {
        host_links.set_up(link.index, true)?;
    }
    Ok(())
}

fn restore_netdev<L: LinkOps>(links: &L, link: &Link, orig: &NetdevState) -> Result<()> {
    for alt in &link.altnames {
        if !orig.altnames.contains(alt) {
            links.del_altname(link.index, alt)?;
        }
    }
    if link.name != orig.name {
        links
            .rename(link.index, &orig.name)
            .map_err(|e| CniError::from(e).details(format!("restoring name {}", orig.name)))?;
    }
    if let Some(mac) = orig.mac
        && link.mac != Some(mac)
    {
        links.set_mac(link.index, mac)?;
    }
    if link.mtu != orig.mtu {
        links.set_mtu(link.index, orig.mtu)?;
    }
    for alt in &orig.altnames {
        if !link.altnames.contains(alt) {
            links.add_altname(link.index, alt)?;
        }
    }
    Ok(())
}

fn remove_macvtap<H: Host>(host: &H, j: &Journal, orig: &NetdevState, pod: Option<&H::Ns>) -> Result<()> {
    let host_links = host.links(&host.host_ns()?)?;
    // The macvtap may be in the pod, or still in the host under its temporary name.
    if let Some(pod) = pod {
        let pod_links = host.links(pod)?;
        if let Ok(tap) = pod_links.link_by_name(&j.ifname)
            && tap.kind.as_deref() == Some("macvtap")
        {
            pod_links.del_link(tap.index)?;
        }
    }
    if let Ok(tap) = host_links.link_by_name(&macvtap_temp_name(&j.vf))
        && tap.kind.as_deref() == Some("macvtap")
    {
        host_links.del_link(tap.index)?;
    }
    if let Ok(vf) = host_links.link_by_pci(&j.vf) {
        if vf.mtu != orig.mtu {
            host_links.set_mtu(vf.index, orig.mtu)?;
        }
        if vf.up != orig.up {
            host_links.set_up(vf.index, orig.up)?;
        }
    }
    Ok(())
}

/// Checks the pod interface: present under its name, backed by the VF (or a macvtap), with the
/// MAC and MTU ADD set, up, and holding `addresses`.
pub fn check_pod_interface<H: Host>(host: &H, pod: &H::Ns, j: &Journal, addresses: &[IpPrefix]) -> Result<()> {
    let fail = |what: String| CniError::new(Code::CheckFailed, format!("{} in the pod: {what}", j.ifname));
    let links = host.links(pod)?;
    let link = links.link_by_name(&j.ifname).map_err(|_| fail("interface is missing".into()))?;
    match j.vnic_type {
        VnicType::Direct if link.pci() != Some(j.vf) => return Err(fail(format!("is not VF {}", j.vf))),
        VnicType::Macvtap if link.kind.as_deref() != Some("macvtap") => return Err(fail("is not a macvtap".into())),
        _ => {}
    }
    if let Some(mac) = j.mac
        && link.mac != Some(mac)
    {
        return Err(fail(format!("MAC is {:?}, ADD set {mac}", link.mac.map(|m| m.to_string()))));
    }
    if let Some(mtu) = j.mtu
        && link.mtu != mtu
    {
        return Err(fail(format!("MTU is {}, ADD set {mtu}", link.mtu)));
    }
    if !link.up {
        return Err(fail("is down".into()));
    }
    let present = links.addresses(link.index)?;
    for a in addresses {
        if !present.contains(a) {
            return Err(fail(format!("address {a} is missing")));
        }
    }
    Ok(())
}
