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
//! the file is missing and the configuration has a `kubeconfig`, the profile is fetched from the
//! API server (3 s in all) and applied exactly as a file would be.

use std::path::Path;
use std::time::Duration;

use crds::profile::VfProfile;
use sriov::netlink::{VfSetting, VfState};
use sriov::record::DeviceRecord;
use vfnet_types::{MacAddr, PciAddress, RunDir, VfLinkState, VlanProto};

use crate::config::NetConf;
use crate::error::{CniError, Code, Result};

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

/// How long the API server gets, in all, to serve a profile missing from `profileDir`.
pub const API_TIMEOUT: Duration = Duration::from_secs(3);

/// Loads the profile a configuration names, if any: from `profileDir`, else (with a
/// `kubeconfig`) from the API server.
pub fn load_profile(conf: &NetConf) -> Result<Option<VfProfile>> {
    let Some(name) = &conf.profile else { return Ok(None) };
    match VfProfile::load(&conf.profile_dir, name) {
        Ok(profile) => Ok(Some(profile)),
        Err(e @ crds::profile::ProfileFileError::NotFound { .. }) => match &conf.kubeconfig {
            None => Err(CniError::new(Code::ProfileNotFound, e.to_string())),
            Some(kubeconfig) => {
                tracing::info!(profile = %name, kubeconfig = %kubeconfig.display(), "{e}: asking the API server");
                match fetch_profile(kubeconfig, name) {
                    Ok(Some(profile)) => check_fetched(profile, name).map(Some),
                    Ok(None) => Err(CniError::new(
                        Code::ProfileNotFound,
                        format!(
                            "{e}, and the API server (kubeconfig {}) has no VfProfile {name}",
                            kubeconfig.display()
                        ),
                    )),
                    Err(Fetch::Invalid(msg)) => Err(CniError::new(
                        Code::InvalidConfig,
                        format!("VfProfile {name} from the API server is not valid: {msg}"),
                    )),
                    Err(Fetch::Failed(api)) => Err(CniError::new(
                        Code::ProfileNotFound,
                        format!(
                            "{e}, and the API server (kubeconfig {}) did not serve it: {api}",
                            kubeconfig.display()
                        ),
                    )),
                }
            }
        },
        Err(other) => Err(CniError::new(Code::InvalidConfig, other.to_string())),
    }
}

/// The checks a profile file gets, for a profile the API server served.
fn check_fetched(profile: VfProfile, name: &str) -> Result<VfProfile> {
    let invalid = |msg: String| {
        CniError::new(Code::InvalidConfig, format!("VfProfile {name} from the API server is not valid: {msg}"))
    };
    if profile.name() != name {
        return Err(invalid(format!("metadata.name is {:?}", profile.name())));
    }
    profile.spec.validate().map_err(|e| invalid(format!("spec.{e}")))?;
    Ok(profile)
}

/// Why the API server did not yield a profile.
enum Fetch {
    /// It served something that is not a valid VfProfile.
    Invalid(String),
    /// It could not be asked, or did not answer (in time).
    Failed(String),
}

/// Fetches VfProfile `name` from the API server of `kubeconfig` (`None`: it has none), within
/// [`API_TIMEOUT`]. The client and its runtime exist only on this path.
fn fetch_profile(kubeconfig: &Path, name: &str) -> std::result::Result<Option<VfProfile>, Fetch> {
    // With the causes: kube's own message alone can be as terse as "client error (Connect)".
    let failed = |e: &dyn std::error::Error| {
        let mut msg = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            let m = c.to_string();
            if !msg.contains(&m) {
                msg = format!("{msg}: {m}");
            }
            cause = c.source();
        }
        Fetch::Failed(msg)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fetch::Failed(format!("cannot start a runtime: {e}")))?;
    let fetch = async {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| failed(&e))?;
        let mut config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| failed(&e))?;
        config.connect_timeout = Some(API_TIMEOUT);
        config.read_timeout = Some(API_TIMEOUT);
        let client = kube::Client::try_from(config).map_err(|e| failed(&e))?;
        let api: kube::Api<VfProfile> = kube::Api::all(client);
        api.get_opt(name).await.map_err(|e| match e {
            kube::Error::SerdeError(e) => Fetch::Invalid(e.to_string()),
            other => failed(&other),
        })
    };
    runtime.block_on(async {
        tokio::time::timeout(API_TIMEOUT, fetch)
            .await
            .unwrap_or_else(|_| Err(Fetch::Failed(format!("no answer within {}s", API_TIMEOUT.as_secs()))))
    })
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
    if let Some(allowed) = &spec.allowed_namespaces {
        match pod_namespace {
            Some(ns) if spec.allows_namespace(ns) => {}
            Some(ns) => {
                return Err(CniError::new(
                    Code::NamespaceNotAllowed,
                    format!("namespace {ns} may not use VfProfile {name} (allowedNamespaces: {})", allowed.join(", ")),
                ));
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

/// Checks the profile's `physicalNetwork` against the VF's device record.
pub fn check_physical_network(profile: Option<&VfProfile>, run_dir: &RunDir, vf: &PciAddress) -> Result<()> {
    let Some(profile) = profile else { return Ok(()) };
    let Some(want) = &profile.spec.physical_network else { return Ok(()) };
    let name = profile.name();
    let path = run_dir.device_record(vf);
    match DeviceRecord::load(run_dir, vf)? {
        None => Err(CniError::new(
            Code::PhysicalNetworkMismatch,
            format!(
                "VF {vf} has no device record ({}), but VfProfile {name} requires physicalNetwork {want}",
                path.display()
            ),
        )),
        Some(rec) if rec.physical_network.as_deref() == Some(want.as_str()) => Ok(()),
        Some(rec) => Err(CniError::new(
            Code::PhysicalNetworkMismatch,
            format!(
                "VF {vf} is on physical network {} (pool {}), but VfProfile {name} requires {want}",
                rec.physical_network.as_deref().unwrap_or("<none>"),
                rec.resource_name
            ),
        )),
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

    use super::*;

    fn conf(extra: serde_json::Value) -> NetConf {
        let mut v = serde_json::json!({"cniVersion": "1.0.0", "name": "net-a", "type": "vfnet"});
        if let (serde_json::Value::Object(m), serde_json::Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        NetConf::parse(v.to_string().as_bytes(), &BTreeMap::new()).unwrap()
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
    fn physical_network_needs_a_matching_record() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::new(tmp.path());
        let vf: PciAddress = "0000:01:00.1".parse().unwrap();
        let p = profile(serde_json::json!({"physicalNetwork": "physnet1"}));
        let e = check_physical_network(Some(&p), &dir, &vf).unwrap_err();
        assert_eq!(e.code, Code::PhysicalNetworkMismatch);
        assert!(e.msg.contains("has no device record"), "{e}");
        let mut rec = DeviceRecord {
            pci: vf,
            resource_name: "vfnet.dev/a".into(),
            physical_network: Some("physnet2".into()),
            device_type: vfnet_types::DeviceType::Netdevice,
            pf: "0000:00:09.0".parse().unwrap(),
            pf_name: None,
            vf_index: 1,
        };
        rec.store(&dir).unwrap();
        let e = check_physical_network(Some(&p), &dir, &vf).unwrap_err();
        assert_eq!(
            e.msg,
            "VF 0000:01:00.1 is on physical network physnet2 (pool vfnet.dev/a), but VfProfile tenant-a requires physnet1"
        );
        rec.physical_network = Some("physnet1".into());
        rec.store(&dir).unwrap();
        check_physical_network(Some(&p), &dir, &vf).unwrap();
        check_physical_network(None, &dir, &vf).unwrap();
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
