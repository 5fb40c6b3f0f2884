//! Allocate: what a container gets for its VFs, and the files written for the CNI side.
//!
//! - `PCIDEVICE_<PREFIX>_<RESOURCE>` = the PCI addresses, comma-joined (prefix and resource name
//!   upper-cased, `.` and `/` as `_`), and `..._INFO` = a JSON object per device:
//!   `{"<pci>": {"generic": {"deviceID"}, "vfnet": {pf, pfName, vfIndex, driver, physicalNetwork,
//!   deviceType}, "vfio": {"mount", "dev-mount"}}}` (the `generic` and `vfio` providers have the
//!   reference device plugin's shape, so apps reading it keep working);
//! - for `vfio-pci` pools, device nodes `/dev/vfio/vfio` and `/dev/vfio/<group>` (the host side
//!   is `/dev/vfio/noiommu-<group>` when that is what exists);
//! - a device-info file per device (device-info spec 1.1.0) in the devinfo directory, which
//!   Multus hands to the CNI plugin, and the device record `<run-dir>/devices/<pci>.json` the
//!   vfnet CNI plugin checks.
//!
//! IDs that are unknown or unhealthy are refused with an error naming them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kubelet_api::deviceplugin::v1beta1::{ContainerAllocateResponse, DeviceSpec};
use serde_json::json;
use sriov::persist::{self, PersistError};
use sriov::record::DeviceRecord;
use vfnet_types::{DeviceType, PciAddress, RunDir};

use crate::inventory::{Device, PoolDevices};
use crate::pools::Pool;

/// Why an Allocate is refused.
#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    /// The ID is not one of the pool's devices on this node.
    #[error("device {id} is not a device of {resource} on this node")]
    Unknown {
        /// The ID.
        id: String,
        /// The pool's resource.
        resource: String,
    },
    /// The device is advertised Unhealthy.
    #[error("device {id} of {resource} is unhealthy: {reason}")]
    Unhealthy {
        /// The ID.
        id: String,
        /// The pool's resource.
        resource: String,
        /// Why.
        reason: String,
    },
    /// A device-info file or device record could not be written.
    #[error("cannot record the allocation of {id}: {source}")]
    Record {
        /// The ID.
        id: String,
        /// The file error, naming the file.
        source: PersistError,
    },
    /// The blocking task writing the files died.
    #[error("cannot record the allocation of {ids}: the writing task failed: {source}")]
    Task {
        /// The IDs.
        ids: String,
        /// Why the task ended.
        source: tokio::task::JoinError,
    },
}

/// Where Allocate writes, and where device nodes are looked for.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `--run-dir`: device records go to its `devices/`.
    pub run_dir: RunDir,
    /// Device-info files for Multus (`/var/run/k8s.cni.cncf.io/devinfo/dp`).
    pub devinfo_dir: PathBuf,
    /// Root under which `dev/vfio/` is looked at (the sysfs root: `/` on a node).
    pub dev_root: PathBuf,
}

/// `PCIDEVICE_<PREFIX>_<NAME>` for resource `<prefix>/<name>`.
pub fn env_name(resource: &str) -> String {
    format!("PCIDEVICE_{}", resource.to_uppercase().replace(['.', '/'], "_"))
}

/// The device-info file of `id` of `resource`: `<resource with / as ->-<id>-device.json`.
pub fn devinfo_path(dir: &Path, resource: &str, id: &str) -> PathBuf {
    dir.join(format!("{}-{}-device.json", resource.replace('/', "-"), id.replace('/', "-")))
}

/// The devices of `ids`, refusing unknown and unhealthy ones.
pub fn lookup<'a>(pool: &Pool, devices: &'a PoolDevices, ids: &[String]) -> Result<Vec<&'a Device>, AllocateError> {
    ids.iter()
        .map(|id| {
            let d = devices
                .get(id)
                .ok_or_else(|| AllocateError::Unknown { id: id.clone(), resource: pool.resource.clone() })?;
            match &d.health {
                crate::health::Health::Healthy => Ok(d),
                crate::health::Health::Unhealthy(reason) => Err(AllocateError::Unhealthy {
                    id: id.clone(),
                    resource: pool.resource.clone(),
                    reason: reason.clone(),
                }),
            }
        })
        .collect()
}

/// The host side of `/dev/vfio/<group>`: `/dev/vfio/noiommu-<group>` when that exists under
/// `dev_root` (vfio's no-IOMMU mode names its group nodes so), else `/dev/vfio/<group>`.
pub fn vfio_host_path(dev_root: &Path, group: u32) -> String {
    let noiommu = format!("/dev/vfio/noiommu-{group}");
    if dev_root.join(noiommu.trim_start_matches('/')).exists() { noiommu } else { format!("/dev/vfio/{group}") }
}

/// What `..._INFO` says of one VF (the shape is in the module docs): Allocate fills it from a
/// [`Device`] and its pool, the DRA driver's CDI specs from a prepared claim, so both give the
/// same entry ([`Self::entry`]).
#[derive(Debug, Clone, Copy)]
pub struct VfInfo<'a> {
    /// The VF.
    pub pci: PciAddress,
    /// Its PF.
    pub pf: PciAddress,
    /// The PF's netdev.
    pub pf_name: Option<&'a str>,
    /// Index under the PF.
    pub vf_index: u32,
    /// Bound driver.
    pub driver: Option<&'a str>,
    /// IOMMU group.
    pub iommu_group: Option<u32>,
    /// The pool's physical network.
    pub physical_network: Option<&'a str>,
    /// The pool's device type.
    pub device_type: DeviceType,
}

impl<'a> VfInfo<'a> {
    /// `d` of `pool`.
    pub fn of(d: &'a Device, pool: &'a Pool) -> Self {
        Self {
            pci: d.pci,
            pf: d.pf,
            pf_name: d.pf_netdev.as_deref(),
            vf_index: d.vf_index,
            driver: d.driver.as_deref(),
            iommu_group: d.iommu_group,
            physical_network: pool.spec.physical_network.as_deref(),
            device_type: pool.spec.device_type,
        }
    }

    /// The entry: `{"generic": ..., "vfnet": ..., "vfio": ...}` (`vfio` for a vfio-pci VF with
    /// an IOMMU group).
    pub fn entry(&self) -> serde_json::Value {
        let mut entry = json!({
            "generic": {"deviceID": self.pci.to_string()},
            "vfnet": {
                "pf": self.pf.to_string(),
                "pfName": self.pf_name,
                "vfIndex": self.vf_index,
                "driver": self.driver,
                "physicalNetwork": self.physical_network,
                "deviceType": self.device_type.to_string(),
            },
        });
        if self.device_type == DeviceType::VfioPci
            && let Some(group) = self.iommu_group
        {
            entry["vfio"] = json!({"mount": "/dev/vfio/vfio", "dev-mount": format!("/dev/vfio/{group}")});
        }
        entry
    }
}

/// The container's response for `devices` (already looked up) of `pool`.
pub fn response(pool: &Pool, devices: &[&Device], paths: &Paths) -> ContainerAllocateResponse {
    let ids: Vec<String> = devices.iter().map(|d| d.pci.to_string()).collect();
    let vfio = pool.spec.device_type == DeviceType::VfioPci;
    let mut info = serde_json::Map::new();
    let mut specs: BTreeMap<String, DeviceSpec> = BTreeMap::new();
    for (d, id) in devices.iter().zip(&ids) {
        let entry = VfInfo::of(d, pool).entry();
        if vfio && let Some(group) = d.iommu_group {
            let host = vfio_host_path(&paths.dev_root, group);
            let container = format!("/dev/vfio/{group}");
            for (host, container) in [("/dev/vfio/vfio".to_owned(), "/dev/vfio/vfio".to_owned()), (host, container)] {
                specs.entry(host.clone()).or_insert(DeviceSpec {
                    container_path: container,
                    host_path: host,
                    permissions: "rw".to_owned(),
                });
            }
        }
        info.insert(id.clone(), entry);
    }
    let name = env_name(&pool.resource);
    let envs: HashMap<String, String> =
        [(format!("{name}_INFO"), serde_json::Value::Object(info).to_string()), (name, ids.join(","))].into();
    ContainerAllocateResponse {
        envs,
        mounts: vec![],
        devices: specs.into_values().collect(),
        annotations: HashMap::new(),
        cdi_devices: vec![],
    }
}

/// Writes the device-info file and the device record of each device, on a blocking thread:
/// each file is fsynced and so is its directory (two per file, four per device), which must not
/// stall the async workers answering kubelet's other calls meanwhile.
pub async fn record(pool: &Arc<Pool>, devices: &[&Device], paths: &Paths) -> Result<(), AllocateError> {
    let ids = devices.iter().map(|d| d.pci.to_string()).collect::<Vec<_>>().join(",");
    let (pool, paths) = (Arc::clone(pool), paths.clone());
    let devices: Vec<Device> = devices.iter().map(|d| (*d).clone()).collect();
    tokio::task::spawn_blocking(move || write_records(&pool, &devices, &paths))
        .await
        .map_err(|source| AllocateError::Task { ids, source })?
}

/// [`record`]'s file work.
fn write_records(pool: &Pool, devices: &[Device], paths: &Paths) -> Result<(), AllocateError> {
    for d in devices {
        let id = d.pci.to_string();
        let fail = |source| AllocateError::Record { id: id.clone(), source };
        let devinfo = json!({
            "type": "pci",
            "version": "1.1.0",
            "pci": {"pci-address": id, "pf-pci-address": d.pf.to_string()},
        });
        persist::write_json(&devinfo_path(&paths.devinfo_dir, &pool.resource, &id), &devinfo).map_err(fail)?;
        DeviceRecord {
            pci: d.pci,
            resource_name: pool.resource.clone(),
            physical_network: pool.spec.physical_network.clone(),
            device_type: pool.spec.device_type,
            pf: d.pf,
            pf_name: d.pf_netdev.clone(),
            vf_index: d.vf_index,
            require_profile: pool.spec.require_profile,
            allowed_profiles: pool.spec.allowed_profiles.clone(),
        }
        .store(&paths.run_dir)
        .map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_the_reference_plugin() {
        assert_eq!(env_name("vfnet.dev/tenant_a"), "PCIDEVICE_VFNET_DEV_TENANT_A");
        assert_eq!(env_name("example.com/dpdk-1"), "PCIDEVICE_EXAMPLE_COM_DPDK-1");
        assert_eq!(
            devinfo_path(Path::new("/d"), "vfnet.dev/a", "0000:01:00.2"),
            Path::new("/d/vfnet.dev-a-0000:01:00.2-device.json")
        );
    }
}
