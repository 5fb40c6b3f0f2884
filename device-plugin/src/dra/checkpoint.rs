//! The DRA driver's prepared claims, kept in `<state-dir>/dra-checkpoint.json` so that a daemon
//! restart, a kubelet restart or a node reboot keeps them: kubelet does not prepare a claim again
//! that it counts prepared, so the daemon must remember what it prepared, answer the CNI plugin
//! about it ([`Checkpoint::for_pod`]) and rewrite the CDI specs a reboot wiped from their tmpfs
//! ([`Checkpoint::restore_cdi`], kubernetes#141433).
//!
//! The file lives in the state directory (`/var/lib/vfnet`, persistent), not the run directory
//! (a tmpfs): it must outlive a reboot. It is written atomically and durably
//! ([`sriov::persist`]) and holds a format version and a checksum of the claims:
//!
//! ```text
//! {"version": 1, "checksum": "fnv1a64:<16 hex digits>", "claims": {"<uid>": PreparedClaim, ...}}
//! ```
//!
//! [`load`] and a bad file:
//! - missing: no claims (a first start);
//! - unreadable (permissions, I/O): an error, nothing touched;
//! - a `version` newer than [`VERSION`]: an error, nothing touched: a downgraded daemon must not
//!   drop the claims a newer one prepared (fields this version does not know are ignored, so
//!   adding fields needs no new version; changing their meaning does);
//! - corrupt (not JSON, no version, a checksum that does not match, claims of the wrong shape):
//!   moved aside to `dra-checkpoint.json.corrupt-<unix-seconds>` and the daemon starts with no
//!   claims, with a warning to log loudly. Refusing to start would keep every new pod of the node
//!   from getting a VF over a file nobody can repair; the moved file keeps the evidence. The
//!   claims it held stay prepared in kubelet's view: their pods keep running, but a container
//!   restart finds no CDI spec once the specs are gone (see [`Checkpoint::write_cdi`]).
//!
//! The checksum is FNV-1a 64 over the compact JSON of the `claims` value as parsed from the file
//! (a `serde_json::Value`), not over this version's types re-encoded, so a file an older daemon
//! wrote, missing a field added since, still matches.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sriov::PciAddress;
use sriov::persist::{self, PersistError};
use vfnet_types::DeviceType;

use super::cdi::{self, CdiError};
use crate::allocate::VfInfo;
use crate::inventory::Device;
use crate::pools::Pool;

/// The checkpoint's file name in the state directory.
pub const FILE: &str = "dra-checkpoint.json";
/// The format version written, and the newest one read.
pub const VERSION: u32 = 1;

/// Why the checkpoint cannot be loaded, stored or its CDI specs restored. Each variant names
/// the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file exists but cannot be read.
    #[error("cannot read the DRA checkpoint {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file is of a newer format than this daemon's.
    #[error(
        "the DRA checkpoint {path} has version {version}, newer than this daemon's {supported}: \
         refusing to start rather than lose the claims it holds (run the newer daemon again)"
    )]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: u64,
        /// [`VERSION`].
        supported: u32,
    },
    /// A corrupt file cannot be moved aside.
    #[error("cannot move the corrupt DRA checkpoint {path} aside to {to}: {source}")]
    SetAside {
        /// The file.
        path: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The claims cannot be encoded.
    #[error("cannot encode the DRA checkpoint {path}: {source}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The file cannot be written.
    #[error("DRA checkpoint: {0}")]
    Write(#[from] PersistError),
    /// A CDI spec cannot be written, removed or listed.
    #[error(transparent)]
    Cdi(#[from] CdiError),
}

/// A VF prepared for a claim: what its container gets (through CDI, [`cdi::spec_for_claim`])
/// and what the CNI plugin needs to attach it. All of it is recorded at prepare time, so the CDI
/// spec can be rewritten from the checkpoint alone, after a reboot, before any scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreparedVf {
    /// The device's name in the ResourceSlice (`vf-0000-01-10-0`); also the end of its CDI device
    /// name, `<claim-uid>-<device-name>`.
    pub device_name: String,
    /// The DRA pool it was allocated from (the allocation result's `pool`, `<node>/<VfPool>`),
    /// as kubelet's prepared `Device` names it.
    pub pool_name: String,
    /// The claim requests it was allocated for (the allocation result's `request`: `req` or
    /// `req/subrequest`), as kubelet's prepared `Device` lists them.
    #[serde(default)]
    pub request_names: Vec<String>,
    /// The VfPool's name.
    pub vf_pool: String,
    /// What the env variables are named after ([`crate::allocate::env_name`]):
    /// `PCIDEVICE_<RESOURCE>` and `..._INFO`. The pool's `<prefix>/<resourceName>`
    /// ([`crate::pools::Pool::resource`]) gives a container the variables Allocate gives.
    pub resource: String,
    /// The VF.
    pub pci: PciAddress,
    /// Its PF.
    pub pf: PciAddress,
    /// The PF's netdev.
    #[serde(default)]
    pub pf_name: Option<String>,
    /// Its index under the PF.
    pub vf_index: u32,
    /// The driver it was bound to when prepared.
    #[serde(default)]
    pub driver: Option<String>,
    /// Its IOMMU group (`/dev/vfio/<group>` for vfio-pci pools).
    #[serde(default)]
    pub iommu_group: Option<u32>,
    /// The pool's device type.
    pub device_type: DeviceType,
    /// The pool's physical network.
    #[serde(default)]
    pub physical_network: Option<String>,
    /// The opaque `VfConfig`s that apply to its request, merged: what the CNI plugin applies.
    #[serde(default)]
    pub config: PreparedConfig,
}

impl PreparedVf {
    /// `device` of `pool`, allocated as `pool_name`/`device_name` for `request_names`, with the
    /// default config (set [`Self::config`] to the governed one). The env variables are named
    /// after the pool's resource, as Allocate's.
    pub fn new(pool: &Pool, device: &Device, pool_name: &str, device_name: &str, request_names: Vec<String>) -> Self {
        Self {
            device_name: device_name.to_owned(),
            pool_name: pool_name.to_owned(),
            request_names,
            vf_pool: pool.name.clone(),
            resource: pool.resource.clone(),
            pci: device.pci,
            pf: device.pf,
            pf_name: device.pf_netdev.clone(),
            vf_index: device.vf_index,
            driver: device.driver.clone(),
            iommu_group: device.iommu_group,
            device_type: pool.spec.device_type,
            physical_network: pool.spec.physical_network.clone(),
            config: PreparedConfig::default(),
        }
    }

    /// What `..._INFO` says of it ([`crate::allocate::VfInfo`], as Allocate's).
    pub fn info(&self) -> VfInfo<'_> {
        VfInfo {
            pci: self.pci,
            pf: self.pf,
            pf_name: self.pf_name.as_deref(),
            vf_index: self.vf_index,
            driver: self.driver.as_deref(),
            iommu_group: self.iommu_group,
            physical_network: self.physical_network.as_deref(),
            device_type: self.device_type,
        }
    }
}

/// The settings a claim's configuration gives one of its VFs. Per VF, not per claim: a claim's
/// opaque configurations may name requests, so two requests of one claim can differ.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PreparedConfig {
    /// The governed VfProfile to attach with.
    pub profile: Option<String>,
    /// `direct`, `macvtap` or `userspace` (`vfnet_types::VnicType`'s spelling); empty: the
    /// pool's device type decides.
    pub vnic_type: String,
    /// The VLAN.
    pub vlan: Option<u16>,
}

/// A pod a claim is reserved for (the claim's `status.reservedFor`): who may use its VFs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    /// The pod's namespace (the claim's).
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's UID.
    pub uid: String,
}

impl From<(String, String, String)> for PodRef {
    /// `(namespace, name, uid)`, as `claims::reserved_pods` lists them.
    fn from((namespace, name, uid): (String, String, String)) -> Self {
        Self { namespace, name, uid }
    }
}

/// A claim as prepared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreparedClaim {
    /// The claim's UID (the key in [`Checkpoint::claims`], and its CDI spec's file name).
    pub uid: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The pods it is reserved for, when it was prepared.
    #[serde(default)]
    pub pods: Vec<PodRef>,
    /// Its vfnet devices.
    #[serde(default)]
    pub devices: Vec<PreparedVf>,
    /// When it was prepared, in seconds since the epoch ([`unix_now`]).
    #[serde(default)]
    pub prepared_at: u64,
}

impl PreparedClaim {
    /// Claim `namespace/name` (UID `uid`), prepared now for `pods` with `devices`.
    pub fn new(uid: &str, namespace: &str, name: &str, pods: Vec<PodRef>, devices: Vec<PreparedVf>) -> Self {
        Self {
            uid: uid.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            pods,
            devices,
            prepared_at: unix_now(),
        }
    }

    /// The CDI device IDs of its devices, in order ([`cdi::cdi_device_id`]).
    pub fn cdi_device_ids(&self) -> Vec<String> {
        self.devices.iter().map(|d| cdi::cdi_device_id(&self.uid, &d.device_name)).collect()
    }
}

/// The prepared claims, by UID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The format version it was read in ([`store`] always writes [`VERSION`]).
    pub version: u32,
    /// The claims, by UID.
    pub claims: BTreeMap<String, PreparedClaim>,
}

impl Default for Checkpoint {
    fn default() -> Self {
        Self { version: VERSION, claims: BTreeMap::new() }
    }
}

/// `<dir>/dra-checkpoint.json`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Seconds since the epoch (0 if the clock is before it), for [`PreparedClaim::prepared_at`].
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `fnv1a64:<hex>` of the compact JSON of `claims`.
fn checksum(claims: &serde_json::Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in claims.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

/// What is wrong with a checkpoint's content.
enum Bad {
    /// Of a newer version.
    Newer(u64),
    /// Not a checkpoint; why.
    Corrupt(String),
}

fn parse(bytes: &[u8]) -> Result<Checkpoint, Bad> {
    let mut file: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Bad::Corrupt(format!("not JSON: {e}")))?;
    let version =
        file.get("version").and_then(serde_json::Value::as_u64).ok_or_else(|| Bad::Corrupt("no version".to_owned()))?;
    if version > u64::from(VERSION) {
        return Err(Bad::Newer(version));
    }
    let version = u32::try_from(version).ok().filter(|v| *v >= 1).ok_or(Bad::Corrupt(format!("version {version}")))?;
    let claims =
        file.get_mut("claims").map(serde_json::Value::take).ok_or_else(|| Bad::Corrupt("no claims".to_owned()))?;
    let stored = file.get("checksum").and_then(serde_json::Value::as_str).unwrap_or_default();
    let actual = checksum(&claims);
    if stored != actual {
        return Err(Bad::Corrupt(format!("checksum {stored:?} does not match the claims' {actual:?}")));
    }
    let claims: BTreeMap<String, PreparedClaim> =
        serde_json::from_value(claims).map_err(|e| Bad::Corrupt(format!("claims: {e}")))?;
    if let Some((key, claim)) = claims.iter().find(|(key, claim)| **key != claim.uid) {
        return Err(Bad::Corrupt(format!("claim {key:?} has uid {:?}", claim.uid)));
    }
    Ok(Checkpoint { version, claims })
}

/// Moves a corrupt checkpoint aside, durably: `<file>.corrupt-<unix-seconds>` (`-<n>` added if
/// that exists already).
fn set_aside(path: &Path) -> Result<PathBuf, CheckpointError> {
    let base = format!("{}.corrupt-{}", path.display(), unix_now());
    let mut to = PathBuf::from(&base);
    let mut n = 1;
    while to.exists() {
        to = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    let fail = |source| CheckpointError::SetAside { path: path.to_owned(), to: to.clone(), source };
    fs::rename(path, &to).map_err(fail)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(fail)?;
    Ok(to)
}

/// Loads the checkpoint in `dir` (see the module docs for a missing or bad file). The second
/// value is a warning when a corrupt file was moved aside and the claims it held are lost: log
/// it as an error, since those claims' pods lose their VFs at their next container restart.
///
/// Reads (and may rename and fsync) files: call it from a blocking thread.
pub fn load(dir: &Path) -> Result<(Checkpoint, Option<String>), CheckpointError> {
    let path = path(dir);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Checkpoint::default(), None)),
        Err(source) => return Err(CheckpointError::Read { path, source }),
    };
    match parse(&bytes) {
        Ok(checkpoint) => Ok((checkpoint, None)),
        Err(Bad::Newer(version)) => Err(CheckpointError::Newer { path, version, supported: VERSION }),
        Err(Bad::Corrupt(reason)) => {
            let to = set_aside(&path)?;
            let warning = format!(
                "the DRA checkpoint {} is corrupt ({reason}); moved it to {} and starting with no prepared \
                 claims: the claims it held are forgotten",
                path.display(),
                to.display()
            );
            Ok((Checkpoint::default(), Some(warning)))
        }
    }
}

/// Stores `checkpoint` in `dir` (created if missing) atomically and durably, as version
/// [`VERSION`].
///
/// Fsyncs the file and the directory: call it from a blocking thread.
pub fn store(dir: &Path, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
    let path = path(dir);
    let claims = serde_json::to_value(&checkpoint.claims)
        .map_err(|source| CheckpointError::Encode { path: path.clone(), source })?;
    let file = serde_json::json!({"version": VERSION, "checksum": checksum(&claims), "claims": claims});
    persist::write_json(&path, &file)?;
    Ok(())
}

impl Checkpoint {
    /// The claim of `uid`.
    pub fn get(&self, uid: &str) -> Option<&PreparedClaim> {
        self.claims.get(uid)
    }

    /// Adds `claim` (in memory: [`store`] writes it), replacing and returning the claim of the
    /// same UID.
    pub fn insert(&mut self, claim: PreparedClaim) -> Option<PreparedClaim> {
        self.claims.insert(claim.uid.clone(), claim)
    }

    /// Removes and returns the claim of `uid` (in memory: [`store`] writes it).
    pub fn remove(&mut self, uid: &str) -> Option<PreparedClaim> {
        self.claims.remove(uid)
    }

    /// The prepared VFs of pod `namespace/name` (and UID `uid`, when given: a pod recreated
    /// under the same name is another pod), with their claims: the VFs of every claim reserved
    /// for it, in claim UID order, each claim's in its order.
    pub fn for_pod(&self, namespace: &str, name: &str, uid: Option<&str>) -> Vec<(&PreparedClaim, &PreparedVf)> {
        self.claims
            .values()
            .filter(|c| {
                c.pods.iter().any(|p| p.namespace == namespace && p.name == name && uid.is_none_or(|u| p.uid == u))
            })
            .flat_map(|c| c.devices.iter().map(move |d| (c, d)))
            .collect()
    }

    /// Writes the CDI spec of every claim with devices into `cdi_dir` ([`cdi::spec_for_claim`];
    /// `dev_root` as there) and returns their UIDs. Every claim is tried; the first error is
    /// returned after.
    ///
    /// Fsyncs files: call it from a blocking thread.
    pub fn write_cdi(&self, cdi_dir: &Path, dev_root: &Path) -> Result<Vec<String>, CheckpointError> {
        let mut written = Vec::new();
        let mut first_error = None;
        for claim in self.claims.values().filter(|c| !c.devices.is_empty()) {
            match cdi::write(cdi_dir, &claim.uid, &cdi::spec_for_claim(&claim.uid, &claim.devices, dev_root)) {
                Ok(_) => written.push(claim.uid.clone()),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(written),
        }
    }

    /// Removes vfnet's CDI specs in `cdi_dir` that no claim with devices owns, and returns their
    /// claim UIDs. Other vendors' files are left alone. After a corrupt checkpoint was set aside,
    /// this removes the specs of the claims it held: the caller may prefer to keep them.
    pub fn remove_stale_cdi(&self, cdi_dir: &Path) -> Result<Vec<String>, CheckpointError> {
        let mut removed = Vec::new();
        for uid in cdi::list(cdi_dir)? {
            if self.claims.get(&uid).is_none_or(|c| c.devices.is_empty()) {
                cdi::remove(cdi_dir, &uid)?;
                removed.push(uid);
            }
        }
        Ok(removed)
    }

    /// At start-up, before kubelet is served: rewrites every claim's CDI spec (a reboot wiped
    /// the tmpfs they live on) with [`Self::write_cdi`], then removes the specs no claim owns
    /// with [`Self::remove_stale_cdi`] (both are tried). Returns the UIDs rewritten.
    ///
    /// Fsyncs files: call it from a blocking thread.
    pub fn restore_cdi(&self, cdi_dir: &Path, dev_root: &Path) -> Result<Vec<String>, CheckpointError> {
        let written = self.write_cdi(cdi_dir, dev_root);
        let removed = self.remove_stale_cdi(cdi_dir);
        let written = written?;
        removed?;
        Ok(written)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A netdevice VF of pool tenant-a (resource `vfnet.dev/tenant_a`).
    pub(crate) fn netdev_vf(pci: &str, index: u32) -> PreparedVf {
        let pci: PciAddress = pci.parse().unwrap();
        PreparedVf {
            device_name: format!("vf-{}", pci.to_string().replace([':', '.'], "-")),
            pool_name: "node-1/tenant-a".to_owned(),
            request_names: vec!["vf".to_owned()],
            vf_pool: "tenant-a".to_owned(),
            resource: "vfnet.dev/tenant_a".to_owned(),
            pci,
            pf: "0000:01:00.0".parse().unwrap(),
            pf_name: Some("ens1f0".to_owned()),
            vf_index: index,
            driver: Some("iavf".to_owned()),
            iommu_group: Some(30 + index),
            device_type: DeviceType::Netdevice,
            physical_network: Some("physnet1".to_owned()),
            config: PreparedConfig {
                profile: Some("tenant-a".to_owned()),
                vnic_type: "direct".to_owned(),
                vlan: Some(100),
            },
        }
    }

    /// A vfio-pci VF of pool dpdk (resource `vfnet.dev/dpdk`) in IOMMU group `group`.
    pub(crate) fn vfio_vf(pci: &str, index: u32, group: u32) -> PreparedVf {
        PreparedVf {
            vf_pool: "dpdk".to_owned(),
            pool_name: "node-1/dpdk".to_owned(),
            resource: "vfnet.dev/dpdk".to_owned(),
            driver: Some("vfio-pci".to_owned()),
            iommu_group: Some(group),
            device_type: DeviceType::VfioPci,
            physical_network: None,
            config: PreparedConfig { profile: None, vnic_type: "userspace".to_owned(), vlan: None },
            ..netdev_vf(pci, index)
        }
    }

    fn pod(name: &str, uid: &str) -> PodRef {
        PodRef { namespace: "tenant-a".to_owned(), name: name.to_owned(), uid: uid.to_owned() }
    }

    fn claim(uid: &str, pods: Vec<PodRef>, devices: Vec<PreparedVf>) -> PreparedClaim {
        PreparedClaim {
            uid: uid.to_owned(),
            namespace: "tenant-a".to_owned(),
            name: format!("claim-{uid}"),
            pods,
            devices,
            prepared_at: 1_700_000_000,
        }
    }

    fn sample() -> Checkpoint {
        let mut c = Checkpoint::default();
        c.insert(claim(
            "uid-1",
            vec![pod("web", "p1")],
            vec![netdev_vf("0000:01:10.0", 0), netdev_vf("0000:01:10.2", 2)],
        ));
        c.insert(claim("uid-2", vec![pod("web", "p1"), pod("db", "p2")], vec![vfio_vf("0000:01:10.1", 1, 42)]));
        c
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn round_trips_with_version_and_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert_eq!(load(&state).unwrap(), (Checkpoint::default(), None), "no file: no claims");

        let c = sample();
        store(&state, &c).unwrap();
        assert_eq!(load(&state).unwrap(), (c.clone(), None));
        assert_eq!(files(&state), [FILE], "no temporary file left");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(path(&state)).unwrap().permissions().mode() & 0o777, 0o600);

        let raw: serde_json::Value = serde_json::from_slice(&fs::read(path(&state)).unwrap()).unwrap();
        assert_eq!(raw["version"], 1);
        assert!(raw["checksum"].as_str().unwrap().starts_with("fnv1a64:"), "{raw}");
        assert_eq!(
            raw["claims"]["uid-1"]["devices"][0],
            json!({
                "deviceName": "vf-0000-01-10-0", "poolName": "node-1/tenant-a", "requestNames": ["vf"],
                "vfPool": "tenant-a", "resource": "vfnet.dev/tenant_a",
                "pci": "0000:01:10.0", "pf": "0000:01:00.0", "pfName": "ens1f0", "vfIndex": 0,
                "driver": "iavf", "iommuGroup": 30, "deviceType": "netdevice",
                "physicalNetwork": "physnet1",
                "config": {"profile": "tenant-a", "vnicType": "direct", "vlan": 100},
            })
        );
        assert_eq!(raw["claims"]["uid-1"]["pods"], json!([{"namespace": "tenant-a", "name": "web", "uid": "p1"}]));

        let mut c = c;
        assert!(c.remove("uid-1").is_some());
        assert!(c.remove("uid-1").is_none());
        store(&state, &c).unwrap();
        assert_eq!(load(&state).unwrap().0.claims.keys().collect::<Vec<_>>(), ["uid-2"]);
    }

    #[test]
    fn a_file_missing_a_newer_field_still_matches_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let mut claims = serde_json::to_value(sample().claims).unwrap();
        // As an older daemon would have written it: no config.
        for device in claims["uid-1"]["devices"].as_array_mut().unwrap() {
            device.as_object_mut().unwrap().remove("config");
        }
        let file = json!({"version": 1, "checksum": checksum(&claims), "claims": claims});
        fs::write(path(dir.path()), serde_json::to_vec_pretty(&file).unwrap()).unwrap();
        let (c, warning) = load(dir.path()).unwrap();
        assert_eq!(warning, None);
        assert_eq!(c.claims["uid-1"].devices[0].config, PreparedConfig::default());
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_the_daemon_starts_empty() {
        let valid = |dir: &Path| {
            store(dir, &sample()).unwrap();
            fs::read_to_string(path(dir)).unwrap()
        };
        // Each case turns a valid file's text into a corrupt one.
        type Corrupt = fn(String) -> String;
        let cases: [(&str, Corrupt); 5] = [
            ("not JSON", |_| "{\"version\": 1, \"claims\": {".to_owned()),
            ("no version", |s| s.replacen("\"version\": 1", "\"verzion\": 1", 1)),
            ("version 0", |s| s.replacen("\"version\": 1", "\"version\": 0", 1)),
            ("checksum", |s| s.replacen("\"vlan\": 100", "\"vlan\": 101", 1)),
            ("no claims", |_| "{\"version\": 1}".to_owned()),
        ];
        for (what, corrupt) in cases {
            let dir = tempfile::tempdir().unwrap();
            let text = corrupt(valid(dir.path()));
            fs::write(path(dir.path()), &text).unwrap();
            let (c, warning) = load(dir.path()).unwrap();
            assert_eq!(c, Checkpoint::default(), "{what}");
            let warning = warning.unwrap();
            assert!(warning.contains(&path(dir.path()).display().to_string()), "{what}: {warning}");
            assert!(warning.contains(what), "{what}: {warning}");
            let names = files(dir.path());
            assert_eq!(names.len(), 1, "{what}: {names:?}");
            assert!(names[0].starts_with("dra-checkpoint.json.corrupt-"), "{what}: {names:?}");
            assert!(warning.contains(&names[0]), "{what}: {warning}");
            assert_eq!(fs::read_to_string(dir.path().join(&names[0])).unwrap(), text, "{what}: evidence kept");
            assert_eq!(load(dir.path()).unwrap(), (Checkpoint::default(), None), "{what}: the next start is clean");
        }

        // Claims of the wrong shape, with a checksum that matches them.
        let dir = tempfile::tempdir().unwrap();
        let claims = json!({"uid-1": {"uid": "uid-2", "namespace": "a", "name": "b"}});
        let file = json!({"version": 1, "checksum": checksum(&claims), "claims": claims});
        fs::write(path(dir.path()), file.to_string()).unwrap();
        let warning = load(dir.path()).unwrap().1.unwrap();
        assert!(warning.contains("claim \"uid-1\" has uid \"uid-2\""), "{warning}");
        let claims = json!({"uid-1": {"uid": "uid-1"}});
        let file = json!({"version": 1, "checksum": checksum(&claims), "claims": claims});
        fs::write(path(dir.path()), file.to_string()).unwrap();
        let warning = load(dir.path()).unwrap().1.unwrap();
        assert!(warning.contains("claims: missing field `namespace`"), "{warning}");
        assert_eq!(files(dir.path()).len(), 2, "both moved aside, neither overwritten");
    }

    #[test]
    fn a_newer_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let text = json!({"version": 2, "checksum": "whatever", "claims": {}}).to_string();
        fs::write(path(dir.path()), &text).unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(matches!(e, CheckpointError::Newer { version: 2, supported: 1, .. }), "{e}");
        assert!(e.to_string().starts_with(&format!("the DRA checkpoint {} has version 2", path(dir.path()).display())));
        assert_eq!(fs::read_to_string(path(dir.path())).unwrap(), text);
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("state");
        fs::write(&blocker, "").unwrap();
        let e = store(&blocker, &sample()).unwrap_err().to_string();
        assert!(e.starts_with("DRA checkpoint: ") && e.contains(&blocker.display().to_string()), "{e}");
    }

    #[test]
    fn for_pod_matches_namespace_name_and_uid_when_given() {
        let c = sample();
        let found = |ns: &str, name: &str, uid: Option<&str>| -> Vec<(String, String)> {
            c.for_pod(ns, name, uid).into_iter().map(|(c, d)| (c.uid.clone(), d.pci.to_string())).collect()
        };
        let web = vec![
            ("uid-1".to_owned(), "0000:01:10.0".to_owned()),
            ("uid-1".to_owned(), "0000:01:10.2".to_owned()),
            ("uid-2".to_owned(), "0000:01:10.1".to_owned()),
        ];
        assert_eq!(found("tenant-a", "web", None), web);
        assert_eq!(found("tenant-a", "web", Some("p1")), web);
        assert!(found("tenant-a", "web", Some("p-recreated")).is_empty(), "another pod of the same name");
        assert_eq!(found("tenant-a", "db", Some("p2")), [("uid-2".to_owned(), "0000:01:10.1".to_owned())]);
        assert!(found("tenant-b", "web", None).is_empty(), "another namespace");
        assert!(found("tenant-a", "nobody", None).is_empty());
    }

    #[test]
    fn restore_cdi_rewrites_wiped_specs_and_removes_stale_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cdi_dir = dir.path().join("cdi");
        let dev_root = dir.path().join("root");
        let mut c = sample();
        c.insert(claim("uid-3", vec![pod("idle", "p3")], vec![]));
        assert_eq!(c.restore_cdi(&cdi_dir, &dev_root).unwrap(), ["uid-1", "uid-2"]);
        assert_eq!(
            files(&cdi_dir),
            ["vfnet.dev-uid-1.json", "vfnet.dev-uid-2.json"],
            "a claim without devices has none"
        );

        // A reboot wipes the tmpfs; a claim unprepared while the daemon was down left its spec.
        for name in files(&cdi_dir) {
            fs::remove_file(cdi_dir.join(name)).unwrap();
        }
        fs::write(cdi_dir.join("vfnet.dev-uid-gone.json"), "{}").unwrap();
        fs::write(cdi_dir.join("vfnet.dev-uid-3.json"), "{}").unwrap();
        fs::write(cdi_dir.join("example.com-gpu.json"), "{}").unwrap();
        assert_eq!(c.restore_cdi(&cdi_dir, &dev_root).unwrap(), ["uid-1", "uid-2"]);
        assert_eq!(files(&cdi_dir), ["example.com-gpu.json", "vfnet.dev-uid-1.json", "vfnet.dev-uid-2.json"]);
        for uid in ["uid-1", "uid-2"] {
            let spec: cdi::Spec = serde_json::from_slice(&fs::read(cdi::spec_path(&cdi_dir, uid)).unwrap()).unwrap();
            assert_eq!(spec, cdi::spec_for_claim(uid, &c.claims[uid].devices, &dev_root), "{uid}");
        }
        assert_eq!(
            c.claims["uid-2"].cdi_device_ids(),
            ["vfnet.dev/vf=uid-2-vf-0000-01-10-1"],
            "what NodePrepareResources answers"
        );
    }

    #[test]
    fn restore_cdi_tries_every_claim_and_reports_the_first_error() {
        let dir = tempfile::tempdir().unwrap();
        let cdi_dir = dir.path().join("cdi");
        let mut c = sample();
        c.insert(claim("../evil", vec![], vec![netdev_vf("0000:01:10.4", 4)]));
        let e = c.restore_cdi(&cdi_dir, dir.path()).unwrap_err();
        assert!(matches!(e, CheckpointError::Cdi(CdiError::InvalidClaimUid { .. })), "{e}");
        assert_eq!(files(&cdi_dir), ["vfnet.dev-uid-1.json", "vfnet.dev-uid-2.json"], "the others are written");
    }
}
