//! What a ResourceClaim asks of vfnet: the devices the scheduler allocated from vfnet's pools,
//! and for each the opaque `vfnet.dev` configurations that apply to its request, in the API's
//! order (the DeviceClass's first, then the claim's), ready for [`crds::vfconfig::merge`].
//!
//! A configuration applies to a result when it names no requests, or names the result's request,
//! or (for a `firstAvailable` subrequest `req/sub`) its parent request `req`.

use k8s_openapi::api::resource::v1::{DeviceRequest, ResourceClaim};

use crds::vfconfig::{ConfigSource, VfConfig};

/// One device allocated from a vfnet pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocated {
    /// The request (or `request/subrequest`) it satisfies.
    pub request: String,
    /// The DRA pool (`<node>/<VfPool>`).
    pub pool: String,
    /// The device name in the pool's slices.
    pub device: String,
    /// The configurations that apply, in order.
    pub configs: Vec<(ConfigSource, VfConfig)>,
}

/// Why a claim cannot be prepared as it stands.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// No allocation yet (kubelet prepares only allocated claims: the API changed under us).
    #[error("ResourceClaim {0} is not allocated")]
    NotAllocated(String),
    /// An opaque configuration for vfnet that does not parse.
    #[error("ResourceClaim {claim}: {source}")]
    Config {
        /// `namespace/name`.
        claim: String,
        /// What is wrong with it.
        #[source]
        source: crds::vfconfig::ConfigError,
    },
}

/// The DeviceClass a (sub)request named, for messages about the class's configuration.
fn class_of(requests: &[DeviceRequest], request: &str) -> Option<String> {
    let (parent, sub) = match request.split_once('/') {
        Some((p, s)) => (p, Some(s)),
        None => (request, None),
    };
    let r = requests.iter().find(|r| r.name == parent)?;
    match sub {
        None => r.exactly.as_ref().map(|e| e.device_class_name.clone()),
        Some(sub) => r.first_available.as_ref()?.iter().find(|s| s.name == sub).map(|s| s.device_class_name.clone()),
    }
}

fn applies(requests: Option<&Vec<String>>, request: &str) -> bool {
    let parent = request.split_once('/').map_or(request, |(p, _)| p);
    match requests {
        None => true,
        Some(names) if names.is_empty() => true,
        Some(names) => names.iter().any(|n| n == request || n == parent),
    }
}

/// `namespace/name` of a claim.
pub fn claim_key(claim: &ResourceClaim) -> String {
    format!(
        "{}/{}",
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The devices of `claim` allocated by driver `driver`, with their configurations.
pub fn allocated(claim: &ResourceClaim, driver: &str) -> Result<Vec<Allocated>, ClaimError> {
    let key = claim_key(claim);
    let devices = claim
        .status
        .as_ref()
        .and_then(|s| s.allocation.as_ref())
        .and_then(|a| a.devices.as_ref())
        .ok_or_else(|| ClaimError::NotAllocated(key.clone()))?;
    let requests: &[DeviceRequest] =
        claim.spec.devices.as_ref().and_then(|d| d.requests.as_deref()).unwrap_or_default();
    let configs = devices.config.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for result in devices.results.iter().flatten().filter(|r| r.driver == driver) {
        let mut mine = Vec::new();
        for c in configs {
            let Some(opaque) = c.opaque.as_ref().filter(|o| o.driver == driver) else { continue };
            if !applies(c.requests.as_ref(), &result.request) {
                continue;
            }
            let source = if c.source == "FromClass" {
                ConfigSource::Class(class_of(requests, &result.request).unwrap_or_else(|| "?".to_owned()))
            } else {
                ConfigSource::Claim
            };
            let parsed = crds::vfconfig::parse(&opaque.parameters.0, source.clone())
                .map_err(|source| ClaimError::Config { claim: key.clone(), source })?;
            mine.push((source, parsed));
        }
        out.push(Allocated {
            request: result.request.clone(),
            pool: result.pool.clone(),
            device: result.device.clone(),
            configs: mine,
        });
    }
    Ok(out)
}

/// The pods a claim is reserved for: `(namespace, name, uid)` (pods share the claim's namespace).
pub fn reserved_pods(claim: &ResourceClaim) -> Vec<(String, String, String)> {
    let ns = claim.metadata.namespace.clone().unwrap_or_default();
    claim
        .status
        .iter()
        .flat_map(|s| s.reserved_for.iter().flatten())
        .filter(|r| r.resource == "pods" && r.api_group.as_deref().unwrap_or_default().is_empty())
        .map(|r| (ns.clone(), r.name.clone(), r.uid.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(status: serde_json::Value) -> ResourceClaim {
        serde_json::from_value(json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "c", "namespace": "tenant-a", "uid": "u1"},
            "spec": {"devices": {"requests": [
                {"name": "vf", "exactly": {"deviceClassName": "vfnet-tenant-a"}},
                {"name": "net", "firstAvailable": [
                    {"name": "p1", "deviceClassName": "physnet1"}, {"name": "p2", "deviceClassName": "physnet2"}]}
            ]}},
            "status": status,
        }))
        .unwrap()
    }

    fn vfconfig(extra: serde_json::Value) -> serde_json::Value {
        let mut v = json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfConfig"});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    }

    #[test]
    fn results_and_their_configs() {
        let c = claim(json!({"allocation": {"devices": {
            "results": [
                {"request": "vf", "driver": "vfnet.dev", "pool": "n/a", "device": "vf-0000-01-10-0"},
                {"request": "net/p2", "driver": "vfnet.dev", "pool": "n/b", "device": "vf-0000-01-10-1"},
                {"request": "gpu", "driver": "gpu.example.com", "pool": "n", "device": "g0"}
            ],
            "config": [
                {"source": "FromClass", "requests": ["vf"], "opaque": {"driver": "vfnet.dev",
                    "parameters": vfconfig(json!({"profile": "tenant-a"}))}},
                {"source": "FromClaim", "opaque": {"driver": "vfnet.dev", "parameters": vfconfig(json!({"vlan": 120}))}},
                {"source": "FromClaim", "requests": ["net"], "opaque": {"driver": "other", "parameters": {"x": 1}}}
            ]
        }}, "reservedFor": [{"resource": "pods", "name": "web", "uid": "p1"}]}));
        let got = allocated(&c, "vfnet.dev").unwrap();
        assert_eq!(got.len(), 2, "the other driver's device is not ours");
        assert_eq!(got[0].configs.len(), 2);
        assert_eq!(got[0].configs[0].0, ConfigSource::Class("vfnet-tenant-a".into()));
        assert_eq!(got[0].configs[0].1.profile.as_deref(), Some("tenant-a"));
        assert_eq!(got[0].configs[1].0, ConfigSource::Claim);
        assert_eq!(got[1].request, "net/p2");
        assert_eq!(got[1].configs.len(), 1, "the class config names request vf only");
        assert_eq!(reserved_pods(&c), vec![("tenant-a".into(), "web".into(), "p1".into())]);
        assert_eq!(
            class_of(&c.spec.devices.as_ref().unwrap().requests.clone().unwrap(), "net/p2").as_deref(),
            Some("physnet2")
        );
    }

    #[test]
    fn unallocated_and_bad_configs_are_errors_naming_the_claim() {
        let e = allocated(&claim(json!({})), "vfnet.dev").unwrap_err();
        assert_eq!(e.to_string(), "ResourceClaim tenant-a/c is not allocated");
        let c = claim(json!({"allocation": {"devices": {
            "results": [{"request": "vf", "driver": "vfnet.dev", "pool": "n/a", "device": "d"}],
            "config": [{"source": "FromClaim", "opaque": {"driver": "vfnet.dev", "parameters": vfconfig(json!({"vlam": 1}))}}]
        }}}));
        let e = allocated(&c, "vfnet.dev").unwrap_err().to_string();
        assert!(e.starts_with("ResourceClaim tenant-a/c: "), "{e}");
        assert!(e.contains("vlam"), "{e}");
    }
}
