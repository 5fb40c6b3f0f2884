//! The `DevicePlugin` gRPC service of one pool, as kubelet calls it on the pool's socket.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use kubelet_api::deviceplugin::v1beta1::device_plugin_server::DevicePlugin;
use kubelet_api::deviceplugin::v1beta1::{
    AllocateRequest, AllocateResponse, ContainerPreferredAllocationResponse, Device as KubeletDevice,
    DevicePluginOptions, Empty, ListAndWatchResponse, NumaNode, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse, TopologyInfo,
};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::allocate::{self, AllocateError, Paths};
use crate::inventory::PoolDevices;
use crate::metrics::Metrics;
use crate::pools::Pool;
use crate::preferred;

/// A pool and its current devices: what ListAndWatch sends and Allocate checks against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolState {
    /// The pool.
    pub pool: Arc<Pool>,
    /// Its devices now.
    pub devices: PoolDevices,
}

impl PoolState {
    /// The ListAndWatch message: every device with its health and NUMA node.
    pub fn list_response(&self) -> ListAndWatchResponse {
        ListAndWatchResponse {
            devices: self
                .devices
                .devices
                .iter()
                .map(|d| KubeletDevice {
                    id: d.pci.to_string(),
                    health: d.health.kubelet_str().to_owned(),
                    topology: d.numa_node.map(|n| TopologyInfo { nodes: vec![NumaNode { id: i64::from(n) }] }),
                })
                .collect(),
        }
    }
}

/// What every pool's service shares.
#[derive(Debug)]
pub struct Shared {
    /// Where Allocate writes.
    pub paths: Paths,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// The service of one pool.
#[derive(Debug, Clone)]
pub struct PluginService {
    state: watch::Receiver<Arc<PoolState>>,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl PluginService {
    /// A service answering from `state`; its ListAndWatch streams end at `stop`.
    pub fn new(state: watch::Receiver<Arc<PoolState>>, shared: Arc<Shared>, stop: CancellationToken) -> Self {
        Self { state, shared, stop }
    }

    fn current(&self) -> Arc<PoolState> {
        Arc::clone(&self.state.borrow())
    }
}

type ListStream = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send + 'static>>;

fn status(e: &AllocateError) -> Status {
    match e {
        AllocateError::Unknown { .. } => Status::invalid_argument(e.to_string()),
        AllocateError::Unhealthy { .. } => Status::failed_precondition(e.to_string()),
        AllocateError::Record { .. } | AllocateError::Task { .. } => Status::internal(e.to_string()),
    }
}

#[tonic::async_trait]
impl DevicePlugin for PluginService {
    async fn get_device_plugin_options(&self, _: Request<Empty>) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(DevicePluginOptions { pre_start_required: false, get_preferred_allocation_available: true }))
    }

    type ListAndWatchStream = ListStream;

    async fn list_and_watch(&self, _: Request<Empty>) -> Result<Response<ListStream>, Status> {
        let resource = self.current().pool.resource.clone();
        tracing::debug!(%resource, "kubelet opened ListAndWatch");
        // The current list first, then one message per change; the stream ends when the pool is
        // removed (the sender is dropped) or its server stops.
        let stream = WatchStream::new(self.state.clone())
            .map(|state| Ok(state.list_response()))
            .take_until(self.stop.clone().cancelled_owned());
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let state = self.current();
        let container_responses = request
            .into_inner()
            .container_requests
            .iter()
            .map(|r| ContainerPreferredAllocationResponse {
                device_i_ds: preferred::preferred(
                    &state.devices,
                    state.pool.spec.allocation_policy,
                    &r.available_device_i_ds,
                    &r.must_include_device_i_ds,
                    usize::try_from(r.allocation_size).unwrap_or(0),
                ),
            })
            .collect();
        Ok(Response::new(PreferredAllocationResponse { container_responses }))
    }

    async fn allocate(&self, request: Request<AllocateRequest>) -> Result<Response<AllocateResponse>, Status> {
        let state = self.current();
        let pool = &state.pool;
        let mut container_responses = Vec::new();
        for container in &request.get_ref().container_requests {
            let devices = match allocate::lookup(pool, &state.devices, &container.devices_ids) {
                Ok(d) => d,
                Err(e) => {
                    self.shared.metrics.allocation(&pool.resource, false);
                    tracing::warn!(resource = %pool.resource, error = %e, "Allocate refused");
                    return Err(status(&e));
                }
            };
            if let Err(e) = allocate::record(pool, &devices, &self.shared.paths).await {
                self.shared.metrics.allocation(&pool.resource, false);
                tracing::error!(resource = %pool.resource, error = %e, "Allocate failed");
                return Err(status(&e));
            }
            tracing::info!(resource = %pool.resource, devices = ?container.devices_ids, "allocated");
            container_responses.push(allocate::response(pool, &devices, &self.shared.paths));
        }
        self.shared.metrics.allocation(&pool.resource, true);
        Ok(Response::new(AllocateResponse { container_responses }))
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}
