//! The daemon's settings (the binary fills them from flags and environment variables).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use vfnet_types::{RunDir, StateDir};

/// Where Multus looks for the device-info files of device plugins (its device-info spec).
pub const DEFAULT_DEVINFO_DIR: &str = vfnet_types::layout::DEVINFO_DEVICE_PLUGIN_DIR;
/// The default `/metrics` and `/healthz` address.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9476";
use std::time::Duration;

/// Everything the daemon needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// The pools file (YAML or JSON). Unused in cluster mode.
    pub pools_file: PathBuf,
    /// Cluster mode: the API server to sync profiles, pools and the node's labels with (see
    /// [`crate::cluster`]); `None`: the pools file alone.
    pub cluster: Option<kube::Config>,
    /// Resource prefix: pools are advertised as `<prefix>/<resourceName>`.
    pub resource_prefix: String,
    /// kubelet's root directory; sockets go to `<kubelet_dir>/device-plugins/`.
    pub kubelet_dir: PathBuf,
    /// vfnet's runtime directory: device records, mirrored profiles, the node socket.
    pub run_dir: RunDir,
    /// Where device-info files for Multus go.
    pub devinfo_dir: PathBuf,
    /// Root of the node's sysfs (and `proc/net/`): `/` on a node.
    pub sysfs_root: PathBuf,
    /// This node's name (the `kubernetes.io/hostname` label for node selectors; in cluster mode,
    /// required: the Node whose labels select pools, and the Events' reporting instance).
    pub node_name: Option<String>,
    /// Further node labels pools' node selectors are matched against (file mode; in cluster mode
    /// the Node's labels are used).
    pub node_labels: BTreeMap<String, String>,
    /// Where `/metrics` and `/healthz` are served; `None`: nowhere.
    pub metrics_addr: Option<SocketAddr>,
    /// The safety-net rescan period.
    pub rescan_interval: Duration,
    /// How often the pools file is checked for changes.
    pub pools_check_interval: Duration,
    /// Listen to netlink link events and uevents (off only for tests that want the periodic
    /// rescan alone).
    pub kernel_events: bool,
    /// Cluster mode: serve the DRA kubelet plugin and publish the `mode: dra` pools as
    /// ResourceSlices.
    pub dra: bool,
    /// Where the DRA driver writes CDI specs (a tmpfs on most nodes: rewritten from the
    /// checkpoint at start).
    pub cdi_dir: PathBuf,
    /// vfnet's durable state: the CNI's journals (a VF with one is attached), and the DRA
    /// checkpoint under `dra/`.
    pub state_dir: StateDir,
    /// The daemon pod's UID (downward API): the DRA plugin's sockets are then per pod, so a new
    /// daemon pod registers beside the old one during a rolling update.
    pub pod_uid: Option<String>,
}

impl Config {
    /// The defaults the binary documents, for pools file `pools_file`.
    pub fn new(pools_file: impl Into<PathBuf>) -> Self {
        Self {
            pools_file: pools_file.into(),
            cluster: None,
            resource_prefix: crds::GROUP.to_owned(),
            kubelet_dir: PathBuf::from(kubelet_api::KUBELET_ROOT),
            run_dir: RunDir::default(),
            devinfo_dir: PathBuf::from(DEFAULT_DEVINFO_DIR),
            sysfs_root: PathBuf::from("/"),
            node_name: None,
            node_labels: BTreeMap::new(),
            metrics_addr: DEFAULT_METRICS_ADDR.parse().ok(),
            rescan_interval: Duration::from_secs(10),
            pools_check_interval: Duration::from_secs(1),
            kernel_events: true,
            dra: true,
            cdi_dir: PathBuf::from(crate::dra::cdi::DEFAULT_DIR),
            state_dir: StateDir::default(),
            pod_uid: None,
        }
    }

    /// The labels node selectors see: `node_labels` plus `kubernetes.io/hostname`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.node_labels.clone();
        if let Some(name) = &self.node_name {
            labels.entry("kubernetes.io/hostname".to_owned()).or_insert_with(|| name.clone());
        }
        labels
    }
}

/// True if `prefix` can be the domain of an extended resource name: a DNS subdomain (lower-case
/// letters, digits, `-` and `.`, at most 253 characters, alphanumeric at both ends).
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 253
        && prefix.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
