//! `cargo xtask bench`: every benchmark, printing figures (medians, ratios), not pass/fail
//! timings. Host benches run with cargo; the CNI benchmark runs in the emulated-igb VM with the
//! release static (musl) `vfnet` against Debian's `host-device` on the same VF.

use anyhow::{Context, Result, bail};

use crate::{
    cargo::{self, cargo_locked},
    cmd::{run, shell_quote},
    setup::{self, MUSL_TARGET},
    vm::{Step, Vm},
};

/// `cargo xtask bench [--host-only | --vm-only]`.
pub(crate) fn cli(args: &[String]) -> Result<()> {
    let (mut host, mut vm) = (true, true);
    for arg in args {
        match arg.as_str() {
            "--host-only" => vm = false,
            "--vm-only" => host = false,
            other => bail!("unknown option `{other}` (bench takes --host-only or --vm-only)"),
        }
    }
    let tools = setup::ensure()?;
    if host {
        println!("==> host benchmarks");
        run(cargo_locked("bench").args(["-p", "vfnet-sriov", "--bench", "discovery"]))?;
        if crate::cmd::repo_root().join("device-plugin/benches").is_dir() {
            run(cargo_locked("bench").args(["-p", "vfnet-device-plugin"]))?;
        }
    }
    if vm {
        println!("==> building the release static vfnet ({MUSL_TARGET})");
        let vfnet = cargo::build(cargo_locked("build").args([
            "--release",
            "--target",
            MUSL_TARGET,
            "-p",
            "vfnet-cni",
            "--bin",
            "vfnet",
        ]))?
        .into_iter()
        .find(|e| e.target == "vfnet")
        .context("cargo built no vfnet")?;
        let bench = cargo::build(cargo_locked("build").args(["-p", "vfnet-e2e", "--bin", "cni-bench"]))?
            .into_iter()
            .find(|e| e.target == "cni-bench")
            .context("cargo built no cni-bench")?;
        let steps = vec![Step {
            name: "cni-bench".into(),
            command: format!(
                "{} --vfnet {} --iterations 21 --trace",
                shell_quote(&bench.path.to_string_lossy()),
                shell_quote(&vfnet.path.to_string_lossy())
            ),
            narration: "CNI ADD/DEL/VERSION: vfnet (release, static) vs host-device, medians in the VM".into(),
        }];
        println!("==> booting the emulated igb NIC for the CNI benchmark");
        let results = Vm::new(&tools, "bench").run(&steps)?;
        for (step, result) in steps.iter().zip(&results) {
            println!("\n{}", step.narration);
            for line in result.log.lines() {
                println!("    {line}");
            }
            if !result.passed() {
                bail!("{} failed: {}", step.name, result.status());
            }
        }
    }
    Ok(())
}
