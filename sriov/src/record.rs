//! Device records: what the device plugin knows about an allocated VF, for the CNI plugin.
//!
//! The device plugin writes `<run-dir>/devices/<pci>.json` when kubelet allocates a VF; the CNI
//! plugin reads it to check that a profile's `physicalNetwork` matches the VF's pool. Both sides
//! use this one type so the file format cannot drift.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::PciAddress;
use crate::persist::{self, PersistError};

/// How a pool hands its VFs to pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum DeviceType {
    /// A kernel netdev VF (moved into the pod, or a macvtap put on it).
    #[default]
    #[serde(rename = "netdevice")]
    Netdevice,
    /// A VF bound to vfio-pci for a userspace application.
    #[serde(rename = "vfio-pci")]
    VfioPci,
}

impl std::fmt::Display for DeviceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Netdevice => "netdevice",
            Self::VfioPci => "vfio-pci",
        })
    }
}

/// The record of one VF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRecord {
    /// The VF.
    pub pci: PciAddress,
    /// The pool's full resource name (`vfnet.dev/<pool>`).
    pub resource_name: String,
    /// The physical network the pool is cabled to, if the pool names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_network: Option<String>,
    /// The pool's device type.
    pub device_type: DeviceType,
    /// The VF's PF.
    pub pf: PciAddress,
    /// The PF's netdev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pf_name: Option<String>,
    /// The VF's index under its PF.
    pub vf_index: u32,
}

impl DeviceRecord {
    /// `<run_dir>/devices/<pci>.json`.
    pub fn path(run_dir: &Path, pci: &PciAddress) -> PathBuf {
        run_dir.join("devices").join(format!("{pci}.json"))
    }

    /// Reads the record of `pci`, `None` if there is none.
    pub fn load(run_dir: &Path, pci: &PciAddress) -> Result<Option<Self>, PersistError> {
        persist::read_json(&Self::path(run_dir, pci))
    }

    /// Writes the record atomically.
    pub fn store(&self, run_dir: &Path) -> Result<(), PersistError> {
        persist::write_json(&Self::path(run_dir, &self.pci), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_the_documented_field_names() {
        let dir = tempfile::tempdir().unwrap();
        let rec = DeviceRecord {
            pci: "0000:01:00.2".parse().unwrap(),
            resource_name: "vfnet.dev/tenant-a".into(),
            physical_network: Some("physnet1".into()),
            device_type: DeviceType::VfioPci,
            pf: "0000:00:09.0".parse().unwrap(),
            pf_name: Some("eth0".into()),
            vf_index: 2,
        };
        rec.store(dir.path()).unwrap();
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("devices/0000:01:00.2.json")).unwrap()).unwrap();
        assert_eq!(raw["resourceName"], "vfnet.dev/tenant-a");
        assert_eq!(raw["physicalNetwork"], "physnet1");
        assert_eq!(raw["deviceType"], "vfio-pci");
        assert_eq!(raw["pf"], "0000:00:09.0");
        assert_eq!(raw["vfIndex"], 2);
        assert_eq!(DeviceRecord::load(dir.path(), &rec.pci).unwrap(), Some(rec));
        assert_eq!(DeviceRecord::load(dir.path(), &"0000:01:00.3".parse().unwrap()).unwrap(), None);
    }
}
