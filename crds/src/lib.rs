//! vfnet's custom resources, API group `vfnet.dev`, version `v1alpha1`, both cluster-scoped:
//!
//! - [`profile::VfProfileSpec`] (`VfProfile`): the VLAN and VF settings a network gets, and which
//!   namespaces may use it. Read by the CNI plugin from `<profileDir>/<name>.json`.
//! - [`pool::VfPoolSpec`] (`VfPool`): which VFs become which kubelet resource on which nodes.
//!   Read by the device plugin.
//!
//! The spec types are plain serde types so the CNI plugin can read them without a Kubernetes
//! client; the cluster-side derive (`kube::CustomResource`, OpenAPI schema) comes with the CRD
//! issue.

pub mod pool;
pub mod profile;

/// The API group.
pub const GROUP: &str = "vfnet.dev";
/// The served version.
pub const VERSION: &str = "v1alpha1";
