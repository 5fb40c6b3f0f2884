//! The privileged host tests: every `#[ignore]`d test outside the e2e package. They need what a
//! plain `cargo test` does not have (root for network namespaces and veths; Debian's CNI plugins,
//! which vm-setup installs), so a plain `cargo test` lists them as ignored with their reason, and
//! `cargo xtask test` runs exactly those (`--ignored`) after the ordinary host tests.
//!
//! Which tests these are lives in one place, their `#[ignore = "…"]` attributes: xtask finds them
//! by asking each host test executable for its ignored tests (`--list --ignored`), so there is no
//! list here to fall out of date, and a new privileged test cannot be skipped by forgetting one.

use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{E2E_PACKAGE, HOST_TEST_ARGS, ignored_tests};
use crate::{
    cargo::{self, Executable, cargo_locked},
    cmd::run,
};

/// Read by `vfnet_testkit::privileged::kernel_lacks` (its `REQUIRE_KERNEL_FEATURES_ENV`): under
/// xtask, a kernel feature a test needs (macvtap) is required, not skipped, since the suite's
/// machines (Debian's kernel) have every one of them.
const REQUIRE_KERNEL_FEATURES_ENV: &str = "VFNET_REQUIRE_KERNEL_FEATURES";

/// One host test executable's ignored tests.
#[derive(Debug)]
pub(super) struct Privileged {
    exe: Executable,
    tests: Vec<String>,
}

impl Privileged {
    /// `package/target`, as the reports name the executable.
    fn label(&self) -> String {
        format!("{}/{}", self.exe.package, self.exe.target)
    }
}

/// Builds the host test executables, with the host tests' own cargo command so the build is the
/// one already made (cached), and lists each one's ignored tests. The e2e package's ignored tests
/// are its VM tests, run in the VM, not here.
pub(super) fn list() -> Result<Vec<Privileged>> {
    let executables = cargo::build(cargo_locked("test").args(HOST_TEST_ARGS).arg("--no-run"))?;
    let mut found = Vec::new();
    for exe in executables.into_iter().filter(|exe| exe.test && exe.package != E2E_PACKAGE) {
        let tests = ignored_tests(&exe)?;
        if !tests.is_empty() {
            found.push(Privileged { exe, tests });
        }
    }
    Ok(found)
}

/// Runs every privileged test, each executable's with `--ignored`; reports every executable that
/// failed, not only the first.
pub(super) fn run_all(privileged: &[Privileged]) -> Result<()> {
    if privileged.is_empty() {
        bail!("found no privileged host tests (no #[ignore]d test outside {E2E_PACKAGE}): the veth tests are gone?");
    }
    let mut failed = Vec::new();
    for p in privileged {
        println!("    {}: {} privileged test(s)", p.label(), p.tests.len());
        let result = run(Command::new(&p.exe.path)
            .arg("--ignored")
            .current_dir(&p.exe.package_dir)
            .env(REQUIRE_KERNEL_FEATURES_ENV, "1"));
        if let Err(e) = result {
            println!("    {}: {e:#}", p.label());
            failed.push(p.label());
        }
    }
    if !failed.is_empty() {
        bail!("privileged tests failed in {}", failed.join(", "));
    }
    let total: usize = privileged.iter().map(|p| p.tests.len()).sum();
    println!("    ran {total} privileged test(s) in {} executable(s)", privileged.len());
    Ok(())
}

/// The process's effective uid, from `/proc/self/status`.
pub(super) fn effective_uid() -> Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    effective_uid_in(&status).context("no Uid: line in /proc/self/status")
}

/// The effective uid in a `/proc/<pid>/status` text: the second field of `Uid:` (real,
/// effective, saved, filesystem; proc(5)).
fn effective_uid_in(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Why `cargo xtask test` will not start as non-root, naming the privileged tests it could not
/// run (`listing`: those tests, or why they could not be listed; `None` for `--vm-only`).
pub(super) fn not_root_message(euid: u32, listing: Option<&Result<Vec<Privileged>>>) -> String {
    let mut message = format!(
        "cargo xtask test must run as root (effective uid is {euid}): vm-setup installs packages, the VM tests \
         configure VFs, and the privileged host tests create network namespaces and veths"
    );
    match listing {
        None => {}
        Some(Ok(privileged)) => {
            let total: usize = privileged.iter().map(|p| p.tests.len()).sum();
            message.push_str(&format!("; as uid {euid} these {total} privileged test(s) cannot run:"));
            for p in privileged {
                for test in &p.tests {
                    message.push_str(&format!("\n    {}::{test}", p.label()));
                }
            }
        }
        Some(Err(e)) => message.push_str(&format!("; listing the privileged tests failed too: {e:#}")),
    }
    message
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn reads_the_effective_uid() {
        let status = "Name:\tcargo\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid_in(status), Some(0));
        assert_eq!(effective_uid_in("Uid:\t1000\t1001\t1000\t1000\n"), Some(1001));
        assert_eq!(effective_uid_in("Name:\tx\n"), None);
        assert!(effective_uid().is_ok());
    }

    fn privileged(package: &str, target: &str, tests: &[&str]) -> Privileged {
        Privileged {
            exe: Executable {
                package: package.into(),
                target: target.into(),
                test: true,
                path: PathBuf::from("/t"),
                package_dir: PathBuf::from("/p"),
            },
            tests: tests.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn the_refusal_names_every_privileged_test() {
        let listing = Ok(vec![
            privileged("vfnet-cni", "veth", &["add_check_del", "macvtap_on_a_veth"]),
            privileged("vfnet-sriov", "netlink_veth", &["moves_a_link"]),
        ]);
        let message = not_root_message(1000, Some(&listing));
        assert!(message.starts_with("cargo xtask test must run as root (effective uid is 1000)"), "{message}");
        assert!(
            message.ends_with(
                "these 3 privileged test(s) cannot run:\n    vfnet-cni/veth::add_check_del\n    \
                 vfnet-cni/veth::macvtap_on_a_veth\n    vfnet-sriov/netlink_veth::moves_a_link"
            ),
            "{message}"
        );
        let failed = Err(anyhow::anyhow!("`cargo test` failed"));
        assert!(
            not_root_message(1000, Some(&failed))
                .ends_with("listing the privileged tests failed too: `cargo test` failed")
        );
        assert!(!not_root_message(1000, None).contains("cannot run"));
    }
}
