//! `cargo xtask test`: the project's single test command. In order, failing fast: the root check,
//! vm-setup, fmt, CRD YAML freshness and offline manifest validation, clippy, the host tests, the
//! privileged host tests, the static binaries, then the end-to-end tests inside one emulated-igb
//! VM.
//!
//! Run as non-root it fails first, naming the privileged tests it could not run (rather than
//! dying in vm-setup's apt-get without saying what went untested).
//!
//! The VM tests are the `#[ignore = "needs the emulated igb VM"]` tests of the `vfnet-e2e`
//! package: a plain `cargo test` skips them on the host, and the VM runs exactly those
//! (`--ignored`). Every other `#[ignore]`d test is a privileged host test ([`privileged`]), run
//! on the host the same way.

mod privileged;

use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{Context, Result, bail};

use crate::{
    cargo::{self, Executable, cargo, cargo_locked},
    cluster,
    cmd::{run, shell_quote, stdout_of},
    manifests,
    setup::{self, VmTools},
    vm::{Step, StepResult, Vm},
};

const E2E_PACKAGE: &str = "vfnet-e2e";
/// `cargo test` arguments of the host tests; the privileged phase builds with the same ones, so
/// its build is the host tests' (cached), not a second one with other features.
const HOST_TEST_ARGS: [&str; 2] = ["--workspace", "--all-features"];
/// libtest arguments for the VM: only the ignored (VM) tests, one at a time because they share
/// one NIC, and with their output shown even when they pass, for the `vfnet-vm:` lines.
const VM_TEST_ARGS: &str = "--ignored --test-threads=1 --show-output";
/// Lines of a failing step's log shown in the report.
const TAIL_LINES: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    All,
    HostOnly,
    VmOnly,
}

/// `cargo xtask test [--vm-only | --host-only]`.
pub(crate) fn cli(args: &[String]) -> Result<()> {
    let mut scope = Scope::All;
    for arg in args {
        let wanted = match arg.as_str() {
            "--vm-only" => Scope::VmOnly,
            "--host-only" => Scope::HostOnly,
            other => bail!("unknown option `{other}` (test takes --vm-only or --host-only)"),
        };
        if scope != Scope::All && scope != wanted {
            bail!("--vm-only and --host-only exclude each other");
        }
        scope = wanted;
    }
    let mut phases = Phases::default();
    let result = run_phases(scope, &mut phases);
    phases.summary(result.is_ok());
    result
}

fn run_phases(scope: Scope, phases: &mut Phases) -> Result<()> {
    let euid = privileged::effective_uid()?;
    if euid != 0 {
        return phases.run("root check", || {
            let listing = (scope != Scope::VmOnly).then(privileged::list);
            bail!("{}", privileged::not_root_message(euid, listing.as_ref()))
        });
    }
    // Every scope runs it first: once everything is in place it costs under a second, and it keeps
    // even `--host-only` from depending on packages someone installed by hand.
    let tools = phases.run("vm-setup", setup::ensure)?;
    if scope != Scope::VmOnly {
        phases.run("fmt", || run(cargo("fmt").args(["--all", "--", "--check"])))?;
        phases.run("crds", manifests::check_crds)?;
        phases.run("manifests", || manifests::validate(&setup::manifest_tools()?))?;
        phases.run("clippy", || {
            run(cargo_locked("clippy").args(["--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]))
        })?;
        // Dependencies a crate declares and never uses: each costs build time on every machine.
        phases.run("unused deps", || {
            run(std::process::Command::new(setup::machete()?)
                .arg("--with-metadata")
                .current_dir(crate::cmd::repo_root()))
        })?;
        phases.run("host tests", || run(cargo_locked("test").args(HOST_TEST_ARGS)))?;
        phases.run("privileged tests", || privileged::run_all(&privileged::list()?))?;
        phases.run("static binaries", crate::image::check_static_binaries)?;
    }
    if scope != Scope::HostOnly {
        let steps = phases.run("build VM tests", build_vm_tests)?;
        let (cluster_steps, vm_steps): (Vec<_>, Vec<_>) = steps.into_iter().partition(|s| s.cluster);
        phases.run("VM tests", || run_vm_tests(&tools, &vm_steps))?;
        phases.run("cluster tests", || run_cluster_tests(&tools, &cluster_steps))?;
    }
    Ok(())
}

/// A VM test executable and how many VM tests the host saw in it.
#[derive(Debug)]
struct VmTestStep {
    step: Step,
    target: String,
    listed: usize,
    /// A real-cluster test target (`cluster_*`): run on the cluster's node, not in the plain VM.
    cluster: bool,
}

/// Test targets of the real-cluster suite start so.
const CLUSTER_TARGET_PREFIX: &str = "cluster_";

/// Builds the binaries the VM tests drive (vfnet with its test-only fault injection, the device
/// plugin) and stages them (see [`stage_binaries`]). Returns their directory.
fn build_binaries() -> Result<PathBuf> {
    let bins = cargo::build(cargo_locked("build").args([
        "-p",
        "vfnet-cni",
        "-p",
        "vfnet-device-plugin",
        "--bins",
        "--all-features",
    ]))?;
    stage_binaries(&bins, "bin")
}

/// Copies the built vfnet and device plugin into `target/vfnet-vm/<dir>`, so that a later build
/// with other features cannot swap them under the VM. Returns the directory, passed to the guest
/// as VFNET_BIN_DIR.
pub(crate) fn stage_binaries(built: &[Executable], dir: &str) -> Result<PathBuf> {
    let bin_dir = crate::cmd::repo_root().join("target/vfnet-vm").join(dir);
    let _ = std::fs::remove_dir_all(&bin_dir);
    std::fs::create_dir_all(&bin_dir)?;
    for exe in built.iter().filter(|exe| !exe.test) {
        std::fs::copy(&exe.path, bin_dir.join(&exe.target)).with_context(|| format!("copy {}", exe.path.display()))?;
    }
    for bin in ["vfnet", "vfnet-device-plugin"] {
        anyhow::ensure!(bin_dir.join(bin).exists(), "cargo built no {bin} binary");
    }
    Ok(bin_dir)
}

/// Builds the e2e package's test executables and keeps those that have VM tests (asked on the
/// host with `--list --ignored`, which is instant): the library's unit tests, for one, usually
/// have none, and running them would only report "0 tests".
fn build_vm_tests() -> Result<Vec<VmTestStep>> {
    let bin_dir = build_binaries()?;
    let executables: Vec<Executable> = cargo::build(cargo_locked("test").args(["-p", E2E_PACKAGE, "--no-run"]))?
        .into_iter()
        .filter(|exe| exe.test && exe.package == E2E_PACKAGE)
        .collect();
    // For development: VFNET_VM_ONLY=vm_cni runs only the matching test targets.
    let only = std::env::var("VFNET_VM_ONLY").ok();
    let mut steps = Vec::new();
    for exe in executables {
        if only.as_deref().is_some_and(|o| !exe.target.contains(o)) {
            continue;
        }
        let listed = count_ignored(&exe)?;
        if listed == 0 {
            println!("    {}: no VM tests", exe.target);
            continue;
        }
        let name = exe.path.file_name().context("test executable without a file name")?.to_string_lossy().into_owned();
        let command = format!(
            "cd {} && VFNET_BIN_DIR={} exec {} {VM_TEST_ARGS}",
            shell_quote(&exe.package_dir.to_string_lossy()),
            shell_quote(&bin_dir.to_string_lossy()),
            shell_quote(&exe.path.to_string_lossy())
        );
        println!("    {}: {listed} VM test(s)", exe.target);
        let narration = format!("VM tests of {}", exe.target);
        let cluster = exe.target.starts_with(CLUSTER_TARGET_PREFIX);
        steps.push(VmTestStep { step: Step { name, command, narration }, target: exe.target, listed, cluster });
    }
    if steps.is_empty() {
        bail!("{E2E_PACKAGE} has no VM tests (no #[ignore] test in any of its test executables)");
    }
    Ok(steps)
}

/// How many ignored tests `exe` has.
fn count_ignored(exe: &Executable) -> Result<usize> {
    Ok(ignored_tests(exe)?.len())
}

/// The names of `exe`'s ignored tests, from libtest's terse listing (`name: test` lines).
fn ignored_tests(exe: &Executable) -> Result<Vec<String>> {
    let listing = stdout_of(
        Command::new(&exe.path).args(["--list", "--ignored", "--format", "terse"]).current_dir(&exe.package_dir),
    )?;
    Ok(terse_tests(&listing))
}

/// The test names in a terse libtest listing (`name: test`; benchmarks are `name: bench`).
fn terse_tests(listing: &str) -> Vec<String> {
    listing.lines().filter_map(|line| line.strip_suffix(": test")).map(str::to_owned).collect()
}

fn run_vm_tests(tools: &VmTools, steps: &[VmTestStep]) -> Result<()> {
    if steps.is_empty() && filtered_out() {
        return Ok(());
    }
    let vm_steps: Vec<Step> = steps.iter().map(|s| s.step.clone()).collect();
    let results = Vm::new(tools, "test").run(&vm_steps)?;
    judge(steps, &results)
}

/// The real-cluster suite: the control plane on the host, the node in the guest, the suite's
/// test executables in the guest between the node's `up` and `down`.
fn run_cluster_tests(tools: &VmTools, steps: &[VmTestStep]) -> Result<()> {
    if steps.is_empty() && filtered_out() {
        return Ok(());
    }
    if steps.is_empty() {
        bail!(
            "{E2E_PACKAGE} has no real-cluster tests (no `{CLUSTER_TARGET_PREFIX}*` test target with #[ignore] tests)"
        );
    }
    let mut cluster = cluster::Cluster::start("test")?;
    let vm = cluster.vm(tools, "cluster");
    let script = cluster.node_script(vm.results())?;
    let env = cluster.test_env(&script);
    let middle: Vec<Step> = steps
        .iter()
        .map(|s| Step { command: format!("export {env} && {}", s.step.command), ..s.step.clone() })
        .collect();
    let results = vm.run(&cluster::node_steps(&script, middle))?;
    let logs = ["kubelet", "containerd", "multus"].map(|l| vm.results().join(format!("{l}.log")));
    if let Some(why) = cluster::node_up_failure(&results) {
        bail!("{why}\n(node logs: {})", logs.iter().map(|l| l.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    let tests: Vec<StepResult> = results.into_iter().filter(|r| steps.iter().any(|s| s.step.name == r.name)).collect();
    // A component that died mid-run explains the failures it caused.
    let judged = cluster.control_plane.check_alive().and_then(|()| judge(steps, &tests));
    if judged.is_err() {
        for log in &logs {
            println!("    --- last lines of {}:\n{}\n    ---", log.display(), cluster::tail_of(log, 25));
        }
    }
    drop(cluster);
    judged
}

/// Whether `VFNET_VM_ONLY` (a developer's filter) chose the test targets; says so, since the
/// phase then runs nothing.
fn filtered_out() -> bool {
    let only = std::env::var("VFNET_VM_ONLY").ok();
    if let Some(only) = &only {
        println!("    nothing to run here: VFNET_VM_ONLY={only} selects no test target of this phase");
    }
    only.is_some()
}

/// Reports each step's tests; fails when any went wrong.
fn judge(steps: &[VmTestStep], results: &[StepResult]) -> Result<()> {
    let mut failures = Vec::new();
    println!("==> VM test results");
    for (step, result) in steps.iter().zip(results) {
        if let Some(problem) = report_step(step, result) {
            println!(
                "    --- {} ({}), last lines of its log:\n{}\n    ---",
                step.target,
                result.status(),
                result.log_tail(TAIL_LINES)
            );
            failures.push(format!("{}: {problem}", step.target));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// Prints one PASS/FAIL line per test of `step`; returns what went wrong, if anything.
fn report_step(step: &VmTestStep, result: &StepResult) -> Option<String> {
    let run = parse_libtest(&result.log);
    for (test, outcome) in &run.tests {
        let label = match outcome {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Ignored => "IGNORED",
        };
        println!("    {label:<7} {}::{test}", step.target);
    }
    let failed = run.tests.iter().filter(|(_, o)| *o == Outcome::Fail).count();
    if result.rc.is_none() {
        Some("did not finish (no exit code)".to_owned())
    } else if run.tests.is_empty() || run.running == Some(0) {
        Some(format!("ran 0 tests ({})", result.status()))
    } else if failed > 0 {
        Some(format!("{failed} test(s) failed"))
    } else if !result.passed() {
        Some(format!("the test executable failed ({})", result.status()))
    } else if run.tests.len() != step.listed {
        Some(format!("{} test(s) listed on the host but {} reported in the VM", step.listed, run.tests.len()))
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pass,
    Fail,
    Ignored,
}

/// What a libtest log says: the `running N tests` count and each `test <name> ... <outcome>`.
#[derive(Debug, Default)]
struct LibtestRun {
    running: Option<usize>,
    tests: Vec<(String, Outcome)>,
}

fn parse_libtest(log: &str) -> LibtestRun {
    let mut run = LibtestRun::default();
    for line in log.lines() {
        if let Some(count) = line
            .strip_prefix("running ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<usize>().ok())
        {
            *run.running.get_or_insert(0) += count;
        } else if let Some((name, outcome)) = line.strip_prefix("test ").and_then(|rest| rest.split_once(" ... ")) {
            let outcome = match outcome.trim() {
                "ok" => Outcome::Pass,
                "FAILED" => Outcome::Fail,
                o if o.starts_with("ignored") => Outcome::Ignored,
                _ => continue,
            };
            run.tests.push((name.to_owned(), outcome));
        }
    }
    run
}

/// The phases of one `cargo xtask test` run, for the final summary.
#[derive(Debug, Default)]
struct Phases {
    done: Vec<(&'static str, f64, bool)>,
}

impl Phases {
    fn run<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        println!("==> {name}");
        let start = Instant::now();
        let result = f();
        self.done.push((name, start.elapsed().as_secs_f64(), result.is_ok()));
        result.with_context(|| format!("{name} failed"))
    }

    fn summary(&self, ok: bool) {
        println!("==> summary");
        for (name, seconds, passed) in &self.done {
            let status = if *passed { "ok" } else { "FAILED" };
            println!("    {status:<7} {name:<16} {seconds:>7.1} s");
        }
        let total: f64 = self.done.iter().map(|(_, seconds, _)| seconds).sum();
        let verdict = if ok { "all passed" } else { "FAILED" };
        println!("    {verdict} in {total:.1} s");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
running 3 tests
test pf_has_vfs ... ok
test vlan_roundtrip ... FAILED
test slow_one ... ignored, needs the emulated igb VM

successes:

---- pf_has_vfs stdout ----
vfnet-vm: PF 0000:00:0a.0 totalvfs 7
test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out
";

    #[test]
    fn reads_test_names_from_a_terse_listing() {
        let listing = "add_check_del: test\nmodule::macvtap: test\ndiscovery_1024: bench\n\n";
        assert_eq!(terse_tests(listing), ["add_check_del", "module::macvtap"]);
        assert!(terse_tests("").is_empty());
    }

    #[test]
    fn parses_libtest_outcomes() {
        let run = parse_libtest(LOG);
        assert_eq!(run.running, Some(3));
        assert_eq!(
            run.tests,
            vec![
                ("pf_has_vfs".to_owned(), Outcome::Pass),
                ("vlan_roundtrip".to_owned(), Outcome::Fail),
                ("slow_one".to_owned(), Outcome::Ignored),
            ]
        );
        assert_eq!(parse_libtest("running 0 tests\n").running, Some(0));
    }

    fn step(listed: usize) -> VmTestStep {
        VmTestStep {
            step: Step { name: "t-1".into(), command: String::new(), narration: String::new() },
            target: "t".into(),
            listed,
            cluster: false,
        }
    }

    fn result(rc: Option<i32>, log: &str) -> StepResult {
        StepResult { name: "t-1".into(), rc, log: log.into() }
    }

    #[test]
    fn judges_steps() {
        let ok = "running 1 test\ntest a ... ok\n";
        assert_eq!(report_step(&step(1), &result(Some(0), ok)), None);
        assert!(report_step(&step(1), &result(None, ok)).is_some());
        assert!(report_step(&step(1), &result(Some(101), ok)).is_some());
        assert!(report_step(&step(2), &result(Some(0), ok)).is_some());
        assert!(report_step(&step(1), &result(Some(0), "running 0 tests\n")).is_some());
        assert!(report_step(&step(1), &result(Some(0), "")).is_some());
        let failed = "running 1 test\ntest a ... FAILED\n";
        assert!(report_step(&step(1), &result(Some(0), failed)).is_some());
    }
}
