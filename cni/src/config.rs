//! The network configuration on stdin.
//!
//! Every sriov-cni key keeps its meaning, so an existing network definition works by changing
//! only `type`: `deviceID` (alias `pciBusID`), `vlan`, `vlanQoS`, `vlanProto`, `mac`, `spoofchk`
//! and `trust` ("on"/"off"), `link_state`, `min_tx_rate`, `max_tx_rate`, `logLevel`, `logFile`,
//! `ipam`, `runtimeConfig.mac`, `runtimeConfig.deviceID`, and `MAC=` in `CNI_ARGS`.
//!
//! **The one VLAN rule** (sriov-cni's since 2024): without a profile, an absent `vlan` leaves
//! the VF's VLAN untouched, and `vlan: 0` clears it.
//!
//! vfnet adds `vnicType`, `macvtapMode`, `profile`, `mtu`, `resourceName`, `logFormat`,
//! `ipamTimeout` (seconds each IPAM plugin call may take), and reads `args.cni.vlan` (a pod's VLAN
//! choice, only inside a profile's `podVlanRange`) and `runtimeConfig.CNIDeviceInfoFile` (only
//! under Multus's device-info directory).
//!
//! **Tenants write network definitions; the plugin runs as root.** So the keys that name a host
//! path or an endpoint (`stateDir`, `runDir`, `profileDir`, `logFile`, `podResourcesSocket`;
//! sriov-cni's `logFile` among them) are the node configuration's ([`crate::node_config`]): a
//! network definition that sets one is refused, naming the key and the node configuration file,
//! unless that file allows overrides.
//!
//! `kubeconfig` (once: where to fetch a profile missing from `profileDir`) is refused: the node
//! daemon now fetches such profiles, and a configuration that still names one would be relying
//! on credentials the plugin no longer uses.
//!
//! Keys are read one by one from the JSON object (not through a derived struct) so that every
//! error names the key and the value.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};
use sriov::netlink::MacvtapMode;
use vfnet_types::{MacAddr, PciAddress, ProfileDir, RunDir, StateDir, VfLinkState, VlanProto};

use crate::error::{CniError, Code, Result, bad_config};
use crate::node_config::NodeConfig;
use crate::version::Version;

/// How the VF reaches the pod, from its one home (the DRA driver's opaque config spells it too).
pub use vfnet_types::VnicType;

/// Parses `macvtapMode` into the mode the netlink layer creates macvtaps with.
fn parse_macvtap_mode(s: &str) -> Result<MacvtapMode> {
    match s {
        "passthru" => Ok(MacvtapMode::Passthru),
        "vepa" => Ok(MacvtapMode::Vepa),
        "bridge" => Ok(MacvtapMode::Bridge),
        "private" => Ok(MacvtapMode::Private),
        other => Err(bad_config("macvtapMode", format!("{other:?} is not one of passthru, vepa, bridge, private"))),
    }
}

/// A parsed, validated network configuration.
#[derive(Debug, Clone)]
pub struct NetConf {
    /// `cniVersion`.
    pub cni_version: Version,
    /// `name`.
    pub name: String,
    /// The VF: `runtimeConfig.deviceID`, else `deviceID`, else `pciBusID`.
    pub device_id: Option<PciAddress>,
    /// `vlan`.
    pub vlan: Option<u16>,
    /// `vlanQoS`.
    pub vlan_qos: Option<u8>,
    /// `vlanProto`.
    pub vlan_proto: Option<VlanProto>,
    /// The MAC: `runtimeConfig.mac`, else `MAC=` in `CNI_ARGS`, else `mac`.
    pub mac: Option<MacAddr>,
    /// `spoofchk`.
    pub spoofchk: Option<bool>,
    /// `trust`.
    pub trust: Option<bool>,
    /// `link_state`.
    pub link_state: Option<VfLinkState>,
    /// `min_tx_rate` (Mbps).
    pub min_tx_rate: Option<u32>,
    /// `max_tx_rate` (Mbps).
    pub max_tx_rate: Option<u32>,
    /// `mtu`.
    pub mtu: Option<u32>,
    /// `vnicType` (`None`: decided from the VF's driver).
    pub vnic_type: Option<VnicType>,
    /// `macvtapMode`.
    pub macvtap_mode: MacvtapMode,
    /// `profile`.
    pub profile: Option<String>,
    /// `resourceName`.
    pub resource_name: Option<String>,
    /// `args.cni.vlan`: the pod's VLAN choice.
    pub pod_vlan: Option<u16>,
    /// The node configuration's `stateDir` (the network definition's where overrides are allowed).
    pub state_dir: StateDir,
    /// The node configuration's `profileDir` (likewise).
    pub profile_dir: ProfileDir,
    /// The node configuration's `runDir` (likewise).
    pub run_dir: RunDir,
    /// The node configuration's `logFile` (likewise).
    pub log_file: Option<PathBuf>,
    /// The node configuration's `podResourcesSocket` (likewise), else kubelet's.
    pub pod_resources_socket: PathBuf,
    /// The node configuration this was read with (policy mode, where settings live).
    pub node: NodeConfig,
    /// `logLevel`.
    pub log_level: Option<String>,
    /// `logFormat` (`text` or `json`).
    pub log_json: bool,
    /// `ipam.type`, if IPAM is configured.
    pub ipam_type: Option<String>,
    /// `ipamTimeout`: how long one IPAM plugin call may take (see [`crate::ipam::DEFAULT_TIMEOUT`]).
    pub ipam_timeout: Duration,
    /// `runtimeConfig.CNIDeviceInfoFile`.
    pub device_info_file: Option<PathBuf>,
    /// `prevResult` (DEL, CHECK).
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC): (container id, ifname).
    pub valid_attachments: Option<Vec<(String, String)>>,
    /// The configuration as received, for delegation to IPAM.
    pub raw: Map<String, Value>,
}

fn get<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// `key` of the top-level object as a string.
fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    string_at(map, key, key)
}

/// `key` of `map` as a string; errors name it by its full key `path` (`runtimeConfig.mac`).
fn string_at(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>> {
    match get(map, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad_config(path, format!("{other} is not a string"))),
    }
}

/// `key` of the top-level object as an integer in `min..=max`.
fn int(map: &Map<String, Value>, key: &str, min: i64, max: i64) -> Result<Option<i64>> {
    int_at(map, key, key, min, max)
}

/// `key` of `map` as an integer in `min..=max`; errors name it by its full key `path`.
fn int_at(map: &Map<String, Value>, key: &str, path: &str, min: i64, max: i64) -> Result<Option<i64>> {
    match get(map, key) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            Some(n) => Err(bad_config(path, format!("{n} is outside {min}-{max}"))),
            None => Err(bad_config(path, format!("{v} is not an integer"))),
        },
    }
}

fn on_off(map: &Map<String, Value>, key: &str) -> Result<Option<bool>> {
    match string(map, key)?.as_deref() {
        None => Ok(None),
        Some("on") => Ok(Some(true)),
        Some("off") => Ok(Some(false)),
        Some(other) => Err(bad_config(key, format!("{other:?} is not \"on\" or \"off\""))),
    }
}

fn object<'a>(map: &'a Map<String, Value>, key: &str) -> Result<Option<&'a Map<String, Value>>> {
    match get(map, key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(other) => Err(bad_config(key, format!("{other} is not an object"))),
    }
}

fn pci(key: &str, s: &str) -> Result<PciAddress> {
    s.parse().map_err(|e| bad_config(key, e))
}

fn mac(key: &str, s: &str) -> Result<MacAddr> {
    let m: MacAddr = s.parse().map_err(|e| bad_config(key, e))?;
    if m.is_multicast() {
        return Err(bad_config(key, format!("{m} is a multicast address")));
    }
    Ok(m)
}

impl NetConf {
    /// Parses stdin. `cni_args` is `CNI_ARGS` (for `MAC=`); `node` says where the node's
    /// directories are and whether a network definition may move them.
    pub fn parse(
        stdin: &[u8],
        cni_args: &std::collections::BTreeMap<String, String>,
        node: &NodeConfig,
    ) -> Result<Self> {
        let value: Value = serde_json::from_slice(stdin)
            .map_err(|e| CniError::new(Code::Decode, format!("network configuration on stdin is not JSON: {e}")))?;
        let Value::Object(raw) = value else {
            return Err(CniError::new(Code::Decode, "network configuration on stdin is not a JSON object"));
        };
        let version_str = string(&raw, "cniVersion")?.ok_or_else(|| bad_config("cniVersion", "missing"))?;
        let cni_version = Version::parse(&version_str)?;
        let name = string(&raw, "name")?.unwrap_or_default();

        let runtime = object(&raw, "runtimeConfig")?;
        let runtime_str = |key: &str| -> Result<Option<String>> {
            match runtime {
                Some(rc) => string_at(rc, key, &format!("runtimeConfig.{key}")),
                None => Ok(None),
            }
        };
        let device_id = match (runtime_str("deviceID")?, string(&raw, "deviceID")?, string(&raw, "pciBusID")?) {
            (Some(d), _, _) => Some(pci("runtimeConfig.deviceID", &d)?),
            (None, Some(d), _) => Some(pci("deviceID", &d)?),
            (None, None, Some(d)) => Some(pci("pciBusID", &d)?),
            (None, None, None) => None,
        };

        let vlan = int(&raw, "vlan", 0, 4094)?.map(|v| v as u16);
        let vlan_qos = int(&raw, "vlanQoS", 0, 7)?.map(|v| v as u8);
        let vlan_proto = string(&raw, "vlanProto")?
            .map(|p| p.parse::<VlanProto>().map_err(|e| bad_config("vlanProto", e)))
            .transpose()?;
        if vlan.is_none() && (vlan_qos.is_some() || vlan_proto.is_some()) {
            let key = if vlan_qos.is_some() { "vlanQoS" } else { "vlanProto" };
            return Err(bad_config(key, "needs vlan to be set"));
        }
        if vlan == Some(0) && vlan_qos.unwrap_or(0) != 0 {
            return Err(bad_config("vlanQoS", "a non-zero QoS needs a non-zero vlan"));
        }
        if vlan == Some(0) && vlan_proto == Some(VlanProto::Dot1Ad) {
            return Err(bad_config("vlanProto", "802.1ad needs a non-zero vlan"));
        }

        let mac = match (runtime_str("mac")?, cni_args.get("MAC"), string(&raw, "mac")?) {
            (Some(m), _, _) => Some(mac("runtimeConfig.mac", &m)?),
            (None, Some(m), _) => Some(mac("CNI_ARGS MAC", m)?),
            (None, None, Some(m)) => Some(mac("mac", &m)?),
            (None, None, None) => None,
        };
        let link_state = string(&raw, "link_state")?
            .map(|s| s.parse::<VfLinkState>().map_err(|e| bad_config("link_state", e)))
            .transpose()?;
        let min_tx_rate = int(&raw, "min_tx_rate", 0, i64::from(u32::MAX))?.map(|v| v as u32);
        let max_tx_rate = int(&raw, "max_tx_rate", 0, i64::from(u32::MAX))?.map(|v| v as u32);
        if let (Some(min), Some(max)) = (min_tx_rate, max_tx_rate)
            && max != 0
            && min > max
        {
            return Err(bad_config("min_tx_rate", format!("{min} is above max_tx_rate {max}")));
        }

        let pod_vlan = match object(&raw, "args")?.map(|a| object(a, "cni")).transpose()?.flatten() {
            Some(cni) => int_at(cni, "vlan", "args.cni.vlan", 1, 4094)?.map(|v| v as u16),
            None => None,
        };
        let ipam_type = match object(&raw, "ipam")? {
            Some(ipam) => match string_at(ipam, "type", "ipam.type")? {
                Some(t) if t.is_empty() || t.contains('/') => {
                    return Err(bad_config("ipam.type", format!("{t:?} is not a plugin name")));
                }
                Some(t) => Some(t),
                None => None,
            },
            None => None,
        };
        // Bounded both ways: the network definition is the tenant's, and a longer wait only
        // holds the VF's lock past the point where the runtime has given up.
        let ipam_timeout = int(&raw, "ipamTimeout", 1, crate::ipam::MAX_TIMEOUT.as_secs() as i64)?
            .map_or(crate::ipam::DEFAULT_TIMEOUT, |s| Duration::from_secs(s as u64));
        let valid_attachments = match get(&raw, "cni.dev/valid-attachments")
            .or_else(|| get(&raw, "cni.dev/attachments"))
        {
            None => None,
            Some(Value::Array(list)) => Some(
                list.iter()
                    .map(|a| {
                        match (a.get("containerID").and_then(Value::as_str), a.get("ifname").and_then(Value::as_str)) {
                            (Some(c), Some(i)) => Ok((c.to_owned(), i.to_owned())),
                            _ => {
                                Err(bad_config("cni.dev/valid-attachments", format!("{a} lacks containerID or ifname")))
                            }
                        }
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(other) => return Err(bad_config("cni.dev/valid-attachments", format!("{other} is not a list"))),
        };
        let profile = string(&raw, "profile")?;
        if let Some(p) = &profile
            && (p.is_empty() || p.contains('/') || p.starts_with('.'))
        {
            return Err(bad_config("profile", format!("{p:?} is not a VfProfile name")));
        }
        if get(&raw, "kubeconfig").is_some() {
            return Err(bad_config(
                "kubeconfig",
                "no longer read: the node daemon (vfnet-device-plugin) now fetches profiles missing from profileDir; remove the key",
            ));
        }
        // The node configuration's keys: refused unless it allows overrides.
        let node_key = |key: &str| -> Result<Option<String>> {
            let value = string(&raw, key)?;
            if value.is_some() && !node.allow_network_overrides {
                return Err(bad_config(
                    key,
                    format!(
                        "set by the node configuration ({}, key {key}), not by network definitions, which tenants \
                         write; remove it (allowNetworkOverrides there lifts this on single-user nodes)",
                        node.path.display()
                    ),
                ));
            }
            Ok(value)
        };
        let state_dir = node_key("stateDir")?.map_or_else(|| node.state_dir.clone(), StateDir::new);
        let run_dir = node_key("runDir")?.map_or_else(|| node.run_dir.clone(), RunDir::new);
        let profile_dir = node_key("profileDir")?.map_or_else(|| node.profile_dir(), ProfileDir::new);
        let log_file = node_key("logFile")?.map(PathBuf::from).or_else(|| node.log_file.clone());
        let pod_resources_socket = node_key("podResourcesSocket")?
            .map(PathBuf::from)
            .or_else(|| node.pod_resources_socket.clone())
            .unwrap_or_else(|| PathBuf::from(kubelet_api::podresources::SOCKET));
        let device_info_file = runtime_str("CNIDeviceInfoFile")?.map(PathBuf::from);
        if let Some(path) = &device_info_file
            && !node.allow_network_overrides
        {
            check_device_info_path(path)?;
        }
        let log_json = match string(&raw, "logFormat")?.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => return Err(bad_config("logFormat", format!("{other:?} is not text or json"))),
        };
        Ok(Self {
            cni_version,
            name,
            device_id,
            vlan,
            vlan_qos,
            vlan_proto,
            mac,
            spoofchk: on_off(&raw, "spoofchk")?,
            trust: on_off(&raw, "trust")?,
            link_state,
            min_tx_rate,
            max_tx_rate,
            mtu: int(&raw, "mtu", 68, 65535)?.map(|v| v as u32),
            vnic_type: string(&raw, "vnicType")?
                .map(|s| s.parse::<VnicType>().map_err(|e| bad_config("vnicType", e)))
                .transpose()?,
            macvtap_mode: string(&raw, "macvtapMode")?
                .map(|s| parse_macvtap_mode(&s))
                .transpose()?
                .unwrap_or(MacvtapMode::Passthru),
            profile,
            resource_name: string(&raw, "resourceName")?,
            pod_vlan,
            state_dir,
            profile_dir,
            run_dir,
            log_file,
            pod_resources_socket,
            node: node.clone(),
            log_level: string(&raw, "logLevel")?,
            log_json,
            ipam_type,
            ipam_timeout,
            device_info_file,
            prev_result: get(&raw, "prevResult").cloned(),
            valid_attachments,
            raw,
        })
    }
}

/// A device-info file must be where Multus puts them (the device-info spec's directory, one file
/// name below it): `runtimeConfig` can come from the network definition itself, and the root
/// plugin must not write its JSON wherever a tenant points.
fn check_device_info_path(path: &std::path::Path) -> Result<()> {
    use std::path::Component;
    let key = "runtimeConfig.CNIDeviceInfoFile";
    let base = std::path::Path::new(vfnet_types::layout::DEVINFO_DIR);
    let inside = path.strip_prefix(base).is_ok_and(|rest| {
        rest.components().count() >= 1 && rest.components().all(|c| matches!(c, Component::Normal(_)))
    });
    if !path.is_absolute() || !inside {
        return Err(bad_config(
            key,
            format!("{} is not a file under Multus's device-info directory {}", path.display(), base.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    fn parse(json: Value) -> Result<NetConf> {
        NetConf::parse(json.to_string().as_bytes(), &BTreeMap::new(), &NodeConfig::default())
    }

    fn base(extra: Value) -> Value {
        let mut v = serde_json::json!({"cniVersion": "1.0.0", "name": "net", "type": "vfnet"});
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        v
    }

    #[test]
    fn an_sriov_cni_definition_parses_unchanged() {
        let sriov_cni = base(serde_json::json!({
            "deviceID": "0000:01:00.2", "vlan": 100, "vlanQoS": 3, "vlanProto": "802.1q", "mac": "02:00:00:00:00:0A",
            "spoofchk": "off", "trust": "on", "link_state": "enable", "min_tx_rate": 10, "max_tx_rate": 100,
            "logLevel": "debug", "logFile": "/var/log/vfnet.log", "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}
        }));
        // sriov-cni's logFile names a host path: only a single-user node's configuration lets it.
        let e = parse(sriov_cni.clone()).unwrap_err();
        assert!(e.msg.starts_with("invalid logFile: set by the node configuration"), "{e}");
        let single_user = NodeConfig { allow_network_overrides: true, ..NodeConfig::default() };
        let c = NetConf::parse(sriov_cni.to_string().as_bytes(), &BTreeMap::new(), &single_user).unwrap();
        assert_eq!(c.log_file.as_deref(), Some(Path::new("/var/log/vfnet.log")));
        assert_eq!(c.device_id.unwrap().to_string(), "0000:01:00.2");
        assert_eq!((c.vlan, c.vlan_qos, c.vlan_proto), (Some(100), Some(3), Some(VlanProto::Dot1Q)));
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:0a");
        assert_eq!((c.spoofchk, c.trust, c.link_state), (Some(false), Some(true), Some(VfLinkState::Enable)));
        assert_eq!((c.min_tx_rate, c.max_tx_rate), (Some(10), Some(100)));
        assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
        assert_eq!(c.state_dir, StateDir::default());
        assert_eq!(c.vnic_type, None);
        assert_eq!(c.ipam_timeout, crate::ipam::DEFAULT_TIMEOUT);
        assert_eq!(parse(base(serde_json::json!({"ipamTimeout": 2}))).unwrap().ipam_timeout, Duration::from_secs(2));
    }

    #[test]
    fn vlan_absent_means_untouched_and_zero_means_clear() {
        assert_eq!(parse(base(serde_json::json!({}))).unwrap().vlan, None);
        assert_eq!(parse(base(serde_json::json!({"vlan": 0}))).unwrap().vlan, Some(0));
    }

    #[test]
    fn precedence_of_device_id_and_mac() {
        let mut args = BTreeMap::new();
        args.insert("MAC".to_owned(), "02:00:00:00:00:02".to_owned());
        let json = base(
            serde_json::json!({"deviceID": "0000:01:00.1", "pciBusID": "0000:01:00.3", "mac": "02:00:00:00:00:01",
            "runtimeConfig": {"deviceID": "0000:01:00.2"}}),
        );
        let c = NetConf::parse(json.to_string().as_bytes(), &args, &NodeConfig::default()).unwrap();
        assert_eq!(c.device_id.unwrap().to_string(), "0000:01:00.2");
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:02", "CNI_ARGS MAC beats the config's mac");
        let json = base(serde_json::json!({"runtimeConfig": {"mac": "02:00:00:00:00:03"}}));
        assert_eq!(
            NetConf::parse(json.to_string().as_bytes(), &args, &NodeConfig::default())
                .unwrap()
                .mac
                .unwrap()
                .to_string(),
            "02:00:00:00:00:03"
        );
        assert_eq!(
            parse(base(serde_json::json!({"pciBusID": "0000:01:00.3"}))).unwrap().device_id.unwrap().to_string(),
            "0000:01:00.3"
        );
    }

    #[test]
    fn bad_values_name_key_and_value() {
        for (extra, want) in [
            (serde_json::json!({"vlan": 4095}), "invalid vlan: 4095 is outside 0-4094"),
            (serde_json::json!({"vlan": "100"}), "invalid vlan: \"100\" is not an integer"),
            (serde_json::json!({"vlan": 10, "vlanQoS": 9}), "invalid vlanQoS: 9 is outside 0-7"),
            (serde_json::json!({"vlanQoS": 1}), "invalid vlanQoS: needs vlan to be set"),
            (serde_json::json!({"vlan": 0, "vlanQoS": 1}), "invalid vlanQoS: a non-zero QoS needs a non-zero vlan"),
            (
                serde_json::json!({"vlan": 0, "vlanProto": "802.1ad"}),
                "invalid vlanProto: 802.1ad needs a non-zero vlan",
            ),
            (
                serde_json::json!({"vlan": 5, "vlanProto": "qinq"}),
                "invalid vlanProto: \"qinq\" is not 802.1Q or 802.1ad",
            ),
            (serde_json::json!({"spoofchk": "yes"}), "invalid spoofchk: \"yes\" is not \"on\" or \"off\""),
            (serde_json::json!({"trust": true}), "invalid trust: true is not a string"),
            (serde_json::json!({"link_state": "up"}), "invalid link_state: \"up\" is not one of auto, enable, disable"),
            (
                serde_json::json!({"min_tx_rate": 20, "max_tx_rate": 10}),
                "invalid min_tx_rate: 20 is above max_tx_rate 10",
            ),
            (serde_json::json!({"max_tx_rate": -1}), "invalid max_tx_rate: -1 is outside 0-4294967295"),
            (
                serde_json::json!({"deviceID": "01:02"}),
                "invalid deviceID: invalid PCI address \"01:02\": missing '.' before the function (expected DDDD:BB:DD.F, e.g. 0000:03:02.3)",
            ),
            (
                serde_json::json!({"runtimeConfig": {"deviceID": 7}}),
                "invalid runtimeConfig.deviceID: 7 is not a string",
            ),
            (serde_json::json!({"mac": "01:00:5e:00:00:01"}), "invalid mac: 01:00:5e:00:00:01 is a multicast address"),
            (
                serde_json::json!({"mac": "zz"}),
                "invalid mac: invalid MAC address \"zz\": expected 6 octets (expected six hex octets such as 02:00:5e:10:00:01)",
            ),
            (
                serde_json::json!({"vnicType": "normal"}),
                "invalid vnicType: \"normal\" is not one of direct, macvtap, userspace",
            ),
            (
                serde_json::json!({"macvtapMode": "source"}),
                "invalid macvtapMode: \"source\" is not one of passthru, vepa, bridge, private",
            ),
            (serde_json::json!({"mtu": 20}), "invalid mtu: 20 is outside 68-65535"),
            (serde_json::json!({"args": {"cni": {"vlan": 5000}}}), "invalid args.cni.vlan: 5000 is outside 1-4094"),
            (serde_json::json!({"ipam": {"type": "../evil"}}), "invalid ipam.type: \"../evil\" is not a plugin name"),
            (serde_json::json!({"ipam": {"type": 3}}), "invalid ipam.type: 3 is not a string"),
            (serde_json::json!({"ipamTimeout": 0}), "invalid ipamTimeout: 0 is outside 1-60"),
            (serde_json::json!({"ipamTimeout": "5s"}), "invalid ipamTimeout: \"5s\" is not an integer"),
            (serde_json::json!({"profile": "a/b"}), "invalid profile: \"a/b\" is not a VfProfile name"),
            (
                serde_json::json!({"kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig"}),
                "invalid kubeconfig: no longer read: the node daemon (vfnet-device-plugin) now fetches profiles missing from profileDir; remove the key",
            ),
        ] {
            let e = parse(base(extra.clone())).unwrap_err();
            assert_eq!((e.code, e.msg.as_str()), (Code::InvalidConfig, want), "{extra}");
        }
        let e = NetConf::parse(b"{", &BTreeMap::new(), &NodeConfig::default()).unwrap_err();
        assert_eq!(e.code, Code::Decode);
        let e = parse(serde_json::json!({"cniVersion": "0.2.0"})).unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
        let e = parse(serde_json::json!({"name": "x"})).unwrap_err();
        assert_eq!(e.msg, "invalid cniVersion: missing");
    }

    #[test]
    fn node_keys_are_the_node_configuration_s() {
        let node = NodeConfig {
            path: PathBuf::from("/etc/vfnet/node.json"),
            state_dir: StateDir::new("/srv/state"),
            log_file: Some(PathBuf::from("/var/log/vfnet.log")),
            ..NodeConfig::default()
        };
        let strict = |extra: Value| NetConf::parse(base(extra).to_string().as_bytes(), &BTreeMap::new(), &node);
        let c = strict(serde_json::json!({})).unwrap();
        assert_eq!(
            (c.state_dir.path(), c.log_file.as_deref()),
            (Path::new("/srv/state"), Some(Path::new("/var/log/vfnet.log")))
        );
        assert_eq!(c.run_dir, RunDir::default());
        assert_eq!(c.pod_resources_socket, Path::new(kubelet_api::podresources::SOCKET));
        for key in ["stateDir", "runDir", "profileDir", "logFile", "podResourcesSocket"] {
            let e = strict(serde_json::json!({key: "/tmp/evil"})).unwrap_err();
            assert_eq!(e.code, Code::InvalidConfig);
            assert!(
                e.msg.starts_with(&format!(
                    "invalid {key}: set by the node configuration (/etc/vfnet/node.json, key {key})"
                )),
                "{e}"
            );
        }
        for bad in [
            "/tmp/x.json",
            "/var/run/k8s.cni.cncf.io/devinfo/../../../../etc/x",
            "relative.json",
            "/var/run/k8s.cni.cncf.io/devinfo",
        ] {
            let e = strict(serde_json::json!({"runtimeConfig": {"CNIDeviceInfoFile": bad}})).unwrap_err();
            assert!(e.msg.starts_with("invalid runtimeConfig.CNIDeviceInfoFile:"), "{bad}: {e}");
        }
        let ok = "/var/run/k8s.cni.cncf.io/devinfo/cni/ns-pod-net.json";
        assert_eq!(
            strict(serde_json::json!({"runtimeConfig": {"CNIDeviceInfoFile": ok}}))
                .unwrap()
                .device_info_file
                .as_deref(),
            Some(Path::new(ok))
        );
        let open = NodeConfig { allow_network_overrides: true, ..node.clone() };
        let c = NetConf::parse(
            base(serde_json::json!({"stateDir": "/tmp/s", "podResourcesSocket": "/tmp/k.sock"})).to_string().as_bytes(),
            &BTreeMap::new(),
            &open,
        )
        .unwrap();
        assert_eq!(
            (c.state_dir.path(), c.pod_resources_socket.as_path()),
            (Path::new("/tmp/s"), Path::new("/tmp/k.sock"))
        );
    }

    #[test]
    fn gc_attachments_and_pod_vlan() {
        let c = parse(base(serde_json::json!({"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "net1"}], "args": {"cni": {"vlan": 210}}}))).unwrap();
        assert_eq!(c.valid_attachments, Some(vec![("a".to_owned(), "net1".to_owned())]));
        assert_eq!(c.pod_vlan, Some(210));
    }
}
