//! Test support shared by vfnet's crates and its end-to-end suite. Nothing here is product code:
//! the crates take it as a dev-dependency (the e2e crate as a dependency), never a product binary.

// A library crate: every public item says why it is there (`cargo xtask test` denies warnings).
#![warn(missing_docs)]

pub mod apiserver;
pub mod kubelet;
pub mod privileged;
