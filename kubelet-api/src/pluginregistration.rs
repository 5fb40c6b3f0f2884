//! The plugin registration API (package `pluginregistration`, k8s.io/kubelet's
//! `pluginregistration/v1`), as DRA drivers use it.
//!
//! The roles are the reverse of the device plugin API's: the plugin serves `Registration` on a
//! socket it creates in [`REGISTRY_DIR`], and kubelet, which watches that directory, dials it,
//! calls `GetInfo`, and answers with `NotifyRegistrationStatus`. For a DRA driver,
//! [`PluginInfo::endpoint`] is the socket serving `DRAPlugin` (see [`crate::dra`]) and
//! [`PluginInfo::supported_versions`] lists the services on it ([`crate::dra::v1::SERVICE`] and
//! so on). [`get_info`] and [`notify`] are kubelet's side of the exchange, for tests.

use std::path::{Path, PathBuf};

use crate::uds::{self, UdsError};

/// Generated code; re-exported below so that its paths need no version segment (the package has
/// none).
#[allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/pluginregistration/pluginregistration.rs"));
}

/// Generated messages, client (`registration_client`) and server (`registration_server`).
pub use generated::*;

use registration_client::RegistrationClient;

/// The `type` of a DRA driver's [`PluginInfo`].
pub const DRA_PLUGIN_TYPE: &str = "DRAPlugin";
/// The directory kubelet watches for registration sockets (its plugin watcher).
pub const REGISTRY_DIR: &str = concat!(kubelet_root!(), "/plugins_registry");

/// Why a registration call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The plugin's registration socket could not be reached.
    #[error(transparent)]
    Connect(#[from] UdsError),
    /// The plugin answered with an error.
    #[error("{method} on {socket} failed: {status}")]
    Call {
        /// The registration socket.
        socket: PathBuf,
        /// The method called.
        method: &'static str,
        /// The plugin's status.
        status: Box<tonic::Status>,
    },
}

/// Asks the plugin serving `socket` who it is, as kubelet does when the socket appears.
pub async fn get_info(socket: &Path) -> Result<PluginInfo, RegistrationError> {
    let mut client = RegistrationClient::new(uds::connect(socket).await?);
    let reply = client.get_info(InfoRequest {}).await.map_err(|status| call_error(socket, "GetInfo", status))?;
    Ok(reply.into_inner())
}

/// Tells the plugin serving `socket` whether kubelet accepted it (`error` says why not), as
/// kubelet does after [`get_info`].
pub async fn notify(socket: &Path, registered: bool, error: String) -> Result<(), RegistrationError> {
    let mut client = RegistrationClient::new(uds::connect(socket).await?);
    client
        .notify_registration_status(RegistrationStatus { plugin_registered: registered, error })
        .await
        .map_err(|status| call_error(socket, "NotifyRegistrationStatus", status))?;
    Ok(())
}

fn call_error(socket: &Path, method: &'static str, status: tonic::Status) -> RegistrationError {
    RegistrationError::Call { socket: socket.to_owned(), method, status: Box::new(status) }
}
