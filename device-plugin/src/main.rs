//! `vfnet-device-plugin`: the node daemon advertising VF pools to kubelet. Flags (each also an
//! environment variable) become a [`vfnet_device_plugin::Config`]; the library does the rest.
//!
//! Cluster mode (VfPools and VfProfiles from the API server) is on with `--kubeconfig`, or inside
//! a pod (the service account); otherwise the daemon runs on its `--pools` file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};
use vfnet_device_plugin::Config;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// vfnet's kubelet device plugin: advertises SR-IOV VF pools as <prefix>/<resourceName>.
#[derive(Debug, Parser)]
#[command(name = "vfnet-device-plugin", version)]
struct Args {
    /// Pool definitions (VfPool objects), YAML or JSON. Reloaded when it changes and on SIGHUP.
    /// Required without cluster mode; ignored in cluster mode (the cluster's VfPools replace it).
    #[arg(long, env = "VFNET_POOLS", value_name = "FILE")]
    pools: Option<PathBuf>,
    /// Cluster mode with this kubeconfig: VfPools selected by this node's labels, VfProfiles
    /// mirrored into <run-dir>/profiles, Events on the pools. Inside a pod, cluster mode uses the
    /// service account without it.
    #[arg(long, env = "VFNET_KUBECONFIG", value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Resource prefix: pools are advertised as <prefix>/<resourceName>.
    #[arg(long, env = "VFNET_RESOURCE_PREFIX", default_value = crds::GROUP)]
    resource_prefix: String,
    /// kubelet's root directory (sockets go to its device-plugins/).
    #[arg(long, env = "VFNET_KUBELET_DIR", default_value = kubelet_api::KUBELET_ROOT)]
    kubelet_dir: PathBuf,
    /// vfnet's runtime directory (device records go to its devices/, profiles to its profiles/;
    /// the CNI plugin asks for profiles not mirrored yet on its daemon.sock).
    #[arg(long, env = "VFNET_RUN_DIR", default_value = vfnet_types::layout::DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    /// Directory of the device-info files Multus hands to CNI plugins.
    #[arg(long, env = "VFNET_DEVINFO_DIR", default_value = vfnet_device_plugin::config::DEFAULT_DEVINFO_DIR)]
    devinfo_dir: PathBuf,
    /// Root of the node's /sys and /proc (a fake tree in tests).
    #[arg(long, env = "VFNET_SYSFS_ROOT", default_value = "/")]
    sysfs_root: PathBuf,
    /// This node's name (matched as the kubernetes.io/hostname label by pools' nodeSelector).
    /// Required in cluster mode: the Node whose labels select pools.
    #[arg(long, env = "VFNET_NODE_NAME")]
    node_name: Option<String>,
    /// Further node labels for pools' nodeSelector: key=value,key=value (without cluster mode;
    /// in cluster mode the Node's labels count).
    #[arg(long, env = "VFNET_NODE_LABELS", default_value = "")]
    node_labels: String,
    /// Address for /metrics and /healthz, or "off".
    #[arg(long, env = "VFNET_METRICS_ADDR", default_value = vfnet_device_plugin::config::DEFAULT_METRICS_ADDR)]
    metrics_addr: String,
    /// Period of the safety-net rescan (e.g. 10s, 500ms).
    #[arg(long, env = "VFNET_RESCAN_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    rescan_interval: Duration,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(long, env = "VFNET_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, env = "VFNET_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Cluster mode: serve the DRA kubelet plugin `vfnet.dev` and publish `mode: dra` pools as
    /// ResourceSlices ("off" to serve device-plugin pools only).
    #[arg(long, env = "VFNET_DRA", default_value = "on", value_parser = ["on", "off"])]
    dra: String,
    /// Where the DRA driver writes CDI specs.
    #[arg(long, env = "VFNET_CDI_DIR", default_value = vfnet_device_plugin::dra::cdi::DEFAULT_DIR)]
    cdi_dir: PathBuf,
    /// vfnet's durable state directory (the CNI's journals; the DRA checkpoint in dra/).
    #[arg(long, env = "VFNET_STATE_DIR", default_value = vfnet_types::layout::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// The daemon pod's UID (downward API `metadata.uid`): per-pod DRA plugin sockets, for
    /// rolling updates of the daemon without a gap.
    #[arg(long, env = "VFNET_POD_UID")]
    pod_uid: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration such as 10s or 500ms"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    if d.is_zero() {
        return Err("the interval must not be zero".to_owned());
    }
    Ok(d)
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>> {
    s.split(',')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => bail!("--node-labels: {kv:?} is not key=value"),
        })
        .collect()
}

impl Args {
    async fn config(&self) -> Result<Config> {
        let cluster = vfnet_device_plugin::cluster::client_config(self.kubeconfig.as_deref()).await?;
        let pools = match (&self.pools, &cluster) {
            (Some(pools), None) => pools.clone(),
            (None, None) => bail!(
                "--pools is required without cluster mode (--kubeconfig, or running in a pod with a service account)"
            ),
            (Some(pools), Some(_)) => {
                tracing::warn!(pools = %pools.display(), "cluster mode: the cluster's VfPools replace --pools, which is ignored");
                PathBuf::new()
            }
            (None, Some(_)) => PathBuf::new(),
        };
        let mut c = Config::new(pools);
        c.cluster = cluster;
        c.resource_prefix = self.resource_prefix.clone();
        c.kubelet_dir = self.kubelet_dir.clone();
        c.run_dir = vfnet_types::RunDir::new(&self.run_dir);
        c.devinfo_dir = self.devinfo_dir.clone();
        c.sysfs_root = self.sysfs_root.clone();
        c.node_name = self.node_name.clone();
        c.node_labels = parse_labels(&self.node_labels)?;
        c.metrics_addr = match self.metrics_addr.as_str() {
            "off" | "" => None,
            addr => Some(
                addr.parse::<SocketAddr>()
                    .with_context(|| format!("--metrics-addr: {addr:?} is not an address such as 127.0.0.1:9476"))?,
            ),
        };
        c.rescan_interval = self.rescan_interval;
        c.dra = self.dra == "on";
        c.cdi_dir = self.cdi_dir.clone();
        c.state_dir = vfnet_types::StateDir::new(&self.state_dir);
        c.pod_uid = self.pod_uid.clone().filter(|u| !u.is_empty());
        Ok(c)
    }
}

fn init_logging(args: &Args) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("--log-level: {:?} is not a log filter", args.log_level))?;
    // Colours only on a terminal: in a pod, stderr is a pipe to the container log, where escape
    // codes would garble `kubectl logs` (seen on the real node).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

async fn run(args: &Args) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let config = args.config().await?;
    let mut daemon = vfnet_device_plugin::start(config).await?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the pools");
                daemon.reload();
            }
            why = daemon.ended() => anyhow::bail!("{why}"),
        }
    }
    tracing::info!("shutting down");
    daemon.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let started = init_logging(&args).and_then(|()| {
        // Two workers are plenty for a handful of pools; scans run on the blocking pool.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(4)
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        runtime.block_on(run(&args))
    });
    match started {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vfnet-device-plugin: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
