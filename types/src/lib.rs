//! The facts vfnet's crates share, each defined once: value types that cross crate and file
//! boundaries, and the layout of the files the node's binaries exchange.
//!
//! - [`PciAddress`], [`MacAddr`], [`VfRange`]: validated newtypes whose errors quote the input;
//! - [`VlanProto`], [`VfLinkState`]: VF settings as the CNI configuration, the journals, the
//!   kernel layer and the `VfProfile` CRD all spell them;
//! - [`DeviceType`], [`USERSPACE_DRIVERS`]: how a pool hands out VFs, and which drivers mean
//!   "userspace";
//! - [`VnicType`]: how a VF reaches the pod, as the CNI configuration and the DRA driver's opaque
//!   config spell it;
//! - [`layout`]: where the device plugin and the CNI plugin meet on the node (run directory,
//!   profile mirror, device records, locks, journals), with one default each;
//! - [`node_socket`] (`serde` feature): the protocol of the device plugin's node socket, where
//!   the CNI plugin asks for a profile the node's files lack.
//!
//! The crate depends on nothing of the kernel, so the CRD types and `crdgen` build without it.
//! Features: `serde` (string forms for files and JSON, the node socket's protocol), `schemars`
//! (the CRDs' schemas).

// A library crate: every public item says why it is there (`cargo xtask test` denies warnings).
#![warn(missing_docs)]

#[cfg(feature = "serde")]
#[doc(hidden)]
pub use serde as __serde;

/// Serializes a type as its `Display` string and deserializes it through `FromStr`, so files and
/// JSON carry `0000:03:02.3`, `02:00:5e:10:00:01`, `10.1.2.3/24` rather than structs. For the
/// types of this crate and of the node model; needs the `serde` feature.
#[cfg(feature = "serde")]
#[macro_export]
macro_rules! serde_as_string {
    ($t:ty) => {
        impl $crate::__serde::Serialize for $t {
            fn serialize<S: $crate::__serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> $crate::__serde::Deserialize<'de> for $t {
            fn deserialize<D: $crate::__serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as $crate::__serde::Deserialize>::deserialize(d)?;
                s.parse().map_err($crate::__serde::de::Error::custom)
            }
        }
    };
}

pub mod device;
pub mod layout;
pub mod link;
pub mod mac;
#[cfg(feature = "serde")]
pub mod node_socket;
pub mod pci;
pub mod range;
pub mod vlan;
pub mod vnic;

pub use device::{DeviceType, USERSPACE_DRIVERS, is_userspace_driver};
pub use layout::{ProfileDir, RunDir, StateDir};
pub use link::VfLinkState;
pub use mac::MacAddr;
pub use pci::PciAddress;
pub use range::VfRange;
pub use vlan::VlanProto;
pub use vnic::{VnicType, VnicTypeError};
