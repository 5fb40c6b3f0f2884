//! The `DevicePlugin` gRPC service of one pool, as kubelet calls it on the pool's socket.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, stream};
use kubelet_api::deviceplugin::v1beta1::device_plugin_server::DevicePlugin;
use kubelet_api::deviceplugin::v1beta1::{
    AllocateRequest, AllocateResponse, ContainerPreferredAllocationResponse, Device as KubeletDevice,
    DevicePluginOptions, Empty, ListAndWatchResponse, NumaNode, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse, TopologyInfo,
};
use tokio::sync::watch;
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
    /// The same pool with no devices: what a withdrawn pool's ListAndWatch sends last.
    pub fn emptied(&self) -> Self {
        Self { pool: Arc::clone(&self.pool), devices: PoolDevices::default() }
    }

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

/// One kubelet's ListAndWatch: the current list first, then one message per change.
///
/// The stream ends when the server stops or the pool's sender is gone, but only after kubelet has
/// the state of that moment. That matters when a pool is withdrawn: the daemon empties its list
/// first, so kubelet drops the devices from the Node's capacity at once. A stream that just ended
/// would leave them there as unhealthy for kubelet's endpoint grace period (5 minutes), as the
/// real kubelet showed. A restart (nothing changed) ends with no extra message.
struct ListWatch {
    state: watch::Receiver<Arc<PoolState>>,
    stop: CancellationToken,
    sent: Option<Arc<PoolState>>,
    ending: bool,
}

impl ListWatch {
    async fn next(mut self) -> Option<(Result<ListAndWatchResponse, Status>, Self)> {
        loop {
            let current = Arc::clone(&self.state.borrow_and_update());
            if self.sent.as_deref() != Some(&*current) {
                let message = current.list_response();
                self.sent = Some(current);
                return Some((Ok(message), self));
            }
            if self.ending {
                return None;
            }
            tokio::select! {
                changed = self.state.changed() => self.ending = changed.is_err(),
                () = self.stop.cancelled() => self.ending = true,
            }
        }
    }
}

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
        let watch = ListWatch { state: self.state.clone(), stop: self.stop.clone(), sent: None, ending: false };
        Ok(Response::new(Box::pin(stream::unfold(watch, ListWatch::next))))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{inventory, node, pools};
    use futures_util::StreamExt;
    use sriov::fixture::{FixtureBuilder, PfSpec};
    use std::path::Path;

    fn state() -> PoolState {
        let f =
            FixtureBuilder::new().pf(PfSpec::igb("0000:01:00.0".parse().unwrap(), "eth0").vfs(7, 3)).build().unwrap();
        let pools = pools::parse(
            "- metadata: {name: a}\n  spec: {resourceName: a, selector: {pfNames: ['eth0#0-2']}}\n",
            Path::new("p"),
            "vfnet.dev",
        )
        .unwrap();
        let inv = inventory::build(&pools, &node::scan(&f.sysfs(), false).unwrap());
        PoolState { pool: Arc::clone(&pools[0]), devices: inv.pools[0].clone() }
    }

    async fn lists(tx: &watch::Sender<Arc<PoolState>>, stop: &CancellationToken, withdraw: bool) -> Vec<usize> {
        let watch = ListWatch { state: tx.subscribe(), stop: stop.clone(), sent: None, ending: false };
        let mut stream = Box::pin(stream::unfold(watch, ListWatch::next));
        let mut lens = vec![stream.next().await.unwrap().unwrap().devices.len()];
        if withdraw {
            // As the daemon withdraws a pool: the list emptied, then the server stopped at once.
            tx.send_modify(|s| *s = Arc::new(s.emptied()));
        }
        stop.cancel();
        while let Some(m) = stream.next().await {
            lens.push(m.unwrap().devices.len());
        }
        lens
    }

    #[tokio::test]
    async fn a_withdrawn_pool_ends_its_stream_with_an_empty_list() {
        let (tx, _) = watch::channel(Arc::new(state()));
        assert_eq!(lists(&tx, &CancellationToken::new(), true).await, [3, 0]);
    }

    #[tokio::test]
    async fn a_stopped_server_ends_its_stream_with_nothing_more() {
        let (tx, _) = watch::channel(Arc::new(state()));
        assert_eq!(lists(&tx, &CancellationToken::new(), false).await, [3]);
    }
}
