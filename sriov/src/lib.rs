//! The SR-IOV node model shared by the vfnet device plugin and CNI plugin.
//!
//! - [`sysfs`]: discovery of physical functions (PFs) and virtual functions (VFs) from sysfs,
//!   with an injectable root so tests run against fixture trees ([`fixture`], feature `fixture`).
//! - [`netlink`]: every kernel network change (VF settings through the PF, link moves, renames,
//!   addresses, routes) through `rtnetlink`, behind the [`netlink::LinkOps`] trait; `fake`
//!   (feature `fake`) is a recording in-memory kernel behind the same trait, for tests.
//! - [`netns`]: network namespaces, entered only on dedicated threads.
//! - [`persist`], [`record`]: crash-safe node-local state files, and the device records the
//!   device plugin writes for the CNI plugin.
//!
//! The value types it speaks in ([`PciAddress`], [`MacAddr`], [`VfRange`], VLAN protocol, link
//! state, device type) and the node-file layout live in `vfnet-types`.

// A library crate: every public item says why it is there (`cargo xtask test` denies warnings).
#![warn(missing_docs)]

pub mod netlink;
pub mod netns;
pub mod persist;
pub mod record;
pub mod sysfs;

#[cfg(any(test, feature = "fake"))]
pub mod fake;
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;

/// The shared value types, from `vfnet-types` (their one home), as the node model's API uses them.
pub use vfnet_types::{MacAddr, PciAddress, VfRange};
