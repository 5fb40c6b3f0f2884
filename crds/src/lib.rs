//! vfnet's custom resources, API group `vfnet.dev`, version `v1alpha1`, both cluster-scoped:
//!
//! - [`profile::VfProfileSpec`] (`VfProfile`): the VLAN and VF settings a network gets, and which
//!   namespaces may use it. Read by the CNI plugin from `<profileDir>/<name>.json`.
//! - [`pool::VfPoolSpec`] (`VfPool`): which VFs become which kubelet resource on which nodes.
//!   Read by the device plugin.
//!
//! The spec types derive `kube::CustomResource` and `schemars::JsonSchema` (without a Kubernetes
//! client: the binaries that talk to the API server bring their own), so the generated
//! [`VfProfile`] and [`VfPool`] are what the API serves, with OpenAPI validation: ranges, enums,
//! patterns and, as CEL rules (`x-kubernetes-validations`), the cross-field rules. The node side
//! still checks hand-written files with the specs' `validate()` methods.
//!
//! [`crd`] renders the CustomResourceDefinitions; `cargo run -p vfnet-crds --bin crdgen` writes
//! them to `crds/` and `manifests/crds/`, and `cargo xtask test` fails when those are stale.

// A library crate: every public item says why it is there (`cargo xtask test` denies warnings).
#![warn(missing_docs)]

pub mod crd;
pub mod pool;
pub mod profile;

pub use pool::VfPool;
pub use profile::VfProfile;

/// The API group.
pub const GROUP: &str = "vfnet.dev";
/// The served version.
pub const VERSION: &str = "v1alpha1";
