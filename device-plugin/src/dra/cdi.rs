//! CDI (Container Device Interface) specs for prepared claims: what a container gets for its
//! vfnet DRA devices, the same as Allocate gives a device-plugin container (see
//! [`crate::allocate`]).
//!
//! One spec file per claim, `<dir>/vfnet.dev-<claim-uid>.json`, kind [`KIND`], one CDI device
//! per prepared VF named `<claim-uid>-<device-name>` (unique on the node: a claim UID is unique
//! and so is a device name within it). NodePrepareResources hands kubelet
//! [`cdi_device_id`]s, kubelet hands them to the runtime, and the runtime applies each requested
//! device's `containerEdits`:
//!
//! - env `PCIDEVICE_VFNET_DEV_<POOL>` = the claim's PCI addresses of that pool, comma-joined,
//!   and `..._INFO` = their JSON entries ([`allocate::env_name`], [`allocate::VfInfo`]);
//! - for `vfio-pci` pools, the device nodes `/dev/vfio/vfio` and `/dev/vfio/<group>` (host side
//!   `/dev/vfio/noiommu-<group>` when that exists, [`allocate::vfio_host_path`]).
//!
//! Why the env is on every device, carrying the claim's whole list for the device's pool: the
//! runtime applies a device's env by replacing a variable of the same name (runtime-tools'
//! `AddMultipleProcessEnv`), so per-device values `PCIDEVICE_X=<one pci>` would leave only the
//! last device. With the claim-wide value on each device of the pool, a container given all of a
//! claim's devices sees exactly the variables Allocate gives, whatever order the runtime applies
//! them in, and a container given only some requests of the claim sees no variable of a pool it
//! got nothing of. (Spec-level `containerEdits` would add every pool's variables to any
//! container given any device of the claim.) Known differences from Allocate: a container given
//! only some requests of a claim sees the claim's whole list for a pool it got some of; and a
//! container with two claims of one pool sees one claim's list (the runtime keeps the last
//! value), where Allocate would list all of its devices of the pool.
//!
//! `cdiVersion` is [`CDI_VERSION`] `0.5.0`, the lowest version that allows what the specs use:
//! device names starting with a digit (claim UIDs are UUIDs) and `hostPath` on device nodes both
//! came in 0.5.0 (the CDI library's `MinimumRequiredVersion`); nothing of 0.6.0 (annotations,
//! dots in the kind's class) is used. The lowest version keeps older runtimes (containerd 1.7
//! vendors a CDI library whose current version is 0.5.0) reading the files.
//!
//! The default directory, [`DEFAULT_DIR`] `/var/run/cdi`, is a tmpfs on most nodes: a reboot
//! wipes the files while kubelet still counts the claims prepared (kubernetes#141433), so the
//! daemon rewrites them from its checkpoint ([`super::checkpoint::Checkpoint::restore_cdi`]).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sriov::persist::{self, PersistError};
use vfnet_types::DeviceType;

use super::checkpoint::PreparedVf;
use crate::allocate;

/// The CDI kind (`vendor/class`) of vfnet's devices.
pub const KIND: &str = "vfnet.dev/vf";
/// Where the runtimes look for CDI specs by default (the other default, `/etc/cdi`, is for
/// static specs).
pub const DEFAULT_DIR: &str = "/var/run/cdi";
/// The `cdiVersion` written: the lowest that allows what the specs use (see the module docs).
pub const CDI_VERSION: &str = "0.5.0";

/// Spec file names: `vfnet.dev-<claim-uid>.json`.
const FILE_PREFIX: &str = "vfnet.dev-";
const FILE_SUFFIX: &str = ".json";
/// Longer UIDs are not Kubernetes UIDs (36 characters) and would make long file names.
const MAX_UID_LEN: usize = 128;

/// Why a CDI spec cannot be written, removed or listed. Each variant names the file, the
/// directory or the offending name.
#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    /// The claim UID cannot be part of a file name or a CDI device name.
    #[error("claim UID {uid:?} cannot name a CDI spec: {reason}")]
    InvalidClaimUid {
        /// The UID as given.
        uid: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A device name cannot be part of a CDI device name.
    #[error("CDI spec of claim {claim_uid}: device name {name:?} {reason}")]
    InvalidDeviceName {
        /// The claim.
        claim_uid: String,
        /// The device name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A spec without devices (invalid CDI: a runtime would refuse the file).
    #[error("CDI spec of claim {claim_uid} has no devices")]
    NoDevices {
        /// The claim.
        claim_uid: String,
    },
    /// Writing or removing a spec file failed.
    #[error("CDI spec: {0}")]
    File(#[from] PersistError),
    /// The spec directory cannot be read.
    #[error("cannot list CDI spec directory {dir}: {source}")]
    List {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A CDI spec file (the fields vfnet uses; names as in the CDI spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// [`CDI_VERSION`].
    pub cdi_version: String,
    /// [`KIND`].
    pub kind: String,
    /// One per prepared VF.
    pub devices: Vec<CdiDevice>,
    /// Edits for any container given any of the devices; vfnet puts none here (see the module
    /// docs), and leaves it out of the file when empty.
    #[serde(default, skip_serializing_if = "ContainerEdits::is_empty")]
    pub container_edits: ContainerEdits,
}

/// A device of a spec: `<kind>=<name>` is what a runtime is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiDevice {
    /// `<claim-uid>-<device-name>`.
    pub name: String,
    /// What a container given this device gets (always written: the CDI schema requires it).
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

/// Edits to a container's OCI spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEdits {
    /// `NAME=value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Device nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_nodes: Vec<DeviceNode>,
    /// Bind mounts (vfnet uses none today; here for completeness of what the specs may carry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
}

impl ContainerEdits {
    /// No edits at all.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.device_nodes.is_empty() && self.mounts.is_empty()
    }
}

/// A device node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    /// The path in the container.
    pub path: String,
    /// The host's node, when it is not at `path` (the noiommu group nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// cgroup access: `rw`, as Allocate gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
}

/// A mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// The source on the host.
    pub host_path: String,
    /// The target in the container.
    pub container_path: String,
    /// Mount options (`ro`, `bind`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// `vfnet.dev/vf=<claim-uid>-<device-name>`: the fully qualified CDI device of a prepared VF, as
/// NodePrepareResources returns it in `cdi_device_ids`.
pub fn cdi_device_id(claim_uid: &str, device_name: &str) -> String {
    format!("{KIND}={}", cdi_device_name(claim_uid, device_name))
}

/// `<claim-uid>-<device-name>`: the name of a prepared VF's device in its claim's spec.
pub fn cdi_device_name(claim_uid: &str, device_name: &str) -> String {
    format!("{claim_uid}-{device_name}")
}

/// The spec file of claim `claim_uid` in `dir` (the UID unchecked: see [`validate_claim_uid`]).
pub fn spec_path(dir: &Path, claim_uid: &str) -> PathBuf {
    dir.join(format!("{FILE_PREFIX}{claim_uid}{FILE_SUFFIX}"))
}

/// Checks that a claim UID can be part of a file name and of a CDI device name: 1 to 128 ASCII
/// letters, digits, `-` and `_`, starting and ending with a letter or digit. The UID comes from
/// the API; a `/` or `..` in it must not reach the file system.
pub fn validate_claim_uid(uid: &str) -> Result<(), CdiError> {
    let fail = |reason| Err(CdiError::InvalidClaimUid { uid: uid.to_owned(), reason });
    if uid.is_empty() {
        return fail("it is empty");
    }
    if uid.len() > MAX_UID_LEN {
        return fail("it is longer than 128 characters");
    }
    if !uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return fail("only ASCII letters, digits, '-' and '_' are allowed");
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !alnum(uid.bytes().next()) || !alnum(uid.bytes().last()) {
        return fail("it must start and end with a letter or digit");
    }
    Ok(())
}

/// Checks that `name` can end a CDI device name (`<uid>-<name>`): ASCII letters, digits, `-`,
/// `_` and `.`, ending with a letter or digit (the CDI spec's rule for device names).
fn validate_device_name(claim_uid: &str, name: &str) -> Result<(), CdiError> {
    let fail =
        |reason| Err(CdiError::InvalidDeviceName { claim_uid: claim_uid.to_owned(), name: name.to_owned(), reason });
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return fail("may only hold ASCII letters, digits, '-', '_' and '.'");
    }
    if !name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric()) {
        return fail("must end with a letter or digit");
    }
    Ok(())
}

/// The spec of claim `claim_uid` with its prepared `devices` (see the module docs for what each
/// device gives). `dev_root` is where `dev/vfio/` is looked at (`/` on a node), to find the
/// noiommu group nodes. Names are not checked here; [`write()`] checks them.
pub fn spec_for_claim(claim_uid: &str, devices: &[PreparedVf], dev_root: &Path) -> Spec {
    // The claim's variables per resource (Allocate's for those devices): the addresses in the
    // claim's order, the info keyed by address.
    let mut by_resource: BTreeMap<&str, (Vec<String>, serde_json::Map<String, serde_json::Value>)> = BTreeMap::new();
    for vf in devices {
        let (ids, info) = by_resource.entry(vf.resource.as_str()).or_default();
        ids.push(vf.pci.to_string());
        info.insert(vf.pci.to_string(), vf.info().entry());
    }
    let env: BTreeMap<&str, Vec<String>> = by_resource
        .into_iter()
        .map(|(resource, (ids, info))| {
            let name = allocate::env_name(resource);
            let info = serde_json::Value::Object(info).to_string();
            (resource, vec![format!("{name}={}", ids.join(",")), format!("{name}_INFO={info}")])
        })
        .collect();
    let devices = devices
        .iter()
        .map(|vf| {
            let mut device_nodes = Vec::new();
            if vf.device_type == DeviceType::VfioPci
                && let Some(group) = vf.iommu_group
            {
                let path = format!("/dev/vfio/{group}");
                let host = allocate::vfio_host_path(dev_root, group);
                device_nodes.push(DeviceNode {
                    path: "/dev/vfio/vfio".to_owned(),
                    host_path: None,
                    permissions: Some("rw".to_owned()),
                });
                device_nodes.push(DeviceNode {
                    host_path: (host != path).then_some(host),
                    path,
                    permissions: Some("rw".to_owned()),
                });
            }
            CdiDevice {
                name: cdi_device_name(claim_uid, &vf.device_name),
                container_edits: ContainerEdits {
                    env: env.get(vf.resource.as_str()).cloned().unwrap_or_default(),
                    device_nodes,
                    mounts: Vec::new(),
                },
            }
        })
        .collect();
    Spec {
        cdi_version: CDI_VERSION.to_owned(),
        kind: KIND.to_owned(),
        devices,
        container_edits: ContainerEdits::default(),
    }
}

/// Writes `spec` as claim `claim_uid`'s spec file in `dir` (created if missing), atomically and
/// durably ([`persist::write_json`]: a runtime never reads half a spec), and returns the file.
/// Refuses a UID or device name that [`validate_claim_uid`] or the CDI spec's name rule refuses,
/// a device name twice, and a spec without devices (a runtime would refuse those files).
///
/// The write fsyncs the file and the directory: call it from a blocking thread.
pub fn write(dir: &Path, claim_uid: &str, spec: &Spec) -> Result<PathBuf, CdiError> {
    validate_claim_uid(claim_uid)?;
    if spec.devices.is_empty() {
        return Err(CdiError::NoDevices { claim_uid: claim_uid.to_owned() });
    }
    for (i, d) in spec.devices.iter().enumerate() {
        if spec.devices[..i].iter().any(|e| e.name == d.name) {
            // A runtime refuses a spec with a device twice.
            return Err(CdiError::InvalidDeviceName {
                claim_uid: claim_uid.to_owned(),
                name: d.name.clone(),
                reason: "appears twice",
            });
        }
        let name = d.name.strip_prefix(claim_uid).and_then(|n| n.strip_prefix('-')).ok_or_else(|| {
            CdiError::InvalidDeviceName {
                claim_uid: claim_uid.to_owned(),
                name: d.name.clone(),
                reason: "does not start with the claim UID and '-'",
            }
        })?;
        validate_device_name(claim_uid, name)?;
    }
    let path = spec_path(dir, claim_uid);
    persist::write_json(&path, spec)?;
    Ok(path)
}

/// Removes claim `claim_uid`'s spec file from `dir`; a missing file (or directory) is fine.
pub fn remove(dir: &Path, claim_uid: &str) -> Result<(), CdiError> {
    validate_claim_uid(claim_uid)?;
    persist::remove(&spec_path(dir, claim_uid))?;
    Ok(())
}

/// The claim UIDs of vfnet's spec files in `dir`, sorted; nothing if the directory is missing.
/// Other files (other vendors' specs, temporary files of a write in progress) are left out.
pub fn list(dir: &Path) -> Result<Vec<String>, CdiError> {
    let fail = |source| CdiError::List { dir: dir.to_owned(), source };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fail(e)),
    };
    let mut uids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name();
        let Some(uid) =
            name.to_str().and_then(|n| n.strip_prefix(FILE_PREFIX)).and_then(|n| n.strip_suffix(FILE_SUFFIX))
        else {
            continue;
        };
        if validate_claim_uid(uid).is_ok() {
            uids.push(uid.to_owned());
        }
    }
    uids.sort();
    Ok(uids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dra::checkpoint::tests::{netdev_vf, vfio_vf};
    use serde_json::json;

    const UID: &str = "0b6f1c2e-3d4a-4b5c-8d9e-0f1a2b3c4d5e";

    fn spec_json(spec: &Spec) -> serde_json::Value {
        serde_json::to_value(spec).unwrap()
    }

    #[test]
    fn a_netdevice_vf_gets_allocates_env() {
        let spec = spec_for_claim(UID, &[netdev_vf("0000:01:10.0", 0)], Path::new("/nonexistent"));
        let info = json!({"0000:01:10.0": {
            "generic": {"deviceID": "0000:01:10.0"},
            "vfnet": {"pf": "0000:01:00.0", "pfName": "ens1f0", "vfIndex": 0, "driver": "iavf",
                      "physicalNetwork": "physnet1", "deviceType": "netdevice"},
        }});
        assert_eq!(
            spec_json(&spec),
            json!({
                "cdiVersion": "0.5.0",
                "kind": "vfnet.dev/vf",
                "devices": [{
                    "name": format!("{UID}-vf-0000-01-10-0"),
                    "containerEdits": {"env": [
                        "PCIDEVICE_VFNET_DEV_TENANT_A=0000:01:10.0",
                        format!("PCIDEVICE_VFNET_DEV_TENANT_A_INFO={info}"),
                    ]},
                }],
            })
        );
        assert_eq!(cdi_device_id(UID, "vf-0000-01-10-0"), format!("vfnet.dev/vf={UID}-vf-0000-01-10-0"));
    }

    #[test]
    fn a_vfio_vf_gets_its_group_node_and_the_noiommu_host_node_when_that_exists() {
        let root = tempfile::tempdir().unwrap();
        let vf = vfio_vf("0000:01:10.1", 1, 42);
        let info = json!({"0000:01:10.1": {
            "generic": {"deviceID": "0000:01:10.1"},
            "vfnet": {"pf": "0000:01:00.0", "pfName": "ens1f0", "vfIndex": 1, "driver": "vfio-pci",
                      "physicalNetwork": null, "deviceType": "vfio-pci"},
            "vfio": {"mount": "/dev/vfio/vfio", "dev-mount": "/dev/vfio/42"},
        }});
        let expected = |group_node: serde_json::Value| {
            json!({
                "cdiVersion": "0.5.0",
                "kind": "vfnet.dev/vf",
                "devices": [{
                    "name": format!("{UID}-vf-0000-01-10-1"),
                    "containerEdits": {
                        "env": [
                            "PCIDEVICE_VFNET_DEV_DPDK=0000:01:10.1",
                            format!("PCIDEVICE_VFNET_DEV_DPDK_INFO={info}"),
                        ],
                        "deviceNodes": [{"path": "/dev/vfio/vfio", "permissions": "rw"}, group_node],
                    },
                }],
            })
        };
        let spec = spec_for_claim(UID, std::slice::from_ref(&vf), root.path());
        assert_eq!(spec_json(&spec), expected(json!({"path": "/dev/vfio/42", "permissions": "rw"})));

        std::fs::create_dir_all(root.path().join("dev/vfio")).unwrap();
        std::fs::write(root.path().join("dev/vfio/noiommu-42"), "").unwrap();
        let spec = spec_for_claim(UID, &[vf], root.path());
        assert_eq!(
            spec_json(&spec),
            expected(json!({"path": "/dev/vfio/42", "hostPath": "/dev/vfio/noiommu-42", "permissions": "rw"}))
        );
    }

    #[test]
    fn every_device_of_a_pool_carries_the_claims_whole_list_of_it() {
        let a0 = netdev_vf("0000:01:10.0", 0);
        let a1 = netdev_vf("0000:01:10.2", 2);
        let b = vfio_vf("0000:01:10.1", 1, 42);
        let spec = spec_for_claim(UID, &[a0, b, a1], Path::new("/nonexistent"));
        let envs: Vec<&Vec<String>> = spec.devices.iter().map(|d| &d.container_edits.env).collect();
        assert_eq!(envs[0], envs[2], "both tenant-a devices give the same variables");
        assert_eq!(envs[0][0], "PCIDEVICE_VFNET_DEV_TENANT_A=0000:01:10.0,0000:01:10.2");
        let info: serde_json::Value =
            serde_json::from_str(envs[0][1].strip_prefix("PCIDEVICE_VFNET_DEV_TENANT_A_INFO=").unwrap()).unwrap();
        assert_eq!(info.as_object().unwrap().keys().collect::<Vec<_>>(), ["0000:01:10.0", "0000:01:10.2"]);
        assert_eq!(envs[1][0], "PCIDEVICE_VFNET_DEV_DPDK=0000:01:10.1", "the other pool's list is its own");
        assert!(spec.devices[0].container_edits.device_nodes.is_empty());
    }

    #[test]
    fn a_container_given_the_whole_claim_sees_what_allocate_gives() {
        use crate::{inventory, node, pools};
        use sriov::fixture::{FixtureBuilder, PfSpec};
        use std::collections::{BTreeMap, BTreeSet};

        let f = FixtureBuilder::new()
            .pf(PfSpec::igb("0000:01:00.0".parse().unwrap(), "eth0").vfs(4, 2))
            .pf(PfSpec::igb("0000:03:00.0".parse().unwrap(), "eth1").vfs(4, 2).vf_driver(Some("vfio-pci")))
            .build()
            .unwrap();
        let pools = pools::parse(
            "- metadata: {name: tenant}\n  spec: {resourceName: tenant_a, physicalNetwork: physnet1, \
             selector: {pfNames: [eth0]}}\n\
             - metadata: {name: dpdk}\n  spec: {resourceName: dpdk, deviceType: vfio-pci, \
             selector: {rootDevices: ['0000:03:00.0']}}\n",
            Path::new("p"),
            "vfnet.dev",
        )
        .unwrap();
        let inv = inventory::build(&pools, &node::scan(&f.sysfs(), false).unwrap());
        let paths = allocate::Paths {
            run_dir: vfnet_types::RunDir::new(f.root().join("run")),
            devinfo_dir: f.root().join("devinfo"),
            dev_root: f.root().to_owned(),
        };
        let mut allocate_env = BTreeMap::new();
        let mut allocate_nodes = BTreeSet::new();
        let mut prepared = Vec::new();
        for (pool, devices) in pools.iter().zip(&inv.pools) {
            assert_eq!(devices.devices.len(), 2, "{pool}");
            let devices: Vec<&inventory::Device> = devices.devices.iter().collect();
            let r = allocate::response(pool, &devices, &paths);
            allocate_env.extend(r.envs);
            allocate_nodes.extend(r.devices.into_iter().map(|d| (d.container_path, d.host_path)));
            for d in devices {
                let name = format!("vf-{}", d.pci.to_string().replace([':', '.'], "-"));
                prepared.push(PreparedVf::new(pool, d, "node-1/x", &name, vec!["vf".to_owned()]));
            }
        }
        // Mixed pools in one claim, in the order the scheduler listed them.
        prepared.swap(1, 2);

        let spec = spec_for_claim(UID, &prepared, f.root());
        // As the runtime applies them: a variable set again replaces the earlier value.
        let mut env = BTreeMap::new();
        let mut nodes = BTreeSet::new();
        for d in &spec.devices {
            for e in &d.container_edits.env {
                let (k, v) = e.split_once('=').unwrap();
                env.insert(k.to_owned(), v.to_owned());
            }
            for n in &d.container_edits.device_nodes {
                nodes.insert((n.path.clone(), n.host_path.clone().unwrap_or_else(|| n.path.clone())));
            }
        }
        assert_eq!(env.keys().collect::<Vec<_>>(), allocate_env.keys().collect::<Vec<_>>());
        assert_eq!(env.len(), 4, "{env:?}");
        assert_eq!(env, allocate_env.into_iter().collect::<BTreeMap<_, _>>());
        assert_eq!(nodes, allocate_nodes);
        assert_eq!(nodes.len(), 3, "/dev/vfio/vfio and two groups: {nodes:?}");
    }

    #[test]
    fn writes_lists_and_removes_only_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let cdi = dir.path().join("cdi");
        assert!(list(&cdi).unwrap().is_empty(), "a missing directory holds no specs");
        let other = "1c2d3e4f-0000-4000-8000-000000000001";
        let spec = spec_for_claim(UID, &[netdev_vf("0000:01:10.0", 0)], Path::new("/"));
        let path = write(&cdi, UID, &spec).unwrap();
        assert_eq!(path, cdi.join(format!("vfnet.dev-{UID}.json")));
        let read: Spec = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(read, spec);
        write(&cdi, other, &spec_for_claim(other, &[netdev_vf("0000:01:10.2", 2)], Path::new("/"))).unwrap();
        std::fs::write(cdi.join("nvidia.com-gpu.json"), "{}").unwrap();
        std::fs::write(cdi.join(format!(".vfnet.dev-{UID}.json.tmp.1")), "").unwrap();
        std::fs::write(cdi.join("vfnet.dev-..json"), "").unwrap();
        let mut expected = vec![UID.to_owned(), other.to_owned()];
        expected.sort();
        assert_eq!(list(&cdi).unwrap(), expected);

        remove(&cdi, UID).unwrap();
        remove(&cdi, UID).unwrap();
        assert_eq!(list(&cdi).unwrap(), [other]);
        assert!(cdi.join("nvidia.com-gpu.json").exists(), "other vendors' specs are left alone");
    }

    #[test]
    fn uids_and_names_that_could_leave_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec_for_claim(UID, &[netdev_vf("0000:01:10.0", 0)], Path::new("/"));
        for uid in ["", "../etc", "a/b", "..", "a..", "-a", "a b", "ü", &"a".repeat(129)] {
            let e = write(dir.path(), uid, &spec).unwrap_err();
            assert!(matches!(e, CdiError::InvalidClaimUid { .. }), "{uid:?}: {e}");
            assert!(e.to_string().starts_with(&format!("claim UID {uid:?} cannot name a CDI spec: ")), "{e}");
            assert!(matches!(remove(dir.path(), uid), Err(CdiError::InvalidClaimUid { .. })), "{uid:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");

        let mut vf = netdev_vf("0000:01:10.0", 0);
        vf.device_name = "../x".to_owned();
        let e = write(dir.path(), UID, &spec_for_claim(UID, &[vf], Path::new("/"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "CDI spec of claim {UID}: device name \"../x\" may only hold ASCII letters, digits, '-', '_' and '.'"
            )
        );
        let e = write(dir.path(), UID, &spec_for_claim("other", &[netdev_vf("0000:01:10.0", 0)], Path::new("/")))
            .unwrap_err();
        assert!(matches!(e, CdiError::InvalidDeviceName { .. }), "{e}");
        let twice = spec_for_claim(UID, &[netdev_vf("0000:01:10.0", 0), netdev_vf("0000:01:10.0", 0)], Path::new("/"));
        let e = write(dir.path(), UID, &twice).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("CDI spec of claim {UID}: device name \"{UID}-vf-0000-01-10-0\" appears twice")
        );
        let e = write(dir.path(), UID, &spec_for_claim(UID, &[], Path::new("/"))).unwrap_err();
        assert_eq!(e.to_string(), format!("CDI spec of claim {UID} has no devices"));
    }

    #[test]
    fn a_write_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("cdi");
        std::fs::write(&blocker, "").unwrap();
        let spec = spec_for_claim(UID, &[netdev_vf("0000:01:10.0", 0)], Path::new("/"));
        let e = write(&blocker, UID, &spec).unwrap_err().to_string();
        assert!(e.contains(&blocker.display().to_string()), "{e}");
    }
}
