//! The node socket's protocol (`<run-dir>/daemon.sock`, see [`crate::RunDir::daemon_socket`]):
//! how the CNI plugin asks the node daemon for what the node's files lack, a VfProfile not (yet)
//! mirrored into the profile directory.
//!
//! The daemon holds the API credentials and the VfProfile watch, so the CNI plugin needs no
//! Kubernetes client (no HTTP, TLS or async runtime in a binary exec'd once per pod): it writes
//! one JSON request line and reads one JSON response line, on a blocking unix stream.
//!
//! ```text
//! -> {"profile":"tenant-a"}
//! <- {"profile":{"apiVersion":"vfnet.dev/v1alpha1","kind":"VfProfile","metadata":{...},"spec":{...}}}
//! <- "notFound"
//! <- {"error":"the API server did not answer within 2s"}
//! ```
//!
//! For DRA claims (the daemon is also the `vfnet.dev` DRA driver) the CNI plugin asks which VFs
//! the daemon prepared for the pod, and after ADD tells it what the pod's interface got, for the
//! claim's device status (KEP-4817):
//!
//! ```text
//! -> {"draDevices":{"namespace":"tenant-a","name":"web","uid":"5d0c..."}}
//! <- {"draDevices":[{"claim":"9f1e...","claimName":"tenant-a/web-vf-x7k2p","pool":"node-1/tenant-a",
//!      "device":"vf-0000-01-10-0","vf":"0000:01:10.0","profile":"tenant-a","vnicType":"direct","vlan":null}]}
//! -> {"draAttached":{"claim":"9f1e...","pool":"node-1/tenant-a","device":"vf-0000-01-10-0",
//!      "interface":"net1","ips":["10.1.0.5/24"],"mac":"02:00:00:00:00:01","vlan":100}}
//! <- "done"
//! ```
//!
//! Both sides bound what they read ([`MAX_REQUEST_BYTES`], [`MAX_RESPONSE_BYTES`]), so neither
//! can be made to buffer without limit.

use serde::{Deserialize, Serialize};

/// The longest request line the daemon reads (a VfProfile name is at most 253 bytes; an
/// attachment report with the API's 16 IPs stays under 2 KiB).
pub const MAX_REQUEST_BYTES: usize = 4096;
/// The longest response line the CNI plugin reads (the API server's own limit on an object is
/// about 1.5 MiB, and a profile is a few hundred bytes).
pub const MAX_RESPONSE_BYTES: usize = 2 << 20;

/// What the CNI plugin asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Request {
    /// VfProfile `<name>`.
    Profile(String),
    /// The VFs prepared for this pod's DRA claims.
    DraDevices(PodRef),
    /// What an ADD attached, for the claim's device status.
    DraAttached(Attachment),
}

/// A pod, as CNI_ARGS names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodRef {
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `K8S_POD_NAME`.
    pub name: String,
    /// `K8S_POD_UID`, when the runtime passes it (containerd does): a pod recreated under the same
    /// name is another pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// A VF the daemon prepared for one of the pod's claims, with the claim's governed settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DraDevice {
    /// The claim's UID.
    pub claim: String,
    /// `namespace/name` of the claim (for messages).
    pub claim_name: String,
    /// The DRA pool.
    pub pool: String,
    /// The device's name in the pool.
    pub device: String,
    /// The VF.
    pub vf: crate::PciAddress,
    /// The VfProfile the claim's configuration names (it governs the attachment).
    pub profile: Option<String>,
    /// `direct`, `macvtap` or `userspace`.
    pub vnic_type: String,
    /// The claim's own VLAN choice (inside the profile's `podVlanRange`).
    pub vlan: Option<u16>,
}

/// What an ADD gave the pod for one claimed VF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attachment {
    /// The claim's UID.
    pub claim: String,
    /// The DRA pool.
    pub pool: String,
    /// The device's name in the pool.
    pub device: String,
    /// The interface in the pod (none for a userspace VF).
    pub interface: Option<String>,
    /// Its addresses, CIDR form.
    pub ips: Vec<String>,
    /// Its hardware address.
    pub mac: Option<String>,
    /// The VLAN the VF is on.
    pub vlan: Option<u16>,
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Response {
    /// The VfProfile as the API serves it (`apiVersion`, `kind`, `metadata` without
    /// `managedFields`, `spec`): the JSON its mirrored file holds. Left as JSON so that the CNI
    /// plugin checks it as it checks a file (an invalid profile is the network's error, not the
    /// protocol's).
    Profile(serde_json::Value),
    /// The API server has no VfProfile of that name.
    NotFound,
    /// The VFs prepared for the pod's claims (empty: none).
    DraDevices(Vec<DraDevice>),
    /// Done (an attachment recorded).
    Done,
    /// The daemon could not answer: why (no API server, the API server away or slow, a bad
    /// request).
    Error(String),
}

/// A line that is not a request or response.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Longer than the bound.
    #[error("over {limit} bytes")]
    TooLong {
        /// The bound.
        limit: usize,
    },
    /// Not the protocol's JSON.
    #[error("not a node socket message: {0}")]
    Json(#[from] serde_json::Error),
}

/// The message as one line (JSON has no raw newlines).
fn line<T: Serialize>(message: &T) -> Vec<u8> {
    // A derived Serialize of these types into a Vec cannot fail.
    let mut out = serde_json::to_vec(message).unwrap_or_default();
    out.push(b'\n');
    out
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, WireError> {
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if text.len() > limit {
        return Err(WireError::TooLong { limit });
    }
    Ok(serde_json::from_slice(text)?)
}

impl Request {
    /// The request line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        line(self)
    }

    /// Parses a request line (the trailing newline is optional).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        parse(bytes, MAX_REQUEST_BYTES)
    }
}

impl Response {
    /// The response line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        line(self)
    }

    /// Parses a response line (the trailing newline is optional).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        parse(bytes, MAX_RESPONSE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_lines() {
        assert_eq!(Request::Profile("tenant-a".into()).to_line(), b"{\"profile\":\"tenant-a\"}\n");
        assert_eq!(Request::parse(b"{\"profile\":\"tenant-a\"}").unwrap(), Request::Profile("tenant-a".into()));
        let obj = serde_json::json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile",
            "metadata": {"name": "tenant-a"}, "spec": {"vlan": 100}});
        let served = Response::Profile(obj.clone());
        let line = served.to_line();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&line).unwrap(), serde_json::json!({"profile": obj}));
        assert_eq!(Response::parse(&line).unwrap(), served);
        assert_eq!(Response::NotFound.to_line(), b"\"notFound\"\n");
        assert_eq!(Response::parse(b"\"notFound\"\n").unwrap(), Response::NotFound);
        assert_eq!(Response::Error("x".into()).to_line(), b"{\"error\":\"x\"}\n");
    }

    #[test]
    fn the_dra_lines() {
        let pod = Request::DraDevices(PodRef { namespace: "tenant-a".into(), name: "web".into(), uid: None });
        assert_eq!(pod.to_line(), b"{\"draDevices\":{\"namespace\":\"tenant-a\",\"name\":\"web\"}}\n");
        assert_eq!(Request::parse(&pod.to_line()).unwrap(), pod);
        let dev = DraDevice {
            claim: "u".into(),
            claim_name: "tenant-a/c".into(),
            pool: "n/a".into(),
            device: "vf-0000-01-10-0".into(),
            vf: "0000:01:10.0".parse().unwrap(),
            profile: Some("tenant-a".into()),
            vnic_type: "direct".into(),
            vlan: Some(120),
        };
        let answer = Response::DraDevices(vec![dev]);
        assert_eq!(Response::parse(&answer.to_line()).unwrap(), answer);
        assert_eq!(Response::Done.to_line(), b"\"done\"\n");
        let attached = Request::DraAttached(Attachment {
            claim: "u".into(),
            pool: "n/a".into(),
            device: "d".into(),
            interface: Some("net1".into()),
            ips: vec!["10.1.0.5/24".into(); 16],
            mac: Some("02:00:00:00:00:01".into()),
            vlan: Some(100),
        });
        assert!(attached.to_line().len() < MAX_REQUEST_BYTES, "16 addresses fit");
        assert_eq!(Request::parse(&attached.to_line()).unwrap(), attached);
    }

    #[test]
    fn bad_lines_are_refused() {
        let long = format!("{{\"profile\":\"{}\"}}", "a".repeat(MAX_REQUEST_BYTES));
        assert_eq!(Request::parse(long.as_bytes()).unwrap_err().to_string(), "over 4096 bytes");
        for bad in [&b"{\"profile\":"[..], b"{\"profile\":1}", b"{\"pool\":\"a\"}", b"", b"\"notFound\""] {
            let e = Request::parse(bad).unwrap_err();
            assert!(matches!(e, WireError::Json(_)), "{bad:?}: {e}");
        }
        assert!(Response::parse(b"{\"error\":\"x\",\"profile\":{}}").is_err());
        assert!(Response::parse(b"{\"profile\":{}}{\"error\":\"x\"}").is_err(), "one message per line");
    }
}
