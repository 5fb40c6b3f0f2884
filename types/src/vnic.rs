//! How a VF reaches the pod: the CNI configuration's `vnicType` and the DRA opaque config's.

use std::fmt;
use std::str::FromStr;

use crate::DeviceType;

/// How the VF reaches the pod (Neutron's `binding:vnic_type`). One home, because the CNI
/// configuration, the CNI's journals and the DRA driver's opaque `VfConfig` all spell it, and a
/// pool's [`crate::DeviceType`] decides which values fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
// For an optional enum the type's description is the one the schema keeps: it is the field's.
#[cfg_attr(
    feature = "schemars",
    schemars(description = "How the VF reaches the pod: direct (the VF netdev moves into the pod) or macvtap \
                            (a macvtap on the VF), both from a netdevice pool; userspace (bound to vfio-pci for a \
                            userspace app), from a vfio-pci pool. Absent: decided by the pool's deviceType.")
)]
pub enum VnicType {
    /// The VF netdev moves into the pod.
    Direct,
    /// A macvtap on the VF is created in the pod; the VF stays on the host.
    Macvtap,
    /// The VF is bound to vfio-pci for a userspace app; PF-side settings only.
    Userspace,
}

impl VnicType {
    /// Every value, in the order messages list them.
    pub const ALL: [Self; 3] = [Self::Direct, Self::Macvtap, Self::Userspace];

    /// The pool device type this vnicType needs: a kernel netdev for direct and macvtap, a
    /// vfio-pci VF for userspace.
    pub fn device_type(self) -> DeviceType {
        match self {
            Self::Direct | Self::Macvtap => DeviceType::Netdevice,
            Self::Userspace => DeviceType::VfioPci,
        }
    }

    /// The vnicType a VF of a `device_type` pool gets when nothing names one.
    pub fn default_for(device_type: DeviceType) -> Self {
        match device_type {
            DeviceType::Netdevice => Self::Direct,
            DeviceType::VfioPci => Self::Userspace,
        }
    }

    /// The spelling files and configurations use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Macvtap => "macvtap",
            Self::Userspace => "userspace",
        }
    }
}

impl fmt::Display for VnicType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a vnicType; quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not one of direct, macvtap, userspace")]
pub struct VnicTypeError(pub String);

impl FromStr for VnicType {
    type Err = VnicTypeError;

    /// Exact, lower-case spellings only (as serde reads them), so a file and a configuration
    /// never disagree on what a value means.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| VnicTypeError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_the_bad_value() {
        for v in VnicType::ALL {
            assert_eq!(v.to_string().parse::<VnicType>().unwrap(), v);
        }
        assert_eq!(
            "normal".parse::<VnicType>().unwrap_err().to_string(),
            "\"normal\" is not one of direct, macvtap, userspace"
        );
        assert!("Direct".parse::<VnicType>().is_err(), "exact spellings only");
    }

    #[test]
    fn each_device_type_defaults_to_a_vnic_type_that_fits_it() {
        for d in [DeviceType::Netdevice, DeviceType::VfioPci] {
            assert_eq!(VnicType::default_for(d).device_type(), d);
        }
        assert_eq!(VnicType::default_for(DeviceType::Netdevice), VnicType::Direct);
        assert_eq!(VnicType::Macvtap.device_type(), DeviceType::Netdevice);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_spells_it_as_display_does() {
        for v in VnicType::ALL {
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(v.to_string()));
            assert_eq!(serde_json::from_value::<VnicType>(serde_json::json!(v.as_str())).unwrap(), v);
        }
    }
}
