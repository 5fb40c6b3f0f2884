//! Discovery over fixture sysfs trees laid out like the kernel's, including broken ones.

#![allow(clippy::unwrap_used)] // test helpers panic on broken fixtures by design

use std::fs;
use std::os::unix::fs::symlink;
use std::time::Duration;

use sriov::PciAddress;
use sriov::fixture::{Fixture, FixtureBuilder, PfSpec};
use sriov::sysfs::SysfsError;

fn pci(s: &str) -> PciAddress {
    s.parse().unwrap()
}

/// Two igb PFs as the emulated NIC has them: one with 4 VFs on igbvf, one with 2 VFs on vfio-pci.
fn two_pfs() -> Fixture {
    FixtureBuilder::new()
        .pf(PfSpec::igb(pci("0000:00:09.0"), "eth0").vfs(7, 4))
        .pf(PfSpec::igb(pci("0000:05:00.0"), "eth9").vfs(7, 2).numa(1).vf_driver(Some("vfio-pci")))
        .build()
        .unwrap()
}

#[test]
fn discovers_pfs_and_vfs_with_their_attributes() {
    let fx = two_pfs();
    let node = fx.sysfs().discover().unwrap();
    assert!(node.problems.is_empty(), "{:?}", node.problems);
    assert_eq!(node.pfs.len(), 2);

    let pf = &node.pfs[0];
    assert_eq!(pf.pci, pci("0000:00:09.0"));
    assert_eq!(pf.netdev.as_deref(), Some("eth0"));
    assert_eq!((pf.vendor.to_string(), pf.device.to_string()), ("8086".into(), "10c9".into()));
    assert_eq!(pf.driver.as_deref(), Some("igb"));
    assert_eq!((pf.total_vfs, pf.num_vfs), (7, 4));
    assert_eq!(pf.numa_node, None);
    let link = pf.link.as_ref().unwrap();
    assert_eq!((link.operstate.as_str(), link.carrier, link.mtu), ("up", true, 1500));
    assert_eq!(pf.vfs.iter().map(|v| v.index).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    let vf = &pf.vfs[2];
    assert_eq!(vf.pci, pci("0000:01:00.2"));
    assert_eq!(vf.pf_pci, pf.pci);
    assert_eq!(vf.pf_netdev.as_deref(), Some("eth0"));
    assert_eq!(vf.device.to_string(), "10ca");
    assert_eq!(vf.driver.as_deref(), Some("igbvf"));
    assert_eq!(vf.netdev.as_deref(), Some("eth0v2"));
    assert!(vf.iommu_group.is_some());

    let userspace = &node.pfs[1];
    assert_eq!(userspace.numa_node, Some(1));
    assert!(userspace.vfs.iter().all(|v| v.driver.as_deref() == Some("vfio-pci") && v.netdev.is_none()));
    assert_eq!(node.vfs().count(), 6);
}

#[test]
fn resolves_vf_to_pf_and_index_and_back() {
    let fx = two_pfs();
    let sysfs = fx.sysfs();
    let loc = sysfs.locate_vf(&pci("0000:01:00.3")).unwrap();
    assert_eq!((loc.pf, loc.index, loc.pf_netdev.as_deref()), (pci("0000:00:09.0"), 3, Some("eth0")));
    assert_eq!(sysfs.vf_pci(&loc.pf, loc.index).unwrap(), loc.vf);
    for spec in fx.pfs() {
        for index in 0..spec.num_vfs {
            let vf = sysfs.vf_pci(&spec.pci, index).unwrap();
            assert_eq!(sysfs.locate_vf(&vf).unwrap().index, index);
            assert_eq!(sysfs.vf(&vf).unwrap().pf_pci, spec.pci);
        }
    }
    assert_eq!(sysfs.pf_by_netdev("eth9").unwrap().pci, pci("0000:05:00.0"));
    assert_eq!(sysfs.netdev_pci("eth0v1").unwrap(), pci("0000:01:00.1"));
}

#[test]
fn vf_index_beyond_totalvfs_or_not_enabled_is_refused() {
    let fx = two_pfs();
    let sysfs = fx.sysfs();
    let err = sysfs.vf_pci(&pci("0000:00:09.0"), 7).unwrap_err();
    assert!(matches!(err, SysfsError::VfIndexOutOfRange { index: 7, total_vfs: 7, .. }), "{err}");
    assert_eq!(err.to_string(), "VF index 7 is beyond PF 0000:00:09.0's sriov_totalvfs of 7");
    let err = sysfs.vf_pci(&pci("0000:00:09.0"), 5).unwrap_err();
    assert_eq!(err.to_string(), "PF 0000:00:09.0 has no VF 5: only 4 VFs are enabled (sriov_numvfs)");
    let err = sysfs.set_num_vfs(&pci("0000:00:09.0"), 8).unwrap_err();
    assert_eq!(err.to_string(), "cannot enable 8 VFs on 0000:00:09.0: sriov_totalvfs is 7");
}

#[test]
fn wrong_kind_of_device_is_named() {
    let fx = two_pfs();
    let sysfs = fx.sysfs();
    let err = sysfs.locate_vf(&pci("0000:00:09.0")).unwrap_err();
    assert!(matches!(err, SysfsError::NotAVf { .. }), "{err}");
    assert!(err.to_string().contains("0000:00:09.0/physfn"), "{err}");
    let err = sysfs.pf(&pci("0000:01:00.1")).unwrap_err();
    assert!(matches!(err, SysfsError::NotAPf { .. }), "{err}");
    let missing = pci("0000:07:00.1");
    let err = sysfs.vf(&missing).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("PCI device 0000:07:00.1 does not exist ({})", sysfs.pci_dir(&missing).display())
    );
    let err = sysfs.netdev_pci("nope0").unwrap_err();
    assert!(matches!(err, SysfsError::NoNetdev { .. }), "{err}");
}

#[test]
fn dangling_virtfn_link_is_reported_not_fatal() {
    let fx = two_pfs();
    let vf = pci("0000:01:00.1");
    fs::remove_dir_all(fx.device_dir(&vf)).unwrap();
    let node = fx.sysfs().discover().unwrap();
    // The broken VF is skipped and named; everything else is still found.
    assert_eq!(node.vfs().count(), 5);
    assert_eq!(node.problems.len(), 1);
    let problem = node.problems[0].to_string();
    assert!(problem.contains("dangling link"), "{problem}");
    assert!(problem.contains("0000:01:00.1"), "{problem}");
    // A strict read of that PF fails, naming the link.
    let err = fx.sysfs().pf(&pci("0000:00:09.0")).unwrap_err();
    assert!(matches!(err, SysfsError::Dangling { .. }), "{err}");
}

#[test]
fn dangling_driver_and_missing_physfn_are_errors_naming_the_file() {
    let fx = two_pfs();
    let vf = pci("0000:01:00.0");
    fs::remove_file(fx.device_dir(&vf).join("driver")).unwrap();
    symlink("../../../bus/pci/drivers/gone", fx.device_dir(&vf).join("driver")).unwrap();
    let err = fx.sysfs().vf(&vf).unwrap_err();
    let driver = fx.sysfs().pci_dir(&vf).join("driver");
    assert_eq!(err.to_string(), format!("{} is a dangling link (to ../../../bus/pci/drivers/gone)", driver.display()));

    let vf = pci("0000:01:00.2");
    fs::remove_file(fx.device_dir(&vf).join("physfn")).unwrap();
    let err = fx.sysfs().vf(&vf).unwrap_err();
    assert!(matches!(err, SysfsError::NotAVf { .. }), "{err}");
    let node = fx.sysfs().discover().unwrap();
    assert_eq!(node.problems.len(), 2, "{:?}", node.problems);
}

#[test]
fn malformed_attributes_are_errors_naming_file_and_value() {
    let fx = two_pfs();
    let pf = pci("0000:00:09.0");
    fs::write(fx.device_dir(&pf).join("vendor"), "intel\n").unwrap();
    let err = fx.sysfs().pf(&pf).unwrap_err();
    assert!(
        err.to_string().ends_with("vendor holds \"intel\", which is not a 16-bit hex PCI id such as 0x8086"),
        "{err}"
    );

    fs::remove_file(fx.device_dir(&pf).join("sriov_numvfs")).unwrap();
    let err = fx.sysfs().pf(&pf).unwrap_err();
    assert!(matches!(err, SysfsError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("sriov_numvfs is missing"), "{err}");
    // Discovery keeps the other PF.
    let node = fx.sysfs().discover().unwrap();
    assert_eq!(node.pfs.len(), 1);
    assert_eq!(node.problems.len(), 1);

    let other = pci("0000:05:00.0");
    fs::write(fx.device_dir(&other).join("sriov_totalvfs"), "-3\n").unwrap();
    let err = fx.sysfs().pf(&other).unwrap_err();
    assert!(err.to_string().contains("holds \"-3\", which is not a non-negative integer"), "{err}");
}

#[test]
fn virtfn_link_beyond_totalvfs_is_a_problem() {
    let fx = two_pfs();
    let pf = pci("0000:00:09.0");
    fs::rename(fx.device_dir(&pf).join("virtfn3"), fx.device_dir(&pf).join("virtfn9")).unwrap();
    let node = fx.sysfs().discover().unwrap();
    assert_eq!(node.pfs[0].vfs.len(), 3);
    assert!(node.problems[0].to_string().contains("VF index 9 is beyond"), "{:?}", node.problems);
}

#[test]
fn rebinding_and_link_changes_show_up() {
    let fx = two_pfs();
    let pf = pci("0000:00:09.0");
    fx.rebind_vf(&pf, 1, Some("vfio-pci")).unwrap();
    fx.set_pf_link(&pf, "down", false).unwrap();
    let read = fx.sysfs().pf(&pf).unwrap();
    assert_eq!(read.vfs[1].driver.as_deref(), Some("vfio-pci"));
    assert_eq!(read.vfs[1].netdev, None);
    assert!(!read.link.unwrap().carrier);
    fx.rebind_vf(&pf, 1, None).unwrap();
    assert_eq!(fx.sysfs().pf(&pf).unwrap().vfs[1].driver, None);
}

#[test]
fn numvfs_changes_add_and_remove_vfs() {
    let fx = two_pfs();
    let pf = pci("0000:00:09.0");
    fx.set_num_vfs(&pf, 0).unwrap();
    assert!(fx.sysfs().pf(&pf).unwrap().vfs.is_empty());
    fx.set_num_vfs(&pf, 6).unwrap();
    let read = fx.sysfs().wait_for_vfs(&pf, 6, true, Duration::from_secs(1)).unwrap();
    assert_eq!(read.num_vfs, 6);
    let err = fx.sysfs().wait_for_vfs(&pf, 7, true, Duration::from_millis(100)).unwrap_err();
    assert!(err.to_string().starts_with("timed out after"), "{err}");
    assert!(err.to_string().contains("waiting for 7 VFs of 0000:00:09.0 with netdevs"), "{err}");
}

#[test]
fn set_num_vfs_writes_the_count() {
    let fx = two_pfs();
    let pf = pci("0000:00:09.0");
    fx.sysfs().set_num_vfs(&pf, 4).unwrap();
    fx.sysfs().set_num_vfs(&pf, 2).unwrap();
    assert_eq!(fs::read_to_string(fx.device_dir(&pf).join("sriov_numvfs")).unwrap(), "2");
}

#[test]
fn a_node_of_1024_vfs() {
    let fx = FixtureBuilder::many(4, 1024).build().unwrap();
    let node = fx.sysfs().discover().unwrap();
    assert!(node.problems.is_empty(), "{:?}", node.problems);
    assert_eq!(node.pfs.len(), 4);
    assert_eq!(node.vfs().count(), 1024);
    for pf in &node.pfs {
        assert_eq!(pf.vfs.len(), 256);
        for (i, vf) in pf.vfs.iter().enumerate() {
            assert_eq!(vf.index as usize, i);
            assert_eq!(vf.pf_pci, pf.pci);
        }
    }
    let mut all: Vec<_> = node.vfs().map(|v| v.pci).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1024, "VF addresses must be unique");
}
