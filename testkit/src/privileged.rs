//! Guards for host tests that need what a plain `cargo test` does not have: root (network
//! namespaces, veths), or a system program that `cargo xtask test` installs (Debian's CNI
//! plugins).
//!
//! Such a test is `#[ignore = "privileged: …; cargo xtask test runs it"]`, so a plain `cargo test`
//! lists it as ignored *with that reason* instead of passing it silently, and `cargo xtask test`
//! runs every `#[ignore]`d host test explicitly (`--ignored`). Once a test runs, its requirements
//! are facts, not options: the guards here panic, naming the test and what is missing, so a run
//! without privileges cannot come out green by accident.
//!
//! The one allowed skip is a kernel that lacks a feature (a module not built), detected by the one
//! errno that means exactly that ([`kernel_lacks`]); it is written where the runner shows it, and
//! under `cargo xtask test` it fails too, since the suite's machines have every feature it tests.

use std::io::Write;
use std::path::Path;

/// Set (to `1`) by `cargo xtask test` when it runs the privileged tests: there, a kernel feature
/// a test needs is required, not skipped (see [`kernel_lacks`]).
pub const REQUIRE_KERNEL_FEATURES_ENV: &str = "VFNET_REQUIRE_KERNEL_FEATURES";

/// The running test's name: libtest runs each test on a thread named after it.
fn test_name() -> String {
    std::thread::current().name().unwrap_or("this test").to_owned()
}

/// Fails the running test unless the process is root (effective uid 0): creating network
/// namespaces (`unshare(CLONE_NEWNET)`) and links in them needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
#[track_caller]
pub fn require_root() {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "{}: privileged test run without root (euid {euid}): it needs root to create network namespaces and \
         veths; run it as root, as `cargo xtask test` does",
        test_name()
    );
}

/// Fails the running test unless `program` is a file; `provider` says where it comes from (a
/// package that `cargo xtask test` installs).
#[track_caller]
pub fn require_program(program: &Path, provider: &str) {
    assert!(
        program.is_file(),
        "{}: {} is absent ({provider}); install it, or run `cargo xtask test`, which does",
        test_name(),
        program.display()
    );
}

/// The running kernel lacks `feature`, as `why` (the kernel's answer) shows: returns normally so
/// the caller can end the test as a skip, after writing the skip to the real stderr (which
/// libtest does not capture, so it shows even when the test passes). Under `cargo xtask test`
/// ([`REQUIRE_KERNEL_FEATURES_ENV`]) it panics instead: there, every tested feature is required.
///
/// Call it only for the one errno that means the feature is missing, never for any error of the
/// operation under test.
#[track_caller]
pub fn kernel_lacks(feature: &str, why: &dyn std::fmt::Display) {
    let test = test_name();
    assert!(
        std::env::var_os(REQUIRE_KERNEL_FEATURES_ENV).is_none(),
        "{test}: this kernel lacks {feature} ({why}), which cargo xtask test requires"
    );
    // Not `eprintln!`: libtest captures that and shows it only for failing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: this kernel lacks {feature} ({why})");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(
        expected = "a_missing_program_fails_the_test_by_name: /nonexistent/host-local is absent (a package)"
    )]
    fn a_missing_program_fails_the_test_by_name() {
        require_program(Path::new("/nonexistent/host-local"), "a package");
    }

    #[test]
    fn a_present_program_passes() {
        require_program(Path::new("/proc/self/exe"), "the test itself");
    }
}
