//! vfnet's kubelet device plugin: SR-IOV VFs as node resources, in pools (`VfPool`) advertised
//! as `<prefix>/<resourceName>`.
//!
//! - [`pools`], [`selector`]: the pools file and which VFs each pool selects;
//! - [`node`], [`inventory`], [`health`]: scans of the node, the assignment of VFs to pools, and
//!   each VF's health;
//! - [`server`], [`registration`]: the `DevicePlugin` service of a pool and its life towards
//!   kubelet (serve, register, re-register after a kubelet restart);
//! - [`preferred`], [`allocate`]: GetPreferredAllocation and Allocate;
//! - [`watch`]: what triggers scans (netlink link events, uevents, a timer, pool reloads);
//! - [`metrics`]: Prometheus metrics and `/healthz`;
//! - [`cluster`]: cluster mode (VfProfiles mirrored to files, VfPools selected by the Node's
//!   labels, Events);
//! - [`node_socket`]: `<run-dir>/daemon.sock`, where the CNI plugin asks for a VfProfile not
//!   mirrored yet;
//! - [`dra`]: vfnet as a DRA driver (`vfnet.dev`): pools' devices as `ResourceSlice`s;
//! - [`daemon`]: all of it together; [`config`]: its settings.

// A library crate: every public item says why it is there (`cargo xtask test` denies warnings).
#![warn(missing_docs)]

pub mod allocate;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod dra;
pub mod health;
pub mod inventory;
pub mod metrics;
pub mod node;
pub mod node_socket;
pub mod pools;
pub mod preferred;
pub mod registration;
pub mod selector;
pub mod server;
pub mod watch;

pub use config::Config;
pub use daemon::{DaemonError, DaemonHandle, start};
