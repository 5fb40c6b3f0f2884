//! The node as the plugin sees it: sysfs, namespaces and netlink per namespace. [`RealHost`] is
//! the kernel; the tests implement the same trait over `sriov::fake` (a recording in-memory
//! kernel, `cni/tests/common/host.rs`), so the ADD/DEL/rollback logic is tested without root.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use sriov::netlink::{LinkOps, Netlink};
use sriov::netns::{Netns, NetnsError};
use sriov::sysfs::Sysfs;

use crate::error::{CniError, Code, Result};
use crate::node_config::{NodeConfig, NodeConfigError};

/// What the plugin needs from the node.
pub trait Host {
    /// A namespace handle.
    type Ns: Debug;
    /// Netlink bound to one namespace.
    type Links: LinkOps<Ns = Self::Ns>;

    /// Sysfs (topology: PFs, VFs, drivers).
    fn sysfs(&self) -> &Sysfs;
    /// The namespace the plugin was started in (the runtime's, normally the host's).
    fn host_ns(&self) -> Result<Self::Ns>;
    /// Opens a namespace by path.
    fn open_ns(&self, path: &Path) -> Result<Self::Ns, NetnsError>;
    /// Creates a private, unnamed namespace (gone when the handle is dropped or the process
    /// dies; physical netdevs in it then return to the host namespace).
    fn temp_ns(&self) -> Result<Self::Ns>;
    /// Netlink in `ns`.
    fn links(&self, ns: &Self::Ns) -> Result<Self::Links>;
    /// Writes `/proc/sys/<key>` as seen from inside `ns`.
    fn sysctl(&self, ns: &Self::Ns, key: &str, value: &str) -> Result<()>;
    /// The admin's node configuration ([`NodeConfig`]).
    fn node_config(&self) -> Result<NodeConfig, NodeConfigError>;
}

/// The real node. Netlink sockets of the host and pod namespaces are opened once per
/// invocation and reused (each takes a thread that enters the namespace); those of temporary
/// namespaces are not kept, since a socket keeps its namespace alive.
#[derive(Debug)]
pub struct RealHost {
    sysfs: Sysfs,
    sockets: std::cell::RefCell<Vec<((u64, u64), Netlink)>>,
    node_config: PathBuf,
}

impl Default for RealHost {
    fn default() -> Self {
        Self::with_node_config(vfnet_types::layout::NODE_CONFIG)
    }
}

impl RealHost {
    /// The node under sysfs root `/`, configured by [`vfnet_types::layout::NODE_CONFIG`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The node with its configuration at `path` (tests; the binary takes the fixed path).
    pub fn with_node_config(path: impl Into<PathBuf>) -> Self {
        Self { sysfs: Sysfs::default(), sockets: Default::default(), node_config: path.into() }
    }
}

impl Host for RealHost {
    type Ns = Netns;
    type Links = Netlink;

    fn sysfs(&self) -> &Sysfs {
        &self.sysfs
    }

    fn host_ns(&self) -> Result<Netns> {
        Ok(Netns::current()?)
    }

    fn open_ns(&self, path: &Path) -> Result<Netns, NetnsError> {
        Netns::open(path)
    }

    fn temp_ns(&self) -> Result<Netns> {
        Ok(Netns::create_anonymous()?)
    }

    fn links(&self, ns: &Netns) -> Result<Netlink> {
        let id = ns.id().filter(|_| !ns.is_anonymous());
        if let Some(id) = id
            && let Some((_, nl)) = self.sockets.borrow().iter().find(|(k, _)| *k == id)
        {
            return Ok(nl.clone());
        }
        // The calling thread's own namespace needs no helper thread.
        let own = Netns::current().ok().and_then(|c| c.id());
        let nl = if id.is_some() && id == own { Netlink::new()? } else { Netlink::in_netns(ns)? };
        if let Some(id) = id {
            self.sockets.borrow_mut().push((id, nl.clone()));
        }
        Ok(nl)
    }

    fn node_config(&self) -> Result<NodeConfig, NodeConfigError> {
        NodeConfig::load(&self.node_config)
    }

    fn sysctl(&self, ns: &Netns, key: &str, value: &str) -> Result<()> {
        let path = Path::new("/proc/sys").join(key);
        ns.run(|| std::fs::write(&path, value))?
            .map_err(|e| CniError::new(Code::Kernel, format!("cannot write {value} to {}: {e}", path.display())))
    }
}
