//! `cargo xtask demo`: the real Kubernetes test cluster (control plane on the host, the
//! emulated-igb guest as its node, see [`crate::cluster`]) and, narrated with real `kubectl`
//! output, what vfnet does on it: the node model it discovers, the install with
//! `kubectl apply -k`, the example profiles, pools and pods, a refusal, and every VF back clean.
//!
//! vfnet and its device plugin are the image's static release binaries (the image the node
//! imports); the demo driver is a release build. The timings shown are under QEMU's TCG
//! emulation, not native ones.

use anyhow::{Context, Result, bail};

use crate::{
    cargo::{self, cargo_locked},
    cluster::{self, Cluster},
    cmd::shell_quote,
    setup,
    vm::Step,
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
    println!("==> building the demo driver (release)");
    let demo = cargo::build(cargo_locked("build").args(["--release", "-p", "vfnet-e2e", "--bin", "vfnet-demo"]))?
        .into_iter()
        .find(|exe| exe.target == "vfnet-demo")
        .context("cargo built no vfnet-demo executable")?;

    let cluster = Cluster::start("demo")?;
    let vm = cluster.vm(&tools, "demo");
    let script = cluster.node_script(vm.results())?;
    let env = cluster.test_env(&script);
    let story = [
        Step {
            name: "node-report".to_owned(),
            command: format!("{} --numvfs 4", shell_quote(&node_report.path.to_string_lossy())),
            narration: "Discovered node model (4 VFs created on every igb PF):".to_owned(),
        },
        Step {
            name: "story".to_owned(),
            command: format!("export {env} && {}", shell_quote(&demo.path.to_string_lossy())),
            narration: "The whole flow on the real node (kubectl output is real; timings are TCG's):".to_owned(),
        },
    ];
    println!("Booting the node (emulated igb NIC)…");
    let results = vm.run(&cluster::node_steps(&script, story.to_vec()))?;
    if let Some(why) = cluster::node_up_failure(&results) {
        bail!("{why}");
    }
    let mut failed = Vec::new();
    for step in &story {
        let result = results.iter().find(|r| r.name == step.name).context("a demo step left no result")?;
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
