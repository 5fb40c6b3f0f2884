//! The administrative link state a PF imposes on a VF (`IFLA_VF_LINK_STATE`).

use std::fmt;
use std::str::FromStr;

/// Administrative link state of a VF, as sriov-cni's `link_state` and the CRD's `linkState`
/// spell it. Drivers differ: igb refuses it with EOPNOTSUPP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(description = "Administrative link state of the VF: auto (follows the PF), enable (forced up) or \
                            disable (forced down). Some drivers (igb) refuse it.")
)]
pub enum VfLinkState {
    /// Follows the PF's link.
    Auto,
    /// Forced up, whatever the PF's link.
    Enable,
    /// Forced down.
    Disable,
}

impl fmt::Display for VfLinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Enable => "enable",
            Self::Disable => "disable",
        })
    }
}

/// A string that is not a link state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not one of auto, enable, disable")]
pub struct VfLinkStateError(pub String);

impl FromStr for VfLinkState {
    type Err = VfLinkStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "enable" => Ok(Self::Enable),
            "disable" => Ok(Self::Disable),
            _ => Err(VfLinkStateError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_the_bad_value() {
        for s in [VfLinkState::Auto, VfLinkState::Enable, VfLinkState::Disable] {
            assert_eq!(s.to_string().parse::<VfLinkState>().unwrap(), s);
        }
        assert_eq!("up".parse::<VfLinkState>().unwrap_err().to_string(), "\"up\" is not one of auto, enable, disable");
    }
}
