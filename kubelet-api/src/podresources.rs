//! The pod resources API, `v1`: which devices kubelet gave which pod's containers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::uds::{self, UdsError};

/// Generated messages, client (`pod_resources_lister_client`) and server
/// (`pod_resources_lister_server`) of package `v1`.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/podresources/v1.rs"));
}

use v1::pod_resources_lister_client::PodResourcesListerClient;

/// kubelet's pod resources socket.
pub const SOCKET: &str = concat!(kubelet_root!(), "/pod-resources/kubelet.sock");
/// Largest response accepted: `List` answers for every pod of the node (Multus uses the same
/// bound).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Why the pod resources query failed.
#[derive(Debug, thiserror::Error)]
pub enum PodResourcesError {
    /// The runtime for a blocking call could not be built.
    #[error("cannot start a runtime to query {socket}: {source}")]
    Runtime {
        /// The socket.
        socket: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// kubelet's socket could not be reached.
    #[error(transparent)]
    Connect(#[from] UdsError),
    /// kubelet answered with an error.
    #[error("pod resources List on {socket} failed: {status}")]
    Call {
        /// The socket.
        socket: PathBuf,
        /// kubelet's status.
        status: Box<tonic::Status>,
    },
    /// No answer in time.
    #[error("no answer from {socket} within {timeout:?}")]
    Timeout {
        /// The socket.
        socket: PathBuf,
        /// The time allowed.
        timeout: Duration,
    },
}

/// The IDs of `resource` (`vfnet.dev/<pool>`) devices allocated to any container of pod
/// `namespace/pod`, sorted (the order Multus hands them out in). Empty if the pod has none or is
/// unknown. Blocking: builds a current-thread runtime, so call it from plain code, never from
/// inside an async runtime.
pub fn allocated_devices(
    socket: &Path,
    namespace: &str,
    pod: &str,
    resource: &str,
    timeout: Duration,
) -> Result<Vec<String>, PodResourcesError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|source| PodResourcesError::Runtime { socket: socket.to_owned(), source })?;
    runtime.block_on(allocated_devices_async(socket, namespace, pod, resource, timeout))
}

/// [`allocated_devices`] for async callers.
pub async fn allocated_devices_async(
    socket: &Path,
    namespace: &str,
    pod: &str,
    resource: &str,
    timeout: Duration,
) -> Result<Vec<String>, PodResourcesError> {
    let query = async {
        let channel = uds::connect(socket).await?;
        let mut client = PodResourcesListerClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
        // List rather than Get: Get needs kubelet 1.34 (or a feature gate) and List answers the
        // same question everywhere.
        let response = client
            .list(v1::ListPodResourcesRequest {})
            .await
            .map_err(|status| PodResourcesError::Call { socket: socket.to_owned(), status: Box::new(status) })?;
        Ok(devices_of(&response.into_inner(), namespace, pod, resource))
    };
    tokio::time::timeout(timeout, query)
        .await
        .map_err(|_| PodResourcesError::Timeout { socket: socket.to_owned(), timeout })?
}

/// The sorted, distinct device IDs of `resource` held by pod `namespace/pod` in `list`.
pub fn devices_of(list: &v1::ListPodResourcesResponse, namespace: &str, pod: &str, resource: &str) -> Vec<String> {
    let ids: BTreeSet<&str> = list
        .pod_resources
        .iter()
        .filter(|p| p.namespace == namespace && p.name == pod)
        .flat_map(|p| &p.containers)
        .flat_map(|c| &c.devices)
        .filter(|d| d.resource_name == resource)
        .flat_map(|d| d.device_ids.iter().map(String::as_str))
        .collect();
    ids.into_iter().map(str::to_owned).collect()
}
