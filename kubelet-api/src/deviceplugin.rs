//! The device plugin API, `v1beta1`.
//!
//! kubelet serves `Registration` on [`KUBELET_SOCKET`] in [`DEVICE_PLUGIN_PATH`]; a plugin serves
//! `DevicePlugin` on a socket of its own in the same directory (serving before it registers), then
//! calls `Register` with that socket's file name. kubelet empties the directory when it restarts:
//! a plugin notices its socket is gone and registers again.

/// Generated messages, clients (`registration_client`, `device_plugin_client`) and servers
/// (`registration_server`, `device_plugin_server`) of package `v1beta1`.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod v1beta1 {
    include!(concat!(env!("OUT_DIR"), "/deviceplugin/v1beta1.rs"));
}

/// The API version a plugin registers with.
pub const VERSION: &str = "v1beta1";
/// Where kubelet and device plugins keep their sockets.
pub const DEVICE_PLUGIN_PATH: &str = concat!(kubelet_root!(), "/device-plugins");
/// kubelet's registration socket, relative to [`DEVICE_PLUGIN_PATH`].
pub const KUBELET_SOCKET: &str = "kubelet.sock";
/// [`v1beta1::Device::health`] of a usable device.
pub const HEALTHY: &str = "Healthy";
/// [`v1beta1::Device::health`] of a device that must not be allocated.
pub const UNHEALTHY: &str = "Unhealthy";
/// The device-plugins directory under a kubelet root directory (`/var/lib/kubelet`).
pub fn device_plugin_dir(kubelet_dir: &std::path::Path) -> std::path::PathBuf {
    kubelet_dir.join("device-plugins")
}
