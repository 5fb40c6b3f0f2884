//! Test-only crash points. With the `test-hooks` feature, `VFNET_FAULT=<point>` makes the
//! plugin abort there, as a crash or an OOM kill would; DEL must then put the VF back. Without
//! the feature (every release build) [`point`] compiles to nothing.

/// The crash points of ADD, in the order ADD passes them.
pub const ADD_POINTS: &[&str] = &[
    "journaled",
    "pf-partial",
    "pf-configured",
    "moved-to-temp",
    "renamed",
    "moved-to-pod",
    "netdev-configured",
    "ipam-added",
    "addresses",
    "device-info",
    "complete",
];

/// A crash point.
#[cfg(feature = "test-hooks")]
pub fn point(name: &str) {
    if std::env::var("VFNET_FAULT").is_ok_and(|v| v == name) {
        eprintln!("vfnet: fault injection: aborting at {name}");
        std::process::abort();
    }
}

/// A crash point (compiled out).
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn point(_name: &str) {}
