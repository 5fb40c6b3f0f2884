//! Cluster mode: the daemon as the node's agent of the API server (in-cluster configuration, or
//! `--kubeconfig`; without either the daemon runs on its `--pools` file alone).
//!
//! - **Profiles.** Every `VfProfile` is mirrored into `<run-dir>/profiles/<name>.json`, written
//!   atomically (temporary file, fsync, rename), holding the object as the API serves it
//!   (`apiVersion`, `kind`, `metadata` without `managedFields`, `spec`): the file the CNI plugin
//!   reads, so pods keep getting their networks while the API server is away. A deleted profile's
//!   file is removed; after every (re-)list, files of profiles that no longer exist are removed.
//!   The watch's objects are kept too: the node socket ([`crate::node_socket`]) answers from them
//!   a CNI plugin that finds no file.
//! - **Pools.** The `VfPool`s whose `nodeSelector` matches the labels of this node's `Node` (its
//!   name from `--node-name`; `kubernetes.io/hostname` defaults to that name) are the daemon's
//!   pools, applied live through the same reload path as the pools file. **Cluster pools replace
//!   the pools file**: in cluster mode `--pools` is ignored. Pools are checked one by one: a bad
//!   one is set aside (keeping its last good version if it had one) and the others are served.
//!   A change of the Node's labels re-evaluates the selection. The pools served are cached in
//!   `<run-dir>/cluster-pools.json`, so a daemon restarted while the API server is unreachable
//!   advertises what it advertised before.
//! - **Per-node state** is recorded as Kubernetes Events on each VfPool (`regarding` the pool,
//!   `reportingController` `vfnet.dev/device-plugin`, `reportingInstance` the node): reasons
//!   `PoolAdvertised`, `PoolInvalid` (Warning, with the reason) and `PoolWithdrawn`, each published
//!   when the pool's state on this node changes. Events, unlike a status, are one object per node
//!   and pool: nodes never contend for one object.
//! - **Outages.** The watches retry with kube-runtime's default backoff (0.8 s, doubling to 30 s,
//!   jittered; reset after two quiet minutes), resume from their last resource version, and
//!   re-list when it expired (410 Gone). Nothing is removed or withdrawn while the API server is
//!   away: profiles stay on disk, pools stay advertised.
//! - Everything ends with the daemon (SIGTERM).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crds::{VfPool, VfProfile};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use vfnet_types::{ProfileDir, RunDir};

use crate::pools::ClusterPool;
use crate::watch::Trigger;

/// The Events' `reportingController`.
pub const REPORTING_CONTROLLER: &str = "vfnet.dev/device-plugin";
/// The Event reasons.
pub const REASON_ADVERTISED: &str = "PoolAdvertised";
/// A pool this node cannot serve (Warning).
pub const REASON_INVALID: &str = "PoolInvalid";
/// A pool this node stopped serving because its nodeSelector no longer matches the node.
pub const REASON_WITHDRAWN: &str = "PoolWithdrawn";
/// The label node selectors see with the node's name.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// How long one Event may take to publish.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon Events that could not be published are tried again.
const PUBLISH_RETRY: Duration = Duration::from_secs(15);

/// Why cluster mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig is unreadable or unusable.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: kube::config::KubeconfigError,
    },
    /// The pod's service account configuration is unusable.
    #[error("in-cluster configuration: {0}")]
    InCluster(#[from] kube::config::InClusterError),
}

/// The API server to sync with: the kubeconfig at `kubeconfig` if given; else, inside a pod
/// (`KUBERNETES_SERVICE_HOST` set), the pod's service account; else none (file-only mode).
pub async fn client_config(kubeconfig: Option<&Path>) -> Result<Option<kube::Config>, ClusterError> {
    if let Some(path) = kubeconfig {
        let err = |source| ClusterError::Kubeconfig { path: path.to_owned(), source };
        let kc = kube::config::Kubeconfig::read_from(path).map_err(err)?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.map_err(err)?;
        return Ok(Some(config));
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty()) {
        return Ok(Some(kube::Config::incluster()?));
    }
    Ok(None)
}

/// What the daemon makes of a pool on this node (reported after every cluster reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolStatus {
    /// Served as `resource`.
    Advertised {
        /// `<prefix>/<resourceName>`.
        resource: String,
    },
    /// Not served: why.
    Invalid {
        /// What is wrong, naming the key.
        reason: String,
    },
}

/// One pool's state on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolReport {
    /// The pool's name.
    pub pool: String,
    /// Its state.
    pub status: PoolStatus,
    /// Devices advertised (for the Event's note).
    pub devices: usize,
}

/// The running sync: what the daemon reads and writes.
#[derive(Debug)]
pub(crate) struct ClusterSync {
    /// The pools selected for this node, once the pools and the Node have been listed.
    pub(crate) desired: watch::Receiver<Option<Vec<ClusterPool>>>,
    /// Every cluster reload's outcome, pool by pool (the Events follow from it).
    pub(crate) reports: mpsc::UnboundedSender<Vec<PoolReport>>,
    /// The tasks, awaited at shutdown.
    pub(crate) tasks: Vec<JoinHandle<()>>,
    /// The profiles the node socket serves: the VfProfile watch's store, and the API server.
    /// (Boxed: the client is large, and the daemon holds this in an enum with an empty variant.)
    pub(crate) profiles: Box<crate::node_socket::Cluster>,
}

/// The `VfProfile` resource (served as dynamic objects, so that the files hold what the API
/// serves and one odd object cannot stall the list).
fn profile_resource() -> ApiResource {
    ApiResource::erase::<VfProfile>(&())
}

fn pool_resource() -> ApiResource {
    ApiResource::erase::<VfPool>(&())
}

/// Starts syncing with the API server behind `client`, for node `node`: profiles into
/// `<run_dir>/profiles/`, pools for the daemon (each change sends a reload to `triggers`), and
/// Events from the daemon's reports.
pub(crate) fn start(
    client: Client,
    node: String,
    run_dir: &RunDir,
    triggers: mpsc::Sender<Trigger>,
    stop: CancellationToken,
) -> ClusterSync {
    let pools = Writer::new(pool_resource());
    let pool_store = pools.as_reader();
    let profile_writer = Writer::new(profile_resource());
    let profiles = Box::new(crate::node_socket::Cluster {
        store: profile_writer.as_reader(),
        api: Api::all_with(client.clone(), &profile_resource()),
        dir: run_dir.profiles(),
    });
    let (desired_tx, desired) = watch::channel(None);
    let (reports, reports_rx) = mpsc::unbounded_channel();
    tracing::info!(%node, "cluster mode: syncing VfProfiles, VfPools and Node {node} with the API server");
    let tasks = vec![
        tokio::spawn(sync_profiles(client.clone(), run_dir.profiles(), profile_writer, stop.child_token())),
        tokio::spawn(sync_pools(client.clone(), node.clone(), pools, desired_tx, triggers, stop.child_token())),
        tokio::spawn(record_events(client, node, pool_store, reports_rx, stop.child_token())),
    ];
    ClusterSync { desired, reports, tasks, profiles }
}

/// An object as the API serves it, with `apiVersion` and `kind` (list items may lack them) and
/// without `managedFields`.
fn served_json(obj: &DynamicObject, resource: &ApiResource) -> serde_json::Value {
    let mut obj = obj.clone();
    obj.types = Some(kube::api::TypeMeta { api_version: resource.api_version.clone(), kind: resource.kind.clone() });
    obj.metadata.managed_fields = None;
    serde_json::to_value(&obj).unwrap_or_default()
}

/// A VfProfile as the API serves it (what its mirrored file holds).
pub(crate) fn served_profile(obj: &DynamicObject) -> serde_json::Value {
    served_json(obj, &profile_resource())
}

/// True if `name` can be a file name in the profile directory.
pub(crate) fn safe_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/')
}

/// Writes the profile's file unless it already holds exactly this; returns the name.
pub(crate) fn mirror_profile(dir: &ProfileDir, obj: &DynamicObject) -> Option<String> {
    let name = obj.metadata.name.clone()?;
    if !safe_name(&name) {
        tracing::warn!(profile = %name, "VfProfile name unusable as a file name; not mirrored");
        return None;
    }
    let value = served_profile(obj);
    match serde_json::from_value::<VfProfile>(value.clone())
        .map_err(|e| e.to_string())
        .and_then(|p| p.spec.validate().map_err(|e| format!("spec.{e}")))
    {
        Ok(()) => {}
        Err(e) => {
            tracing::warn!(profile = %name, error = %e, "VfProfile is invalid: mirrored, the CNI plugin will refuse it")
        }
    }
    let path = dir.profile(&name);
    let bytes = match serde_json::to_vec_pretty(&value) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(profile = %name, error = %e, "cannot encode VfProfile");
            return Some(name);
        }
    };
    if std::fs::read(&path).is_ok_and(|current| current == bytes) {
        return Some(name);
    }
    match sriov::persist::write_atomic(&path, &bytes) {
        Ok(()) => tracing::info!(
            profile = %name,
            version = obj.metadata.resource_version.as_deref().unwrap_or("-"),
            "VfProfile mirrored to {}",
            path.display()
        ),
        Err(e) => tracing::error!(profile = %name, error = %e, "cannot mirror VfProfile"),
    }
    Some(name)
}

fn remove_profile(dir: &ProfileDir, name: &str) {
    if !safe_name(name) {
        return;
    }
    let path = dir.profile(name);
    if !path.exists() {
        return;
    }
    match sriov::persist::remove(&path) {
        Ok(()) => tracing::info!(profile = %name, "VfProfile gone: removed {}", path.display()),
        Err(e) => tracing::error!(profile = %name, error = %e, "cannot remove the file of a deleted VfProfile"),
    }
}

/// After a (re-)list: removes the files of profiles not in `listed`.
fn prune_profiles(dir: &ProfileDir, listed: &HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir.path()) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".json")) else { continue };
        if !name.starts_with('.') && !listed.contains(name) {
            remove_profile(dir, name);
        }
    }
}

/// Runs file work off the async workers.
async fn blocking(f: impl FnOnce() + Send + 'static) {
    if let Err(e) = tokio::task::spawn_blocking(f).await {
        tracing::error!(error = %e, "profile file task failed");
    }
}

/// Mirrors every VfProfile into `dir`, keeping them in `store` too (for the node socket).
async fn sync_profiles(client: Client, dir: ProfileDir, store: Writer<DynamicObject>, stop: CancellationToken) {
    if let Err(e) = sriov::persist::create_private_dir(dir.path()) {
        tracing::error!(error = %e, "cannot create the profile directory; profiles are not mirrored");
        return;
    }
    let api: Api<DynamicObject> = Api::all_with(client, &profile_resource());
    let mut events =
        reflector::reflector(store, watcher::watcher(api, watcher::Config::default()).default_backoff()).boxed();
    // The profiles of the (re-)list under way.
    let mut listed: HashSet<String> = HashSet::new();
    let mut failing = false;
    loop {
        let event = tokio::select! {
            e = events.next() => match e { Some(e) => e, None => return },
            () = stop.cancelled() => return,
        };
        let event = match event {
            Ok(e) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("VfProfile watch is back");
                }
                e
            }
            Err(e) => {
                log_watch_error("VfProfile", &e, &mut failing, "the mirrored profiles stay");
                continue;
            }
        };
        let dir = dir.clone();
        match event {
            Event::Init => listed.clear(),
            Event::InitApply(obj) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                blocking(move || {
                    let _ = tx.send(mirror_profile(&dir, &obj));
                })
                .await;
                if let Ok(Some(name)) = rx.await {
                    listed.insert(name);
                }
            }
            Event::InitDone => {
                let listed = std::mem::take(&mut listed);
                tracing::debug!(profiles = listed.len(), "VfProfiles listed");
                blocking(move || prune_profiles(&dir, &listed)).await;
            }
            Event::Apply(obj) => {
                blocking(move || {
                    mirror_profile(&dir, &obj);
                })
                .await;
            }
            Event::Delete(obj) => {
                if let Some(name) = obj.metadata.name {
                    blocking(move || remove_profile(&dir, &name)).await;
                }
            }
        }
    }
}

fn log_watch_error(what: &str, e: &watcher::Error, failing: &mut bool, keeps: &str) {
    // A re-list after 410 Gone is routine; an unreachable API server is logged once per outage.
    let gone = matches!(e, watcher::Error::WatchError(s) if s.code == 410);
    if gone {
        tracing::info!("{what} watch expired (410 Gone): listing again");
    } else if !*failing {
        tracing::warn!(error = %e, "{what} watch failed; retrying with backoff, {keeps}");
        *failing = true;
    } else {
        tracing::debug!(error = %e, "{what} watch still failing");
    }
}

/// The labels node selectors see: the Node's, with `kubernetes.io/hostname` defaulting to its
/// name.
fn node_labels(node: &Node, name: &str) -> BTreeMap<String, String> {
    let mut labels = node.labels().clone();
    labels.entry(HOSTNAME_LABEL.to_owned()).or_insert_with(|| name.to_owned());
    labels
}

/// A pool object's `spec.nodeSelector`, read leniently (for objects that are not valid pools:
/// whether their Warning concerns this node). Unreadable: matches.
fn raw_selector_matches(obj: &DynamicObject, labels: &BTreeMap<String, String>) -> bool {
    match obj.data.get("spec").and_then(|s| s.get("nodeSelector")) {
        None => true,
        Some(sel) => match serde_json::from_value::<BTreeMap<String, String>>(sel.clone()) {
            Ok(sel) => sel.iter().all(|(k, v)| labels.get(k) == Some(v)),
            Err(_) => true,
        },
    }
}

/// The pools whose nodeSelector matches `labels`, by name.
fn select(objects: &[Arc<DynamicObject>], labels: &BTreeMap<String, String>) -> Vec<ClusterPool> {
    let resource = pool_resource();
    let mut selected: Vec<ClusterPool> = objects
        .iter()
        .filter_map(|obj| {
            let name = obj.name_any();
            let object = serde_json::from_value::<crds::pool::PoolObject>(served_json(obj, &resource))
                .map(|mut p| {
                    // uid, resourceVersion, ...: not the pool's meaning, and they change.
                    p.metadata.other.clear();
                    p.status = None;
                    p
                })
                .map_err(|e| e.to_string());
            let selects = match &object {
                Ok(p) => p.spec.selects_node(labels),
                Err(_) => raw_selector_matches(obj, labels),
            };
            selects.then_some(ClusterPool { name, object })
        })
        .collect();
    selected.sort_by(|a, b| a.name.cmp(&b.name));
    selected
}

enum Change {
    // Boxed: watcher events are large, and only looked at (the stores keep the objects).
    Pools(Box<watcher::Result<Event<DynamicObject>>>),
    Node(Box<watcher::Result<Event<Node>>>),
}

/// Watches the VfPools and this node's Node; sends the selected pools to the daemon whenever
/// they change (once both have been listed).
async fn sync_pools(
    client: Client,
    node: String,
    pool_writer: Writer<DynamicObject>,
    desired: watch::Sender<Option<Vec<ClusterPool>>>,
    triggers: mpsc::Sender<Trigger>,
    stop: CancellationToken,
) {
    let pool_store = pool_writer.as_reader();
    let node_writer: Writer<Node> = Writer::default();
    let node_store = node_writer.as_reader();
    let pools = reflector::reflector(
        pool_writer,
        watcher::watcher(Api::<DynamicObject>::all_with(client.clone(), &pool_resource()), watcher::Config::default())
            .default_backoff(),
    )
    .map(|e| Change::Pools(Box::new(e)));
    let nodes = reflector::reflector(
        node_writer,
        watcher::watcher(Api::<Node>::all(client), watcher::Config::default().fields(&format!("metadata.name={node}")))
            .default_backoff(),
    )
    .map(|e| Change::Node(Box::new(e)));
    let mut changes = futures_util::stream::select(pools.boxed(), nodes.boxed());
    let (mut pools_listed, mut node_listed) = (false, false);
    let (mut pools_failing, mut node_failing) = (false, false);
    let mut last_labels: Option<BTreeMap<String, String>> = None;
    let mut missing_node_logged = false;
    loop {
        let change = tokio::select! {
            c = changes.next() => match c { Some(c) => c, None => return },
            () = stop.cancelled() => return,
        };
        let settled = match change {
            Change::Node(e) => match *e {
                Ok(e) => {
                    if std::mem::take(&mut node_failing) {
                        tracing::info!("Node watch is back");
                    }
                    node_listed |= matches!(e, Event::InitDone);
                    !matches!(e, Event::Init | Event::InitApply(_))
                }
                Err(e) => {
                    log_watch_error("Node", &e, &mut node_failing, "the current pools stay advertised");
                    false
                }
            },
            Change::Pools(e) => match *e {
                Ok(e) => {
                    if std::mem::take(&mut pools_failing) {
                        tracing::info!("VfPool watch is back");
                    }
                    pools_listed |= matches!(e, Event::InitDone);
                    !matches!(e, Event::Init | Event::InitApply(_))
                }
                Err(e) => {
                    log_watch_error("VfPool", &e, &mut pools_failing, "the current pools stay advertised");
                    false
                }
            },
        };
        if !settled || !pools_listed || !node_listed {
            continue;
        }
        let Some(node_obj) = node_store.state().into_iter().next() else {
            if !std::mem::replace(&mut missing_node_logged, true) {
                tracing::warn!(%node, "Node {node} not found: no pool is selected until it exists (check --node-name)");
            }
            continue;
        };
        missing_node_logged = false;
        let labels = node_labels(&node_obj, &node);
        if last_labels.as_ref().is_some_and(|l| *l != labels) {
            tracing::info!(%node, "node labels changed: selecting pools again");
        }
        last_labels = Some(labels.clone());
        let selected = select(&pool_store.state(), &labels);
        let changed = desired.send_if_modified(|current| {
            if current.as_ref() == Some(&selected) {
                return false;
            }
            *current = Some(selected);
            true
        });
        if changed && triggers.send(Trigger::Reload("cluster")).await.is_err() {
            return;
        }
    }
}

/// The reference an Event on pool `name` carries, from the pool store (`None`: the pool is gone).
fn pool_reference(store: &Store<DynamicObject>, name: &str) -> Option<ObjectReference> {
    let resource = pool_resource();
    store.find(|p| p.metadata.name.as_deref() == Some(name)).map(|p| ObjectReference {
        api_version: Some(resource.api_version.clone()),
        kind: Some(resource.kind.clone()),
        name: Some(name.to_owned()),
        uid: p.metadata.uid.clone(),
        resource_version: p.metadata.resource_version.clone(),
        ..ObjectReference::default()
    })
}

/// An Event's note: at most 1 kB.
fn note(text: String) -> String {
    if text.len() <= 1024 {
        return text;
    }
    let mut end = 1020;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The Event for a pool's new state on `node` (`None` status: withdrawn).
fn pool_event(node: &str, report: Option<&PoolReport>, was: Option<&PoolStatus>) -> KubeEvent {
    let (type_, reason, action, text) = match report {
        Some(PoolReport { status: PoolStatus::Advertised { resource }, devices, .. }) => (
            EventType::Normal,
            REASON_ADVERTISED,
            "Advertise",
            format!("node {node}: advertising {resource} ({devices} devices)"),
        ),
        Some(PoolReport { status: PoolStatus::Invalid { reason }, .. }) => {
            (EventType::Warning, REASON_INVALID, "Validate", format!("node {node}: pool refused: {reason}"))
        }
        None => {
            let what = match was {
                Some(PoolStatus::Advertised { resource }) => format!("{resource} withdrawn"),
                _ => "no longer considered".to_owned(),
            };
            (
                EventType::Normal,
                REASON_WITHDRAWN,
                "Withdraw",
                format!("node {node}: nodeSelector no longer matches the node; {what}"),
            )
        }
    };
    KubeEvent { type_, reason: reason.to_owned(), note: Some(note(text)), action: action.to_owned(), secondary: None }
}

/// Publishes an Event whenever a pool's state on this node changes. The last published state
/// per pool is kept; what fails to publish (API server away) is tried again later.
async fn record_events(
    client: Client,
    node: String,
    pools: Store<DynamicObject>,
    mut reports: mpsc::UnboundedReceiver<Vec<PoolReport>>,
    stop: CancellationToken,
) {
    let recorder =
        Recorder::new(client, Reporter { controller: REPORTING_CONTROLLER.to_owned(), instance: Some(node.clone()) });
    let mut current: BTreeMap<String, PoolReport> = BTreeMap::new();
    let mut published: BTreeMap<String, PoolStatus> = BTreeMap::new();
    let mut retry = false;
    loop {
        tokio::select! {
            r = reports.recv() => match r {
                Some(snapshot) => current = snapshot.into_iter().map(|r| (r.pool.clone(), r)).collect(),
                None => return,
            },
            () = tokio::time::sleep(PUBLISH_RETRY), if retry => {}
            () = stop.cancelled() => return,
        }
        retry = false;
        let gone: Vec<String> = published.keys().filter(|n| !current.contains_key(*n)).cloned().collect();
        let changed: Vec<String> =
            current.iter().filter(|(n, r)| published.get(*n) != Some(&r.status)).map(|(n, _)| n.clone()).collect();
        for name in gone.into_iter().chain(changed) {
            let report = current.get(&name);
            let Some(reference) = pool_reference(&pools, &name) else {
                // Deleted: nothing to attach an Event to.
                match report {
                    Some(r) => {
                        published.insert(name, r.status.clone());
                    }
                    None => {
                        published.remove(&name);
                    }
                }
                continue;
            };
            let event = pool_event(&node, report, published.get(&name));
            let published_in_time = tokio::select! {
                r = tokio::time::timeout(PUBLISH_TIMEOUT, recorder.publish(&event, &reference)) => r,
                () = stop.cancelled() => return,
            };
            match published_in_time {
                Ok(Ok(())) => {
                    tracing::debug!(pool = %name, reason = %event.reason, "Event published");
                    match report {
                        Some(r) => {
                            published.insert(name, r.status.clone());
                        }
                        None => {
                            published.remove(&name);
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(pool = %name, reason = %event.reason, error = %e, "cannot publish Event; will retry");
                    retry = true;
                }
                Err(_) => {
                    tracing::warn!(pool = %name, reason = %event.reason, "publishing an Event timed out; will retry");
                    retry = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dynamic(json: serde_json::Value) -> Arc<DynamicObject> {
        Arc::new(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn selects_pools_by_node_labels_and_keeps_bad_ones_that_concern_the_node() {
        let objects = vec![
            dynamic(serde_json::json!({"metadata": {"name": "b", "uid": "1", "resourceVersion": "5"},
                "spec": {"resourceName": "b", "nodeSelector": {"sriov": "true"}}})),
            dynamic(serde_json::json!({"metadata": {"name": "a"}, "spec": {"resourceName": "a"}})),
            dynamic(serde_json::json!({"metadata": {"name": "c"},
                "spec": {"resourceName": "c", "nodeSelector": {"zone": "b"}}})),
            dynamic(serde_json::json!({"metadata": {"name": "d"},
                "spec": {"resourceName": "d", "bogus": 1, "nodeSelector": {"sriov": "true"}}})),
            dynamic(serde_json::json!({"metadata": {"name": "e"},
                "spec": {"resourceName": "e", "bogus": 1, "nodeSelector": {"zone": "b"}}})),
        ];
        let labels: BTreeMap<String, String> = [("sriov".to_owned(), "true".to_owned())].into();
        let got = select(&objects, &labels);
        let names: Vec<&str> = got.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "d"]);
        let b = got[1].object.as_ref().unwrap();
        assert_eq!((b.api_version.as_str(), b.kind.as_str()), ("vfnet.dev/v1alpha1", "VfPool"));
        assert!(b.metadata.other.is_empty(), "uid and resourceVersion are dropped");
        assert!(got[2].object.as_ref().unwrap_err().contains("unknown field `bogus`"), "{:?}", got[2]);
    }

    #[test]
    fn hostname_label_defaults_to_the_node_name() {
        let mut node = Node::default();
        node.metadata.name = Some("n1".into());
        assert_eq!(node_labels(&node, "n1")[HOSTNAME_LABEL], "n1");
        node.metadata.labels = Some([(HOSTNAME_LABEL.to_owned(), "other".to_owned())].into());
        assert_eq!(node_labels(&node, "n1")[HOSTNAME_LABEL], "other");
    }

    #[test]
    fn profiles_are_mirrored_as_served_and_pruned() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ProfileDir::new(tmp.path());
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "tenant-a", "resourceVersion": "3", "managedFields": [{"manager": "kubectl"}]},
            "spec": {"vlan": 100}
        }))
        .unwrap();
        assert_eq!(mirror_profile(&dir, &obj).as_deref(), Some("tenant-a"));
        let file: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.profile("tenant-a")).unwrap()).unwrap();
        assert_eq!(file["apiVersion"], "vfnet.dev/v1alpha1");
        assert_eq!(file["kind"], "VfProfile");
        assert_eq!(file["spec"]["vlan"], 100);
        assert!(file["metadata"].get("managedFields").is_none());
        assert_eq!(VfProfile::load(&dir, "tenant-a").unwrap().spec.vlan, Some(100));
        std::fs::write(dir.profile("old"), "{}").unwrap();
        prune_profiles(&dir, &["tenant-a".to_owned()].into());
        assert!(!dir.profile("old").exists());
        assert!(dir.profile("tenant-a").exists());
        let mut bad = obj.clone();
        bad.metadata.name = Some("../x".into());
        assert_eq!(mirror_profile(&dir, &bad), None);
    }

    #[test]
    fn notes_are_bounded() {
        assert_eq!(note("x".repeat(10)), "x".repeat(10));
        assert!(note("é".repeat(1000)).len() <= 1024);
    }
}
