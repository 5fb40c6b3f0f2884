//! `VfProfile`: the VLAN and VF settings a network gets, and who may use it.
//!
//! A profile is the cluster admin's policy; network definitions that name it cannot override
//! it. The CNI plugin reads `<profileDir>/<name>.json`, which holds the object as the API serves
//! it (`kubectl get vfprofile NAME -o json`).
//!
//! [`VfProfile`] is the custom resource (`kube::CustomResource` on [`VfProfileSpec`]); its
//! OpenAPI schema carries the ranges, enums and (as CEL rules) the cross-field rules that
//! [`VfProfileSpec::validate`] checks on the node.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use vfnet_types::ProfileDir;
/// The VF settings types, from their one home (the CNI, the journals and the kernel layer use them too).
pub use vfnet_types::{VfLinkState, VlanProto};

/// VLANs a pod may pick for itself (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.min <= self.max",
    "message": "podVlanRange.min must not be above podVlanRange.max",
    "reason": "FieldValueInvalid",
}]))]
pub struct VlanRange {
    /// Lowest VLAN a pod may choose, 1-4094.
    #[schemars(range(min = 1, max = 4094))]
    pub min: u16,
    /// Highest VLAN a pod may choose, 1-4094, at least min.
    #[schemars(range(min = 1, max = 4094))]
    pub max: u16,
}

impl VlanRange {
    /// True if `vlan` is inside.
    pub fn contains(&self, vlan: u16) -> bool {
        (self.min..=self.max).contains(&vlan)
    }
}

/// The spec of a `VfProfile`. Every field is optional: an absent field leaves that VF setting
/// as the network definition (or the VF) has it.
///
/// The doc comments are the schema's descriptions (`kubectl explain vfprofile.spec`).
// The printcolumn(...) entries repeat `type_ = "string"`, which clippy takes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "vfnet.dev",
    version = "v1alpha1",
    kind = "VfProfile",
    plural = "vfprofiles",
    shortname = "vfp",
    category = "vfnet",
    derive = "PartialEq",
    doc = "A VfProfile is the cluster admin's policy for an SR-IOV network: the VLAN and VF \
           settings every attachment naming it gets, and which namespaces may use it. Network \
           definitions (type vfnet) name it with their profile key and cannot override it.",
    printcolumn(name = "VLAN", type_ = "integer", json_path = ".spec.vlan", description = "VLAN ID"),
    printcolumn(
        name = "Physical network",
        type_ = "string",
        json_path = ".spec.physicalNetwork",
        description = "The physical network the VF's pool must be cabled to"
    ),
    printcolumn(
        name = "Namespaces",
        type_ = "string",
        json_path = ".spec.allowedNamespaces",
        description = "Namespaces whose pods may use the profile (empty: every namespace)"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(
    description = "The VLAN and VF settings of every attachment that names this profile, and who may use it. \
                   Every field is optional: an absent field leaves that setting as the network definition \
                   (or the VF) has it; a network definition key that contradicts the profile is refused.",
    extend("x-kubernetes-validations" = [
        {
            "rule": "!has(self.vlanQoS) || self.vlanQoS == 0 || (has(self.vlan) && self.vlan != 0)",
            "message": "a non-zero vlanQoS needs a non-zero vlan",
            "fieldPath": ".vlanQoS",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!has(self.vlanProto) || self.vlanProto != '802.1ad' || (has(self.vlan) && self.vlan != 0)",
            "message": "vlanProto 802.1ad needs a non-zero vlan",
            "fieldPath": ".vlanProto",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!has(self.minTxRateMbps) || !has(self.maxTxRateMbps) || self.maxTxRateMbps == 0 || self.minTxRateMbps <= self.maxTxRateMbps",
            "message": "minTxRateMbps must not be above maxTxRateMbps (unless maxTxRateMbps is 0, no limit)",
            "fieldPath": ".minTxRateMbps",
            "reason": "FieldValueInvalid",
        },
    ])
)]
pub struct VfProfileSpec {
    /// VLAN ID given to the VF on its PF, 0-4094 (0: untagged, clears the VF's VLAN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4094))]
    pub vlan: Option<u16>,
    /// 802.1p priority (QoS) of the VF's VLAN tag, 0-7. A non-zero value needs a non-zero vlan.
    #[serde(default, rename = "vlanQoS", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 7))]
    pub vlan_qos: Option<u8>,
    /// VLAN tag protocol: 802.1Q (the default) or 802.1ad (QinQ, needs a non-zero vlan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_proto: Option<VlanProto>,
    /// MAC spoof checking on the VF: true drops frames whose source MAC is not the VF's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoof_chk: Option<bool>,
    /// Trusted VF mode: true lets the pod change its MAC and enable promiscuous or multicast
    /// modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<bool>,
    /// Administrative link state of the VF: auto (follows the PF), enable (forced up) or disable
    /// (forced down). Some drivers (igb) refuse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_state: Option<VfLinkState>,
    /// Guaranteed minimum TX rate of the VF in Mbps (0: none). At most maxTxRateMbps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tx_rate_mbps: Option<u32>,
    /// TX rate limit of the VF in Mbps (0: no limit). At least minTxRateMbps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tx_rate_mbps: Option<u32>,
    /// MTU of the pod's interface, 68-65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 68, max = 65535))]
    pub mtu: Option<u32>,
    /// The physical network (as a VfPool's physicalNetwork names it) the VF must be cabled to. A VF
    /// from a pool on another network, or a VF without a device record, is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(r"^\S+$"))]
    pub physical_network: Option<String>,
    /// Namespaces whose pods may use the profile. Absent: every namespace; an empty list: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        inner(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub allowed_namespaces: Option<Vec<String>>,
    /// VLANs a pod may choose for itself through the network's args.cni.vlan (Multus cni-args),
    /// or a ResourceClaim's VfConfig vlan (DRA). Absent: pods may not choose. With no vlan set, a
    /// pod must choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_vlan_range: Option<VlanRange>,
}

/// A rule of the spec that a profile breaks, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct SpecError {
    /// The offending key (`vlanQoS`, `podVlanRange.max`, ...).
    pub key: &'static str,
    /// What is wrong.
    pub problem: String,
}

fn bad(key: &'static str, problem: impl Into<String>) -> SpecError {
    SpecError { key, problem: problem.into() }
}

impl VfProfileSpec {
    /// Checks ranges and cross-field rules (the same rules the CRD schema enforces in the
    /// cluster, so a hand-written profile file gets them too).
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(vlan) = self.vlan
            && vlan > 4094
        {
            return Err(bad("vlan", format!("{vlan} is outside 0-4094")));
        }
        if let Some(qos) = self.vlan_qos
            && qos > 7
        {
            return Err(bad("vlanQoS", format!("{qos} is outside 0-7")));
        }
        let vlan = self.vlan.unwrap_or(0);
        if self.vlan_qos.unwrap_or(0) != 0 && vlan == 0 {
            return Err(bad("vlanQoS", "a non-zero QoS needs a non-zero vlan"));
        }
        if self.vlan_proto == Some(VlanProto::Dot1Ad) && vlan == 0 {
            return Err(bad("vlanProto", "802.1ad needs a non-zero vlan"));
        }
        if let (Some(min), Some(max)) = (self.min_tx_rate_mbps, self.max_tx_rate_mbps)
            && max != 0
            && min > max
        {
            return Err(bad("minTxRateMbps", format!("{min} is above maxTxRateMbps {max}")));
        }
        if let Some(mtu) = self.mtu
            && !(68..=65535).contains(&mtu)
        {
            return Err(bad("mtu", format!("{mtu} is outside 68-65535")));
        }
        if let Some(r) = self.pod_vlan_range {
            if r.min == 0 || r.min > 4094 {
                return Err(bad("podVlanRange.min", format!("{} is outside 1-4094", r.min)));
            }
            if r.max == 0 || r.max > 4094 {
                return Err(bad("podVlanRange.max", format!("{} is outside 1-4094", r.max)));
            }
            if r.min > r.max {
                return Err(bad("podVlanRange", format!("min {} is above max {}", r.min, r.max)));
            }
        }
        if let Some(ns) = &self.allowed_namespaces
            && let Some(empty) = ns.iter().find(|n| n.is_empty())
        {
            return Err(bad("allowedNamespaces", format!("{empty:?} is not a namespace name")));
        }
        Ok(())
    }

    /// True if pods in `namespace` may use the profile.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        self.allowed_namespaces.as_ref().is_none_or(|list| list.iter().any(|n| n == namespace))
    }
}

/// Why a profile file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileFileError {
    /// The file is absent.
    #[error("profile {name} not found: {path} does not exist")]
    NotFound {
        /// The profile name.
        name: String,
        /// The file.
        path: std::path::PathBuf,
    },
    /// It could not be read.
    #[error("cannot read profile file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// It is not a VfProfile object.
    #[error("profile file {path} is not a valid VfProfile: {message}")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

impl VfProfile {
    /// The expected `apiVersion`.
    pub const API_VERSION: &'static str = "vfnet.dev/v1alpha1";
    /// The kind.
    pub const KIND: &'static str = "VfProfile";

    /// Reads `<dir>/<name>.json` and checks it is the named, valid `VfProfile`.
    pub fn load(dir: &ProfileDir, name: &str) -> Result<Self, ProfileFileError> {
        let path = dir.profile(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProfileFileError::NotFound { name: name.to_owned(), path });
            }
            Err(source) => return Err(ProfileFileError::Read { path, source }),
        };
        let invalid = |message: String| ProfileFileError::Invalid { path: path.clone(), message };
        let profile: VfProfile = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        // The generated type does not keep apiVersion and kind (it knows them): read them apart.
        let types: kube::core::TypeMeta = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if types.api_version != Self::API_VERSION || types.kind != Self::KIND {
            return Err(invalid(format!(
                "apiVersion/kind is {}/{}, expected {}/{}",
                types.api_version,
                types.kind,
                Self::API_VERSION,
                Self::KIND
            )));
        }
        if profile.metadata.name.as_deref() != Some(name) {
            return Err(invalid(format!(
                "metadata.name is {:?}, expected {name:?}",
                profile.metadata.name.as_deref().unwrap_or_default()
            )));
        }
        profile.spec.validate().map_err(|e| invalid(format!("spec.{e}")))?;
        Ok(profile)
    }

    /// The profile's name (`metadata.name`; empty if unset, which [`VfProfile::load`] refuses).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// Refuses pods of `namespace` unless `allowedNamespaces` lets them use the profile. The one
    /// check (and wording) behind the CNI's code 102 and the DRA driver's refusal, so a tenant
    /// reads the same sentence whichever path attached the VF.
    pub fn check_namespace(&self, namespace: &str) -> Result<(), NamespaceNotAllowed> {
        match &self.spec.allowed_namespaces {
            Some(allowed) if !self.spec.allows_namespace(namespace) => Err(NamespaceNotAllowed {
                namespace: namespace.to_owned(),
                profile: self.name().to_owned(),
                allowed: allowed.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// A namespace that a profile's `allowedNamespaces` does not list (CNI error code 102).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("namespace {namespace} may not use VfProfile {profile} (allowedNamespaces: {})", allowed.join(", "))]
pub struct NamespaceNotAllowed {
    /// The pod's namespace.
    pub namespace: String,
    /// The profile's name.
    pub profile: String,
    /// The profile's `allowedNamespaces`.
    pub allowed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Result<VfProfileSpec, String> {
        let s: VfProfileSpec = serde_json::from_value(json).map_err(|e| e.to_string())?;
        s.validate().map_err(|e| e.to_string())?;
        Ok(s)
    }

    #[test]
    fn parses_every_key() {
        let s = spec(serde_json::json!({
            "vlan": 100, "vlanQoS": 3, "vlanProto": "802.1ad", "spoofChk": true, "trust": false,
            "linkState": "enable", "minTxRateMbps": 10, "maxTxRateMbps": 100, "mtu": 9000,
            "physicalNetwork": "physnet1", "allowedNamespaces": ["tenant-a"],
            "podVlanRange": {"min": 200, "max": 299}
        }))
        .unwrap();
        assert_eq!(s.vlan_proto, Some(VlanProto::Dot1Ad));
        assert_eq!(s.link_state, Some(VfLinkState::Enable));
        assert!(s.allows_namespace("tenant-a") && !s.allows_namespace("tenant-b"));
        assert!(s.pod_vlan_range.unwrap().contains(250));
        assert!(VfProfileSpec::default().allows_namespace("anything"));
    }

    #[test]
    fn rejects_rule_breaks_naming_the_key() {
        for (json, want) in [
            (serde_json::json!({"vlan": 4095}), "vlan: 4095 is outside 0-4094"),
            (serde_json::json!({"vlanQoS": 8, "vlan": 1}), "vlanQoS: 8 is outside 0-7"),
            (serde_json::json!({"vlanQoS": 2}), "vlanQoS: a non-zero QoS needs a non-zero vlan"),
            (serde_json::json!({"vlanProto": "802.1ad", "vlan": 0}), "vlanProto: 802.1ad needs a non-zero vlan"),
            (
                serde_json::json!({"minTxRateMbps": 50, "maxTxRateMbps": 10}),
                "minTxRateMbps: 50 is above maxTxRateMbps 10",
            ),
            (serde_json::json!({"podVlanRange": {"min": 300, "max": 200}}), "podVlanRange: min 300 is above max 200"),
            (serde_json::json!({"mtu": 10}), "mtu: 10 is outside 68-65535"),
        ] {
            assert_eq!(spec(json).unwrap_err(), want);
        }
        let e = spec(serde_json::json!({"vlans": 1})).unwrap_err();
        assert!(e.contains("unknown field `vlans`"), "{e}");
        let e = spec(serde_json::json!({"linkState": "up"})).unwrap_err();
        assert!(e.contains("unknown variant `up`"), "{e}");
        let e = spec(serde_json::json!({"vlan": -1})).unwrap_err();
        assert!(e.contains("-1"), "{e}");
    }

    #[test]
    fn namespace_refusals_have_one_wording() {
        let profile = |spec: serde_json::Value| -> VfProfile {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile", "metadata": {"name": "tenant-a"}, "spec": spec
            }))
            .unwrap()
        };
        let p = profile(serde_json::json!({"allowedNamespaces": ["tenant-a", "ops"]}));
        p.check_namespace("ops").unwrap();
        assert_eq!(
            p.check_namespace("tenant-b").unwrap_err().to_string(),
            "namespace tenant-b may not use VfProfile tenant-a (allowedNamespaces: tenant-a, ops)"
        );
        let none = profile(serde_json::json!({"allowedNamespaces": []}));
        assert_eq!(
            none.check_namespace("x").unwrap_err().to_string(),
            "namespace x may not use VfProfile tenant-a (allowedNamespaces: )"
        );
        profile(serde_json::json!({})).check_namespace("anything").unwrap();
    }

    #[test]
    fn loads_the_object_as_the_api_serves_it() {
        let dir = tempfile::tempdir().unwrap();
        let obj = serde_json::json!({
            "apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile",
            "metadata": {"name": "tenant-a", "uid": "1234", "resourceVersion": "7", "managedFields": []},
            "spec": {"vlan": 100}
        });
        std::fs::write(dir.path().join("tenant-a.json"), obj.to_string()).unwrap();
        assert_eq!(VfProfile::load(&ProfileDir::new(dir.path()), "tenant-a").unwrap().spec.vlan, Some(100));
        let e = VfProfile::load(&ProfileDir::new(dir.path()), "tenant-b").unwrap_err();
        assert!(matches!(e, ProfileFileError::NotFound { .. }));
        assert!(e.to_string().starts_with("profile tenant-b not found: "), "{e}");
        std::fs::write(dir.path().join("bad.json"), obj.to_string()).unwrap();
        let e = VfProfile::load(&ProfileDir::new(dir.path()), "bad").unwrap_err().to_string();
        assert!(e.contains("metadata.name is \"tenant-a\", expected \"bad\""), "{e}");
        std::fs::write(
            dir.path().join("q.json"),
            obj.to_string().replace("\"vlan\":100", "\"vlan\":5000").replace("tenant-a", "q"),
        )
        .unwrap();
        let e = VfProfile::load(&ProfileDir::new(dir.path()), "q").unwrap_err().to_string();
        assert!(e.ends_with("spec.vlan: 5000 is outside 0-4094"), "{e}");
    }
}
