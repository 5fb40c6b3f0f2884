//! The kubelet gRPC APIs vfnet speaks, generated at build time from `.proto` files written for
//! this crate (`proto/`), with protox (no `protoc`) and tonic/prost:
//!
//! - [`deviceplugin`]: device plugin API `v1beta1` (`Registration` served by kubelet,
//!   `DevicePlugin` served by a plugin), with kubelet's paths and constants;
//! - [`podresources`]: pod resources API `v1` (`PodResourcesLister`, served by kubelet), with
//!   [`podresources::allocated_devices`], a blocking helper for plain (non-async) callers such as
//!   the CNI plugin;
//! - [`pluginregistration`]: plugin registration (`Registration`, served by a plugin in
//!   kubelet's plugins_registry directory and called by kubelet), how a DRA driver announces
//!   itself;
//! - [`dra`]: the DRA plugin API `v1` and `v1beta1` (`DRAPlugin`, served by a DRA driver);
//! - [`dra_health`]: the DRA resource health API `v1` and `v1alpha1` (`DRAResourceHealth`,
//!   optional, served by a DRA driver next to `DRAPlugin`);
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

/// kubelet's default root directory (`--root-dir`): the device plugin, pod resources and plugin
/// registration sockets live below it.
pub const KUBELET_ROOT: &str = kubelet_root!();

pub mod deviceplugin;
pub mod dra;
pub mod dra_health;
pub mod pluginregistration;
pub mod podresources;
pub mod uds;
