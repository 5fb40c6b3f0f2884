//! `cargo xtask demo`: boots the emulated igb NIC and shows, narrated, what vfnet makes of it.
//!
//! The steps are a list so later stages (the daemon, a CNI ADD/DEL) are one entry each.
//!
//! The story runs release binaries: vfnet and the device plugin are the image's static ones
//! (the build `cargo xtask test` checks, so after it nothing is rebuilt), the driver a release
//! build, so the ADD and DEL timings it prints are the shipped binary's, not a debug build's
//! (several times slower). They are still timings under QEMU's TCG emulation, not native ones.

use anyhow::{Context, Result, bail};

use crate::{
    cargo::{self, cargo_locked},
    cmd::shell_quote,
    setup,
    vm::{Step, Vm},
};

/// `cargo xtask demo`.
pub(crate) fn cli(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("demo takes no arguments, got `{arg}`");
    }
    println!("==> vm-setup");
    let tools = setup::ensure()?;

    println!("==> building the node-report example");
    let node_report = cargo::build(cargo_locked("build").args([
        "-p",
        "vfnet-sriov",
        "--example",
        "node-report",
        "--features",
        "fixture",
    ]))?
    .into_iter()
    .find(|exe| exe.target == "node-report")
    .context("cargo built no node-report executable")?;

    println!(
        "==> building the release binaries: vfnet, the device plugin (static, as the image ships them), the demo driver"
    );
    let bin_dir = crate::test::stage_binaries(&crate::image::build_static_binaries()?, "demo-bin")?;
    let demo = cargo::build(cargo_locked("build").args(["--release", "-p", "vfnet-e2e", "--bin", "vfnet-demo"]))?
        .into_iter()
        .find(|exe| exe.target == "vfnet-demo")
        .context("cargo built no vfnet-demo executable")?;

    let steps = vec![
        Step {
            name: "node-report".to_owned(),
            command: format!("{} --numvfs 4", shell_quote(&node_report.path.to_string_lossy())),
            narration: "Discovered node model (4 VFs created on every igb PF):".to_owned(),
        },
        Step {
            name: "story".to_owned(),
            command: format!(
                "VFNET_BIN_DIR={} {}",
                shell_quote(&bin_dir.to_string_lossy()),
                shell_quote(&demo.path.to_string_lossy())
            ),
            narration: "The whole flow: device plugin, profiles, two tenants' pods, a refusal, DEL (release \
                        binaries; the timings are theirs under QEMU's TCG emulation, not native speed):"
                .to_owned(),
        },
    ];

    println!("Booting the emulated igb NIC…");
    let results = Vm::new(&tools, "demo").run(&steps)?;
    let mut failed = Vec::new();
    for (step, result) in steps.iter().zip(&results) {
        println!("\n{}", step.narration);
        for line in result.log.lines() {
            println!("    {line}");
        }
        if !result.passed() {
            println!("    ({} failed: {})", step.name, result.status());
            failed.push(step.name.as_str());
        }
    }
    if !failed.is_empty() {
        bail!("demo step(s) failed: {}", failed.join(", "));
    }
    println!("\nDemo complete.");
    Ok(())
}
