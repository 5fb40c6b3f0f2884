//! GetPreferredAllocation: which of the free VFs to give a container.
//!
//! - every `must_include` device comes first;
//! - one NUMA node is preferred: the must-include devices' node if it can supply the rest,
//!   otherwise a node that can supply all of them (for `spread` the one with most free VFs, for
//!   `pack` the one with fewest that still suffice), otherwise any;
//! - then one VF at a time: `spread` takes it from the PF with the fewest VFs in use (counting
//!   those picked so far), `pack` from the PF with the most in use, so one PF fills first. Ties
//!   go to the lower PCI address, and within a PF to the lowest VF index.
//!
//! The answer is advisory: kubelet may allocate something else.

use std::collections::{BTreeMap, HashSet};

use crds::pool::AllocationPolicy;
use sriov::PciAddress;

use crate::inventory::{Device, PoolDevices};

/// The preferred `size` devices among `available`, including all of `must_include`. Unknown and
/// unhealthy IDs are never picked beyond `must_include`.
pub fn preferred(
    pool: &PoolDevices,
    policy: AllocationPolicy,
    available: &[String],
    must_include: &[String],
    size: usize,
) -> Vec<String> {
    let mut chosen: Vec<String> = Vec::with_capacity(size.max(must_include.len()));
    for id in must_include {
        if !chosen.contains(id) {
            chosen.push(id.clone());
        }
    }
    if chosen.len() >= size {
        return chosen;
    }
    let need = size - chosen.len();
    let available_set: HashSet<&str> = available.iter().map(String::as_str).collect();
    let chosen_devices: Vec<&Device> = chosen.iter().filter_map(|id| pool.get(id)).collect();
    let mut candidates: Vec<&Device> = pool
        .devices
        .iter()
        .filter(|d| d.health.is_healthy())
        .filter(|d| {
            let id = d.pci.to_string();
            available_set.contains(id.as_str()) && !chosen.contains(&id)
        })
        .collect();

    // Prefer one NUMA node.
    let mut per_node: BTreeMap<Option<u32>, usize> = BTreeMap::new();
    for d in &candidates {
        *per_node.entry(d.numa_node).or_default() += 1;
    }
    let must_nodes: HashSet<Option<u32>> = chosen_devices.iter().map(|d| d.numa_node).collect();
    let target = match must_nodes.iter().next() {
        Some(&node) if must_nodes.len() == 1 && per_node.get(&node).copied().unwrap_or(0) >= need => Some(node),
        _ if !must_nodes.is_empty() => None,
        _ => {
            let fitting = per_node.iter().filter(|(_, n)| **n >= need);
            match policy {
                AllocationPolicy::Spread => fitting.max_by_key(|(node, n)| (**n, std::cmp::Reverse(**node))),
                AllocationPolicy::Pack => fitting.min_by_key(|(node, n)| (**n, **node)),
            }
            .map(|(node, _)| *node)
        }
    };
    if let Some(node) = target {
        candidates.retain(|d| d.numa_node == node);
    }

    // PFs in use: the pool's devices that are not free, plus those picked.
    let mut used: BTreeMap<PciAddress, i64> = BTreeMap::new();
    for d in &pool.devices {
        let id = d.pci.to_string();
        let taken = !available_set.contains(id.as_str()) || chosen.contains(&id);
        *used.entry(d.pf).or_default() += i64::from(taken);
    }
    candidates.sort_by_key(|d| (d.pf, d.vf_index));
    while chosen.len() < size && !candidates.is_empty() {
        let mut free: BTreeMap<PciAddress, i64> = BTreeMap::new();
        for d in &candidates {
            *free.entry(d.pf).or_default() += 1;
        }
        let usage = |pf: &PciAddress| used.get(pf).copied().unwrap_or(0);
        let pf = match policy {
            AllocationPolicy::Spread => free.iter().min_by_key(|(pf, n)| (usage(pf), -**n, **pf)),
            AllocationPolicy::Pack => free.iter().min_by_key(|(pf, n)| (-usage(pf), **n, **pf)),
        }
        .map(|(pf, _)| *pf);
        let Some(pf) = pf else { break };
        let Some(pos) = candidates.iter().position(|d| d.pf == pf) else { break };
        let d = candidates.remove(pos);
        chosen.push(d.pci.to_string());
        *used.entry(pf).or_default() += 1;
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Health;

    /// Two PFs on NUMA 0 (pf 1, 2) with 4 VFs each, one PF on NUMA 1 (pf 3) with 4 VFs.
    fn pool() -> PoolDevices {
        let mut devices = Vec::new();
        for (bus, numa) in [(1u8, 0u32), (2, 0), (3, 1)] {
            for i in 0..4u8 {
                devices.push(Device {
                    pci: PciAddress { domain: 0, bus: bus + 0x10, device: 0, function: i },
                    pf: PciAddress { domain: 0, bus, device: 0, function: 0 },
                    pf_netdev: Some(format!("eth{bus}")),
                    vf_index: u32::from(i),
                    vendor: sriov::sysfs::PciId(0x8086),
                    device: sriov::sysfs::PciId(0x1889),
                    driver: Some("iavf".into()),
                    iommu_group: None,
                    numa_node: Some(numa),
                    link_type: None,
                    pcie_root: None,
                    health: Health::Healthy,
                });
            }
        }
        PoolDevices { devices }
    }

    fn ids(pool: &PoolDevices) -> Vec<String> {
        pool.devices.iter().map(|d| d.pci.to_string()).collect()
    }

    fn pfs(pool: &PoolDevices, picked: &[String]) -> Vec<u8> {
        picked.iter().map(|id| pool.get(id).map_or(0, |d| d.pf.bus)).collect()
    }

    #[test]
    fn spread_alternates_pfs_on_one_numa_node() {
        let p = pool();
        let got = preferred(&p, AllocationPolicy::Spread, &ids(&p), &[], 4);
        assert_eq!(pfs(&p, &got), [1, 2, 1, 2]);
    }

    #[test]
    fn pack_fills_one_pf_first() {
        let p = pool();
        let got = preferred(&p, AllocationPolicy::Pack, &ids(&p), &[], 3);
        assert_eq!(pfs(&p, &got), [3, 3, 3], "NUMA 1 has exactly 4 free: the tightest fit");
        let got = preferred(&p, AllocationPolicy::Pack, &ids(&p), &[], 6);
        assert_eq!(pfs(&p, &got), [1, 1, 1, 1, 2, 2], "only NUMA 0 has 6");
    }

    #[test]
    fn counts_what_is_already_in_use() {
        let p = pool();
        // Two of PF 1's VFs are allocated (not available): spread starts with PF 2.
        let available: Vec<String> = ids(&p).into_iter().skip(2).collect();
        let got = preferred(&p, AllocationPolicy::Spread, &available, &[], 3);
        assert_eq!(pfs(&p, &got), [2, 2, 1]);
        // Pack prefers the PF already in use.
        let got = preferred(&p, AllocationPolicy::Pack, &available, &[], 2);
        assert_eq!(pfs(&p, &got), [3, 3], "NUMA 1 is the tightest fit for 2");
        let got = preferred(&p, AllocationPolicy::Pack, &available, &[], 8);
        assert_eq!(pfs(&p, &got)[..2], [1, 1], "{got:?}");
    }

    #[test]
    fn must_include_comes_first_and_pins_the_numa_node() {
        let p = pool();
        let all = ids(&p);
        let must = vec![all[9].clone()]; // PF 3, NUMA 1
        let got = preferred(&p, AllocationPolicy::Spread, &all, &must, 3);
        assert_eq!(got[0], all[9]);
        assert_eq!(pfs(&p, &got), [3, 3, 3]);
        // More than one NUMA node can supply: the must-include node wins even over a bigger one.
        let got = preferred(&p, AllocationPolicy::Spread, &all, &must, 1);
        assert_eq!(got, must);
        // Unknown and unhealthy IDs are not picked.
        let mut sick = p.clone();
        sick.devices[0].health = Health::Unhealthy("x".into());
        let got = preferred(&sick, AllocationPolicy::Spread, &[all[0].clone(), "bogus".into(), all[1].clone()], &[], 2);
        assert_eq!(got, [all[1].clone()]);
    }
}
