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
//! Both sides bound what they read ([`MAX_REQUEST_BYTES`], [`MAX_RESPONSE_BYTES`]), so neither
//! can be made to buffer without limit.

use serde::{Deserialize, Serialize};

/// The longest request line the daemon reads (a VfProfile name is at most 253 bytes).
pub const MAX_REQUEST_BYTES: usize = 1024;
/// The longest response line the CNI plugin reads (the API server's own limit on an object is
/// about 1.5 MiB, and a profile is a few hundred bytes).
pub const MAX_RESPONSE_BYTES: usize = 2 << 20;

/// What the CNI plugin asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Request {
    /// VfProfile `<name>`.
    Profile(String),
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
    fn bad_lines_are_refused() {
        let long = format!("{{\"profile\":\"{}\"}}", "a".repeat(MAX_REQUEST_BYTES));
        assert_eq!(Request::parse(long.as_bytes()).unwrap_err().to_string(), "over 1024 bytes");
        for bad in [&b"{\"profile\":"[..], b"{\"profile\":1}", b"{\"pool\":\"a\"}", b"", b"\"notFound\""] {
            let e = Request::parse(bad).unwrap_err();
            assert!(matches!(e, WireError::Json(_)), "{bad:?}: {e}");
        }
        assert!(Response::parse(b"{\"error\":\"x\",\"profile\":{}}").is_err());
        assert!(Response::parse(b"{\"profile\":{}}{\"error\":\"x\"}").is_err(), "one message per line");
    }
}
