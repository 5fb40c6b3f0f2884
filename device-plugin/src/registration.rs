//! One pool's life towards kubelet: serve the pool's socket, then register it; when kubelet
//! restarts (it empties the device-plugins directory, so the socket vanishes, and serves a new
//! `kubelet.sock`), serve a new socket and register again, with the same device IDs.
//!
//! Both files are checked every [`WATCH_PERIOD`], so re-registration follows a kubelet restart
//! within a fraction of a second once kubelet answers again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kubelet_api::deviceplugin::v1beta1::device_plugin_server::DevicePluginServer;
use kubelet_api::deviceplugin::v1beta1::registration_client::RegistrationClient;
use kubelet_api::deviceplugin::v1beta1::{DevicePluginOptions, RegisterRequest};
use kubelet_api::deviceplugin::{KUBELET_SOCKET, VERSION};
use kubelet_api::uds::{self, FileId, file_id};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::server::{PluginService, PoolState, Shared};

/// How often the sockets are checked.
pub const WATCH_PERIOD: Duration = Duration::from_millis(100);
/// Longest wait between registration attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Longest a single Register call may take.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves and registers the pool whose state `state` carries, in `device_plugin_dir`, until
/// `stop`; then stops serving and removes the socket.
pub async fn run(
    device_plugin_dir: PathBuf,
    state: watch::Receiver<Arc<PoolState>>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let (resource, endpoint) = {
        let s = state.borrow();
        (s.pool.resource.clone(), s.pool.socket_name())
    };
    let socket = device_plugin_dir.join(&endpoint);
    let kubelet = device_plugin_dir.join(KUBELET_SOCKET);
    while !stop.is_cancelled() {
        let incoming = match uds::bind_private(&socket) {
            Ok(incoming) => incoming,
            Err(e) => {
                tracing::error!(%resource, error = %e, "cannot serve the pool's socket; retrying");
                tokio::select! {
                    () = tokio::time::sleep(MAX_BACKOFF) => continue,
                    () = stop.cancelled() => break,
                }
            }
        };
        let mine = file_id(&socket);
        let server_stop = stop.child_token();
        let service = PluginService::new(state.clone(), Arc::clone(&shared), server_stop.clone());
        let serving = Server::builder()
            .add_service(DevicePluginServer::new(service))
            .serve_with_incoming_shutdown(incoming, server_stop.clone().cancelled_owned());
        let server = tokio::spawn(serving);
        tracing::info!(%resource, socket = %socket.display(), "serving");

        if let Some(kubelet_id) = register_until_done(&kubelet, &socket, mine, &endpoint, &resource, &stop).await {
            shared.metrics.registration(&resource);
            tracing::info!(%resource, %endpoint, "registered with kubelet");
            loop {
                tokio::select! {
                    () = tokio::time::sleep(WATCH_PERIOD) => {}
                    () = stop.cancelled() => break,
                }
                if file_id(&socket) != mine {
                    tracing::warn!(%resource, "the pool's socket was removed (kubelet restarted): serving again");
                    break;
                }
                if file_id(&kubelet) != kubelet_id {
                    tracing::warn!(%resource, "kubelet.sock was recreated (kubelet restarted): registering again");
                    break;
                }
            }
        }
        server_stop.cancel();
        let abort = server.abort_handle();
        match tokio::time::timeout(Duration::from_secs(2), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(%resource, error = %e, "the pool's server failed"),
            Ok(Err(e)) => tracing::warn!(%resource, error = %e, "the pool's server task failed"),
            Err(_) => abort.abort(),
        }
        if stop.is_cancelled() && file_id(&socket) == mine {
            let _ = std::fs::remove_file(&socket);
        }
    }
    tracing::info!(%resource, "stopped serving");
}

/// Registers until kubelet accepts; returns `kubelet.sock`'s identity then, or `None` when
/// stopped or when the pool's own socket vanished meanwhile (the caller serves it again).
async fn register_until_done(
    kubelet: &Path,
    socket: &Path,
    mine: Option<FileId>,
    endpoint: &str,
    resource: &str,
    stop: &CancellationToken,
) -> Option<Option<FileId>> {
    let mut backoff = WATCH_PERIOD;
    let mut attempts = 0u32;
    loop {
        if stop.is_cancelled() || file_id(socket) != mine {
            return None;
        }
        let kubelet_id = file_id(kubelet);
        match tokio::time::timeout(REGISTER_TIMEOUT, register(kubelet, endpoint, resource)).await {
            Ok(Ok(())) => return Some(kubelet_id),
            Ok(Err(e)) if attempts == 0 => tracing::warn!(%resource, error = %e, "registration failed; retrying"),
            Ok(Err(e)) => tracing::debug!(%resource, error = %e, attempts, "registration failed; retrying"),
            Err(_) => tracing::warn!(%resource, "registration timed out; retrying"),
        }
        attempts += 1;
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return None,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why a registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// kubelet's socket could not be reached.
    #[error(transparent)]
    Connect(#[from] uds::UdsError),
    /// kubelet refused.
    #[error("kubelet refused the registration: {0}")]
    Refused(Box<tonic::Status>),
}

/// One `Register` call: version `v1beta1`, our socket's name, the resource, preferred allocation
/// available, no PreStartContainer.
pub async fn register(kubelet: &Path, endpoint: &str, resource: &str) -> Result<(), RegisterError> {
    let channel = uds::connect(kubelet).await?;
    RegistrationClient::new(channel)
        .register(RegisterRequest {
            version: VERSION.to_owned(),
            endpoint: endpoint.to_owned(),
            resource_name: resource.to_owned(),
            options: Some(DevicePluginOptions { pre_start_required: false, get_preferred_allocation_available: true }),
        })
        .await
        .map_err(|s| RegisterError::Refused(Box::new(s)))?;
    Ok(())
}
