//! CNI errors: a spec error code, a message naming the offending key, value, VF or file, the
//! error that caused it (kept as its `source`, not flattened into a string) and details appended
//! on the way up. Rendered as the spec's error JSON on stdout: `msg`, and in `details` every cause
//! whose text `msg` does not already carry, then the appended details, joined with "; ".
//!
//! Codes 1-99 are the spec's; vfnet's own start at 100 (see [`Code`] and the README table).

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Error codes: the spec's where they apply, vfnet's from 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Code {
    /// 1: the config's cniVersion is not supported.
    IncompatibleVersion = 1,
    /// 2: a field the plugin does not support.
    UnsupportedField = 2,
    /// 3: the container (its network namespace) does not exist.
    UnknownContainer = 3,
    /// 4: a required environment variable is missing or invalid.
    InvalidEnvironment = 4,
    /// 5: I/O failure.
    Io = 5,
    /// 6: the input could not be decoded.
    Decode = 6,
    /// 7: invalid network configuration.
    InvalidConfig = 7,
    /// 11: try again later (the VF's lock is held by another operation).
    TryAgainLater = 11,
    /// 50: the plugin is not available (STATUS).
    NotAvailable = 50,
    /// 51: not available, existing attachments may be impaired (STATUS).
    NotAvailableLimited = 51,
    /// 100: the VF belongs to another live attachment.
    VfBusy = 100,
    /// 101: the named VfProfile does not exist on the node.
    ProfileNotFound = 101,
    /// 102: the pod's namespace may not use the profile.
    NamespaceNotAllowed = 102,
    /// 103: the VF's pool is not on the profile's physical network, or the VF has no record.
    PhysicalNetworkMismatch = 103,
    /// 104: the PF's driver refused a VF setting.
    DriverRefused = 104,
    /// 105: the VF, its PF or its netdev was not found.
    DeviceNotFound = 105,
    /// 106: a kernel (netlink, namespace) operation failed.
    Kernel = 106,
    /// 107: the IPAM plugin failed.
    Ipam = 107,
    /// 108: vfnet's state (journal, lock, device-info file) could not be read or written.
    State = 108,
    /// 109: CHECK found the attachment differing from what ADD set up.
    CheckFailed = 109,
    /// 110: `CNI_IFNAME` already exists in the pod.
    InterfaceExists = 110,
    /// 111: the VF is bound to a driver that does not fit the vnicType.
    WrongDriver = 111,
    /// 112: restoring the VF failed; the journal is kept so a retry can finish.
    RestoreFailed = 112,
    /// 113: the node configuration is unusable (not root's alone, unreadable, invalid).
    NodeConfig = 113,
    /// 114: the VF's pool does not allow the network definition's profile (`allowedProfiles`).
    ProfileNotAllowed = 114,
}

/// A cause kept behind a [`CniError`]: shared, so that the error stays `Clone`.
type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A CNI error: a code, a message, the error that caused it (walked through
/// [`std::error::Error::source`]) and details appended as it travels up (e.g. the rollback's
/// failures after the failure that started the rollback).
#[derive(Debug, Clone)]
pub struct CniError {
    /// The code.
    pub code: Code,
    /// The message: names the key, value, VF or file.
    pub msg: String,
    details: Vec<String>,
    cause: Option<Cause>,
}

impl CniError {
    /// An error with a code and a message.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self { code, msg: msg.into(), details: Vec::new(), cause: None }
    }

    /// Appends one detail (an empty one is dropped); earlier details are kept.
    #[must_use]
    pub fn details(mut self, details: impl Into<String>) -> Self {
        let d = details.into();
        if !d.is_empty() {
            self.details.push(d);
        }
        self
    }

    /// Keeps `cause` as this error's [`source`](std::error::Error::source).
    #[must_use]
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    /// The same error under another code.
    #[must_use]
    pub fn with_code(mut self, code: Code) -> Self {
        self.code = code;
        self
    }

    /// The numeric code.
    pub fn code(&self) -> u32 {
        self.code as u32
    }

    /// The details appended so far, oldest first.
    pub fn detail_list(&self) -> &[String] {
        &self.details
    }

    /// The first error of type `T` in the cause chain.
    pub fn find_cause<T: std::error::Error + 'static>(&self) -> Option<&T> {
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<T>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }

    /// The spec's `details`: the causes whose text `msg` (or an outer cause) does not already
    /// carry, then the appended details, joined with "; ".
    pub fn rendered_details(&self) -> String {
        let mut said = self.msg.clone();
        let mut parts: Vec<String> = Vec::new();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            let text = e.to_string();
            if !text.is_empty() && !said.contains(&text) {
                said.push_str(&text);
                parts.push(text);
            }
            next = e.source();
        }
        parts.extend(self.details.iter().cloned());
        parts.join("; ")
    }

    /// The spec's error JSON.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "String::is_empty")]
            details: String,
        }
        let details = self.rendered_details();
        serde_json::to_value(Wire { cni_version, code: self.code(), msg: &self.msg, details }).unwrap_or_default()
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.msg)?;
        let details = self.rendered_details();
        if !details.is_empty() {
            write!(f, ": {details}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// Shorthand for an invalid-config error naming a key.
pub fn bad_config(key: &str, problem: impl fmt::Display) -> CniError {
    CniError::new(Code::InvalidConfig, format!("invalid {key}: {problem}"))
}

impl From<sriov::netlink::NetlinkError> for CniError {
    fn from(e: sriov::netlink::NetlinkError) -> Self {
        use sriov::netlink::NetlinkError as E;
        let code = match &e {
            E::VfSettingRefused { .. } => Code::DriverRefused,
            E::LinkNotFound(_) => Code::DeviceNotFound,
            _ => Code::Kernel,
        };
        Self::new(code, e.to_string()).caused_by(e)
    }
}

impl From<sriov::sysfs::SysfsError> for CniError {
    fn from(e: sriov::sysfs::SysfsError) -> Self {
        use sriov::sysfs::SysfsError as E;
        let code = match &e {
            E::NoDevice { .. } | E::NotAVf { .. } | E::NoNetdev { .. } | E::VfNotListed { .. } => Code::DeviceNotFound,
            _ => Code::Io,
        };
        Self::new(code, e.to_string()).caused_by(e)
    }
}

impl From<sriov::persist::PersistError> for CniError {
    fn from(e: sriov::persist::PersistError) -> Self {
        Self::new(Code::State, e.to_string()).caused_by(e)
    }
}

impl From<sriov::netns::NetnsError> for CniError {
    fn from(e: sriov::netns::NetnsError) -> Self {
        use sriov::netns::NetnsError as E;
        let code = match &e {
            E::Gone { .. } | E::NotNamespace { .. } => Code::UnknownContainer,
            _ => Code::Kernel,
        };
        Self::new(code, e.to_string()).caused_by(e)
    }
}

/// Result alias.
pub type Result<T, E = CniError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_spec_error_json() {
        let e = CniError::new(Code::VfBusy, "VF 0000:01:00.1 is in use").details("by pod x");
        assert_eq!(
            e.to_json("1.0.0"),
            serde_json::json!({"cniVersion": "1.0.0", "code": 100, "msg": "VF 0000:01:00.1 is in use", "details": "by pod x"})
        );
        let e = CniError::new(Code::TryAgainLater, "locked");
        assert_eq!(e.to_json("0.4.0"), serde_json::json!({"cniVersion": "0.4.0", "code": 11, "msg": "locked"}));
    }

    /// A cause whose message does not repeat its own cause.
    #[derive(Debug, thiserror::Error)]
    #[error("journal unreadable")]
    struct Unreadable(#[source] std::io::Error);

    #[test]
    fn causes_render_once_and_details_append_in_order() {
        let e = CniError::new(Code::State, "cannot load the journal of VF 0000:01:00.1")
            .caused_by(Unreadable(std::io::Error::other("disk on fire")))
            .details("first")
            .details("")
            .details("second");
        assert_eq!(e.detail_list(), ["first", "second"]);
        assert_eq!(e.rendered_details(), "journal unreadable; disk on fire; first; second");
        assert_eq!(
            e.to_string(),
            "cannot load the journal of VF 0000:01:00.1: journal unreadable; disk on fire; first; second"
        );
        let chain: Vec<String> =
            std::iter::successors(std::error::Error::source(&e), |c| c.source()).map(ToString::to_string).collect();
        assert_eq!(chain, ["journal unreadable", "disk on fire"]);
        assert!(e.find_cause::<Unreadable>().is_some());

        // A converted error keeps the original as its source; its text (which carries its own
        // cause) is the message, so neither is repeated.
        let persist = sriov::persist::PersistError {
            op: "write",
            path: "/var/lib/vfnet/vfs/x.json".into(),
            source: std::io::Error::other("no space left"),
        };
        let e = CniError::from(persist).details("rollback incomplete");
        assert_eq!(e.msg, "write /var/lib/vfnet/vfs/x.json: no space left");
        assert!(e.find_cause::<sriov::persist::PersistError>().is_some_and(|p| p.op == "write"));
        assert_eq!(e.to_string(), "write /var/lib/vfnet/vfs/x.json: no space left: rollback incomplete");
        assert_eq!(e.to_json("1.0.0")["details"], "rollback incomplete");
        assert_eq!(e.clone().with_code(Code::RestoreFailed).code(), 112);
    }
}
