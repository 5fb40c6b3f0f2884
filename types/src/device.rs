//! How a pool hands its VFs to pods, and which drivers make a VF a userspace device.

use std::fmt;

/// Drivers that hand a VF to userspace (no kernel netdev): the CNI plugin treats a VF bound to
/// one as `vnicType: userspace`, the device plugin as healthy only in a `vfio-pci` pool.
pub const USERSPACE_DRIVERS: &[&str] = &["vfio-pci", "uio_pci_generic", "igb_uio"];

/// True if `driver` is one of [`USERSPACE_DRIVERS`].
pub fn is_userspace_driver(driver: &str) -> bool {
    USERSPACE_DRIVERS.contains(&driver)
}

/// How a pool hands its VFs to pods (`VfPool.spec.deviceType`, and each device record's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum DeviceType {
    /// A kernel netdev VF (moved into the pod, or a macvtap put on it).
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "netdevice"))]
    Netdevice,
    /// A VF bound to vfio-pci for a userspace application.
    #[cfg_attr(feature = "serde", serde(rename = "vfio-pci"))]
    VfioPci,
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Netdevice => "netdevice",
            Self::VfioPci => "vfio-pci",
        })
    }
}
