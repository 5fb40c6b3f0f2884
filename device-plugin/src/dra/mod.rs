//! vfnet as a DRA driver: the node daemon publishes the VFs of its `mode: dra` pools as
//! `ResourceSlice`s (`resource.k8s.io/v1`) of the driver `vfnet.dev`, so the scheduler allocates
//! VFs to `ResourceClaim`s by their attributes instead of counting an extended resource, and it
//! is the kubelet plugin that prepares those claims.
//!
//! - [`slices`]: one pool's devices as `ResourceSlice`s, as a pure function (names, labels,
//!   attributes, chunking), and the comparison that tells the publisher whether anything changed;
//! - [`publish`]: keeps the node's slices in line with every rescan;
//! - [`claims`]: what a claim's allocation asks of vfnet (devices, opaque configurations);
//! - [`driver`]: prepare, unprepare, the pods' prepared VFs for the CNI, claim device status;
//! - [`cdi`], [`checkpoint`]: what the container gets, and what survives restarts and reboots;
//! - [`plugin`]: kubelet's side: registration, the DRA service, the health stream; [`authority`]:
//!   the HTTP/2 rewrite kubelet's plugin watcher needs.
//!
//! The same scans feed both APIs: [`DraView`] is to the DRA pools what a pool's
//! [`crate::server::PoolState`] is to its device-plugin server.

use std::collections::BTreeMap;

use crate::server::PoolState;

pub mod authority;
pub mod cdi;
pub mod checkpoint;
pub mod claims;
pub mod driver;
pub mod plugin;
pub mod publish;
pub mod slices;

/// The DRA pools of this node and their devices, by DRA pool name ([`slices::pool_name`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DraView {
    /// Each pool with its devices now.
    pub pools: BTreeMap<String, PoolState>,
}
