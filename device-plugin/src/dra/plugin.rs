//! The kubelet plugin: registration through kubelet's plugin watcher, the DRA service kubelet
//! calls to prepare and unprepare claims, and the device health stream (KEP-4680).
//!
//! - **Sockets.** `<kubelet>/plugins_registry/vfnet.dev-reg.sock` (with the daemon pod's UID,
//!   `vfnet.dev-<uid>-reg.sock`: kubelet 1.33+ then lets a new driver pod register beside the old
//!   one, so a rolling update never leaves claims without a plugin) and
//!   `<kubelet>/plugins/vfnet.dev/dra.sock` (`dra-<uid>.sock`). Both are checked every
//!   [`WATCH_PERIOD`]; a socket that vanished (its directory wiped) is served again, and kubelet's
//!   watcher registers it again.
//! - **`:authority`.** kubelet's plugin watcher sends one `h2` refuses; the registration socket is
//!   served through [`authority`]'s rewrite (the DRA socket needs none: kubelet's DRA manager
//!   dials it as `unix:`, with authority `localhost`).
//! - **Versions.** `GetInfo` offers `v1.DRAPlugin` and `v1beta1.DRAPlugin` (kubelet takes the
//!   newest it knows) and `v1.DRAResourceHealth` / `v1alpha1.DRAResourceHealth`.
//! - **Health.** `NodeWatchResources` sends every device's health at once, again on every change,
//!   and at least every [`HEALTH_RESEND`] with a timeout of [`HEALTH_TIMEOUT`]: kubelet marks a
//!   device Unknown when it hears nothing for that long, which is right when the daemon is gone.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use kubelet_api::dra::{v1 as dra_v1, v1beta1 as dra_v1beta1};
use kubelet_api::dra_health::{v1 as health_v1, v1alpha1 as health_v1alpha1};
use kubelet_api::pluginregistration::{self as reg, registration_server::RegistrationServer};
use kubelet_api::uds;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use super::authority;
use super::driver::{Driver, PrepareError, Prepared};
use super::slices::DRIVER;

/// How often the sockets are checked.
pub const WATCH_PERIOD: Duration = Duration::from_millis(500);
/// How often health is sent when nothing changes.
pub const HEALTH_RESEND: Duration = Duration::from_secs(20);
/// How long kubelet keeps a device's health without hearing again.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// The socket paths of one daemon instance.
#[derive(Debug, Clone)]
pub struct Sockets {
    /// The registration socket (in the plugins registry).
    pub registration: PathBuf,
    /// The DRA service socket.
    pub service: PathBuf,
}

impl Sockets {
    /// The paths under `kubelet_dir`, per pod when `pod_uid` is given.
    pub fn new(kubelet_dir: &Path, pod_uid: Option<&str>) -> Self {
        let uid = pod_uid.filter(|u| !u.is_empty());
        let registration = kubelet_dir.join("plugins_registry").join(match uid {
            Some(uid) => format!("{DRIVER}-{uid}-reg.sock"),
            None => format!("{DRIVER}-reg.sock"),
        });
        let service = kubelet_dir.join("plugins").join(DRIVER).join(match uid {
            Some(uid) => format!("dra-{uid}.sock"),
            None => "dra.sock".to_owned(),
        });
        Self { registration, service }
    }
}

/// `Registration`: what kubelet's plugin watcher asks.
struct Registrar {
    endpoint: String,
}

#[tonic::async_trait]
impl reg::registration_server::Registration for Registrar {
    async fn get_info(&self, _: Request<reg::InfoRequest>) -> Result<Response<reg::PluginInfo>, Status> {
        Ok(Response::new(reg::PluginInfo {
            r#type: reg::DRA_PLUGIN_TYPE.to_owned(),
            name: DRIVER.to_owned(),
            endpoint: self.endpoint.clone(),
            supported_versions: vec![
                dra_v1::SERVICE.to_owned(),
                dra_v1beta1::SERVICE.to_owned(),
                health_v1::SERVICE.to_owned(),
                health_v1alpha1::SERVICE.to_owned(),
            ],
        }))
    }

    async fn notify_registration_status(
        &self,
        request: Request<reg::RegistrationStatus>,
    ) -> Result<Response<reg::RegistrationStatusResponse>, Status> {
        let s = request.into_inner();
        if s.plugin_registered {
            tracing::info!(driver = DRIVER, "registered with kubelet as a DRA plugin");
        } else {
            tracing::error!(driver = DRIVER, error = %s.error, "kubelet refused the DRA plugin registration");
        }
        Ok(Response::new(reg::RegistrationStatusResponse {}))
    }
}

/// The DRA and health services, over the one [`Driver`].
#[derive(Clone)]
struct Service {
    driver: Arc<Driver>,
}

/// A claim's prepare outcome in the reply's shape (the same for v1 and v1beta1).
fn prepared_parts(r: Result<Vec<Prepared>, PrepareError>) -> (Vec<Prepared>, String) {
    match r {
        Ok(devices) => (devices, String::new()),
        Err(e) => {
            tracing::warn!(error = %e, "claim not prepared");
            (Vec::new(), e.to_string())
        }
    }
}

macro_rules! dra_service {
    ($m:ident) => {
        #[tonic::async_trait]
        impl $m::dra_plugin_server::DraPlugin for Service {
            async fn node_prepare_resources(
                &self,
                request: Request<$m::NodePrepareResourcesRequest>,
            ) -> Result<Response<$m::NodePrepareResourcesResponse>, Status> {
                let mut claims = std::collections::HashMap::new();
                for c in request.into_inner().claims {
                    let (devices, error) = prepared_parts(self.driver.prepare(&c.namespace, &c.name, &c.uid).await);
                    let devices = devices
                        .into_iter()
                        .map(|d| {
                            // v1 has `share_id` (consumable capacity), v1beta1 not.
                            #[allow(clippy::needless_update)]
                            $m::Device {
                                request_names: d.request_names,
                                pool_name: d.pool_name,
                                device_name: d.device_name,
                                cdi_device_ids: d.cdi_device_ids,
                                ..Default::default()
                            }
                        })
                        .collect();
                    claims.insert(c.uid, $m::NodePrepareResourceResponse { devices, error });
                }
                Ok(Response::new($m::NodePrepareResourcesResponse { claims }))
            }

            async fn node_unprepare_resources(
                &self,
                request: Request<$m::NodeUnprepareResourcesRequest>,
            ) -> Result<Response<$m::NodeUnprepareResourcesResponse>, Status> {
                let mut claims = std::collections::HashMap::new();
                for c in request.into_inner().claims {
                    let error = match self.driver.unprepare(&c.namespace, &c.name, &c.uid).await {
                        Ok(()) => String::new(),
                        Err(e) => {
                            tracing::warn!(error = %e, "claim not unprepared");
                            e.to_string()
                        }
                    };
                    claims.insert(c.uid, $m::NodeUnprepareResourceResponse { error });
                }
                Ok(Response::new($m::NodeUnprepareResourcesResponse { claims }))
            }
        }
    };
}
dra_service!(dra_v1);
dra_service!(dra_v1beta1);

macro_rules! health_service {
    ($m:ident) => {
        #[tonic::async_trait]
        impl $m::dra_resource_health_server::DraResourceHealth for Service {
            type NodeWatchResourcesStream =
                Pin<Box<dyn Stream<Item = Result<$m::NodeWatchResourcesResponse, Status>> + Send + 'static>>;

            async fn node_watch_resources(
                &self,
                _: Request<$m::NodeWatchResourcesRequest>,
            ) -> Result<Response<Self::NodeWatchResourcesStream>, Status> {
                let (tx, rx) = mpsc::channel(4);
                let driver = Arc::clone(&self.driver);
                tokio::spawn(async move {
                    let mut view = driver.view();
                    loop {
                        // What is sent now is the view as it is: only a change after this is news
                        // (the driver's receiver never marks what it saw, so a clone of it would
                        // otherwise count every earlier scan as a change and resend at once).
                        view.mark_unchanged();
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                        let devices = driver
                            .health()
                            .into_iter()
                            .map(|h| $m::DeviceHealth {
                                device: Some($m::DeviceIdentifier { pool_name: h.pool, device_name: h.device }),
                                health: if h.healthy {
                                    $m::HealthStatus::Healthy as i32
                                } else {
                                    $m::HealthStatus::Unhealthy as i32
                                },
                                last_updated_time: now,
                                health_check_timeout_seconds: HEALTH_TIMEOUT.as_secs() as i64,
                                message: h.message,
                            })
                            .collect();
                        if tx.send(Ok($m::NodeWatchResourcesResponse { devices })).await.is_err() {
                            break;
                        }
                        tokio::select! {
                            changed = view.changed() => if changed.is_err() { break },
                            () = tokio::time::sleep(HEALTH_RESEND) => {}
                            () = tx.closed() => break,
                        }
                    }
                });
                Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
            }
        }
    };
}
health_service!(health_v1);
health_service!(health_v1alpha1);

/// Accepts kubelet's connections on the registration socket and relays each through
/// [`authority::relay`] to the registration server's side of a pipe.
async fn accept_through_shim(
    mut incoming: tokio_stream::wrappers::UnixListenerStream,
    pipes: mpsc::Sender<std::io::Result<tokio::io::DuplexStream>>,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    loop {
        let conn = tokio::select! {
            c = incoming.next() => c,
            () = stop.cancelled() => break,
        };
        match conn {
            None => break,
            Some(Err(e)) => tracing::warn!(error = %e, "registration socket: accept failed"),
            Some(Ok(conn)) => {
                let (ours, theirs) = tokio::io::duplex(64 * 1024);
                if pipes.send(Ok(theirs)).await.is_err() {
                    break;
                }
                tokio::spawn(authority::relay(conn, ours));
            }
        }
    }
    Ok(())
}

/// Serves the plugin's two sockets until `stop`, serving them again whenever one vanishes; removes
/// them at the end.
pub async fn run(driver: Arc<Driver>, sockets: Sockets, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let bound = (|| {
            for p in [&sockets.registration, &sockets.service] {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
            }
            let service = uds::bind_private(&sockets.service).map_err(|e| e.to_string())?;
            let registration = uds::bind_private(&sockets.registration).map_err(|e| e.to_string())?;
            Ok::<_, String>((service, registration))
        })();
        let (service_incoming, registration_incoming) = match bound {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot serve the DRA plugin's sockets; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = stop.cancelled() => break,
                }
            }
        };
        let ids = (uds::file_id(&sockets.service), uds::file_id(&sockets.registration));
        let round = stop.child_token();
        let svc = Service { driver: Arc::clone(&driver) };
        let service = Server::builder()
            .add_service(dra_v1::dra_plugin_server::DraPluginServer::new(svc.clone()))
            .add_service(dra_v1beta1::dra_plugin_server::DraPluginServer::new(svc.clone()))
            .add_service(health_v1::dra_resource_health_server::DraResourceHealthServer::new(svc.clone()))
            .add_service(health_v1alpha1::dra_resource_health_server::DraResourceHealthServer::new(svc))
            .serve_with_incoming_shutdown(service_incoming, round.clone().cancelled_owned());
        let registrar = Registrar { endpoint: sockets.service.display().to_string() };
        // The plugin watcher's requests reach the server through the `:authority` shim.
        let (pipes, piped) = mpsc::channel::<std::io::Result<tokio::io::DuplexStream>>(8);
        let registration = Server::builder()
            .add_service(RegistrationServer::new(registrar))
            .serve_with_incoming_shutdown(ReceiverStream::new(piped), round.clone().cancelled_owned());
        let accept = accept_through_shim(registration_incoming, pipes, round.clone());
        let tasks = [tokio::spawn(service), tokio::spawn(registration), tokio::spawn(accept)];
        tracing::info!(
            registration = %sockets.registration.display(),
            service = %sockets.service.display(),
            "serving the DRA kubelet plugin"
        );
        loop {
            tokio::select! {
                () = tokio::time::sleep(WATCH_PERIOD) => {}
                () = stop.cancelled() => break,
            }
            if (uds::file_id(&sockets.service), uds::file_id(&sockets.registration)) != ids {
                tracing::warn!("a DRA plugin socket was removed: serving again");
                break;
            }
        }
        round.cancel();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        if stop.is_cancelled() {
            for (p, id) in [(&sockets.service, ids.0), (&sockets.registration, ids.1)] {
                if uds::file_id(p) == id {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
}
