//! `VfConfig`: the opaque DRA configuration of driver `vfnet.dev`, and the rules that govern it.
//!
//! A DeviceClass (the admin's) or a ResourceClaim (the user's) puts it in
//! `config[].opaque.parameters` for driver `vfnet.dev`:
//!
//! ```yaml
//! apiVersion: vfnet.dev/v1alpha1
//! kind: VfConfig
//! profile: tenant-a        # a VfProfile name
//! vnicType: direct         # direct | macvtap | userspace
//! vlan: 120                # the pod's VLAN choice, only inside the profile's podVlanRange
//! ```
//!
//! Three steps take the API's configs to what a VF gets, each refusing with a message that names
//! the key, the value and where it came from:
//! 1. [`parse`] reads one config strictly (unknown keys refused by name, apiVersion and kind
//!    checked), saying which DeviceClass or the ResourceClaim it came from ([`ConfigSource`]);
//! 2. [`merge`] folds a device's configs: the classes' keys are the admin's, so a claim cannot
//!    contradict them, only add keys the classes left unset;
//! 3. [`govern`] applies the CNI plugin's rules for a profile on a pool (`requireProfile`,
//!    `allowedProfiles`, `physicalNetwork`, `allowedNamespaces`, `podVlanRange`) and fits the
//!    vnicType to the pool's deviceType. [`GovernError::code`] is the CNI error code of the
//!    same refusal, so the DRA driver and the CNI plugin report a tenant's mistake alike.
//!
//! [`json_schema`] is the config's JSON schema; `crdgen` writes it beside the CRDs
//! (`vfconfig.schema.json`).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vfnet_types::DeviceType;
/// How the VF reaches the pod, from its one home (the CNI configuration spells it too).
pub use vfnet_types::VnicType;

use crate::pool::VfPoolSpec;
use crate::profile::{NamespaceNotAllowed, VfProfile, VlanRange};

/// The DRA driver's name, which DeviceClasses and ResourceClaims give their opaque configs for.
pub const DRIVER: &str = "vfnet.dev";
/// The config's `apiVersion`.
pub const API_VERSION: &str = "vfnet.dev/v1alpha1";
/// The config's `kind`.
pub const KIND: &str = "VfConfig";
/// Every key a config may have, in the order messages list them.
pub const KEYS: [&str; 5] = ["apiVersion", "kind", "profile", "vnicType", "vlan"];

/// The opaque configuration of driver `vfnet.dev`: which VfProfile governs the VF, how it reaches
/// the pod, and the pod's VLAN choice. Every setting is optional; the DeviceClass's settings are
/// the admin's and a ResourceClaim may only add to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(
    title = "VfConfig",
    description = "The opaque configuration of the vfnet.dev DRA driver, in a DeviceClass's or a \
                   ResourceClaim's config[].opaque.parameters: which VfProfile governs the VF, how it \
                   reaches the pod, and the pod's VLAN choice. A DeviceClass's keys are the admin's: a \
                   ResourceClaim key that contradicts one is refused."
)]
pub struct VfConfig {
    /// vfnet.dev/v1alpha1.
    #[schemars(extend("const" = "vfnet.dev/v1alpha1"))]
    pub api_version: String,
    /// VfConfig.
    #[schemars(extend("const" = "VfConfig"))]
    pub kind: String,
    /// The VfProfile that governs the VF (its VLAN and VF settings, and which namespaces may use
    /// it). Required by pools with requireProfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub profile: Option<String>,
    /// How the VF reaches the pod. Absent: direct from a netdevice pool, userspace from a
    /// vfio-pci pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnic_type: Option<VnicType>,
    /// The pod's VLAN choice, 1-4094: only inside the profile's podVlanRange. Required when the
    /// profile has a podVlanRange and no vlan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4094))]
    pub vlan: Option<u16>,
}

impl Default for VfConfig {
    /// A config that sets nothing (what a device without any opaque config gets).
    fn default() -> Self {
        Self { api_version: API_VERSION.to_owned(), kind: KIND.to_owned(), profile: None, vnic_type: None, vlan: None }
    }
}

/// Where an opaque config came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfigSource {
    /// The named DeviceClass's `spec.config`: the admin's.
    Class(String),
    /// The ResourceClaim's `spec.devices.config`: the user's.
    Claim,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Class(name) => write!(f, "DeviceClass {name}"),
            Self::Claim => f.write_str("the ResourceClaim"),
        }
    }
}

/// An opaque config that cannot be used. CNI code 7 (invalid configuration), see
/// [`ConfigError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key is missing, unknown or has a bad value.
    #[error("opaque config of {origin}: {key}: {problem}")]
    Invalid {
        /// Where the config came from.
        origin: ConfigSource,
        /// The key (`parameters` for the whole object).
        key: String,
        /// What is wrong, quoting the value.
        problem: String,
    },
    /// A ResourceClaim key contradicts a DeviceClass's.
    #[error(
        "opaque config of the ResourceClaim: {key}: {claim_value} contradicts DeviceClass {class}, which sets \
         {key}: {class_value} (a DeviceClass's keys are the admin's)"
    )]
    Contradicts {
        /// The key.
        key: &'static str,
        /// The claim's value.
        claim_value: String,
        /// The DeviceClass whose value stands.
        class: String,
        /// The class's value.
        class_value: String,
    },
}

impl ConfigError {
    /// The CNI error code of the same refusal: 7, an invalid network configuration.
    pub fn code(&self) -> u32 {
        7
    }
}

/// Reads one opaque config (`config[].opaque.parameters`) strictly: every key known, apiVersion
/// and kind this module's, every value checked. Keys by hand rather than through serde, so each
/// error names its key and value; a `null` optional key counts as absent.
pub fn parse(parameters: &Value, source: ConfigSource) -> Result<VfConfig, ConfigError> {
    let bad =
        |key: &str, problem: String| ConfigError::Invalid { origin: source.clone(), key: key.to_owned(), problem };
    let Value::Object(map) = parameters else {
        return Err(bad("parameters", format!("{parameters} is not an object (a {KIND})")));
    };
    if let Some(unknown) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(bad(unknown, format!("unknown key (a {KIND} has {})", KEYS.join(", "))));
    }
    let get = |key: &str| map.get(key).filter(|v| !v.is_null());
    let string = |key: &str| -> Result<Option<&str>, ConfigError> {
        match get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(bad(key, format!("{other} is not a string"))),
        }
    };
    for (key, want) in [("apiVersion", API_VERSION), ("kind", KIND)] {
        match string(key)? {
            None => return Err(bad(key, format!("missing (a {KIND} has {key}: {want})"))),
            Some(have) if have != want => return Err(bad(key, format!("{have:?} is not {want}"))),
            Some(_) => {}
        }
    }
    let profile = match string("profile")? {
        Some(p) if !crate::is_object_name(p) => {
            return Err(bad(
                "profile",
                format!("{p:?} is not a VfProfile name (lower-case letters, digits, '-' and '.')"),
            ));
        }
        p => p.map(str::to_owned),
    };
    let vnic_type =
        string("vnicType")?.map(|s| s.parse::<VnicType>().map_err(|e| bad("vnicType", e.to_string()))).transpose()?;
    let vlan = match get("vlan") {
        None => None,
        Some(v) => match v.as_i64() {
            Some(n) if (1..=4094).contains(&n) => Some(n as u16),
            _ if v.is_i64() || v.is_u64() => return Err(bad("vlan", format!("{v} is not a VLAN (1-4094)"))),
            _ => return Err(bad("vlan", format!("{v} is not an integer"))),
        },
    };
    Ok(VfConfig { api_version: API_VERSION.to_owned(), kind: KIND.to_owned(), profile, vnic_type, vlan })
}

/// Folds one key over a device's configs: the last DeviceClass that sets it wins among classes;
/// a claim value that differs from the classes' is refused; one the classes leave unset is taken
/// (the last claim's, if several set it).
fn merge_key<T: PartialEq + Clone + fmt::Display>(
    key: &'static str,
    configs: &[(ConfigSource, VfConfig)],
    field: impl Fn(&VfConfig) -> Option<&T>,
) -> Result<Option<T>, ConfigError> {
    let class = configs
        .iter()
        .filter_map(|(source, c)| match source {
            ConfigSource::Class(name) => field(c).map(|v| (name, v)),
            ConfigSource::Claim => None,
        })
        .last();
    let mut claim = None;
    for (source, c) in configs {
        let (ConfigSource::Claim, Some(value)) = (source, field(c)) else { continue };
        if let Some((name, class_value)) = class
            && class_value != value
        {
            return Err(ConfigError::Contradicts {
                key,
                claim_value: value.to_string(),
                class: name.clone(),
                class_value: class_value.to_string(),
            });
        }
        claim = Some(value);
    }
    Ok(class.map(|(_, v)| v).or(claim).cloned())
}

/// Merges a device's opaque configs, as the API lists them (the DeviceClass's first, then the
/// ResourceClaim's). A class's keys are the admin's: among classes the last one wins; a claim key
/// that contradicts the classes' is refused, naming the key, both values and the class; a claim
/// key no class sets is taken. Precedence is by source, so a class config listed after a claim's
/// still stands. No configs: a config that sets nothing.
pub fn merge(configs: &[(ConfigSource, VfConfig)]) -> Result<VfConfig, ConfigError> {
    Ok(VfConfig {
        profile: merge_key("profile", configs, |c| c.profile.as_ref())?,
        vnic_type: merge_key("vnicType", configs, |c| c.vnic_type.as_ref())?,
        vlan: merge_key("vlan", configs, |c| c.vlan.as_ref())?,
        ..VfConfig::default()
    })
}

/// What a VF allocated under a config gets, once [`govern`] has accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Governed {
    /// How the VF reaches the pod: the config's, else the pool's deviceType's default.
    pub vnic_type: VnicType,
    /// The VfProfile that governs the VF (its settings are the CNI plugin's to apply).
    pub profile: Option<String>,
    /// The pod's VLAN choice, inside the profile's podVlanRange (the CNI's `args.cni.vlan`).
    /// `None`: the profile's own vlan, if any, applies.
    pub vlan: Option<u16>,
}

/// A config the rules refuse for a pool, a profile or a namespace. Each message names the key,
/// and the profile, pool or namespace it is about; [`GovernError::code`] is the CNI's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GovernError {
    /// The config names a VfProfile that does not exist (CNI code 101).
    #[error("profile: VfProfile {name} not found")]
    ProfileNotFound {
        /// The name the config gives.
        name: String,
    },
    /// The caller passed a VfProfile other than the one the config names (code 7).
    #[error(
        "profile: the VfProfile given ({given}) is not the one the config names ({})",
        named.as_deref().unwrap_or("none")
    )]
    WrongProfile {
        /// The config's profile, if any.
        named: Option<String>,
        /// The profile passed.
        given: String,
    },
    /// The claim's namespace may not use the profile (CNI code 102; the CNI's wording).
    #[error(transparent)]
    Namespace(#[from] NamespaceNotAllowed),
    /// A VLAN choice without a profile to allow it (code 7).
    #[error("vlan: {vlan} needs a VfProfile with a podVlanRange (the config names no profile)")]
    VlanWithoutProfile {
        /// The VLAN chosen.
        vlan: u16,
    },
    /// A VLAN choice under a profile without a podVlanRange (code 7).
    #[error("vlan: VfProfile {profile} has no podVlanRange, so pods may not choose a VLAN ({vlan})")]
    VlanNotDelegated {
        /// The profile.
        profile: String,
        /// The VLAN chosen.
        vlan: u16,
    },
    /// A VLAN choice outside the profile's podVlanRange (code 7).
    #[error("vlan: {vlan} is outside VfProfile {profile}'s podVlanRange {}-{}", range.min, range.max)]
    VlanOutsideRange {
        /// The profile.
        profile: String,
        /// The VLAN chosen.
        vlan: u16,
        /// The profile's podVlanRange.
        range: VlanRange,
    },
    /// The profile delegates the VLAN to pods, sets none itself, and the config chose none (code 7).
    #[error("vlan: VfProfile {profile} requires a VLAN: set vlan within its podVlanRange {}-{}", range.min, range.max)]
    VlanRequired {
        /// The profile.
        profile: String,
        /// The profile's podVlanRange.
        range: VlanRange,
    },
    /// The pool configures its VFs only through profiles, and the config names none (code 7).
    #[error(
        "profile: missing: pool {pool} configures its VFs only through VfProfiles (requireProfile); name one in \
         the opaque {KIND}"
    )]
    ProfileRequired {
        /// The pool.
        pool: String,
    },
    /// The pool's allowedProfiles does not list the profile (CNI code 114; the CNI's wording).
    #[error("profile: VfProfile {profile} is not allowed on pool {pool} (allowedProfiles: {})", allowed.join(", "))]
    ProfileNotAllowed {
        /// The profile.
        profile: String,
        /// The pool.
        pool: String,
        /// The pool's allowedProfiles.
        allowed: Vec<String>,
    },
    /// The profile requires a physical network the pool is not on (CNI code 103).
    #[error(
        "profile: pool {pool} is on physical network {}, but VfProfile {profile} requires {want}",
        have.as_deref().unwrap_or("<none>")
    )]
    PhysicalNetwork {
        /// The profile.
        profile: String,
        /// The pool.
        pool: String,
        /// The profile's physicalNetwork.
        want: String,
        /// The pool's physicalNetwork.
        have: Option<String>,
    },
    /// The vnicType does not fit the pool's deviceType (CNI code 111: the VF's driver does not
    /// fit the vnicType, which a pool's deviceType decides).
    #[error(
        "vnicType: {vnic_type} needs a pool of deviceType {}, but pool {pool} has deviceType {device_type}",
        vnic_type.device_type()
    )]
    VnicTypeMismatch {
        /// The config's vnicType.
        vnic_type: VnicType,
        /// The pool.
        pool: String,
        /// The pool's deviceType.
        device_type: DeviceType,
    },
}

impl GovernError {
    /// The CNI error code of the same refusal (vfnet-cni's `error::Code`), for the DRA driver's
    /// messages (`102: namespace x may not use VfProfile y ...`).
    pub fn code(&self) -> u32 {
        match self {
            Self::ProfileNotFound { .. } => 101,
            Self::Namespace(_) => 102,
            Self::PhysicalNetwork { .. } => 103,
            Self::VnicTypeMismatch { .. } => 111,
            Self::ProfileNotAllowed { .. } => 114,
            Self::WrongProfile { .. }
            | Self::VlanWithoutProfile { .. }
            | Self::VlanNotDelegated { .. }
            | Self::VlanOutsideRange { .. }
            | Self::VlanRequired { .. }
            | Self::ProfileRequired { .. } => 7,
        }
    }
}

/// Applies the CNI plugin's rules to a merged config for a VF of `pool` allocated to a claim in
/// `namespace`, in the CNI's order: the profile (101), its namespaces (102), the VLAN choice (7),
/// the pool's requireProfile (7), allowedProfiles (114) and physicalNetwork (103), then the
/// vnicType against the pool's deviceType (111).
///
/// `profile` is the VfProfile the config names, as the caller found it: `None` when the config
/// names none or when it does not exist (refused: a profile that cannot be read must not leave
/// the VF ungoverned).
pub fn govern(
    config: &VfConfig,
    pool_name: &str,
    pool: &VfPoolSpec,
    profile: Option<&VfProfile>,
    namespace: &str,
) -> Result<Governed, GovernError> {
    let profile = match (config.profile.as_deref(), profile) {
        (None, None) => None,
        (Some(name), None) => return Err(GovernError::ProfileNotFound { name: name.to_owned() }),
        (Some(name), Some(p)) if p.name() == name => Some(p),
        (named, Some(p)) => {
            return Err(GovernError::WrongProfile { named: named.map(str::to_owned), given: p.name().to_owned() });
        }
    };
    if let Some(p) = profile {
        p.check_namespace(namespace)?;
    }
    let vlan = match (profile, config.vlan) {
        (None, Some(vlan)) => return Err(GovernError::VlanWithoutProfile { vlan }),
        (None, None) => None,
        (Some(p), vlan) => match (p.spec.pod_vlan_range, vlan) {
            (None, Some(vlan)) => {
                return Err(GovernError::VlanNotDelegated { profile: p.name().to_owned(), vlan });
            }
            (Some(range), Some(vlan)) if !range.contains(vlan) => {
                return Err(GovernError::VlanOutsideRange { profile: p.name().to_owned(), vlan, range });
            }
            (Some(range), None) if p.spec.vlan.is_none() => {
                return Err(GovernError::VlanRequired { profile: p.name().to_owned(), range });
            }
            (_, vlan) => vlan,
        },
    };
    if pool.require_profile && profile.is_none() {
        return Err(GovernError::ProfileRequired { pool: pool_name.to_owned() });
    }
    if let Some(p) = profile {
        if let Some(allowed) = &pool.allowed_profiles
            && !allowed.iter().any(|a| a == p.name())
        {
            return Err(GovernError::ProfileNotAllowed {
                profile: p.name().to_owned(),
                pool: pool_name.to_owned(),
                allowed: allowed.clone(),
            });
        }
        if let Some(want) = &p.spec.physical_network
            && pool.physical_network.as_ref() != Some(want)
        {
            return Err(GovernError::PhysicalNetwork {
                profile: p.name().to_owned(),
                pool: pool_name.to_owned(),
                want: want.clone(),
                have: pool.physical_network.clone(),
            });
        }
    }
    let vnic_type = config.vnic_type.unwrap_or(VnicType::default_for(pool.device_type));
    if vnic_type.device_type() != pool.device_type {
        return Err(GovernError::VnicTypeMismatch {
            vnic_type,
            pool: pool_name.to_owned(),
            device_type: pool.device_type,
        });
    }
    Ok(Governed { vnic_type, profile: profile.map(|p| p.name().to_owned()), vlan })
}

/// The config's JSON schema (draft 2020-12), as `crdgen` writes it (`vfconfig.schema.json`), for
/// editors and admission policies that check `opaque.parameters`. Descriptions are unwrapped to
/// one line per paragraph, as the CRDs' are.
pub fn json_schema() -> schemars::Schema {
    fn unwrap_descriptions(map: &mut serde_json::Map<String, Value>) {
        for (key, value) in map.iter_mut() {
            match value {
                Value::String(text) if key == "description" => *text = crate::crd::unwrap_lines(text),
                Value::Object(child) => unwrap_descriptions(child),
                Value::Array(items) => {
                    items.iter_mut().filter_map(Value::as_object_mut).for_each(unwrap_descriptions);
                }
                _ => {}
            }
        }
    }
    let mut schema = schemars::schema_for!(VfConfig);
    if let Some(map) = schema.as_object_mut() {
        unwrap_descriptions(map);
    }
    schema.insert(
        "$comment".to_owned(),
        Value::String(format!(
            "Generated from the vfnet-crds crate by `{}`: do not edit (`cargo xtask test` fails when it is stale).",
            crate::crd::GENERATE_COMMAND
        )),
    );
    schema
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn class(name: &str) -> ConfigSource {
        ConfigSource::Class(name.to_owned())
    }

    fn config(extra: Value) -> Value {
        let mut v = json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfConfig"});
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        v
    }

    fn parsed(extra: Value) -> VfConfig {
        parse(&config(extra), ConfigSource::Claim).unwrap()
    }

    #[test]
    fn parses_the_documented_shape() {
        let c = parse(&config(json!({"profile": "tenant-a", "vnicType": "direct", "vlan": 120})), class("vfnet-sriov"))
            .unwrap();
        assert_eq!(
            c,
            VfConfig {
                profile: Some("tenant-a".into()),
                vnic_type: Some(VnicType::Direct),
                vlan: Some(120),
                ..VfConfig::default()
            }
        );
        // What parse accepts, serde reads alike and writes back unchanged.
        let doc = config(json!({"profile": "tenant-a", "vnicType": "userspace", "vlan": 4094}));
        let by_serde: VfConfig = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(parse(&doc, ConfigSource::Claim).unwrap(), by_serde);
        assert_eq!(serde_json::to_value(&by_serde).unwrap(), doc);
        // Only apiVersion and kind: nothing set; null optional keys are absent.
        assert_eq!(parsed(json!({})), VfConfig::default());
        assert_eq!(parsed(json!({"profile": null, "vlan": null})), VfConfig::default());
        assert_eq!(serde_json::to_value(VfConfig::default()).unwrap(), config(json!({})));
    }

    #[test]
    fn refusals_name_the_key_the_value_and_the_source() {
        let sriov = || class("vfnet-sriov");
        let cases: Vec<(Value, ConfigSource, &str)> = vec![
            (
                config(json!({"vlan": 5000})),
                sriov(),
                "opaque config of DeviceClass vfnet-sriov: vlan: 5000 is not a VLAN (1-4094)",
            ),
            (
                config(json!({"vlan": 0})),
                ConfigSource::Claim,
                "opaque config of the ResourceClaim: vlan: 0 is not a VLAN (1-4094)",
            ),
            (config(json!({"vlan": -3})), sriov(), "vlan: -3 is not a VLAN (1-4094)"),
            (config(json!({"vlan": u64::MAX})), sriov(), "vlan: 18446744073709551615 is not a VLAN (1-4094)"),
            (config(json!({"vlan": "120"})), sriov(), "vlan: \"120\" is not an integer"),
            (config(json!({"vlan": 1.5})), sriov(), "vlan: 1.5 is not an integer"),
            (
                config(json!({"foo": 1})),
                ConfigSource::Claim,
                "opaque config of the ResourceClaim: foo: unknown key (a VfConfig has apiVersion, kind, profile, vnicType, vlan)",
            ),
            (config(json!({"vnictype": "direct"})), sriov(), "vnictype: unknown key"),
            (
                config(json!({"vnicType": "normal"})),
                sriov(),
                "opaque config of DeviceClass vfnet-sriov: vnicType: \"normal\" is not one of direct, macvtap, userspace",
            ),
            (config(json!({"vnicType": 1})), sriov(), "vnicType: 1 is not a string"),
            (
                config(json!({"profile": "A/b"})),
                sriov(),
                "profile: \"A/b\" is not a VfProfile name (lower-case letters, digits, '-' and '.')",
            ),
            (config(json!({"profile": ""})), sriov(), "profile: \"\" is not a VfProfile name"),
            (config(json!({"profile": 7})), sriov(), "profile: 7 is not a string"),
            (
                json!({"apiVersion": "vfnet.dev/v1", "kind": "VfConfig"}),
                sriov(),
                "opaque config of DeviceClass vfnet-sriov: apiVersion: \"vfnet.dev/v1\" is not vfnet.dev/v1alpha1",
            ),
            (
                json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile"}),
                sriov(),
                "kind: \"VfProfile\" is not VfConfig",
            ),
            (
                json!({"kind": "VfConfig"}),
                sriov(),
                "apiVersion: missing (a VfConfig has apiVersion: vfnet.dev/v1alpha1)",
            ),
            (json!({"apiVersion": "vfnet.dev/v1alpha1"}), sriov(), "kind: missing (a VfConfig has kind: VfConfig)"),
            (
                json!(["vlan", 5]),
                ConfigSource::Claim,
                "opaque config of the ResourceClaim: parameters: [\"vlan\",5] is not an object (a VfConfig)",
            ),
        ];
        for (doc, source, want) in cases {
            let e = parse(&doc, source).unwrap_err();
            assert!(e.to_string().contains(want), "{doc}: {e}");
            assert_eq!(e.code(), 7);
        }
    }

    #[test]
    fn class_keys_are_the_admin_s() {
        let c = |extra: Value| parsed(extra);
        // A claim key the class did not set is taken; the class's stand.
        let merged = merge(&[
            (class("vfnet-sriov"), c(json!({"profile": "tenant-a"}))),
            (ConfigSource::Claim, c(json!({"vlan": 120, "vnicType": "macvtap"}))),
        ])
        .unwrap();
        assert_eq!(
            merged,
            VfConfig {
                profile: Some("tenant-a".into()),
                vnic_type: Some(VnicType::Macvtap),
                vlan: Some(120),
                ..VfConfig::default()
            }
        );
        // Agreeing with the class is not a contradiction.
        let same =
            merge(&[(class("vfnet-sriov"), c(json!({"vlan": 120}))), (ConfigSource::Claim, c(json!({"vlan": 120})))])
                .unwrap();
        assert_eq!(same.vlan, Some(120));
        // Two classes: the last wins; a claim is checked against that one.
        let two = merge(&[
            (class("base"), c(json!({"profile": "tenant-a", "vlan": 100}))),
            (class("vfnet-sriov"), c(json!({"profile": "tenant-b"}))),
        ])
        .unwrap();
        assert_eq!((two.profile.as_deref(), two.vlan), (Some("tenant-b"), Some(100)));
        // Two claim configs: the last wins among them.
        let claims =
            merge(&[(ConfigSource::Claim, c(json!({"vlan": 5}))), (ConfigSource::Claim, c(json!({"vlan": 6})))])
                .unwrap();
        assert_eq!(claims.vlan, Some(6));
        assert_eq!(merge(&[]).unwrap(), VfConfig::default());

        for (configs, want) in [
            (
                vec![(class("vfnet-sriov"), c(json!({"vlan": 120}))), (ConfigSource::Claim, c(json!({"vlan": 200})))],
                "opaque config of the ResourceClaim: vlan: 200 contradicts DeviceClass vfnet-sriov, which sets vlan: 120 \
                 (a DeviceClass's keys are the admin's)",
            ),
            (
                vec![
                    (class("base"), c(json!({"profile": "tenant-a"}))),
                    (class("vfnet-sriov"), c(json!({"profile": "tenant-b"}))),
                    (ConfigSource::Claim, c(json!({"profile": "tenant-a"}))),
                ],
                "profile: tenant-a contradicts DeviceClass vfnet-sriov, which sets profile: tenant-b",
            ),
            (
                vec![
                    (class("vfnet-sriov"), c(json!({"vnicType": "direct"}))),
                    (ConfigSource::Claim, c(json!({"vnicType": "macvtap"}))),
                ],
                "vnicType: macvtap contradicts DeviceClass vfnet-sriov, which sets vnicType: direct",
            ),
            // Precedence is by source: a class listed after the claim still stands.
            (
                vec![(ConfigSource::Claim, c(json!({"vlan": 7}))), (class("late"), c(json!({"vlan": 8})))],
                "vlan: 7 contradicts DeviceClass late, which sets vlan: 8",
            ),
            // Every claim config is checked, not only the last.
            (
                vec![
                    (class("vfnet-sriov"), c(json!({"vlan": 120}))),
                    (ConfigSource::Claim, c(json!({"vlan": 200}))),
                    (ConfigSource::Claim, c(json!({"vlan": 120}))),
                ],
                "vlan: 200 contradicts DeviceClass vfnet-sriov",
            ),
        ] {
            let e = merge(&configs).unwrap_err();
            assert!(e.to_string().contains(want), "{want}: {e}");
            assert_eq!(e.code(), 7);
        }
    }

    fn pool(spec: Value) -> VfPoolSpec {
        let mut v = json!({"resourceName": "tenant_a"});
        if let (Value::Object(m), Value::Object(e)) = (&mut v, spec) {
            m.extend(e);
        }
        serde_json::from_value(v).unwrap()
    }

    fn profile(name: &str, spec: Value) -> VfProfile {
        serde_json::from_value(json!({
            "apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile", "metadata": {"name": name}, "spec": spec
        }))
        .unwrap()
    }

    /// One governance case: the config's keys, the pool's spec, the profile found (name, spec),
    /// the claim's namespace, and the outcome: the Governed, or the code and a message fragment.
    struct Case {
        name: &'static str,
        config: Value,
        pool: Value,
        profile: Option<(&'static str, Value)>,
        namespace: &'static str,
        want: Result<Governed, (u32, &'static str)>,
    }

    fn ok(vnic_type: VnicType, profile: Option<&str>, vlan: Option<u16>) -> Result<Governed, (u32, &'static str)> {
        Ok(Governed { vnic_type, profile: profile.map(str::to_owned), vlan })
    }

    #[test]
    fn govern_applies_the_cni_rules() {
        use VnicType::{Direct, Macvtap, Userspace};
        let range = || json!({"podVlanRange": {"min": 200, "max": 299}});
        let cases = vec![
            Case {
                name: "no config, netdevice pool: direct",
                config: json!({}),
                pool: json!({}),
                profile: None,
                namespace: "x",
                want: ok(Direct, None, None),
            },
            Case {
                name: "no config, vfio-pci pool: userspace",
                config: json!({}),
                pool: json!({"deviceType": "vfio-pci"}),
                profile: None,
                namespace: "x",
                want: ok(Userspace, None, None),
            },
            Case {
                name: "macvtap on netdevice",
                config: json!({"vnicType": "macvtap"}),
                pool: json!({}),
                profile: None,
                namespace: "x",
                want: ok(Macvtap, None, None),
            },
            Case {
                name: "the documented config",
                config: json!({"profile": "tenant-a", "vnicType": "direct", "vlan": 250}),
                pool: json!({"requireProfile": true, "allowedProfiles": ["tenant-a"], "physicalNetwork": "physnet1"}),
                profile: Some((
                    "tenant-a",
                    json!({"physicalNetwork": "physnet1", "allowedNamespaces": ["tenant-a"], "podVlanRange": {"min": 200, "max": 299}}),
                )),
                namespace: "tenant-a",
                want: ok(Direct, Some("tenant-a"), Some(250)),
            },
            Case {
                name: "a profile vlan pods may override, not overridden",
                config: json!({"profile": "tenant-a"}),
                pool: json!({}),
                profile: Some(("tenant-a", json!({"vlan": 250, "podVlanRange": {"min": 200, "max": 299}}))),
                namespace: "x",
                want: ok(Direct, Some("tenant-a"), None),
            },
            Case {
                name: "a profile without a range and no choice",
                config: json!({"profile": "tenant-a"}),
                pool: json!({}),
                profile: Some(("tenant-a", json!({"vlan": 100}))),
                namespace: "x",
                want: ok(Direct, Some("tenant-a"), None),
            },
            Case {
                name: "profile not found",
                config: json!({"profile": "tenant-a"}),
                pool: json!({}),
                profile: None,
                namespace: "x",
                want: Err((101, "profile: VfProfile tenant-a not found")),
            },
            Case {
                name: "another profile passed",
                config: json!({"profile": "tenant-a"}),
                pool: json!({}),
                profile: Some(("tenant-b", json!({}))),
                namespace: "x",
                want: Err((7, "profile: the VfProfile given (tenant-b) is not the one the config names (tenant-a)")),
            },
            Case {
                name: "a profile passed for a config that names none",
                config: json!({}),
                pool: json!({}),
                profile: Some(("tenant-b", json!({}))),
                namespace: "x",
                want: Err((7, "the VfProfile given (tenant-b) is not the one the config names (none)")),
            },
            Case {
                name: "namespace not allowed",
                config: json!({"profile": "tenant-a"}),
                pool: json!({}),
                profile: Some(("tenant-a", json!({"allowedNamespaces": ["tenant-a", "ops"]}))),
                namespace: "tenant-b",
                want: Err((
                    102,
                    "namespace tenant-b may not use VfProfile tenant-a (allowedNamespaces: tenant-a, ops)",
                )),
            },
            Case {
                name: "requireProfile without a profile",
                config: json!({}),
                pool: json!({"requireProfile": true}),
                profile: None,
                namespace: "x",
                want: Err((
                    7,
                    "profile: missing: pool tenant-a configures its VFs only through VfProfiles (requireProfile)",
                )),
            },
            Case {
                name: "profile not in allowedProfiles",
                config: json!({"profile": "tenant-b"}),
                pool: json!({"requireProfile": true, "allowedProfiles": ["tenant-a", "shared"]}),
                profile: Some(("tenant-b", json!({}))),
                namespace: "x",
                want: Err((
                    114,
                    "profile: VfProfile tenant-b is not allowed on pool tenant-a (allowedProfiles: tenant-a, shared)",
                )),
            },
            Case {
                name: "physical network mismatch",
                config: json!({"profile": "tenant-a"}),
                pool: json!({"physicalNetwork": "physnet2"}),
                profile: Some(("tenant-a", json!({"physicalNetwork": "physnet1"}))),
                namespace: "x",
                want: Err((
                    103,
                    "profile: pool tenant-a is on physical network physnet2, but VfProfile tenant-a requires physnet1",
                )),
            },
            Case {
                name: "physical network on a pool without one",
                config: json!({"profile": "tenant-a"}),
                pool: json!({}),
                profile: Some(("tenant-a", json!({"physicalNetwork": "physnet1"}))),
                namespace: "x",
                want: Err((
                    103,
                    "pool tenant-a is on physical network <none>, but VfProfile tenant-a requires physnet1",
                )),
            },
            Case {
                name: "vlan without a profile",
                config: json!({"vlan": 120}),
                pool: json!({}),
                profile: None,
                namespace: "x",
                want: Err((7, "vlan: 120 needs a VfProfile with a podVlanRange (the config names no profile)")),
            },
            Case {
                name: "vlan without the profile's podVlanRange",
                config: json!({"profile": "tenant-a", "vlan": 120}),
                pool: json!({}),
                profile: Some(("tenant-a", json!({"vlan": 100}))),
                namespace: "x",
                want: Err((7, "vlan: VfProfile tenant-a has no podVlanRange, so pods may not choose a VLAN (120)")),
            },
            Case {
                name: "vlan outside the range",
                config: json!({"profile": "tenant-a", "vlan": 300}),
                pool: json!({}),
                profile: Some(("tenant-a", range())),
                namespace: "x",
                want: Err((7, "vlan: 300 is outside VfProfile tenant-a's podVlanRange 200-299")),
            },
            Case {
                name: "range edges are inside",
                config: json!({"profile": "tenant-a", "vlan": 299}),
                pool: json!({}),
                profile: Some(("tenant-a", range())),
                namespace: "x",
                want: ok(Direct, Some("tenant-a"), Some(299)),
            },
            Case {
                name: "a range and no vlan: the pod must choose",
                config: json!({"profile": "tenant-a"}),
                pool: json!({}),
                profile: Some(("tenant-a", range())),
                namespace: "x",
                want: Err((7, "vlan: VfProfile tenant-a requires a VLAN: set vlan within its podVlanRange 200-299")),
            },
            Case {
                name: "userspace on a netdevice pool",
                config: json!({"vnicType": "userspace"}),
                pool: json!({}),
                profile: None,
                namespace: "x",
                want: Err((
                    111,
                    "vnicType: userspace needs a pool of deviceType vfio-pci, but pool tenant-a has deviceType netdevice",
                )),
            },
            Case {
                name: "direct on a vfio-pci pool",
                config: json!({"vnicType": "direct"}),
                pool: json!({"deviceType": "vfio-pci"}),
                profile: None,
                namespace: "x",
                want: Err((
                    111,
                    "vnicType: direct needs a pool of deviceType netdevice, but pool tenant-a has deviceType vfio-pci",
                )),
            },
            Case {
                name: "macvtap on a vfio-pci pool",
                config: json!({"vnicType": "macvtap"}),
                pool: json!({"deviceType": "vfio-pci"}),
                profile: None,
                namespace: "x",
                want: Err((111, "vnicType: macvtap needs a pool of deviceType netdevice")),
            },
        ];
        for case in cases {
            let config = parsed(case.config.clone());
            let profile = case.profile.map(|(name, spec)| self::profile(name, spec));
            let got = govern(&config, "tenant-a", &pool(case.pool), profile.as_ref(), case.namespace);
            match (got, case.want) {
                (Ok(g), Ok(want)) => assert_eq!(g, want, "{}", case.name),
                (Err(e), Err((code, fragment))) => {
                    assert_eq!(e.code(), code, "{}: {e}", case.name);
                    assert!(e.to_string().contains(fragment), "{}: {e}", case.name);
                }
                (got, want) => panic!("{}: got {got:?}, want {want:?}", case.name),
            }
        }
    }

    #[test]
    fn the_namespace_refusal_is_the_cni_s_wording() {
        let p = profile("tenant-a", json!({"allowedNamespaces": ["tenant-a"]}));
        let e =
            govern(&parsed(json!({"profile": "tenant-a"})), "a", &pool(json!({})), Some(&p), "tenant-b").unwrap_err();
        assert_eq!(e.to_string(), p.check_namespace("tenant-b").unwrap_err().to_string());
        assert_eq!(e.to_string(), "namespace tenant-b may not use VfProfile tenant-a (allowedNamespaces: tenant-a)");
    }

    #[test]
    fn the_schema_checks_what_parse_checks() {
        let schema = serde_json::to_value(json_schema()).unwrap();
        let props = &schema["properties"];
        assert_eq!(schema["additionalProperties"], false, "unknown keys refused");
        assert_eq!(schema["required"], json!(["apiVersion", "kind"]));
        assert_eq!(props["apiVersion"]["const"], API_VERSION);
        assert_eq!(props["kind"]["const"], KIND);
        assert_eq!((props["vlan"]["minimum"].as_u64(), props["vlan"]["maximum"].as_u64()), (Some(1), Some(4094)));
        assert_eq!(props["vnicType"]["anyOf"][0]["$ref"], "#/$defs/VnicType");
        let vnic_types: Vec<&Value> =
            schema["$defs"]["VnicType"]["oneOf"].as_array().unwrap().iter().map(|v| &v["const"]).collect();
        assert_eq!(vnic_types, [&json!("direct"), &json!("macvtap"), &json!("userspace")]);
        assert!(!serde_json::to_string(&schema).unwrap().contains("\\n"), "descriptions are unwrapped");
        assert!(schema["$comment"].as_str().unwrap().contains("crdgen"));
    }
}
