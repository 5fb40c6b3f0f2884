//! Device records: what the device plugin knows about an allocated VF, for the CNI plugin.
//!
//! The device plugin writes `<run-dir>/devices/<pci>.json` when kubelet allocates a VF; the CNI
//! plugin reads it to apply the VF's pool's rules: a profile's `physicalNetwork` must match the
//! pool's, and a pool that `requireProfile`s is configured only through (its `allowedProfiles`)
//! VfProfiles. Both sides use this one type so the file format cannot drift.

use serde::{Deserialize, Serialize};

use crate::PciAddress;
use crate::persist::{self, PersistError};
use vfnet_types::RunDir;

pub use vfnet_types::DeviceType;

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
    /// The pool's `requireProfile`: the VF is configured only through a VfProfile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_profile: bool,
    /// The pool's `allowedProfiles`: the only VfProfiles its VFs may be attached with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_profiles: Option<Vec<String>>,
}

impl DeviceRecord {
    /// Reads the record of `pci` ([`RunDir::device_record`]), `None` if there is none.
    pub fn load(run_dir: &RunDir, pci: &PciAddress) -> Result<Option<Self>, PersistError> {
        persist::read_json(&run_dir.device_record(pci))
    }

    /// Writes the record atomically.
    pub fn store(&self, run_dir: &RunDir) -> Result<(), PersistError> {
        persist::write_json(&run_dir.device_record(&self.pci), self)
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
            require_profile: true,
            allowed_profiles: Some(vec!["tenant-a".into()]),
        };
        let run = RunDir::new(dir.path());
        rec.store(&run).unwrap();
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("devices/0000:01:00.2.json")).unwrap()).unwrap();
        assert_eq!(raw["resourceName"], "vfnet.dev/tenant-a");
        assert_eq!(raw["physicalNetwork"], "physnet1");
        assert_eq!(raw["deviceType"], "vfio-pci");
        assert_eq!(raw["pf"], "0000:00:09.0");
        assert_eq!(raw["vfIndex"], 2);
        assert_eq!(raw["requireProfile"], true);
        assert_eq!(raw["allowedProfiles"], serde_json::json!(["tenant-a"]));
        assert_eq!(DeviceRecord::load(&run, &rec.pci).unwrap(), Some(rec));
        assert_eq!(DeviceRecord::load(&run, &"0000:01:00.3".parse().unwrap()).unwrap(), None);
    }
}
