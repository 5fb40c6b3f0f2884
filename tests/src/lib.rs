//! Helpers for vfnet's end-to-end tests. The tests themselves are `#[ignore]`d libtest tests
//! that `cargo xtask test` runs inside the emulated-igb VM (`--ignored --test-threads=1`): they
//! need a real SR-IOV PF and root. They print `vfnet-vm: ...` lines naming the PF and VFs they
//! used; the harness echoes those lines to the host.

// A library crate: every public item says why it is there (`cargo xtask test` denies warnings).
#![warn(missing_docs)]
#![allow(clippy::print_stdout)]

use std::time::Duration;

use anyhow::{Context, Result, bail};
use sriov::netlink::{LinkOps, Netlink};
use sriov::sysfs::{Pf, Sysfs};

/// How long VF creation may take under TCG emulation (seen: a few seconds).
pub const VF_TIMEOUT: Duration = Duration::from_secs(90);

/// Says something the harness shows on the host.
pub fn say(msg: impl std::fmt::Display) {
    println!("vfnet-vm: {msg}");
}

/// The node's sysfs.
pub fn sysfs() -> Sysfs {
    Sysfs::default()
}

/// The emulated 82576 PF (driver igb). Fails if there is none: outside the VM, or igb missing.
pub fn igb_pf() -> Result<Pf> {
    let node = sysfs().discover().context("SR-IOV discovery")?;
    let mut igb = node.pfs.into_iter().filter(|pf| pf.driver.as_deref() == Some("igb"));
    match (igb.next(), igb.next()) {
        (Some(pf), None) => Ok(pf),
        (None, _) => bail!("no igb PF found: these tests run inside the emulated-igb VM (cargo xtask test)"),
        (Some(a), Some(b)) => bail!("expected one igb PF, found {} and {}", a.pci, b.pci),
    }
}

/// Makes the igb PF have exactly `n` VFs, bound to igbvf with their netdevs, and returns it.
pub fn igb_pf_with_vfs(n: u32) -> Result<Pf> {
    let pf = igb_pf()?;
    if pf.num_vfs == n && pf.vfs.iter().all(|v| v.driver.as_deref() == Some("igbvf") && v.netdev.is_some()) {
        return Ok(pf);
    }
    let sysfs = sysfs();
    sysfs.set_num_vfs(&pf.pci, n)?;
    let pf = sysfs.wait_for_vfs(&pf.pci, n, true, VF_TIMEOUT)?;
    let vfs: Vec<String> = pf.vfs.iter().map(|v| format!("{}={}", v.pci, v.netdev.as_deref().unwrap_or("-"))).collect();
    say(format_args!("PF {} ({}) has {n} VFs: {}", pf.pci, pf.netdev.as_deref().unwrap_or("-"), vfs.join(" ")));
    Ok(pf)
}

/// Rebinds VF `vf` to `driver` (`None`: its default, igbvf) through `driver_override` and the
/// kernel's driver probe, as a node administrator does.
pub fn rebind(vf: &sriov::PciAddress, driver: Option<&str>) -> Result<()> {
    let dev = std::path::PathBuf::from(format!("/sys/bus/pci/devices/{vf}"));
    std::fs::write(dev.join("driver_override"), driver.unwrap_or("\n")).context("driver_override")?;
    if dev.join("driver").exists() {
        std::fs::write(dev.join("driver/unbind"), vf.to_string()).context("unbind")?;
    }
    std::fs::write("/sys/bus/pci/drivers_probe", vf.to_string()).context("drivers_probe")?;
    Ok(())
}

/// The PF's netlink index, through a host-namespace socket.
pub fn pf_index(nl: &Netlink, pf: &Pf) -> Result<u32> {
    let name = pf.netdev.as_deref().context("the igb PF has no netdev")?;
    Ok(nl.link_by_name(name)?.index)
}

pub mod api;
pub mod cluster;
pub mod cni;
pub mod examples;
pub mod netns;
pub mod node_files;
