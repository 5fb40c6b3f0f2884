//! `VfPool`: which VFs become which node resource, on which nodes, and through which API.
//!
//! A pool's `mode` says how its VFs reach pods:
//! - `devicePlugin` (the default): the device plugin advertises them to kubelet as
//!   `<prefix>/<resourceName>` (prefix `vfnet.dev` by default), for pods to request as extended
//!   resources;
//! - `dra`: the DRA driver `vfnet.dev` publishes them as ResourceSlices (one slice pool per node),
//!   for ResourceClaims to allocate; a claim's opaque [`crate::vfconfig::VfConfig`] picks the
//!   profile, vnicType and VLAN, governed by [`crate::vfconfig::govern`].
//!
//! A VF belongs to the first pool that selects it, so no VF is ever offered both ways. Until the
//! daemon watches `VfPool` objects in the cluster it reads them from its `--pools` file, in the
//! same shape the API serves (`kubectl get vfpools -o yaml`).
//!
//! Two types hold a whole pool: [`VfPool`], the custom resource (`kube::CustomResource` on
//! [`VfPoolSpec`], what the API serves), and [`PoolObject`], the same object as a pools file holds
//! it, read strictly (unknown keys refused) and without a Kubernetes client.
//!
//! ```yaml
//! apiVersion: vfnet.dev/v1alpha1
//! kind: VfPool
//! metadata: {name: tenant-a}
//! spec:
//!   resourceName: tenant_a          # -> vfnet.dev/tenant_a
//!   deviceType: netdevice           # or vfio-pci
//!   physicalNetwork: physnet1
//!   allocationPolicy: spread        # or pack
//!   mode: devicePlugin              # the default; or dra (ResourceSlices of driver vfnet.dev)
//!   selector:
//!     pfNames: ["ens1f0#0-3,6"]     # VFs 0-3 and 6 of ens1f0
//! ```

use std::collections::BTreeMap;
use std::fmt;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
/// How a pool hands out VFs, from its one home (device records carry it too).
pub use vfnet_types::DeviceType;
use vfnet_types::{PciAddress, VfRange};

/// The kind, as `kind:` spells it.
pub const KIND: &str = "VfPool";

/// How GetPreferredAllocation picks among free VFs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AllocationPolicy {
    /// VFs from the least used PFs first: spreads pods over uplinks.
    #[default]
    Spread,
    /// Fill one PF before taking VFs of the next: keeps whole PFs free.
    Pack,
}

impl fmt::Display for AllocationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Spread => "spread",
            Self::Pack => "pack",
        })
    }
}

/// How a pool's VFs reach pods: which of vfnet's two Kubernetes APIs offers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PoolMode {
    /// Advertised to kubelet by the device plugin as `<prefix>/<resourceName>`.
    #[default]
    DevicePlugin,
    /// Published as ResourceSlices of the DRA driver `vfnet.dev`, one pool per node.
    Dra,
}

impl PoolMode {
    /// True for the default, which pools leave out (so existing objects serialize unchanged).
    pub fn is_device_plugin(&self) -> bool {
        *self == Self::DevicePlugin
    }
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DevicePlugin => "devicePlugin",
            Self::Dra => "dra",
        })
    }
}

/// A PCI address (`0000:3b:02.1`, domain optional), as the schema checks it.
const PCI_PATTERN: &str = r"([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]";
/// An optional VF index list after a PF (`#0-3,6`), as the schema checks it.
const RANGE_PATTERN: &str = r"(#[0-9, -]+)?";

/// Which VFs a pool takes. Each non-empty list must match (a VF is selected when it matches one
/// entry of every list given); an empty selector selects every VF.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VfSelector {
    /// VF PCI vendor IDs, four hex digits (8086).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(r"^(0x)?[0-9a-fA-F]{4}$")))]
    pub vendors: Vec<String>,
    /// VF PCI device IDs, four hex digits (10ca).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(r"^(0x)?[0-9a-fA-F]{4}$")))]
    pub devices: Vec<String>,
    /// Drivers the VF is bound to (iavf, igbvf, vfio-pci, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(r"^[^/\s]+$")))]
    pub drivers: Vec<String>,
    /// PF netdev names, optionally with VF indices: ens1f0 (every VF), ens1f0#0-3,6 (VFs 0 to 3
    /// and 6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(r"^[^/:\s#]{1,15}(#[0-9, -]+)?$")))]
    pub pf_names: Vec<String>,
    /// VF PCI addresses (0000:3b:02.1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(format!("^{PCI_PATTERN}$"))))]
    pub pci_addresses: Vec<String>,
    /// PF PCI addresses, optionally with VF indices: 0000:3b:00.0 (every VF), 0000:3b:00.0#0-7.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(format!("^{PCI_PATTERN}{RANGE_PATTERN}$"))))]
    pub root_devices: Vec<String>,
    /// Link types of the VF (or, for a VF without a netdev, of its PF): ether or infiniband.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = "^(ether|infiniband)$")))]
    pub link_types: Vec<String>,
}

/// The spec of a `VfPool`.
///
/// The doc comments are the schema's descriptions (`kubectl explain vfpool.spec`).
// The printcolumn(...) entries repeat `type_ = "string"`, which clippy takes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "vfnet.dev",
    version = "v1alpha1",
    kind = "VfPool",
    plural = "vfpools",
    shortname = "vfpool",
    category = "vfnet",
    derive = "PartialEq",
    doc = "A VfPool says which SR-IOV VFs become which node resource, on which nodes: on every \
           node whose labels match nodeSelector, the vfnet device plugin advertises the VFs the \
           selector picks as vfnet.dev/<resourceName>, for pods to request, or (mode: dra) the \
           DRA driver vfnet.dev publishes them as ResourceSlices, for ResourceClaims to allocate.",
    printcolumn(
        name = "Resource",
        type_ = "string",
        json_path = ".spec.resourceName",
        description = "The resource name under the device plugin's prefix (vfnet.dev/<resourceName>)"
    ),
    printcolumn(
        name = "Device type",
        type_ = "string",
        json_path = ".spec.deviceType",
        description = "netdevice or vfio-pci"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "devicePlugin (a kubelet resource) or dra (ResourceSlices of driver vfnet.dev)"
    ),
    printcolumn(
        name = "Node selector",
        type_ = "string",
        json_path = ".spec.nodeSelector",
        description = "Labels a node must carry for the pool to apply there"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(
    description = "Which VFs the pool takes, on which nodes, and how they are handed to pods.",
    extend("x-kubernetes-validations" = [{
        "rule": "!has(self.allowedProfiles) || (has(self.requireProfile) && self.requireProfile)",
        "message": "allowedProfiles needs requireProfile: true (without it, a network definition could skip the profile)",
        "fieldPath": ".allowedProfiles",
        "reason": "FieldValueInvalid",
    }])
)]
pub struct VfPoolSpec {
    /// The resource name under the device plugin's prefix: pods request vfnet.dev/<resourceName>.
    /// Letters, digits, '_' and '-', at most 63 characters.
    #[schemars(length(min = 1, max = 63), pattern(r"^[A-Za-z0-9_-]+$"))]
    pub resource_name: String,
    /// Labels a node must carry (all of them) for the pool to apply there. Empty: every node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// How the VFs are handed to pods: netdevice (a kernel network interface, the default) or
    /// vfio-pci (bound to vfio-pci for userspace networking, with its /dev/vfio device nodes).
    #[serde(default)]
    pub device_type: DeviceType,
    /// The physical network the selected PFs are cabled to. VfProfiles naming another network are
    /// refused for these VFs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(r"^\S+$"))]
    pub physical_network: Option<String>,
    /// When a PF named by pfNames or rootDevices has no VFs, create this many (1-65535).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub num_vfs: Option<u32>,
    /// How the device plugin prefers VFs for a pod: spread (the default) over the least used PFs,
    /// or pack onto one PF before the next.
    #[serde(default)]
    pub allocation_policy: AllocationPolicy,
    /// Which VFs the pool takes. Empty: every VF of the node.
    #[serde(default)]
    pub selector: VfSelector,
    /// How the pool's VFs reach pods: devicePlugin (the default) advertises the pool to kubelet as
    /// <prefix>/<resourceName>, for pods to request as a resource; dra publishes its VFs as
    /// ResourceSlices of the DRA driver vfnet.dev, one pool per node, for ResourceClaims to
    /// allocate. Never both for the same VF: a VF belongs to one pool.
    #[serde(default, skip_serializing_if = "PoolMode::is_device_plugin")]
    // schemars leaves out the default of a field serde skips when default: say it.
    #[schemars(extend("default" = "devicePlugin"))]
    pub mode: PoolMode,
    /// Only VfProfiles configure this pool's VFs: a network definition that names no profile, or
    /// sets a VF setting itself (vlan, vlanQoS, vlanProto, spoofchk, trust, mac, min_tx_rate,
    /// max_tx_rate, link_state), is refused, and so is (mode dra) a claim whose VfConfig names no
    /// profile. Set it wherever tenants write network definitions or claims (multi-tenant
    /// clusters); without it the pool's VFs take sriov-cni's keys as they are.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_profile: bool,
    /// The VfProfiles this pool's VFs may be attached with (needs requireProfile). Absent: any
    /// profile. Keeps a tenant from putting another network's profile on VFs meant for someone
    /// else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(length(min = 1, max = 253)), extend("x-kubernetes-list-type" = "set"))]
    pub allowed_profiles: Option<Vec<String>>,
}

/// The metadata a pool needs (the API serves much more; it is ignored).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PoolMeta {
    /// The pool's name, unique in the cluster.
    pub name: String,
    /// Anything else the API serves (labels, uid, ...), kept so served objects parse.
    #[serde(flatten, default, skip_serializing)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A `VfPool` object as a pools file holds it: unlike [`VfPool`], unknown keys are refused and
/// `apiVersion` and `kind` are kept (to be checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolObject {
    /// `vfnet.dev/v1alpha1`; may be left out in a pools file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `VfPool`; may be left out in a pools file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Metadata.
    pub metadata: PoolMeta,
    /// The spec.
    pub spec: VfPoolSpec,
    /// What the API server adds; ignored.
    #[serde(default, skip_serializing)]
    pub status: Option<serde_json::Value>,
}

/// A rule a pool breaks, naming the key (`spec.selector.pfNames[1]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct PoolSpecError {
    /// The offending key, with list indices.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

fn bad(key: impl Into<String>, problem: impl Into<String>) -> PoolSpecError {
    PoolSpecError { key: key.into(), problem: problem.into() }
}

/// A `pfNames` or `rootDevices` entry: a PF, and which of its VFs (`None`: all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfRef<T> {
    /// The PF: a netdev name or a PCI address.
    pub pf: T,
    /// The VF indices after `#`.
    pub vfs: Option<VfRange>,
}

impl<T> PfRef<T> {
    /// True if VF `index` of this PF is meant.
    pub fn includes(&self, index: u32) -> bool {
        self.vfs.as_ref().is_none_or(|r| r.contains(index))
    }
}

fn split_range(entry: &str) -> Result<(&str, Option<VfRange>), String> {
    match entry.split_once('#') {
        None => Ok((entry, None)),
        Some((pf, range)) => Ok((pf, Some(range.parse::<VfRange>().map_err(|e| e.to_string())?))),
    }
}

/// Parses a `pfNames` entry (`ens1f0`, `ens1f0#0-3,6`).
pub fn parse_pf_name(entry: &str) -> Result<PfRef<String>, String> {
    let (name, vfs) = split_range(entry)?;
    // The kernel's rules for interface names (dev_valid_name).
    if name.is_empty() || name.len() > 15 || name == "." || name == ".." {
        return Err(format!("{name:?} is not a network interface name (1-15 characters)"));
    }
    if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!("{name:?} is not a network interface name (no '/', ':' or spaces)"));
    }
    Ok(PfRef { pf: name.to_owned(), vfs })
}

/// Parses a `rootDevices` entry (`0000:3b:00.0`, `0000:3b:00.0#0-7`).
pub fn parse_root_device(entry: &str) -> Result<PfRef<PciAddress>, String> {
    let (pci, vfs) = split_range(entry)?;
    Ok(PfRef { pf: pci.parse::<PciAddress>().map_err(|e| e.to_string())?, vfs })
}

/// Parses a `vendors` or `devices` entry: four hex digits, with or without `0x`.
pub fn parse_pci_id(entry: &str) -> Result<u16, String> {
    let digits = entry.strip_prefix("0x").unwrap_or(entry);
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{entry:?} is not a PCI id (four hex digits, e.g. 8086)"));
    }
    u16::from_str_radix(digits, 16).map_err(|e| e.to_string())
}

/// The link types a selector may name.
pub const LINK_TYPES: &[&str] = &["ether", "infiniband"];

/// True if `name` may be a resource name: `^[A-Za-z0-9_-]+$`, at most 63 characters (the name
/// part of a Kubernetes extended resource).
pub fn valid_resource_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn each<'a>(key: &str, list: &'a [String], check: impl Fn(&'a str) -> Result<(), String>) -> Result<(), PoolSpecError> {
    for (i, entry) in list.iter().enumerate() {
        check(entry).map_err(|problem| bad(format!("{key}[{i}]"), problem))?;
    }
    Ok(())
}

impl VfSelector {
    /// Checks every entry's syntax. `key` prefixes the keys in errors (`spec.selector`).
    pub fn validate(&self, key: &str) -> Result<(), PoolSpecError> {
        each(&format!("{key}.vendors"), &self.vendors, |v| parse_pci_id(v).map(drop))?;
        each(&format!("{key}.devices"), &self.devices, |v| parse_pci_id(v).map(drop))?;
        each(&format!("{key}.drivers"), &self.drivers, |d| {
            if d.is_empty() || d.contains('/') || d.contains(char::is_whitespace) {
                Err(format!("{d:?} is not a driver name"))
            } else {
                Ok(())
            }
        })?;
        each(&format!("{key}.pfNames"), &self.pf_names, |e| parse_pf_name(e).map(drop))?;
        each(&format!("{key}.pciAddresses"), &self.pci_addresses, |e| {
            e.parse::<PciAddress>().map(drop).map_err(|e| e.to_string())
        })?;
        each(&format!("{key}.rootDevices"), &self.root_devices, |e| parse_root_device(e).map(drop))?;
        each(&format!("{key}.linkTypes"), &self.link_types, |t| {
            if LINK_TYPES.contains(&t) {
                Ok(())
            } else {
                Err(format!("{t:?} is not a link type (one of {})", LINK_TYPES.join(", ")))
            }
        })
    }
}

impl VfPoolSpec {
    /// Checks the rules the CRD schema enforces in the cluster, so a hand-written pools file
    /// gets them too. Keys in errors start with `spec.`.
    pub fn validate(&self) -> Result<(), PoolSpecError> {
        if !valid_resource_name(&self.resource_name) {
            return Err(bad(
                "spec.resourceName",
                format!(
                    "{:?} is not a resource name (1-63 characters of A-Z, a-z, 0-9, '_' and '-')",
                    self.resource_name
                ),
            ));
        }
        if self.allowed_profiles.is_some() && !self.require_profile {
            return Err(bad("spec.allowedProfiles", "needs requireProfile: true"));
        }
        if let Some(name) = self.allowed_profiles.iter().flatten().find(|n| n.is_empty() || n.contains('/')) {
            return Err(bad("spec.allowedProfiles", format!("{name:?} is not a VfProfile name")));
        }
        if let Some(key) = self.node_selector.keys().find(|k| k.is_empty()) {
            return Err(bad("spec.nodeSelector", format!("{key:?} is not a label key")));
        }
        if let Some(net) = &self.physical_network
            && (net.is_empty() || net.contains(char::is_whitespace))
        {
            return Err(bad("spec.physicalNetwork", format!("{net:?} is not a network name")));
        }
        if let Some(n) = self.num_vfs
            && !(1..=u32::from(u16::MAX)).contains(&n)
        {
            return Err(bad("spec.numVfs", format!("{n} is outside 1-65535")));
        }
        self.selector.validate("spec.selector")
    }

    /// True if a node with `labels` should serve this pool.
    pub fn selects_node(&self, labels: &BTreeMap<String, String>) -> bool {
        self.node_selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

impl From<&VfPool> for PoolObject {
    /// The pools-file form of a pool the API served (its name, or empty if it has none, which
    /// [`PoolObject::validate`] refuses).
    fn from(pool: &VfPool) -> Self {
        use kube::Resource;
        Self {
            api_version: VfPool::api_version(&()).into_owned(),
            kind: VfPool::kind(&()).into_owned(),
            metadata: PoolMeta { name: pool.metadata.name.clone().unwrap_or_default(), other: BTreeMap::new() },
            spec: pool.spec.clone(),
            status: None,
        }
    }
}

impl PoolObject {
    /// Checks the object: apiVersion and kind if given, the name, then the spec.
    pub fn validate(&self) -> Result<(), PoolSpecError> {
        let api_version = format!("{}/{}", crate::GROUP, crate::VERSION);
        if !self.api_version.is_empty() && self.api_version != api_version {
            return Err(bad("apiVersion", format!("{:?} is not {api_version}", self.api_version)));
        }
        if !self.kind.is_empty() && self.kind != KIND {
            return Err(bad("kind", format!("{:?} is not {KIND}", self.kind)));
        }
        let name = &self.metadata.name;
        if !crate::is_object_name(name) {
            return Err(bad(
                "metadata.name",
                format!("{name:?} is not an object name (lower-case letters, digits, '-' and '.')"),
            ));
        }
        self.spec.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(json: serde_json::Value) -> Result<PoolObject, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn parses_the_documented_shape_with_defaults() {
        let p = pool(serde_json::json!({
            "apiVersion": "vfnet.dev/v1alpha1", "kind": "VfPool",
            "metadata": {"name": "tenant-a", "uid": "x", "labels": {"a": "b"}},
            "spec": {"resourceName": "tenant_a", "selector": {"pfNames": ["ens1f0#0-3,6"]}}
        }))
        .unwrap();
        p.validate().unwrap();
        assert_eq!(p.spec.device_type, DeviceType::Netdevice);
        assert_eq!(p.spec.allocation_policy, AllocationPolicy::Spread);
        let r = parse_pf_name(&p.spec.selector.pf_names[0]).unwrap();
        assert_eq!(r.pf, "ens1f0");
        assert!(r.includes(6) && !r.includes(4));
        let all = parse_pf_name("ens1f0").unwrap();
        assert!(all.includes(4000));
    }

    #[test]
    fn mode_defaults_to_the_device_plugin_and_is_left_out_then() {
        let doc = serde_json::json!({
            "apiVersion": "vfnet.dev/v1alpha1", "kind": "VfPool",
            "metadata": {"name": "a"}, "spec": {"resourceName": "a"}
        });
        let p = pool(doc.clone()).unwrap();
        assert_eq!(p.spec.mode, PoolMode::DevicePlugin);
        let written = serde_json::to_value(&p).unwrap();
        assert!(written["spec"].get("mode").is_none(), "an existing object serializes unchanged: {written}");

        let mut dra = doc.clone();
        dra["spec"]["mode"] = serde_json::json!("dra");
        let p = pool(dra.clone()).unwrap();
        p.validate().unwrap();
        assert_eq!((p.spec.mode, p.spec.mode.to_string()), (PoolMode::Dra, "dra".to_owned()));
        assert_eq!(serde_json::to_value(&p).unwrap()["spec"]["mode"], "dra");
        // The served object (kube's type) reads it too, and the explicit default.
        let served: VfPool = serde_json::from_value(dra).unwrap();
        assert_eq!(PoolObject::from(&served).spec.mode, PoolMode::Dra);
        let mut explicit = doc.clone();
        explicit["spec"]["mode"] = serde_json::json!("devicePlugin");
        assert_eq!(pool(explicit).unwrap().spec.mode, PoolMode::DevicePlugin);

        for bad in ["both", "DRA", "device-plugin"] {
            let mut d = doc.clone();
            d["spec"]["mode"] = serde_json::json!(bad);
            let e = pool(d).unwrap_err().to_string();
            assert!(
                e.contains(&format!("unknown variant `{bad}`")) && e.contains("expected `devicePlugin` or `dra`"),
                "{e}"
            );
        }
    }

    #[test]
    fn unknown_selector_keys_are_refused_by_name() {
        let e = pool(serde_json::json!({
            "metadata": {"name": "a"}, "spec": {"resourceName": "a", "selector": {"pfName": ["x"]}}
        }))
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `pfName`"), "{e}");
    }

    #[test]
    fn validation_names_the_key() {
        let base = || pool(serde_json::json!({"metadata": {"name": "a"}, "spec": {"resourceName": "a"}})).unwrap();
        type Mutation = Box<dyn Fn(&mut PoolObject)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|p| p.spec.resource_name = "a/b".into()), "spec.resourceName: \"a/b\""),
            (Box::new(|p| p.spec.resource_name = String::new()), "spec.resourceName"),
            (Box::new(|p| p.spec.resource_name = "x".repeat(64)), "spec.resourceName"),
            (Box::new(|p| p.metadata.name = "A".into()), "metadata.name"),
            (Box::new(|p| p.kind = "VfProfile".into()), "kind"),
            (Box::new(|p| p.spec.num_vfs = Some(0)), "spec.numVfs"),
            (Box::new(|p| p.spec.selector.vendors = vec!["8086".into(), "86".into()]), "spec.selector.vendors[1]"),
            (Box::new(|p| p.spec.selector.pf_names = vec!["eth0#3-1".into()]), "spec.selector.pfNames[0]: invalid VF"),
            (Box::new(|p| p.spec.selector.pf_names = vec!["eth0#0-70000".into()]), "above"),
            (Box::new(|p| p.spec.selector.root_devices = vec!["00:1.0".into()]), "spec.selector.rootDevices[0]"),
            (Box::new(|p| p.spec.selector.pci_addresses = vec!["x".into()]), "spec.selector.pciAddresses[0]"),
            (Box::new(|p| p.spec.selector.link_types = vec!["eth".into()]), "spec.selector.linkTypes[0]"),
            (Box::new(|p| p.spec.physical_network = Some(String::new())), "spec.physicalNetwork"),
        ];
        for (mutate, needle) in cases {
            let mut p = base();
            mutate(&mut p);
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        base().validate().unwrap();
    }

    #[test]
    fn node_selector_matches_labels() {
        let mut p = pool(serde_json::json!({"metadata": {"name": "a"}, "spec": {"resourceName": "a"}})).unwrap().spec;
        let labels: BTreeMap<String, String> = [("zone".to_owned(), "a".to_owned())].into();
        assert!(p.selects_node(&labels));
        p.node_selector.insert("zone".into(), "b".into());
        assert!(!p.selects_node(&labels));
        p.node_selector.insert("zone".into(), "a".into());
        assert!(p.selects_node(&labels));
    }
}
