//! What the VF gets: the network definition's settings, governed by its VfProfile.
//!
//! With a profile, the profile governs:
//! - a network definition key that contradicts the profile is refused (code 7, naming the key
//!   and the profile);
//! - a pod whose namespace is not in `allowedNamespaces` is refused (code 102); a pod whose
//!   namespace is unknown is refused too when the list is set (fail closed);
//! - a pod may pick its VLAN through `args.cni.vlan` inside `podVlanRange`, and nowhere else;
//!   a profile with a `podVlanRange` and no `vlan` requires a VLAN to be chosen;
//! - a profile's `physicalNetwork` must match the VF's device record, and a VF without a record
//!   is refused (code 103).
//!
//! Without a profile, the network definition is applied as sriov-cni would, except that
//! `args.cni.vlan` is refused: only a profile can delegate the VLAN choice to pods.
//!
//! Profiles are read from `<profileDir>/<name>.json` (the device plugin mirrors them there). When
//! the file is missing, the node daemon is asked on its socket (`<runDir>/daemon.sock`, 3 s in
//! all): it answers from its watch or the API server, and the profile is applied exactly as a file
//! would be.

use std::time::Duration;

use crds::profile::VfProfile;
use sriov::netlink::{VfSetting, VfState};
use sriov::record::DeviceRecord;
use vfnet_types::node_socket::Response;
use vfnet_types::{MacAddr, PciAddress, VfLinkState, VlanProto};

use crate::config::NetConf;
use crate::error::{CniError, Code, Result};
use crate::node_socket;

/// The settings an attachment applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Desired {
    /// VLAN, QoS, protocol (`None`: untouched).
    pub vlan: Option<(u16, u8, VlanProto)>,
    /// Administrative MAC, also set on the netdev.
    pub mac: Option<MacAddr>,
    /// Spoof checking.
    pub spoofchk: Option<bool>,
    /// Trust.
    pub trust: Option<bool>,
    /// Minimum TX rate (Mbps).
    pub min_tx_rate: Option<u32>,
    /// Maximum TX rate (Mbps).
    pub max_tx_rate: Option<u32>,
    /// Link state.
    pub link_state: Option<VfLinkState>,
    /// Pod interface MTU.
    pub mtu: Option<u32>,
}

impl Desired {
    /// The PF-side settings to apply, in sriov-cni's order (VLAN, MAC, rate, spoofchk, trust,
    /// link state). A rate with only one bound keeps the VF's current other bound.
    pub fn pf_settings(&self, current: &VfState) -> Vec<VfSetting> {
        let mut out = Vec::new();
        if let Some((vlan, qos, proto)) = self.vlan {
            out.push(VfSetting::Vlan { vlan, qos, proto });
        }
        if let Some(mac) = self.mac {
            out.push(VfSetting::Mac(mac));
        }
        if self.min_tx_rate.is_some() || self.max_tx_rate.is_some() {
            out.push(VfSetting::Rate {
                min_mbps: self.min_tx_rate.unwrap_or(current.min_tx_rate),
                max_mbps: self.max_tx_rate.unwrap_or(current.max_tx_rate),
            });
        }
        out.extend(self.spoofchk.map(VfSetting::SpoofChk));
        out.extend(self.trust.map(VfSetting::Trust));
        out.extend(self.link_state.map(VfSetting::LinkState));
        out
    }
}

/// How long the node daemon gets, in all, to serve a profile missing from `profileDir` (it
/// gives the API server less, so its own answer arrives first).
pub const DAEMON_TIMEOUT: Duration = Duration::from_secs(3);

/// Loads the profile a configuration names, if any: from `profileDir`, else through the node
/// daemon's socket (`<runDir>/daemon.sock`).
pub fn load_profile(conf: &NetConf) -> Result<Option<VfProfile>> {
    let Some(name) = &conf.profile else { return Ok(None) };
    let missing = match VfProfile::load(&conf.profile_dir, name) {
        Ok(profile) => return Ok(Some(profile)),
        Err(e @ crds::profile::ProfileFileError::NotFound { .. }) => e,
        Err(other) => return Err(CniError::new(Code::InvalidConfig, other.to_string())),
    };
    let socket = conf.run_dir.daemon_socket();
    tracing::info!(profile = %name, socket = %socket.display(), "{missing}: asking the node daemon");
    let not_found = |what: String| {
        CniError::new(Code::ProfileNotFound, format!("{missing}, and the node daemon ({}) {what}", socket.display()))
    };
    match node_socket::ask_profile(&socket, name, DAEMON_TIMEOUT) {
        Ok(Response::Profile(object)) => check_served(object, name).map(Some),
        Ok(Response::NotFound) => Err(not_found(format!("says the API server has no VfProfile {name}"))),
        Ok(Response::Error(e)) => Err(not_found(format!("could not get it: {e}"))),
        Ok(other) => Err(not_found(format!("answered {other:?} to a profile request"))),
        Err(e) => Err(not_found(format!("did not answer: {e}")).caused_by(e)),
    }
}

/// The checks a profile file gets, for a profile the node daemon served.
fn check_served(object: serde_json::Value, name: &str) -> Result<VfProfile> {
    let invalid = |msg: String| {
        CniError::new(Code::InvalidConfig, format!("VfProfile {name} from the API server is not valid: {msg}"))
    };
    let profile: VfProfile = serde_json::from_value(object).map_err(|e| invalid(e.to_string()))?;
    if profile.name() != name {
        return Err(invalid(format!("metadata.name is {:?}", profile.name())));
    }
    profile.spec.validate().map_err(|e| invalid(format!("spec.{e}")))?;
    Ok(profile)
}

/// Merges a network definition with its profile into the settings to apply.
pub fn resolve(conf: &NetConf, profile: Option<&VfProfile>, pod_namespace: Option<&str>) -> Result<Desired> {
    let Some(profile) = profile else {
        if let Some(v) = conf.pod_vlan {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "invalid args.cni.vlan: {v} needs a VfProfile with a podVlanRange (network {} names no profile)",
                    conf.name
                ),
            ));
        }
        return Ok(Desired {
            vlan: conf.vlan.map(|v| (v, conf.vlan_qos.unwrap_or(0), conf.vlan_proto.unwrap_or_default())),
            mac: conf.mac,
            spoofchk: conf.spoofchk,
            trust: conf.trust,
            min_tx_rate: conf.min_tx_rate,
            max_tx_rate: conf.max_tx_rate,
            link_state: conf.link_state,
            mtu: conf.mtu,
        });
    };
    let name = profile.name();
    let spec = &profile.spec;
    if spec.allowed_namespaces.is_some() {
        match pod_namespace {
            // The wording is shared with the DRA driver's refusal.
            Some(ns) => {
                profile.check_namespace(ns).map_err(|e| CniError::new(Code::NamespaceNotAllowed, e.to_string()))?;
            }
            None => {
                return Err(CniError::new(
                    Code::NamespaceNotAllowed,
                    format!(
                        "VfProfile {name} limits its namespaces, but the pod's namespace is unknown (no K8S_POD_NAMESPACE in CNI_ARGS)"
                    ),
                ));
            }
        }
    }
    fn governed<T: PartialEq + std::fmt::Display>(
        key: &str,
        def: Option<T>,
        prof: Option<T>,
        pkey: &str,
        profile: &str,
    ) -> Result<Option<T>> {
        match (def, prof) {
            (Some(d), Some(p)) if d != p => Err(CniError::new(
                Code::InvalidConfig,
                format!("network definition key {key}={d} contradicts VfProfile {profile} ({pkey}={p})"),
            )),
            (d, p) => Ok(p.or(d)),
        }
    }
    let qos = governed("vlanQoS", conf.vlan_qos, spec.vlan_qos, "vlanQoS", name)?;
    let proto = governed("vlanProto", conf.vlan_proto, spec.vlan_proto, "vlanProto", name)?;
    let spoofchk =
        governed("spoofchk", conf.spoofchk.map(OnOff), spec.spoof_chk.map(OnOff), "spoofChk", name)?.map(|b| b.0);
    let trust = governed("trust", conf.trust.map(OnOff), spec.trust.map(OnOff), "trust", name)?.map(|b| b.0);
    let link_state = governed("link_state", conf.link_state, spec.link_state, "linkState", name)?;
    let min_tx_rate = governed("min_tx_rate", conf.min_tx_rate, spec.min_tx_rate_mbps, "minTxRateMbps", name)?;
    let max_tx_rate = governed("max_tx_rate", conf.max_tx_rate, spec.max_tx_rate_mbps, "maxTxRateMbps", name)?;
    let mtu = governed("mtu", conf.mtu, spec.mtu, "mtu", name)?;

    let vlan = match (conf.pod_vlan, spec.pod_vlan_range) {
        (Some(v), Some(range)) if range.contains(v) => {
            if let Some(d) = conf.vlan
                && d != v
            {
                return Err(CniError::new(
                    Code::InvalidConfig,
                    format!(
                        "network definition key vlan={d} contradicts the pod's args.cni.vlan={v} under VfProfile {name}"
                    ),
                ));
            }
            Some(v)
        }
        (Some(v), Some(range)) => {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "invalid args.cni.vlan: {v} is outside VfProfile {name}'s podVlanRange {}-{}",
                    range.min, range.max
                ),
            ));
        }
        (Some(v), None) => {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "invalid args.cni.vlan: VfProfile {name} has no podVlanRange, so pods may not choose a VLAN ({v})"
                ),
            ));
        }
        (None, range) => {
            let chosen = governed("vlan", conf.vlan, spec.vlan, "vlan", name)?;
            match (chosen, range) {
                (Some(v), Some(r)) if spec.vlan.is_none() && !r.contains(v) => {
                    return Err(CniError::new(
                        Code::InvalidConfig,
                        format!(
                            "network definition key vlan={v} is outside VfProfile {name}'s podVlanRange {}-{}",
                            r.min, r.max
                        ),
                    ));
                }
                (None, Some(r)) => {
                    return Err(CniError::new(
                        Code::InvalidConfig,
                        format!(
                            "VfProfile {name} requires a VLAN: set args.cni.vlan within its podVlanRange {}-{}",
                            r.min, r.max
                        ),
                    ));
                }
                (v, _) => v,
            }
        }
    };
    if vlan.unwrap_or(0) == 0 && (qos.unwrap_or(0) != 0 || proto == Some(VlanProto::Dot1Ad)) {
        return Err(CniError::new(
            Code::InvalidConfig,
            format!("VfProfile {name}: a QoS or 802.1ad needs a non-zero VLAN"),
        ));
    }
    Ok(Desired {
        vlan: vlan.map(|v| (v, qos.unwrap_or(0), proto.unwrap_or_default())),
        mac: conf.mac,
        spoofchk,
        trust,
        min_tx_rate,
        max_tx_rate,
        link_state,
        mtu,
    })
}

/// The network definition keys that set a VF setting directly: on a pool that requires
/// profiles, only the profile may set them.
pub const VF_SETTING_KEYS: [&str; 9] =
    ["vlan", "vlanQoS", "vlanProto", "spoofchk", "trust", "mac", "min_tx_rate", "max_tx_rate", "link_state"];

/// Applies the rules of the VF's pool, from its device record (written by the node daemon when
/// kubelet allocated the VF):
/// - no record: refused on a node that requires records (code 103), and when the profile names a
///   `physicalNetwork` (nothing says the VF is on it); otherwise sriov-cni's drop-in behaviour;
/// - a pool that `requireProfile`s: a definition without a profile, or with one of
///   [`VF_SETTING_KEYS`], is refused (code 7, naming the key and the pool);
/// - a pool with `allowedProfiles`: another profile is refused (code 114);
/// - a profile's `physicalNetwork` must be the pool's (code 103).
pub fn check_pool(conf: &NetConf, profile: Option<&VfProfile>, vf: &PciAddress) -> Result<()> {
    let path = conf.run_dir.device_record(vf);
    let Some(rec) = DeviceRecord::load(&conf.run_dir, vf)? else {
        if conf.node.require_device_records {
            return Err(CniError::new(
                Code::PhysicalNetworkMismatch,
                format!(
                    "VF {vf} has no device record ({}), and this node attaches only VFs of vfnet's pools \
                     (requireDeviceRecords in {})",
                    path.display(),
                    conf.node.path.display()
                ),
            ));
        }
        return match profile.and_then(|p| p.spec.physical_network.as_ref().map(|n| (p.name(), n))) {
            Some((name, want)) => Err(CniError::new(
                Code::PhysicalNetworkMismatch,
                format!(
                    "VF {vf} has no device record ({}), but VfProfile {name} requires physicalNetwork {want}",
                    path.display()
                ),
            )),
            None => Ok(()),
        };
    };
    let pool = &rec.resource_name;
    if rec.require_profile {
        if let Some(key) = VF_SETTING_KEYS.iter().find(|k| conf.raw.get(**k).is_some_and(|v| !v.is_null())) {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "network definition key {key} is refused: VF {vf} is in pool {pool}, whose VFs are configured \
                     only through VfProfiles (requireProfile); name a profile instead"
                ),
            ));
        }
        if profile.is_none() {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "invalid profile: missing: VF {vf} is in pool {pool}, whose VFs are configured only through \
                     VfProfiles (requireProfile)"
                ),
            ));
        }
    }
    let Some(profile) = profile else { return Ok(()) };
    let name = profile.name();
    if let Some(allowed) = &rec.allowed_profiles
        && !allowed.iter().any(|a| a == name)
    {
        return Err(CniError::new(
            Code::ProfileNotAllowed,
            format!("VfProfile {name} is not allowed on pool {pool} (allowedProfiles: {})", allowed.join(", ")),
        ));
    }
    match &profile.spec.physical_network {
        Some(want) if rec.physical_network.as_deref() != Some(want.as_str()) => Err(CniError::new(
            Code::PhysicalNetworkMismatch,
            format!(
                "VF {vf} is on physical network {} (pool {pool}), but VfProfile {name} requires {want}",
                rec.physical_network.as_deref().unwrap_or("<none>"),
            ),
        )),
        _ => Ok(()),
    }
}

/// A bool that displays as sriov-cni's "on"/"off".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OnOff(bool);

impl std::fmt::Display for OnOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0 { "on" } else { "off" })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vfnet_types::RunDir;

    use super::*;
    use crate::node_config::NodeConfig;

    fn conf(extra: serde_json::Value) -> NetConf {
        let mut v = serde_json::json!({"cniVersion": "1.0.0", "name": "net-a", "type": "vfnet"});
        if let (serde_json::Value::Object(m), serde_json::Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        NetConf::parse(v.to_string().as_bytes(), &BTreeMap::new(), &NodeConfig::default()).unwrap()
    }

    /// A configuration read on a node whose run directory is `run`.
    fn conf_on(run: &RunDir, require_records: bool, extra: serde_json::Value) -> NetConf {
        let node =
            NodeConfig { run_dir: run.clone(), require_device_records: require_records, ..NodeConfig::default() };
        let mut v = serde_json::json!({"cniVersion": "1.0.0", "name": "net-a", "type": "vfnet"});
        if let (serde_json::Value::Object(m), serde_json::Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        NetConf::parse(v.to_string().as_bytes(), &BTreeMap::new(), &node).unwrap()
    }

    fn profile(spec: serde_json::Value) -> VfProfile {
        serde_json::from_value(serde_json::json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile", "metadata": {"name": "tenant-a"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn without_a_profile_the_definition_applies() {
        let d = resolve(&conf(serde_json::json!({"vlan": 100, "spoofchk": "off"})), None, None).unwrap();
        assert_eq!(d.vlan, Some((100, 0, VlanProto::Dot1Q)));
        assert_eq!(d.spoofchk, Some(false));
        assert_eq!(resolve(&conf(serde_json::json!({})), None, None).unwrap().vlan, None, "absent vlan: untouched");
        let e = resolve(&conf(serde_json::json!({"args": {"cni": {"vlan": 5}}})), None, None).unwrap_err();
        assert!(e.msg.contains("needs a VfProfile with a podVlanRange"), "{e}");
    }

    #[test]
    fn the_profile_governs() {
        let p = profile(
            serde_json::json!({"vlan": 100, "vlanQoS": 3, "spoofChk": true, "trust": false, "allowedNamespaces": ["tenant-a"]}),
        );
        let d = resolve(&conf(serde_json::json!({})), Some(&p), Some("tenant-a")).unwrap();
        assert_eq!(d.vlan, Some((100, 3, VlanProto::Dot1Q)));
        assert_eq!((d.spoofchk, d.trust), (Some(true), Some(false)));
        let d =
            resolve(&conf(serde_json::json!({"vlan": 100, "max_tx_rate": 50})), Some(&p), Some("tenant-a")).unwrap();
        assert_eq!(d.max_tx_rate, Some(50), "keys the profile is silent on stay the definition's");

        let e = resolve(&conf(serde_json::json!({"vlan": 200})), Some(&p), Some("tenant-a")).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (Code::InvalidConfig, "network definition key vlan=200 contradicts VfProfile tenant-a (vlan=100)")
        );
        let e = resolve(&conf(serde_json::json!({"spoofchk": "off"})), Some(&p), Some("tenant-a")).unwrap_err();
        assert_eq!(e.msg, "network definition key spoofchk=off contradicts VfProfile tenant-a (spoofChk=on)");
        let e = resolve(&conf(serde_json::json!({})), Some(&p), Some("tenant-b")).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (
                Code::NamespaceNotAllowed,
                "namespace tenant-b may not use VfProfile tenant-a (allowedNamespaces: tenant-a)"
            )
        );
        let e = resolve(&conf(serde_json::json!({})), Some(&p), None).unwrap_err();
        assert_eq!(e.code, Code::NamespaceNotAllowed);
        let e =
            resolve(&conf(serde_json::json!({"args": {"cni": {"vlan": 7}}})), Some(&p), Some("tenant-a")).unwrap_err();
        assert!(e.msg.contains("has no podVlanRange"), "{e}");
    }

    #[test]
    fn pods_choose_vlans_only_inside_the_range() {
        let p = profile(serde_json::json!({"podVlanRange": {"min": 200, "max": 299}}));
        let d = resolve(&conf(serde_json::json!({"args": {"cni": {"vlan": 210}}})), Some(&p), Some("x")).unwrap();
        assert_eq!(d.vlan, Some((210, 0, VlanProto::Dot1Q)));
        let e = resolve(&conf(serde_json::json!({"args": {"cni": {"vlan": 300}}})), Some(&p), Some("x")).unwrap_err();
        assert_eq!(e.msg, "invalid args.cni.vlan: 300 is outside VfProfile tenant-a's podVlanRange 200-299");
        let e = resolve(&conf(serde_json::json!({})), Some(&p), Some("x")).unwrap_err();
        assert!(e.msg.contains("requires a VLAN"), "{e}");
        let e = resolve(&conf(serde_json::json!({"vlan": 100})), Some(&p), Some("x")).unwrap_err();
        assert!(e.msg.contains("vlan=100 is outside"), "{e}");
        // A profile default VLAN that pods may override within the range.
        let p = profile(serde_json::json!({"vlan": 250, "podVlanRange": {"min": 200, "max": 299}}));
        assert_eq!(resolve(&conf(serde_json::json!({})), Some(&p), None).unwrap().vlan.unwrap().0, 250);
        assert_eq!(
            resolve(&conf(serde_json::json!({"args": {"cni": {"vlan": 201}}})), Some(&p), None)
                .unwrap()
                .vlan
                .unwrap()
                .0,
            201
        );
    }

    #[test]
    fn pool_rules_come_from_the_device_record() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::new(tmp.path());
        let vf: PciAddress = "0000:01:00.1".parse().unwrap();
        let p = profile(serde_json::json!({"physicalNetwork": "physnet1"}));
        let plain = conf_on(&dir, false, serde_json::json!({"vlan": 200}));
        // No record: drop-in, unless the profile needs a network or the node needs records.
        check_pool(&plain, None, &vf).unwrap();
        let e = check_pool(&plain, Some(&p), &vf).unwrap_err();
        assert_eq!(e.code, Code::PhysicalNetworkMismatch);
        assert!(e.msg.contains("has no device record"), "{e}");
        let e = check_pool(&conf_on(&dir, true, serde_json::json!({})), None, &vf).unwrap_err();
        assert_eq!(e.code, Code::PhysicalNetworkMismatch);
        assert!(e.msg.contains("attaches only VFs of vfnet's pools (requireDeviceRecords in"), "{e}");

        let mut rec = DeviceRecord {
            pci: vf,
            resource_name: "vfnet.dev/a".into(),
            physical_network: Some("physnet2".into()),
            device_type: vfnet_types::DeviceType::Netdevice,
            pf: "0000:00:09.0".parse().unwrap(),
            pf_name: None,
            vf_index: 1,
            require_profile: false,
            allowed_profiles: None,
        };
        rec.store(&dir).unwrap();
        let e = check_pool(&plain, Some(&p), &vf).unwrap_err();
        assert_eq!(
            e.msg,
            "VF 0000:01:00.1 is on physical network physnet2 (pool vfnet.dev/a), but VfProfile tenant-a requires physnet1"
        );
        rec.physical_network = Some("physnet1".into());
        rec.store(&dir).unwrap();
        check_pool(&plain, Some(&p), &vf).unwrap();
        check_pool(&plain, None, &vf).unwrap();

        // A pool that requires profiles: every raw VF key is refused, naming it and the pool.
        rec.require_profile = true;
        rec.store(&dir).unwrap();
        for (key, value) in [
            ("vlan", serde_json::json!(200)),
            ("vlanQoS", serde_json::json!(1)),
            ("spoofchk", serde_json::json!("off")),
            ("trust", serde_json::json!("on")),
            ("mac", serde_json::json!("02:00:00:00:00:01")),
            ("min_tx_rate", serde_json::json!(1)),
            ("max_tx_rate", serde_json::json!(10)),
            ("link_state", serde_json::json!("enable")),
        ] {
            let mut extra = serde_json::json!({"profile": "tenant-a", key: value});
            if key == "vlanQoS" {
                extra["vlan"] = serde_json::json!(5);
            }
            let c = conf_on(&dir, false, extra);
            let e = check_pool(&c, Some(&p), &vf).unwrap_err();
            assert_eq!(e.code, Code::InvalidConfig, "{key}");
            assert!(
                e.msg.starts_with("network definition key ")
                    && e.msg.contains("pool vfnet.dev/a")
                    && e.msg.contains("requireProfile"),
                "{key}: {e}"
            );
        }
        let e = check_pool(&conf_on(&dir, false, serde_json::json!({"vlanProto": "802.1Q", "vlan": 5})), Some(&p), &vf)
            .unwrap_err();
        assert!(e.msg.starts_with("network definition key vlan "), "the first key in the list: {e}");
        let e = check_pool(&conf_on(&dir, false, serde_json::json!({})), None, &vf).unwrap_err();
        assert_eq!((e.code, e.msg.contains("invalid profile: missing")), (Code::InvalidConfig, true), "{e}");
        check_pool(&conf_on(&dir, false, serde_json::json!({"profile": "tenant-a", "mtu": 1400})), Some(&p), &vf)
            .unwrap();

        // allowedProfiles.
        rec.allowed_profiles = Some(vec!["tenant-b".into()]);
        rec.store(&dir).unwrap();
        let e =
            check_pool(&conf_on(&dir, false, serde_json::json!({"profile": "tenant-a"})), Some(&p), &vf).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (
                Code::ProfileNotAllowed,
                "VfProfile tenant-a is not allowed on pool vfnet.dev/a (allowedProfiles: tenant-b)"
            )
        );
    }

    #[test]
    fn pf_settings_order_and_partial_rates() {
        let d = Desired {
            vlan: Some((5, 0, VlanProto::Dot1Q)),
            max_tx_rate: Some(100),
            trust: Some(true),
            ..Default::default()
        };
        let cur = VfState { min_tx_rate: 7, ..Default::default() };
        assert_eq!(
            d.pf_settings(&cur),
            vec![
                VfSetting::Vlan { vlan: 5, qos: 0, proto: VlanProto::Dot1Q },
                VfSetting::Rate { min_mbps: 7, max_mbps: 100 },
                VfSetting::Trust(true)
            ]
        );
    }
}
