//! The SR-IOV node model shared by the vfnet device plugin and CNI plugin.
//!
//! - [`sysfs`]: discovery of physical functions (PFs) and virtual functions (VFs) from sysfs,
//!   with an injectable root so tests run against fixture trees ([`fixture`], feature `fixture`).
//! - [`netlink`]: every kernel network change (VF settings through the PF, link moves, renames,
//!   addresses, routes) through `rtnetlink`, behind the [`netlink::LinkOps`] trait.
//! - [`netns`]: network namespaces, entered only on dedicated threads.
//! - [`persist`], [`record`]: crash-safe node-local state files, and the device records the
//!   device plugin writes for the CNI plugin.
//! - [`pci`], [`mac`], [`range`]: validated newtypes for PCI addresses, MAC addresses and VF
//!   index ranges.

/// Serializes a type as its `Display` string and deserializes it through `FromStr`, so files and
/// JSON carry `0000:03:02.3`, `02:00:5e:10:00:01`, `10.1.2.3/24` rather than structs.
macro_rules! serde_as_string {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod mac;
pub mod netlink;
pub mod netns;
pub mod pci;
pub mod persist;
pub mod range;
pub mod record;
pub mod sysfs;

#[cfg(any(test, feature = "fixture"))]
pub mod fixture;

pub use mac::MacAddr;
pub use pci::PciAddress;
pub use range::VfRange;
