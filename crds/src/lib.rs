//! vfnet's custom resources, API group `vfnet.dev`, version `v1alpha1`, both cluster-scoped:
//!
//! - [`profile::VfProfileSpec`] (`VfProfile`): the VLAN and VF settings a network gets, and which
//!   namespaces may use it. Read by the CNI plugin from `<profileDir>/<name>.json`.
//! - [`pool::VfPoolSpec`] (`VfPool`): which VFs become which node resource on which nodes, and
//!   whether the device plugin (a kubelet resource) or the DRA driver `vfnet.dev`
//!   (ResourceSlices) offers them (`mode`). Read by the node daemon.
//!
//! Beside them, [`vfconfig::VfConfig`] is not a resource but the DRA driver's opaque
//! configuration (a DeviceClass's or ResourceClaim's `config[].opaque.parameters`), with the
//! rules that govern it ([`vfconfig::parse`], [`vfconfig::merge`], [`vfconfig::govern`]): the CNI
//! plugin's rules for a profile on a pool, with the CNI's wording and error codes.
//!
//! The spec types derive `kube::CustomResource` and `schemars::JsonSchema` (without a Kubernetes
//! client: the binaries that talk to the API server bring their own), so the generated
//! [`VfProfile`] and [`VfPool`] are what the API serves, with OpenAPI validation: ranges, enums,
//! patterns and, as CEL rules (`x-kubernetes-validations`), the cross-field rules. The node side
//! still checks hand-written files with the specs' `validate()` methods.
//!
//! [`crd`] renders the CustomResourceDefinitions and the VfConfig JSON schema;
//! `cargo run -p vfnet-crds --bin crdgen` writes them to `crds/` and `manifests/crds/`, and
//! `cargo xtask test` fails when those are stale.

// A library crate: every public item says why it is there (`cargo xtask test` denies warnings).
#![warn(missing_docs)]

pub mod crd;
pub mod pool;
pub mod profile;
pub mod vfconfig;

pub use pool::VfPool;
pub use profile::VfProfile;
pub use vfconfig::VfConfig;

/// The API group.
pub const GROUP: &str = "vfnet.dev";
/// The served version.
pub const VERSION: &str = "v1alpha1";

/// True if `name` is a Kubernetes object name (an RFC 1123 subdomain: lower-case letters,
/// digits, '-' and '.', at most 253 characters), as pools and profiles are named.
pub(crate) fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}
