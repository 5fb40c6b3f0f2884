//! Which VF belongs to which pool, and in what health: computed from a [`NodeView`] and the
//! pools, as a pure function, on every scan.
//!
//! A VF belongs to the first pool (in file order) that selects it; a VF that more pools select is
//! reported as an overlap. A VF whose own netdev carries the node's default route is never
//! advertised (PFs are never advertised at all: pools hand out VFs only).

use std::sync::Arc;

use sriov::PciAddress;
use sriov::sysfs::PciId;

use crate::health::{self, Health};
use crate::node::NodeView;
use crate::pools::Pool;
use crate::selector::Candidate;

/// A VF as a pool advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The VF; its display form is the kubelet device ID.
    pub pci: PciAddress,
    /// Its PF.
    pub pf: PciAddress,
    /// The PF's netdev.
    pub pf_netdev: Option<String>,
    /// Index under the PF.
    pub vf_index: u32,
    /// The VF's PCI vendor id.
    pub vendor: PciId,
    /// The VF's PCI device id (not the PF's).
    pub device: PciId,
    /// Bound driver.
    pub driver: Option<String>,
    /// IOMMU group (`/dev/vfio/<group>`).
    pub iommu_group: Option<u32>,
    /// NUMA node.
    pub numa_node: Option<u32>,
    /// The link type the selector saw (`ether`, `infiniband`): the VF netdev's, or else its PF's.
    /// `None` when the scan read no link types ([`crate::node::scan`] reads them only when asked)
    /// or neither has a netdev.
    pub link_type: Option<String>,
    /// The PCIe root complex above the VF (`pci0000:00`), when sysfs tells.
    pub pcie_root: Option<String>,
    /// Health, with the reason.
    pub health: Health,
}

/// A pool's devices, in PCI address order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolDevices {
    /// The devices.
    pub devices: Vec<Device>,
}

impl PoolDevices {
    /// The device with kubelet ID `id`.
    pub fn get(&self, id: &str) -> Option<&Device> {
        let pci: PciAddress = id.parse().ok()?;
        self.devices.binary_search_by(|d| d.pci.cmp(&pci)).ok().map(|i| &self.devices[i])
    }

    /// How many are healthy.
    pub fn healthy(&self) -> usize {
        self.devices.iter().filter(|d| d.health.is_healthy()).count()
    }
}

/// A VF that more than one pool selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The VF.
    pub vf: PciAddress,
    /// The pool that got it (the first).
    pub owner: String,
    /// Another pool that selects it.
    pub other: String,
}

/// The assignment of the node's VFs to pools.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inventory {
    /// Devices per pool, in the order of the pools given.
    pub pools: Vec<PoolDevices>,
    /// VFs selected by more than one pool.
    pub overlaps: Vec<Overlap>,
    /// VFs left out, and why.
    pub excluded: Vec<(PciAddress, String)>,
}

/// Assigns the VFs of `view` to `pools`.
pub fn build(pools: &[Arc<Pool>], view: &NodeView) -> Inventory {
    let mut inv = Inventory { pools: vec![PoolDevices::default(); pools.len()], ..Inventory::default() };
    for pf in &view.node.pfs {
        let pf_type = pf.netdev.as_ref().and_then(|n| view.link_types.get(n));
        for vf in &pf.vfs {
            if let Some(netdev) = vf.netdev.as_ref().filter(|n| view.default_route.contains(*n)) {
                inv.excluded.push((vf.pci, format!("its netdev {netdev} carries the node's default route")));
                continue;
            }
            let link_type = vf.netdev.as_ref().and_then(|n| view.link_types.get(n)).or(pf_type).map(String::as_str);
            let candidate = Candidate { vf, pf, link_type };
            let mut owner: Option<usize> = None;
            for (i, pool) in pools.iter().enumerate() {
                if !pool.selector.matches(&candidate) {
                    continue;
                }
                match owner {
                    None => owner = Some(i),
                    Some(o) => inv.overlaps.push(Overlap {
                        vf: vf.pci,
                        owner: pools[o].name.clone(),
                        other: pool.name.clone(),
                    }),
                }
            }
            if let Some(i) = owner {
                inv.pools[i].devices.push(Device {
                    pci: vf.pci,
                    pf: pf.pci,
                    pf_netdev: pf.netdev.clone(),
                    vf_index: vf.index,
                    vendor: vf.vendor,
                    device: vf.device,
                    driver: vf.driver.clone(),
                    iommu_group: vf.iommu_group,
                    numa_node: vf.numa_node,
                    link_type: link_type.map(str::to_owned),
                    pcie_root: vf.pcie_root.clone(),
                    health: health::check(pools[i].spec.device_type, pf, vf),
                });
            }
        }
    }
    for pool in &mut inv.pools {
        pool.devices.sort_by_key(|d| d.pci);
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{node, pools};
    use sriov::fixture::{FixtureBuilder, PfSpec};
    use std::path::Path;

    #[test]
    fn first_pool_wins_and_overlaps_are_reported() {
        let f = FixtureBuilder::new()
            .pf(PfSpec::igb("0000:01:00.0".parse().unwrap(), "eth0").vfs(7, 4))
            .pf(PfSpec::igb("0000:03:00.0".parse().unwrap(), "eth1").vfs(7, 2))
            .build()
            .unwrap();
        let pools = pools::parse(
            "- metadata: {name: a}\n  spec: {resourceName: a, selector: {pfNames: ['eth0#0-1']}}\n\
             - metadata: {name: b}\n  spec: {resourceName: b, selector: {vendors: ['8086']}}\n",
            Path::new("p"),
            "vfnet.dev",
        )
        .unwrap();
        let mut view = node::scan(&f.sysfs(), false).unwrap();
        let inv = build(&pools, &view);
        assert_eq!(inv.pools[0].devices.len(), 2);
        assert_eq!(inv.pools[1].devices.len(), 4);
        assert_eq!(inv.overlaps.len(), 2);
        assert_eq!((inv.overlaps[0].owner.as_str(), inv.overlaps[0].other.as_str()), ("a", "b"));
        let d = &inv.pools[0].devices[1];
        assert_eq!((d.vendor.to_string(), d.device.to_string()), ("8086".to_owned(), "10ca".to_owned()));
        assert_eq!((d.link_type.as_deref(), d.pcie_root.as_deref()), (None, Some("pci0000:00")));
        let id = d.pci.to_string();
        assert_eq!(inv.pools[0].get(&id).map(|d| d.vf_index), Some(1));
        assert!(inv.pools[0].get("nonsense").is_none());
        // With link types read, the device carries the one the selector saw.
        let typed = build(&pools, &node::scan(&f.sysfs(), true).unwrap());
        assert_eq!(typed.pools[0].devices[1].link_type.as_deref(), Some("ether"));

        // A VF netdev carrying the default route is left out.
        let vf3 = view.node.pfs[0].vfs[3].netdev.clone().unwrap();
        view.default_route.insert(vf3);
        let inv = build(&pools, &view);
        assert_eq!(inv.pools[1].devices.len(), 3);
        assert_eq!(inv.excluded.len(), 1);
    }
}
