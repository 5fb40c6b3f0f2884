//! CNI spec versions vfnet speaks, and how results differ between them.

use std::fmt;

use crate::error::{CniError, Code, Result};

/// A supported spec version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// 0.3.0: ADD/DEL, results with per-IP `version`.
    V0_3_0,
    /// 0.3.1.
    V0_3_1,
    /// 0.4.0: adds CHECK and `prevResult` on DEL.
    V0_4_0,
    /// 1.0.0: drops the per-IP `version`.
    V1_0_0,
    /// 1.1.0: adds STATUS and GC, interface `mtu`, `socketPath`, `pciID`, richer routes.
    V1_1_0,
}

/// Every version, oldest first (what VERSION reports).
pub const SUPPORTED: [Version; 5] =
    [Version::V0_3_0, Version::V0_3_1, Version::V0_4_0, Version::V1_0_0, Version::V1_1_0];

impl Version {
    /// The newest version.
    pub const LATEST: Version = Version::V1_1_0;

    /// The version string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_3_0 => "0.3.0",
            Self::V0_3_1 => "0.3.1",
            Self::V0_4_0 => "0.4.0",
            Self::V1_0_0 => "1.0.0",
            Self::V1_1_0 => "1.1.0",
        }
    }

    /// Parses a `cniVersion`, refusing unsupported ones with code 1.
    pub fn parse(s: &str) -> Result<Self> {
        SUPPORTED.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "incompatible CNI versions: config cniVersion {s:?} is not one of {}",
                    SUPPORTED.map(|v| v.as_str()).join(", ")
                ),
            )
        })
    }

    /// Results carry a `version` per IP before 1.0.0.
    pub fn legacy_result(self) -> bool {
        self < Self::V1_0_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The VERSION answer.
pub fn version_info(requested: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": requested.unwrap_or(Version::LATEST.as_str()),
        "supportedVersions": SUPPORTED.map(|v| v.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_and_refuses_others() {
        assert_eq!(Version::parse("0.4.0").unwrap(), Version::V0_4_0);
        let e = Version::parse("0.2.0").unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
        assert!(e.msg.contains("\"0.2.0\""), "{e}");
        assert!(Version::V0_3_1.legacy_result() && !Version::V1_0_0.legacy_result());
    }
}
