//! Prints the SR-IOV node model: every PF, its VFs, their drivers and netdevs, and each VF's
//! PF-side settings from the PF's VF info dump. With `--numvfs N`, first enables N VFs (capped
//! at `sriov_totalvfs`) on every PF and waits for them.
//!
//! ```text
//! cargo run -p vfnet-sriov --example node-report -- [--numvfs N] [--json] [--sysfs-root DIR]
//! ```
#![allow(clippy::print_stdout)]

use std::time::Duration;

use sriov::netlink::{LinkOps, Netlink, VfState};
use sriov::sysfs::{Pf, Sysfs};

struct Args {
    numvfs: Option<u32>,
    json: bool,
    root: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { numvfs: None, json: false, root: "/".into() };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--numvfs" => {
                let v = it.next().ok_or("--numvfs needs a number")?;
                args.numvfs = Some(v.parse().map_err(|_| format!("--numvfs: {v:?} is not a number"))?);
            }
            "--json" => args.json = true,
            "--sysfs-root" => args.root = it.next().ok_or("--sysfs-root needs a directory")?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn vf_table(pf: &Pf) -> Vec<VfState> {
    // The VF table lives in the PF's netlink dump (RTEXT_FILTER_VF); sysfs does not have it.
    let Some(name) = &pf.netdev else { return Vec::new() };
    let read = || -> Result<Vec<VfState>, sriov::netlink::NetlinkError> {
        let nl = Netlink::new()?;
        let link = nl.link_by_name(name)?;
        nl.vf_states(link.index)
    };
    read().unwrap_or_else(|e| {
        eprintln!("warning: cannot read the VF table of {name}: {e}");
        Vec::new()
    })
}

fn main() {
    if let Err(e) = run() {
        eprintln!("node-report: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let sysfs = Sysfs::new(&args.root);
    if let Some(n) = args.numvfs {
        for pf in sysfs.discover().map_err(|e| e.to_string())?.pfs {
            let n = n.min(pf.total_vfs);
            sysfs.set_num_vfs(&pf.pci, n).map_err(|e| e.to_string())?;
            let ready = sysfs.wait_for_vfs(&pf.pci, n, false, Duration::from_secs(60)).map_err(|e| e.to_string())?;
            println!("enabled {n} VFs on {} ({})", pf.pci, pf.netdev.as_deref().unwrap_or("no netdev"));
            // VF netdevs appear a moment after the driver binds.
            let with_netdevs = ready.vfs.iter().filter(|v| v.driver.as_deref() != Some("vfio-pci")).count();
            if with_netdevs == ready.vfs.len() {
                sysfs.wait_for_vfs(&pf.pci, n, true, Duration::from_secs(60)).map_err(|e| e.to_string())?;
            }
        }
    }
    let node = sysfs.discover().map_err(|e| e.to_string())?;
    if args.json {
        let report: Vec<_> =
            node.pfs.iter().map(|pf| serde_json::json!({ "pf": pf, "vfTable": vf_table(pf) })).collect();
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        return Ok(());
    }
    if node.pfs.is_empty() {
        println!("no SR-IOV physical functions found under {}", args.root);
    }
    for pf in &node.pfs {
        let link = pf.link.as_ref().map_or("no netdev".to_owned(), |l| {
            format!("link {} carrier {} mtu {}", l.operstate, if l.carrier { "yes" } else { "no" }, l.mtu)
        });
        println!(
            "PF {} {} [{}:{}] driver {} numa {} VFs {}/{} {}",
            pf.pci,
            pf.netdev.as_deref().unwrap_or("-"),
            pf.vendor,
            pf.device,
            pf.driver.as_deref().unwrap_or("-"),
            pf.numa_node.map_or("-".into(), |n| n.to_string()),
            pf.num_vfs,
            pf.total_vfs,
            link
        );
        let table = vf_table(pf);
        println!(
            "  VF  PCI           ID        driver netdev    iommu  MAC               vlan/qos spoofchk trust rate      link"
        );
        for vf in &pf.vfs {
            let st = table.iter().find(|s| s.index == vf.index).cloned().unwrap_or_default();
            println!(
                "  {:<3} {:<13} {:<9} {:<6} {:<9} {:<6} {:<17} {:<8} {:<8} {:<5} {:<9} {}",
                vf.index,
                vf.pci.to_string(),
                format!("{}:{}", vf.vendor, vf.device),
                vf.driver.as_deref().unwrap_or("-"),
                vf.netdev.as_deref().unwrap_or("-"),
                vf.iommu_group.map_or("-".into(), |g| g.to_string()),
                st.mac.to_string(),
                format!("{}/{}", st.vlan, st.qos),
                if st.spoofchk { "on" } else { "off" },
                if st.trust { "on" } else { "off" },
                format!("{}-{}", st.min_tx_rate, st.max_tx_rate),
                st.link_state.map_or("-".into(), |s| s.to_string()),
            );
        }
    }
    for problem in &node.problems {
        println!("skipped: {problem}");
    }
    Ok(())
}
