//! The daemon: loads the pools, serves one plugin per pool, and keeps every pool's device list
//! current from scans of the node, triggered by kernel events, a periodic timer and pool reloads.
//!
//! The pools come from the pools file, or in cluster mode ([`Config::cluster`]) from the API
//! server's VfPools (see [`crate::cluster`]); both go through the same reload path.
//!
//! Start-up checks everything first and fails with the first problem (bad prefix, bad pools
//! file, a VF range beyond a PF): a daemon that cannot start cleanly exits. Later reloads that
//! fail keep the last good pools serving. Cluster pools are checked one by one instead: a bad
//! pool is set aside (its last good version stays, if it had one) and reported as an Event.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sriov::sysfs::{Node, Sysfs, SysfsError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::allocate::Paths;
use crate::cluster::{self, ClusterSync, PoolReport, PoolStatus};
use crate::config::{self, Config};
use crate::dra::{self, DraView};
use crate::inventory::{self, Overlap, PoolDevices};
use crate::metrics::{self, Metrics};
use crate::node::{self, NodeView};
use crate::node_socket::{self, NodeSocketError};
use crate::pools::{self, Pool, PoolsError, Refused};
use crate::registration;
use crate::server::{PoolState, Shared};
use crate::watch::{self as events, Trigger};
use crds::pool::PoolMode;

/// How long a burst of triggers is gathered into one scan.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// Why the daemon cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// `--resource-prefix` is not a DNS subdomain.
    #[error("invalid resource prefix {0:?}: expected a DNS subdomain such as vfnet.dev")]
    Prefix(String),
    /// The pools file is unusable.
    #[error(transparent)]
    Pools(#[from] PoolsError),
    /// sysfs could not be read at all.
    #[error("SR-IOV discovery failed: {0}")]
    Discovery(#[from] SysfsError),
    /// A directory could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The metrics address cannot be listened on.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A blocking task died.
    #[error("internal error: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// Cluster mode without a node name.
    #[error("cluster mode needs --node-name (VFNET_NODE_NAME): the Node whose labels select the pools")]
    NodeName,
    /// The Kubernetes client cannot be built from the cluster configuration.
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The node socket cannot be served.
    #[error(transparent)]
    NodeSocket(#[from] NodeSocketError),
    /// The DRA driver cannot start (its checkpoint or CDI directory).
    #[error("cannot start the DRA driver: {0}")]
    Dra(String),
}

/// A running daemon.
#[derive(Debug)]
pub struct DaemonHandle {
    triggers: mpsc::Sender<Trigger>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    metrics_addr: Option<SocketAddr>,
    metrics: Arc<Metrics>,
}

impl DaemonHandle {
    /// Where metrics are served (the bound address: port 0 in the config gets a real port).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The daemon's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Reloads the pools: the file, or in cluster mode the cluster's (what SIGHUP does).
    pub fn reload(&self) {
        let _ = self.triggers.try_send(Trigger::Reload("signal"));
    }

    /// Scans the node now.
    pub fn rescan(&self) {
        let _ = self.triggers.try_send(Trigger::Rescan("request"));
    }

    /// True once the daemon stopped by itself (it does not, short of a bug).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Resolves only if the daemon's task ends by itself, which only a bug does (it runs until
    /// [`DaemonHandle::shutdown`]), saying how it ended. The binary exits then, so kubelet's
    /// restart policy brings a whole daemon back instead of a process serving nothing.
    /// [`DaemonHandle::shutdown`] must not be called after this resolved.
    pub async fn ended(&mut self) -> String {
        match (&mut self.task).await {
            Ok(()) => "the daemon's task stopped by itself".to_owned(),
            Err(e) => format!("the daemon's task failed: {e}"),
        }
    }

    /// Stops serving every pool, removes the sockets, and waits for all of it. A panic of the
    /// daemon's task is raised again here, so neither a test nor the binary passes over it.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

struct PoolHandle {
    resource: String,
    state: watch::Sender<Arc<PoolState>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Where the pools come from.
enum Source {
    /// The pools file.
    File,
    /// The API server.
    Cluster(ClusterSync),
}

struct Daemon {
    config: Config,
    source: Source,
    sysfs: Sysfs,
    device_plugin_dir: PathBuf,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    /// The pools as loaded (all of them), to tell whether a reload changed anything.
    loaded: Vec<Arc<Pool>>,
    /// The pools this node serves.
    pools: Vec<Arc<Pool>>,
    /// Cluster mode: the pools the last cluster reload set aside, reported after the next sync.
    refused: Option<Vec<Refused>>,
    servers: HashMap<String, PoolHandle>,
    stopping: Vec<JoinHandle<()>>,
    /// The node socket's server, awaited at shutdown (it removes the socket).
    node_socket: Option<JoinHandle<()>>,
    overlaps: Vec<Overlap>,
    /// Cluster mode: the DRA pools' devices, for the DRA driver and the slice publisher.
    dra_view: Option<watch::Sender<Arc<DraView>>>,
    stop: CancellationToken,
}

/// Checks the configuration and pools, scans the node, starts serving, and returns a handle.
pub async fn start(config: Config) -> Result<DaemonHandle, DaemonError> {
    if !config::valid_prefix(&config.resource_prefix) {
        return Err(DaemonError::Prefix(config.resource_prefix.clone()));
    }
    let device_plugin_dir = kubelet_api::deviceplugin::device_plugin_dir(&config.kubelet_dir);
    std::fs::create_dir_all(&device_plugin_dir)
        .map_err(|source| DaemonError::Dir { path: device_plugin_dir.clone(), source })?;
    let sysfs = Sysfs::new(&config.sysfs_root);
    let client = match &config.cluster {
        None => None,
        Some(kube_config) => {
            let node = config.node_name.clone().ok_or(DaemonError::NodeName)?;
            Some((kube::Client::try_from(kube_config.clone()).map_err(DaemonError::Client)?, node))
        }
    };
    let (loaded, pools, view) = if client.is_none() {
        let loaded = pools::load(&config.pools_file, &config.resource_prefix)?;
        let view = scan(&sysfs, &loaded).await?;
        pools::check_against_node(&loaded, &view.node, &config.pools_file)?;
        let pools = for_this_node(&config, &loaded);
        (loaded, pools, view)
    } else {
        // Until the API server answers: the cluster pools served before the restart.
        let mut loaded = load_cache(&config);
        let view = scan(&sysfs, &loaded).await?;
        loaded.retain(|p| pools::out_of_range(p, &view.node).is_none());
        (loaded.clone(), loaded, view)
    };

    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    let mut metrics_addr = None;
    if let Some(addr) = config.metrics_addr {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| DaemonError::Metrics { addr, source })?;
        metrics_addr = listener.local_addr().ok();
        let stale_after = (config.rescan_interval * 3).max(Duration::from_secs(30));
        tokio::spawn(metrics::serve(listener, Arc::clone(&metrics), stale_after, stop.child_token()));
        tracing::info!(addr = ?metrics_addr, "serving /metrics and /healthz");
    }
    let shared = Arc::new(Shared {
        paths: Paths {
            run_dir: config.run_dir.clone(),
            devinfo_dir: config.devinfo_dir.clone(),
            dev_root: config.sysfs_root.clone(),
        },
        metrics: Arc::clone(&metrics),
    });
    let (triggers, rx) = mpsc::channel(64);
    let socket = node_socket::bind(&config.run_dir)?;
    let dra_client = client.clone();
    // The DRA plugin's and publisher's tasks, awaited at shutdown (the plugin removes its sockets).
    let mut dra_tasks = Vec::new();
    let source = match client {
        None => Source::File,
        Some((client, node)) => {
            Source::Cluster(cluster::start(client, node, &config.run_dir, triggers.clone(), stop.child_token()))
        }
    };
    let (dra_view, driver) = match (&source, &dra_client) {
        (Source::Cluster(sync), Some((client, node))) if config.dra => {
            let (tx, rx) = watch::channel(Arc::new(DraView::default()));
            let paths = dra::driver::DriverPaths {
                allocate: shared.paths.clone(),
                cdi_dir: config.cdi_dir.clone(),
                checkpoint_dir: config.state_dir.path().join("dra"),
                state_dir: config.state_dir.clone(),
            };
            let driver = dra::driver::Driver::start(client.clone(), paths, rx.clone(), (*sync.profiles).clone())
                .await
                .map_err(DaemonError::Dra)
                .inspect_err(|_| stop.cancel())?;
            let driver = Arc::new(driver);
            let sockets = dra::plugin::Sockets::new(&config.kubelet_dir, config.pod_uid.as_deref());
            dra_tasks.push(tokio::spawn(dra::plugin::run(Arc::clone(&driver), sockets, stop.child_token())));
            dra_tasks.push(tokio::spawn(dra::publish::run(client.clone(), node.clone(), rx, stop.child_token())));
            (Some(tx), Some(driver))
        }
        _ => (None, None),
    };
    let node_socket = Some(match &source {
        Source::File => node_socket::serve(socket, node_socket::FileOnly, None, stop.child_token()),
        Source::Cluster(sync) => node_socket::serve(socket, (*sync.profiles).clone(), driver, stop.child_token()),
    });
    let mut daemon = Daemon {
        source,
        refused: None,
        sysfs,
        device_plugin_dir,
        shared,
        metrics: Arc::clone(&metrics),
        loaded,
        pools,
        servers: HashMap::new(),
        stopping: dra_tasks,
        node_socket,
        overlaps: Vec::new(),
        dra_view,
        stop: stop.clone(),
        config,
    };
    let view = match daemon.create_vfs(&view.node).await {
        Ok(true) => scan(&daemon.sysfs, &daemon.pools).await,
        Ok(false) => Ok(view),
        Err(e) => Err(e),
    };
    // What started (metrics, the node socket, the cluster sync) ends with a failed start.
    let view = view.inspect_err(|_| stop.cancel())?;
    daemon.metrics.rescan(view.took);
    daemon.sync(&view);

    if daemon.config.kernel_events {
        for (what, started) in [
            ("link events", events::link_events(triggers.clone(), stop.child_token())),
            ("uevents", events::uevents(triggers.clone(), stop.child_token())),
        ] {
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot listen to {what}; the periodic rescan remains");
            }
        }
    }
    events::periodic(triggers.clone(), daemon.config.rescan_interval, stop.child_token());
    if matches!(daemon.source, Source::File) {
        events::file_changes(
            triggers.clone(),
            daemon.config.pools_file.clone(),
            daemon.config.pools_check_interval,
            stop.child_token(),
        );
    }
    let task = tokio::spawn(daemon.run(rx));
    Ok(DaemonHandle { triggers, stop, task, metrics_addr, metrics })
}

/// Scans the node on a blocking thread.
async fn scan(sysfs: &Sysfs, pools: &[Arc<Pool>]) -> Result<NodeView, DaemonError> {
    let sysfs = sysfs.clone();
    // DRA pools publish each VF's link type as an attribute.
    let link_types = pools.iter().any(|p| p.selector.needs_link_types() || p.spec.mode == PoolMode::Dra);
    Ok(tokio::task::spawn_blocking(move || node::scan(&sysfs, link_types)).await??)
}

/// The cluster pools cached by the last run (`<run-dir>/cluster-pools.json`); none if there is
/// no usable cache.
fn load_cache(config: &Config) -> Vec<Arc<Pool>> {
    let path = cache_path(config);
    if !path.exists() {
        return Vec::new();
    }
    match pools::load(&path, &config.resource_prefix) {
        Ok(pools) => {
            if !pools.is_empty() {
                tracing::info!(pools = pools.len(), "serving the cached cluster pools until the API server answers");
            }
            pools
        }
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the cluster pools cache");
            Vec::new()
        }
    }
}

fn cache_path(config: &Config) -> PathBuf {
    config.run_dir.cluster_pools_cache()
}

/// Caches the cluster pools on a blocking thread (the write fsyncs the file and its directory).
async fn store_cache(path: PathBuf, pools: Vec<Arc<Pool>>) {
    match tokio::task::spawn_blocking(move || sriov::persist::write_json(&path, &pools::to_objects(&pools))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot cache the cluster pools"),
        Err(e) => tracing::error!(error = %e, "the task caching the cluster pools failed"),
    }
}

fn for_this_node(config: &Config, loaded: &[Arc<Pool>]) -> Vec<Arc<Pool>> {
    let labels = config.labels();
    loaded
        .iter()
        .filter(|p| {
            let selected = p.spec.selects_node(&labels);
            if !selected {
                tracing::info!(pool = %p, "pool's nodeSelector does not select this node");
            }
            selected
        })
        .cloned()
        .collect()
}

impl Daemon {
    async fn run(mut self, mut rx: mpsc::Receiver<Trigger>) {
        loop {
            let first = tokio::select! {
                t = rx.recv() => match t { Some(t) => t, None => break },
                () = self.stop.cancelled() => break,
            };
            tokio::time::sleep(DEBOUNCE).await;
            let mut reload = matches!(first, Trigger::Reload(_));
            self.metrics.event(first.source());
            while let Ok(t) = rx.try_recv() {
                reload |= matches!(t, Trigger::Reload(_));
                self.metrics.event(t.source());
            }
            if reload {
                self.reload().await;
            }
            match scan(&self.sysfs, &self.pools).await {
                Ok(view) => {
                    self.metrics.rescan(view.took);
                    self.sync(&view);
                }
                Err(e) => tracing::error!(error = %e, "node scan failed; keeping the last device lists"),
            }
            self.report();
        }
        self.shutdown().await;
    }

    /// Reloads the pools (from the file or the cluster).
    async fn reload(&mut self) {
        if matches!(self.source, Source::Cluster(_)) {
            self.reload_cluster().await;
        } else {
            self.reload_file().await;
        }
    }

    /// Applies the cluster pools selected for this node. Each pool is checked on its own: a bad
    /// one is set aside with its reason (keeping its last good version if it had one), the others
    /// are served.
    async fn reload_cluster(&mut self) {
        let Source::Cluster(sync) = &self.source else { return };
        let Some(desired) = sync.desired.borrow().clone() else {
            tracing::debug!("cluster pools not listed yet");
            return;
        };
        let (mut loaded, mut refused) = pools::from_cluster(&desired, &self.config.resource_prefix);
        let view = match scan(&self.sysfs, &loaded).await {
            Ok(view) => view,
            Err(e) => {
                self.metrics.reload(false);
                tracing::error!(error = %e, "node scan failed; keeping the current pools");
                return;
            }
        };
        loaded.retain(|p| match pools::out_of_range(p, &view.node) {
            Some((key, e)) => {
                refused.push(Refused { name: p.name.clone(), reason: format!("{key}: {e}") });
                false
            }
            None => true,
        });
        for r in &mut refused {
            let last_good = self.loaded.iter().find(|p| p.name == r.name);
            match last_good {
                Some(p) if !loaded.iter().any(|q| q.resource == p.resource) => {
                    tracing::warn!(pool = %r.name, reason = %r.reason, "VfPool refused; keeping its last good version");
                    loaded.push(Arc::clone(p));
                    r.reason.push_str(" (its last good version stays advertised)");
                }
                _ => tracing::warn!(pool = %r.name, reason = %r.reason, "VfPool refused"),
            }
        }
        loaded.sort_by(|a, b| a.name.cmp(&b.name));
        self.metrics.reload(refused.is_empty());
        self.refused = Some(refused);
        if loaded == self.loaded {
            tracing::debug!("cluster pools unchanged");
            return;
        }
        tracing::info!(
            pools = loaded.len(),
            names = %loaded.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(","),
            "cluster pools applied"
        );
        store_cache(cache_path(&self.config), loaded.clone()).await;
        self.pools = loaded.clone();
        self.loaded = loaded;
        if let Err(e) = self.create_vfs(&view.node).await {
            tracing::error!(error = %e, "creating VFs for numVfs failed");
        }
    }

    /// Cluster mode, after a reload and the sync that follows it: every selected pool's state on
    /// this node, for the Events.
    fn report(&mut self) {
        let Source::Cluster(sync) = &self.source else { return };
        let Some(refused) = self.refused.take() else { return };
        let mut reports: Vec<PoolReport> = refused
            .into_iter()
            .map(|r| PoolReport { pool: r.name, status: PoolStatus::Invalid { reason: r.reason }, devices: 0 })
            .collect();
        for pool in &self.pools {
            if reports.iter().any(|r| r.pool == pool.name) {
                continue;
            }
            let (resource, devices) = match (&self.dra_view, &self.config.node_name) {
                (Some(view), Some(node)) if pool.spec.mode == PoolMode::Dra => {
                    let name = dra::slices::pool_name(node, &pool.name);
                    let devices = view.borrow().pools.get(&name).map_or(0, |s| s.devices.devices.len());
                    (format!("ResourceSlices of {} (pool {name})", dra::slices::DRIVER), devices)
                }
                _ => (
                    pool.resource.clone(),
                    self.servers.get(&pool.name).map_or(0, |h| h.state.borrow().devices.devices.len()),
                ),
            };
            reports.push(PoolReport { pool: pool.name.clone(), status: PoolStatus::Advertised { resource }, devices });
        }
        let _ = sync.reports.send(reports);
    }

    /// Reloads the pools file; a bad file is logged and counted, and the last good pools stay.
    async fn reload_file(&mut self) {
        let (path, prefix) = (self.config.pools_file.clone(), self.config.resource_prefix.clone());
        let read = tokio::task::spawn_blocking(move || pools::load(&path, &prefix)).await;
        let path = &self.config.pools_file;
        let loaded = match read.map_err(DaemonError::from).and_then(|r| r.map_err(DaemonError::from)) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.metrics.reload(false);
                tracing::error!(error = %e, "pools file rejected; keeping the last good pools");
                return;
            }
        };
        if loaded == self.loaded {
            tracing::debug!("pools file unchanged");
            return;
        }
        let checked = match scan(&self.sysfs, &loaded).await {
            Ok(view) => pools::check_against_node(&loaded, &view.node, path).map(|()| view).map_err(DaemonError::from),
            Err(e) => Err(e),
        };
        match checked {
            Ok(view) => {
                self.metrics.reload(true);
                tracing::info!(pools = loaded.len(), "pools file reloaded");
                self.pools = for_this_node(&self.config, &loaded);
                self.loaded = loaded;
                if let Err(e) = self.create_vfs(&view.node).await {
                    tracing::error!(error = %e, "creating VFs for numVfs failed");
                }
            }
            Err(e) => {
                self.metrics.reload(false);
                tracing::error!(error = %e, "pools file rejected; keeping the last good pools");
            }
        }
    }

    /// For pools with `numVfs`: creates VFs on the PFs they name that have none. Returns whether
    /// it created any.
    async fn create_vfs(&self, node: &Node) -> Result<bool, DaemonError> {
        let mut work = Vec::new();
        for pool in self.pools.iter().filter(|p| p.spec.num_vfs.is_some()) {
            let wanted = pool.spec.num_vfs.unwrap_or(0);
            for pf in node.pfs.iter().filter(|pf| pf.num_vfs == 0 && pool.selector.names_pf(pf)) {
                if !work.iter().any(|(pci, _, _)| *pci == pf.pci) {
                    work.push((pf.pci, wanted.min(pf.total_vfs), pool.name.clone()));
                }
            }
        }
        if work.is_empty() {
            return Ok(false);
        }
        let sysfs = self.sysfs.clone();
        tokio::task::spawn_blocking(move || {
            for (pf, n, pool) in work {
                match sysfs.set_num_vfs(&pf, n) {
                    Ok(()) => tracing::info!(%pf, vfs = n, %pool, "created VFs for the pool's numVfs"),
                    Err(e) => tracing::error!(%pf, %pool, error = %e, "cannot create VFs for the pool's numVfs"),
                }
            }
        })
        .await?;
        Ok(true)
    }

    /// Brings every pool's server and device list in line with `view` and the current pools.
    fn sync(&mut self, view: &NodeView) {
        let inv = inventory::build(&self.pools, view);
        let wanted: HashMap<&str, &str> = self
            .pools
            .iter()
            .filter(|p| p.spec.mode == PoolMode::DevicePlugin)
            .map(|p| (p.name.as_str(), p.resource.as_str()))
            .collect();
        let metrics = Arc::clone(&self.metrics);
        let mut stopped = Vec::new();
        self.servers.retain(|name, h| {
            let keep = wanted.get(name.as_str()) == Some(&h.resource.as_str());
            if !keep {
                tracing::info!(pool = %name, resource = %h.resource, "pool removed: stopping its server");
                // An empty list first: kubelet's ListAndWatch gets it before the stream ends
                // (`server::ListWatch`), so the Node's capacity drops at once.
                h.state.send_modify(|s| *s = Arc::new(s.emptied()));
                h.stop.cancel();
                metrics.remove_pool(&h.resource);
            }
            keep
        });
        for (name, h) in std::mem::take(&mut self.servers) {
            if h.stop.is_cancelled() {
                stopped.push(h.task);
            } else {
                self.servers.insert(name, h);
            }
        }
        self.stopping.extend(stopped);
        self.stopping.retain(|t| !t.is_finished());

        let mut dra_pools = std::collections::BTreeMap::new();
        for (pool, devices) in self.pools.iter().zip(inv.pools) {
            self.metrics.set_pool(&pool.resource, devices.devices.len(), devices.healthy());
            let state = PoolState { pool: Arc::clone(pool), devices };
            if pool.spec.mode == PoolMode::Dra {
                if let Some(node) = &self.config.node_name {
                    dra_pools.insert(dra::slices::pool_name(node, &pool.name), state);
                }
                continue;
            }
            match self.servers.get(&pool.name) {
                Some(h) => {
                    h.state.send_if_modified(|current| {
                        if **current == state {
                            return false;
                        }
                        log_changes(current, &state);
                        *current = Arc::new(state);
                        true
                    });
                }
                None => {
                    tracing::info!(
                        pool = %pool,
                        devices = state.devices.devices.len(),
                        healthy = state.devices.healthy(),
                        "pool added"
                    );
                    log_unhealthy(&pool.name, &state.devices);
                    let (tx, rx) = watch::channel(Arc::new(state));
                    let stop = self.stop.child_token();
                    let task = tokio::spawn(registration::run(
                        self.device_plugin_dir.clone(),
                        rx,
                        Arc::clone(&self.shared),
                        stop.clone(),
                    ));
                    self.servers.insert(
                        pool.name.clone(),
                        PoolHandle { resource: pool.resource.clone(), state: tx, stop, task },
                    );
                }
            }
        }
        if let Some(tx) = &self.dra_view {
            let fresh = DraView { pools: dra_pools };
            tx.send_if_modified(|current| {
                if **current == fresh {
                    return false;
                }
                for (name, state) in &fresh.pools {
                    if current.pools.get(name) == Some(state) {
                        continue;
                    }
                    let devices = state.devices.devices.len();
                    let healthy = state.devices.healthy();
                    tracing::info!(pool = %name, devices, healthy, "DRA pool devices");
                    log_unhealthy(name, &state.devices);
                }
                *current = Arc::new(fresh);
                true
            });
        }
        if inv.overlaps != self.overlaps {
            for o in &inv.overlaps {
                tracing::warn!(vf = %o.vf, owner = %o.owner, other = %o.other, "VF selected by two pools: the first one gets it");
            }
            self.overlaps = inv.overlaps;
        }
    }

    async fn shutdown(mut self) {
        tracing::info!("stopping: removing the pools' sockets");
        let mut tasks: Vec<JoinHandle<()>> = std::mem::take(&mut self.stopping);
        tasks.extend(self.node_socket.take());
        if let Source::Cluster(sync) = &mut self.source {
            tasks.append(&mut sync.tasks);
        }
        for (_, h) in self.servers.drain() {
            h.stop.cancel();
            tasks.push(h.task);
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Each unhealthy device with its reason, so an operator seeing allocatable below capacity
/// learns why from the daemon's log (a PF left down, a VF on the wrong driver).
fn log_unhealthy(pool: &str, devices: &PoolDevices) {
    for d in devices.devices.iter().filter(|d| !d.health.is_healthy()) {
        tracing::info!(%pool, device = %d.pci, health = %d.health, "device not usable");
    }
}

fn log_changes(old: &PoolState, new: &PoolState) {
    let pool = &new.pool;
    for d in &new.devices.devices {
        match old.devices.get(&d.pci.to_string()) {
            None => tracing::info!(pool = %pool.name, device = %d.pci, health = %d.health, "device appeared"),
            Some(o) if o.health != d.health => {
                tracing::info!(pool = %pool.name, device = %d.pci, health = %d.health, "device health changed");
            }
            Some(_) => {}
        }
    }
    for d in &old.devices.devices {
        if new.devices.get(&d.pci.to_string()).is_none() {
            tracing::info!(pool = %pool.name, device = %d.pci, "device vanished");
        }
    }
    tracing::info!(
        pool = %pool.name,
        devices = new.devices.devices.len(),
        healthy = new.devices.healthy(),
        "device list changed"
    );
}
