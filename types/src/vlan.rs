//! The VLAN tag protocol of a VF VLAN.

use std::fmt;
use std::str::FromStr;

/// VLAN tag protocol. Spelled `802.1Q` and `802.1ad` in every file and in the CRD; the CNI
/// configuration (sriov-cni's `vlanProto`) accepts either case through [`FromStr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
// For an optional enum the type's description is the one the schema keeps: it is the field's.
#[cfg_attr(
    feature = "schemars",
    schemars(description = "VLAN tag protocol: 802.1Q (the default) or 802.1ad (QinQ, needs a non-zero vlan).")
)]
pub enum VlanProto {
    /// IEEE 802.1Q (0x8100), the default.
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "802.1Q"))]
    Dot1Q,
    /// IEEE 802.1ad (0x88a8), "QinQ": the outer tag of a provider bridge.
    #[cfg_attr(feature = "serde", serde(rename = "802.1ad"))]
    Dot1Ad,
}

impl fmt::Display for VlanProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dot1Q => "802.1Q",
            Self::Dot1Ad => "802.1ad",
        })
    }
}

/// A string that is not a VLAN protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not 802.1Q or 802.1ad")]
pub struct VlanProtoError(pub String);

impl FromStr for VlanProto {
    type Err = VlanProtoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "802.1q" => Ok(Self::Dot1Q),
            "802.1ad" => Ok(Self::Dot1Ad),
            _ => Err(VlanProtoError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_case_and_displays_canonically() {
        assert_eq!("802.1q".parse::<VlanProto>().unwrap(), VlanProto::Dot1Q);
        assert_eq!("802.1AD".parse::<VlanProto>().unwrap().to_string(), "802.1ad");
        assert_eq!("qinq".parse::<VlanProto>().unwrap_err().to_string(), "\"qinq\" is not 802.1Q or 802.1ad");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn files_carry_the_canonical_names() {
        assert_eq!(serde_json::to_string(&VlanProto::Dot1Ad).unwrap(), "\"802.1ad\"");
        assert_eq!(serde_json::from_str::<VlanProto>("\"802.1Q\"").unwrap(), VlanProto::Dot1Q);
    }
}
