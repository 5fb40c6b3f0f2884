//! The kubelet gRPC APIs vfnet speaks, generated at build time from `.proto` files written for
//! this crate (`proto/`), with protox (no `protoc`) and tonic/prost:
//!
//! - [`deviceplugin`]: device plugin API `v1beta1` (`Registration` served by kubelet,
//!   `DevicePlugin` served by a plugin), with kubelet's paths and constants;
//! - [`podresources`]: pod resources API `v1` (`PodResourcesLister`, served by kubelet), with
//!   [`podresources::allocated_devices`], a blocking helper for plain (non-async) callers such as
//!   the CNI plugin;
//! - [`uds`]: gRPC over unix sockets, client and server side.
//!
//! kubelet's side in-process, for tests, is `vfnet_testkit::kubelet`.

// A library crate: every public item says why it is there (`cargo xtask test` denies warnings).
#![warn(missing_docs)]

/// kubelet's root directory as a literal, for the paths below it.
macro_rules! kubelet_root {
    () => {
        "/var/lib/kubelet"
    };
}

/// kubelet's default root directory (`--root-dir`): the device plugin and pod resources sockets
/// live below it.
pub const KUBELET_ROOT: &str = kubelet_root!();

pub mod deviceplugin;
pub mod podresources;
pub mod uds;
