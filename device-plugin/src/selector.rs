//! Pool selectors, compiled from their text form, matched against discovered VFs.

use crds::pool::{self, PfRef, PoolSpecError, VfSelector};
use sriov::PciAddress;
use sriov::sysfs::{Pf, Vf};
use vfnet_types::range::VfRangeError;

/// A selector with every entry parsed. Each non-empty list must match; within a list, any entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    vendors: Vec<u16>,
    devices: Vec<u16>,
    drivers: Vec<String>,
    pf_names: Vec<PfRef<String>>,
    pci_addresses: Vec<PciAddress>,
    root_devices: Vec<PfRef<PciAddress>>,
    link_types: Vec<String>,
}

/// What a selector looks at for one VF.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The VF.
    pub vf: &'a Vf,
    /// Its PF.
    pub pf: &'a Pf,
    /// The link type of the VF's netdev, or else of its PF's (`ether`, `infiniband`).
    pub link_type: Option<&'a str>,
}

impl Selector {
    /// Parses every entry; errors name the key (`spec.selector.pfNames[1]`).
    pub fn compile(s: &VfSelector) -> Result<Self, PoolSpecError> {
        s.validate("spec.selector")?;
        let fail =
            |key: &str, i: usize, problem: String| PoolSpecError { key: format!("spec.selector.{key}[{i}]"), problem };
        let ids = |key: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .map(|(i, v)| pool::parse_pci_id(v).map_err(|p| fail(key, i, p)))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            vendors: ids("vendors", &s.vendors)?,
            devices: ids("devices", &s.devices)?,
            drivers: s.drivers.clone(),
            pf_names: s
                .pf_names
                .iter()
                .enumerate()
                .map(|(i, e)| pool::parse_pf_name(e).map_err(|p| fail("pfNames", i, p)))
                .collect::<Result<_, _>>()?,
            pci_addresses: s
                .pci_addresses
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    e.parse().map_err(|e: vfnet_types::pci::PciAddressError| fail("pciAddresses", i, e.to_string()))
                })
                .collect::<Result<_, _>>()?,
            root_devices: s
                .root_devices
                .iter()
                .enumerate()
                .map(|(i, e)| pool::parse_root_device(e).map_err(|p| fail("rootDevices", i, p)))
                .collect::<Result<_, _>>()?,
            link_types: s.link_types.clone(),
        })
    }

    /// True if the selector uses `linkTypes` (reading link types costs a file per netdev).
    pub fn needs_link_types(&self) -> bool {
        !self.link_types.is_empty()
    }

    /// True if the VF is selected.
    pub fn matches(&self, c: &Candidate<'_>) -> bool {
        let vf = c.vf;
        let any = |empty: bool, hit: bool| empty || hit;
        any(self.vendors.is_empty(), self.vendors.contains(&vf.vendor.0))
            && any(self.devices.is_empty(), self.devices.contains(&vf.device.0))
            && any(self.drivers.is_empty(), vf.driver.as_ref().is_some_and(|d| self.drivers.contains(d)))
            && any(
                self.pf_names.is_empty(),
                c.pf.netdev
                    .as_ref()
                    .is_some_and(|name| self.pf_names.iter().any(|r| &r.pf == name && r.includes(vf.index))),
            )
            && any(self.pci_addresses.is_empty(), self.pci_addresses.contains(&vf.pci))
            && any(
                self.root_devices.is_empty(),
                self.root_devices.iter().any(|r| r.pf == c.pf.pci && r.includes(vf.index)),
            )
            && any(self.link_types.is_empty(), c.link_type.is_some_and(|t| self.link_types.iter().any(|l| l == t)))
    }

    /// True if the selector names `pf` itself, through `pfNames` or `rootDevices`: only such
    /// PFs get VFs created for a pool's `numVfs`.
    pub fn names_pf(&self, pf: &Pf) -> bool {
        self.root_devices.iter().any(|r| r.pf == pf.pci)
            || pf.netdev.as_ref().is_some_and(|n| self.pf_names.iter().any(|r| &r.pf == n))
    }

    /// The first VF range naming `pf` that goes beyond its `sriov_totalvfs`, with its key.
    pub fn range_error(&self, pf: &Pf) -> Option<(String, VfRangeError)> {
        let by_name = self
            .pf_names
            .iter()
            .enumerate()
            .filter(|(_, r)| pf.netdev.as_ref() == Some(&r.pf))
            .map(|(i, r)| (format!("spec.selector.pfNames[{i}]"), r.vfs.as_ref()));
        let by_pci = self
            .root_devices
            .iter()
            .enumerate()
            .filter(|(_, r)| r.pf == pf.pci)
            .map(|(i, r)| (format!("spec.selector.rootDevices[{i}]"), r.vfs.as_ref()));
        by_name.chain(by_pci).find_map(|(key, range)| range?.check_within(pf.total_vfs).err().map(|e| (key, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sriov::fixture::{FixtureBuilder, PfSpec};

    fn selector(json: serde_json::Value) -> Selector {
        Selector::compile(&serde_json::from_value(json).unwrap()).unwrap()
    }

    #[test]
    fn matches_each_key() {
        let f = FixtureBuilder::new()
            .pf(PfSpec::igb("0000:01:00.0".parse().unwrap(), "eth0").vfs(7, 4))
            .pf(PfSpec::igb("0000:03:00.0".parse().unwrap(), "eth1").vfs(7, 2).vf_driver(Some("vfio-pci")))
            .build()
            .unwrap();
        let node = f.sysfs().discover().unwrap();
        let picked = |s: &Selector| -> Vec<String> {
            node.pfs
                .iter()
                .flat_map(|pf| pf.vfs.iter().map(move |vf| (pf, vf)))
                .filter(|(pf, vf)| s.matches(&Candidate { vf, pf, link_type: Some("ether") }))
                .map(|(pf, vf)| format!("{}#{}", pf.netdev.as_deref().unwrap_or("-"), vf.index))
                .collect()
        };
        assert_eq!(picked(&selector(serde_json::json!({}))).len(), 6);
        assert_eq!(picked(&selector(serde_json::json!({"pfNames": ["eth0#0-1,3"]}))), ["eth0#0", "eth0#1", "eth0#3"]);
        assert_eq!(picked(&selector(serde_json::json!({"drivers": ["vfio-pci"]}))), ["eth1#0", "eth1#1"]);
        assert_eq!(
            picked(&selector(serde_json::json!({"rootDevices": ["0000:03:00.0#1"], "vendors": ["8086"]}))),
            ["eth1#1"]
        );
        assert!(picked(&selector(serde_json::json!({"devices": ["10c9"]}))).is_empty(), "10c9 is the PF id");
        assert_eq!(picked(&selector(serde_json::json!({"devices": ["0x10ca"], "pfNames": ["eth1"]}))).len(), 2);
        let vf2 = node.pfs[0].vfs[2].pci.to_string();
        assert_eq!(picked(&selector(serde_json::json!({"pciAddresses": [vf2]}))), ["eth0#2"]);
        assert_eq!(picked(&selector(serde_json::json!({"linkTypes": ["ether"]}))).len(), 6);
        assert!(picked(&selector(serde_json::json!({"linkTypes": ["infiniband"]}))).is_empty());

        let s = selector(serde_json::json!({"pfNames": ["eth0#0-9"]}));
        assert!(s.names_pf(&node.pfs[0]) && !s.names_pf(&node.pfs[1]));
        let (key, e) = s.range_error(&node.pfs[0]).unwrap();
        assert_eq!(key, "spec.selector.pfNames[0]");
        assert!(e.to_string().contains("names VF 7"), "{e}");
        assert!(s.range_error(&node.pfs[1]).is_none());
    }
}
