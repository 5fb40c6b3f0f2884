//! Smoke test of the VM harness itself (`cargo xtask test`): inside the emulated-igb VM an igb PF
//! is bound and offers SR-IOV. If this fails, every other VM test's failure means nothing.
// Printing `vfnet-vm:` lines is how VM tests tell the harness which PF and VFs they used.
#![allow(clippy::print_stdout)]

use std::{fs, io, path::PathBuf};

const IGB_DRIVER: &str = "/sys/bus/pci/drivers/igb";

/// The PCI functions bound to the igb driver (the driver directory also holds `bind`, `module`
/// and the like; the devices are the entries named like a PCI address).
fn igb_pfs() -> io::Result<Vec<PathBuf>> {
    let mut pfs = Vec::new();
    let entries = fs::read_dir(IGB_DRIVER)
        .map_err(|err| io::Error::new(err.kind(), format!("{IGB_DRIVER}: {err} (igb not loaded: not in the VM?)")))?;
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().contains(':') {
            pfs.push(entry.path());
        }
    }
    pfs.sort();
    Ok(pfs)
}

#[test]
#[ignore = "needs the emulated igb VM"]
fn igb_pf_offers_sriov() -> io::Result<()> {
    let pfs = igb_pfs()?;
    assert!(!pfs.is_empty(), "no PCI function bound to {IGB_DRIVER}");
    for pf in pfs {
        let total = fs::read_to_string(pf.join("sriov_totalvfs"))?;
        let total: u32 = total.trim().parse().map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        let name = pf.file_name().unwrap_or_default().to_string_lossy();
        println!("vfnet-vm: PF {name} totalvfs {total}");
        assert!(total >= 1, "PF {name} offers no VFs");
    }
    Ok(())
}
