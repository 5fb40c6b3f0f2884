//! CNI errors: a spec error code, a message naming the offending key, value, VF or file, and
//! optional details. Rendered as the spec's error JSON on stdout.
//!
//! Codes 1-99 are the spec's; vfnet's own start at 100 (see [`Code`] and the README table).

use std::fmt;

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
}

/// A CNI error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// The code.
    pub code: Code,
    /// The message: names the key, value, VF or file.
    pub msg: String,
    /// Further details (causes).
    pub details: String,
}

impl CniError {
    /// An error with a code and a message.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self { code, msg: msg.into(), details: String::new() }
    }

    /// Adds details.
    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The numeric code.
    pub fn code(&self) -> u32 {
        self.code as u32
    }

    /// The spec's error JSON.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_value(Wire { cni_version, code: self.code(), msg: &self.msg, details: &self.details })
            .unwrap_or_default()
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

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
        Self::new(code, e.to_string())
    }
}

impl From<sriov::sysfs::SysfsError> for CniError {
    fn from(e: sriov::sysfs::SysfsError) -> Self {
        use sriov::sysfs::SysfsError as E;
        let code = match &e {
            E::NoDevice { .. } | E::NotAVf { .. } | E::NoNetdev { .. } | E::VfNotListed { .. } => Code::DeviceNotFound,
            _ => Code::Io,
        };
        Self::new(code, e.to_string())
    }
}

impl From<sriov::persist::PersistError> for CniError {
    fn from(e: sriov::persist::PersistError) -> Self {
        Self::new(Code::State, e.to_string())
    }
}

impl From<sriov::netns::NetnsError> for CniError {
    fn from(e: sriov::netns::NetnsError) -> Self {
        use sriov::netns::NetnsError as E;
        let code = match &e {
            E::Gone { .. } | E::NotNamespace { .. } => Code::UnknownContainer,
            _ => Code::Kernel,
        };
        Self::new(code, e.to_string())
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
}
