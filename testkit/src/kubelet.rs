//! kubelet's side of its gRPC APIs (`kubelet_api`), in-process, for tests: a [`FakeKubelet`]
//! serving `Registration` on `<dir>/kubelet.sock` and recording each registration (then acting as
//! kubelet towards the plugin through [`FakeKubelet::plugin`]), and a [`FakePodResources`] serving
//! canned pod resources.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

use kubelet_api::deviceplugin::v1beta1::device_plugin_client::DevicePluginClient;
use kubelet_api::deviceplugin::v1beta1::registration_server::{Registration, RegistrationServer};
use kubelet_api::deviceplugin::v1beta1::{Empty, RegisterRequest};
use kubelet_api::deviceplugin::{KUBELET_SOCKET, VERSION};
use kubelet_api::podresources::v1;
use kubelet_api::podresources::v1::pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer};
use kubelet_api::uds::{self, UdsError};

#[derive(Debug, Clone)]
struct Recorder {
    registrations: Arc<Mutex<Vec<RegisterRequest>>>,
    count: watch::Sender<usize>,
}

#[tonic::async_trait]
impl Registration for Recorder {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let request = request.into_inner();
        // kubelet's own checks (device manager `validateRegisterRequest` equivalents).
        if request.version != VERSION {
            return Err(Status::invalid_argument(format!(
                "unsupported device plugin API version {:?}",
                request.version
            )));
        }
        match request.resource_name.split_once('/') {
            Some((domain, name)) if !domain.is_empty() && !name.is_empty() && !name.contains('/') => {}
            _ => return Err(Status::invalid_argument(format!("invalid resource name {:?}", request.resource_name))),
        }
        let mut all = self.registrations.lock().map_err(|_| Status::internal("recorder poisoned"))?;
        all.push(request);
        self.count.send_replace(all.len());
        Ok(Response::new(Empty {}))
    }
}

/// A kubelet that only registers device plugins. Dropping it stops the server (the socket file
/// stays, as after a kubelet crash); [`FakeKubelet::stop`] also removes it.
#[derive(Debug)]
pub struct FakeKubelet {
    dir: PathBuf,
    recorder: Recorder,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeKubelet {
    /// Serves `Registration` on `<device_plugin_dir>/kubelet.sock`. Needs a tokio runtime.
    pub fn start(device_plugin_dir: &Path) -> Result<Self, UdsError> {
        let (count, _) = watch::channel(0);
        let recorder = Recorder { registrations: Arc::default(), count };
        let mut kubelet = Self { dir: device_plugin_dir.to_owned(), recorder, stop: None, task: None };
        kubelet.serve()?;
        Ok(kubelet)
    }

    fn serve(&mut self) -> Result<(), UdsError> {
        let incoming = uds::bind_private(&self.socket())?;
        let (stop, stopped) = oneshot::channel::<()>();
        let service = RegistrationServer::new(self.recorder.clone());
        self.task = Some(tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) =
                Server::builder().add_service(service).serve_with_incoming_shutdown(incoming, shutdown).await
            {
                tracing::warn!(error = %e, "fake kubelet server failed");
            }
        }));
        self.stop = Some(stop);
        Ok(())
    }

    /// `<dir>/kubelet.sock`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(KUBELET_SOCKET)
    }

    /// Every registration so far, oldest first.
    pub fn registrations(&self) -> Vec<RegisterRequest> {
        self.recorder.registrations.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Waits until at least `n` registrations arrived in all (across restarts); returns them, or
    /// `None` after `timeout`.
    pub async fn wait_for_registrations(&self, n: usize, timeout: Duration) -> Option<Vec<RegisterRequest>> {
        let mut count = self.recorder.count.subscribe();
        tokio::time::timeout(timeout, count.wait_for(|c| *c >= n)).await.ok()?.ok()?;
        Some(self.registrations())
    }

    /// Connects to a registered plugin by its endpoint (socket file name), as kubelet does.
    pub async fn plugin(&self, endpoint: &str) -> Result<DevicePluginClient<Channel>, UdsError> {
        Ok(DevicePluginClient::new(uds::connect(self.dir.join(endpoint)).await?))
    }

    async fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // A plugin's open streams can hold a graceful shutdown; don't wait for them forever.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task).await.is_err() {
                abort.abort();
            }
        }
    }

    /// Stops serving and removes `kubelet.sock`.
    pub async fn stop(mut self) {
        self.halt().await;
        let _ = fs::remove_file(self.socket());
    }

    /// What kubelet does when it restarts: stops, removes every file in the device-plugins
    /// directory (plugin sockets included), and serves a new `kubelet.sock`. Registrations seen
    /// so far are kept, so a test can wait for the next one.
    pub async fn restart(&mut self) -> Result<(), UdsError> {
        self.halt().await;
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| !t.is_dir()) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        self.serve()
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Debug, Clone)]
struct Canned(Arc<Vec<v1::PodResources>>);

#[tonic::async_trait]
impl PodResourcesLister for Canned {
    async fn list(
        &self,
        _request: Request<v1::ListPodResourcesRequest>,
    ) -> Result<Response<v1::ListPodResourcesResponse>, Status> {
        Ok(Response::new(v1::ListPodResourcesResponse { pod_resources: self.0.as_ref().clone() }))
    }

    async fn get_allocatable_resources(
        &self,
        _request: Request<v1::AllocatableResourcesRequest>,
    ) -> Result<Response<v1::AllocatableResourcesResponse>, Status> {
        let devices = self.0.iter().flat_map(|p| &p.containers).flat_map(|c| c.devices.clone()).collect();
        Ok(Response::new(v1::AllocatableResourcesResponse { devices, cpu_ids: vec![], memory: vec![] }))
    }

    async fn get(
        &self,
        request: Request<v1::GetPodResourcesRequest>,
    ) -> Result<Response<v1::GetPodResourcesResponse>, Status> {
        let request = request.into_inner();
        self.0
            .iter()
            .find(|p| p.name == request.pod_name && p.namespace == request.pod_namespace)
            .map(|p| Response::new(v1::GetPodResourcesResponse { pod_resources: Some(p.clone()) }))
            .ok_or_else(|| {
                Status::not_found(format!("pod {} in namespace {} not found", request.pod_name, request.pod_namespace))
            })
    }
}

/// kubelet's pod resources server with a fixed answer. Stops when dropped.
#[derive(Debug)]
pub struct FakePodResources {
    _stop: oneshot::Sender<()>,
}

impl FakePodResources {
    /// Serves `pods` on `socket`. Needs a tokio runtime.
    pub fn start(socket: &Path, pods: Vec<v1::PodResources>) -> Result<Self, UdsError> {
        let incoming = uds::bind_private(socket)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let service = PodResourcesListerServer::new(Canned(Arc::new(pods)));
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) =
                Server::builder().add_service(service).serve_with_incoming_shutdown(incoming, shutdown).await
            {
                tracing::warn!(error = %e, "fake pod resources server failed");
            }
        });
        Ok(Self { _stop: stop })
    }
}
