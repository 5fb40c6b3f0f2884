//! ADD results: one internal model, rendered in the config's `cniVersion`.
//!
//! - 0.3.0, 0.3.1, 0.4.0: each IP carries `version` ("4"/"6"); interfaces have name, mac,
//!   sandbox.
//! - 1.0.0: no per-IP `version`.
//! - 1.1.0: interfaces add `mtu`, `socketPath`, `pciID`; routes add `mtu`, `advmss`,
//!   `priority`, `table`, `scope`.
//!
//! IPAM results are parsed from any of these layouts.

use std::net::IpAddr;

use serde_json::{Map, Value, json};
use sriov::netlink::IpPrefix;

use crate::error::{CniError, Code, Result};
use crate::version::Version;

/// An interface in a result.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// MAC.
    pub mac: Option<String>,
    /// MTU (1.1.0).
    pub mtu: Option<u32>,
    /// Namespace path; absent for host interfaces.
    pub sandbox: Option<String>,
    /// PCI address of the device (1.1.0).
    pub pci_id: Option<String>,
    /// Socket path (1.1.0).
    pub socket_path: Option<String>,
}

/// An IP configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IpConfig {
    /// Address with prefix.
    pub address: IpPrefix,
    /// Gateway.
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

/// A route.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteEntry {
    /// Destination.
    pub dst: IpPrefix,
    /// Next hop.
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1.0).
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0).
    pub advmss: Option<u32>,
    /// Metric (1.1.0).
    pub priority: Option<u32>,
    /// Table (1.1.0).
    pub table: Option<u32>,
    /// Scope (1.1.0).
    pub scope: Option<u32>,
}

/// A result.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct CniResult {
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// IPs.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<RouteEntry>,
    /// DNS, passed through from IPAM.
    pub dns: Option<Value>,
}

fn put<T: serde::Serialize>(m: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        m.insert(key.to_owned(), json!(v));
    }
}

impl CniResult {
    /// Renders the result for `version`.
    pub fn render(&self, version: Version) -> Value {
        let v11 = version >= Version::V1_1_0;
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut m = Map::new();
                m.insert("name".into(), json!(i.name));
                put(&mut m, "mac", i.mac.as_ref());
                if v11 {
                    put(&mut m, "mtu", i.mtu);
                }
                put(&mut m, "sandbox", i.sandbox.as_ref());
                if v11 {
                    put(&mut m, "socketPath", i.socket_path.as_ref());
                    put(&mut m, "pciID", i.pci_id.as_ref());
                }
                Value::Object(m)
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut m = Map::new();
                if version.legacy_result() {
                    m.insert("version".into(), json!(if ip.address.addr.is_ipv4() { "4" } else { "6" }));
                }
                m.insert("address".into(), json!(ip.address.to_string()));
                put(&mut m, "gateway", ip.gateway.map(|g| g.to_string()));
                put(&mut m, "interface", ip.interface);
                Value::Object(m)
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut m = Map::new();
                m.insert("dst".into(), json!(r.dst.to_string()));
                put(&mut m, "gw", r.gw.map(|g| g.to_string()));
                if v11 {
                    put(&mut m, "mtu", r.mtu);
                    put(&mut m, "advmss", r.advmss);
                    put(&mut m, "priority", r.priority);
                    put(&mut m, "table", r.table);
                    put(&mut m, "scope", r.scope);
                }
                Value::Object(m)
            })
            .collect();
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version.as_str()));
        if !interfaces.is_empty() {
            out.insert("interfaces".into(), Value::Array(interfaces));
        }
        if !ips.is_empty() {
            out.insert("ips".into(), Value::Array(ips));
        }
        if !routes.is_empty() {
            out.insert("routes".into(), Value::Array(routes));
        }
        match &self.dns {
            Some(Value::Object(d)) if !d.is_empty() => {
                out.insert("dns".into(), Value::Object(d.clone()));
            }
            _ => {}
        }
        Value::Object(out)
    }

    /// Parses a result (an IPAM plugin's, or a `prevResult`) in any supported layout.
    pub fn parse(value: &Value, source: &str) -> Result<Self> {
        let bad = |what: String| CniError::new(Code::Decode, format!("{source}: {what}"));
        let list = |key: &str| -> Result<Vec<Value>> {
            match value.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(a)) => Ok(a.clone()),
                Some(other) => Err(bad(format!("{key} is {other}, not a list"))),
            }
        };
        let ip = |v: &Value, key: &str| -> Result<Option<IpAddr>> {
            match v.get(key).and_then(Value::as_str) {
                None => Ok(None),
                Some(s) => s.parse().map(Some).map_err(|_| bad(format!("{key} {s:?} is not an IP address"))),
            }
        };
        let prefix = |v: &Value, key: &str| -> Result<IpPrefix> {
            let s = v.get(key).and_then(Value::as_str).ok_or_else(|| bad(format!("an entry lacks {key}: {v}")))?;
            s.parse().map_err(|e: String| bad(format!("{key}: {e}")))
        };
        let num = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok());
        let interfaces = list("interfaces")?
            .iter()
            .map(|i| Interface {
                name: i.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                mac: i.get("mac").and_then(Value::as_str).map(str::to_owned),
                mtu: num(i, "mtu"),
                sandbox: i.get("sandbox").and_then(Value::as_str).map(str::to_owned),
                pci_id: i.get("pciID").and_then(Value::as_str).map(str::to_owned),
                socket_path: i.get("socketPath").and_then(Value::as_str).map(str::to_owned),
            })
            .collect();
        let ips = list("ips")?
            .iter()
            .map(|i| {
                Ok(IpConfig {
                    address: prefix(i, "address")?,
                    gateway: ip(i, "gateway")?,
                    interface: i.get("interface").and_then(Value::as_u64).map(|n| n as usize),
                })
            })
            .collect::<Result<_>>()?;
        let routes = list("routes")?
            .iter()
            .map(|r| {
                Ok(RouteEntry {
                    dst: prefix(r, "dst")?,
                    gw: ip(r, "gw")?,
                    mtu: num(r, "mtu"),
                    advmss: num(r, "advmss"),
                    priority: num(r, "priority"),
                    table: num(r, "table"),
                    scope: num(r, "scope"),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { interfaces, ips, routes, dns: value.get("dns").filter(|d| !d.is_null()).cloned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "net1".into(),
                mac: Some("02:00:00:00:00:01".into()),
                mtu: Some(1500),
                sandbox: Some("/run/netns/pod".into()),
                pci_id: Some("0000:01:00.2".into()),
                socket_path: None,
            }],
            ips: vec![
                IpConfig {
                    address: "10.1.0.5/24".parse().unwrap(),
                    gateway: Some("10.1.0.1".parse().unwrap()),
                    interface: Some(0),
                },
                IpConfig { address: "fd00::5/64".parse().unwrap(), gateway: None, interface: Some(0) },
            ],
            routes: vec![RouteEntry {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("10.1.0.1".parse().unwrap()),
                mtu: None,
                advmss: None,
                priority: Some(100),
                table: None,
                scope: None,
            }],
            dns: Some(json!({"nameservers": ["10.1.0.53"]})),
        }
    }

    /// The rendered result of every spec version, in full.
    #[test]
    fn renders_each_spec_version() {
        let legacy = json!({
            "interfaces": [{"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/pod"}],
            "ips": [
                {"version": "4", "address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0},
                {"version": "6", "address": "fd00::5/64", "interface": 0}
            ],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
            "dns": {"nameservers": ["10.1.0.53"]}
        });
        for v in [Version::V0_3_0, Version::V0_3_1, Version::V0_4_0] {
            let mut want = legacy.clone();
            want["cniVersion"] = json!(v.as_str());
            assert_eq!(sample().render(v), want, "{v}");
        }
        assert_eq!(
            sample().render(Version::V1_0_0),
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/pod"}],
                "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0}, {"address": "fd00::5/64", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
                "dns": {"nameservers": ["10.1.0.53"]}
            })
        );
        assert_eq!(
            sample().render(Version::V1_1_0),
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "net1", "mac": "02:00:00:00:00:01", "mtu": 1500, "sandbox": "/run/netns/pod", "pciID": "0000:01:00.2"}],
                "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0}, {"address": "fd00::5/64", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "priority": 100}],
                "dns": {"nameservers": ["10.1.0.53"]}
            })
        );
        assert_eq!(CniResult::default().render(Version::V1_0_0), json!({"cniVersion": "1.0.0"}));
    }

    #[test]
    fn parses_its_own_renderings_and_reports_garbage() {
        for v in [Version::V0_3_1, Version::V1_0_0, Version::V1_1_0] {
            let parsed = CniResult::parse(&sample().render(v), "test").unwrap();
            assert_eq!(parsed.ips, sample().ips, "{v}");
        }
        let e = CniResult::parse(&json!({"ips": [{"address": "10.0.0.1"}]}), "IPAM plugin host-local").unwrap_err();
        assert_eq!(e.msg, "IPAM plugin host-local: address: \"10.0.0.1\" is not an address/prefix");
        let e = CniResult::parse(&json!({"ips": 3}), "prevResult").unwrap_err();
        assert_eq!(e.msg, "prevResult: ips is 3, not a list");
    }
}
