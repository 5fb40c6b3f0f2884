//! [`FakeHost`]: the plugin's [`Host`] over [`sriov::fake::FakeNode`], the recording in-memory
//! kernel on a fixture sysfs. Everything the tests inspect, inject or tamper with is the node's
//! (through `Deref`); this only adapts its namespace-level operations to the plugin's seam, with
//! the errors the real host gives ([`RealHost`](vfnet_cni::host::RealHost)).

use std::io;
use std::ops::Deref;
use std::path::Path;
use std::sync::Mutex;

use sriov::fake::{FakeLinks, FakeNode, FakeNs};
use sriov::fixture::FixtureBuilder;
use sriov::netns::NetnsError;
use sriov::sysfs::Sysfs;
use vfnet_cni::error::{CniError, Code, Result};
use vfnet_cni::host::Host;
use vfnet_cni::node_config::{NodeConfig, NodeConfigError};

/// The fake node, as the plugin's host, with the node configuration the plugin reads from it.
/// By default that configuration lets network definitions name the directories (the tests put
/// them in temporary directories); [`FakeHost::set_node_config`] sets an admin's one.
#[derive(Debug)]
pub(crate) struct FakeHost(FakeNode, Mutex<NodeConfig>);

/// What the tests run under unless they say otherwise: overrides allowed.
fn test_node_config() -> NodeConfig {
    NodeConfig { path: "/etc/vfnet/node.json".into(), allow_network_overrides: true, ..NodeConfig::default() }
}

impl FakeHost {
    /// See [`FakeNode::igb`]: one igb PF `pf0` with `num_vfs` VFs on igbvf.
    pub(crate) fn igb(num_vfs: u32) -> Self {
        Self(FakeNode::igb(num_vfs), Mutex::new(test_node_config()))
    }

    /// See [`FakeNode::new`]: a node laid out by `builder`.
    pub(crate) fn new(builder: FixtureBuilder) -> io::Result<Self> {
        FakeNode::new(builder).map(|n| Self(n, Mutex::new(test_node_config())))
    }

    /// The node configuration the plugin reads from now on.
    pub(crate) fn set_node_config(&self, config: NodeConfig) {
        *self.1.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }
}

impl Deref for FakeHost {
    type Target = FakeNode;

    fn deref(&self) -> &FakeNode {
        &self.0
    }
}

impl Host for FakeHost {
    type Ns = FakeNs;
    type Links = FakeLinks;

    fn sysfs(&self) -> &Sysfs {
        self.0.sysfs()
    }

    fn host_ns(&self) -> Result<FakeNs> {
        Ok(self.0.host_ns())
    }

    fn open_ns(&self, path: &Path) -> Result<FakeNs, NetnsError> {
        self.0.open_ns(path)
    }

    fn temp_ns(&self) -> Result<FakeNs> {
        Ok(self.0.temp_ns()?)
    }

    fn links(&self, ns: &FakeNs) -> Result<FakeLinks> {
        Ok(self.0.links(ns)?)
    }

    fn node_config(&self) -> std::result::Result<NodeConfig, NodeConfigError> {
        Ok(self.1.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }

    fn sysctl(&self, ns: &FakeNs, key: &str, value: &str) -> Result<()> {
        // As `RealHost::sysctl` reports a failed write of /proc/sys.
        self.0.sysctl(ns, key, value).map_err(|e| CniError::new(Code::Kernel, e.to_string()))
    }
}
