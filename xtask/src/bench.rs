//! `cargo xtask bench`: every benchmark, printing figures (medians, ratios), not pass/fail
//! timings. Host benches run with cargo; the CNI benchmark runs in the emulated-igb VM with the
//! release static (musl) `vfnet` against Debian's `host-device` on the same VF.
//!
//! `cargo xtask bench --cluster` runs only the real-cluster benchmark: the test cluster (control
//! plane on the host, the emulated-igb guest as its node, vfnet installed by its DaemonSet) and,
//! in one guest run on the same VFs, vfnet against the reference SR-IOV stack (the SR-IOV network
//! device plugin and sriov-cni, built from their Go modules): pod create and delete latency,
//! device plugin memory, direct CNI ADD/DEL (`tests/src/bin/cluster-bench.rs`).

use anyhow::{Context, Result, bail};

use crate::{
    cargo::{self, cargo_locked},
    cluster,
    cmd::{run, shell_quote},
    setup::{self, MUSL_TARGET, VmTools},
    vm::{Step, Vm},
};

/// `cargo xtask bench [--host-only | --vm-only | --cluster]`.
pub(crate) fn cli(args: &[String]) -> Result<()> {
    let (mut host, mut vm, mut on_cluster) = (true, true, false);
    for arg in args {
        match arg.as_str() {
            "--host-only" => vm = false,
            "--vm-only" => host = false,
            "--cluster" => on_cluster = true,
            other => bail!("unknown option `{other}` (bench takes --host-only, --vm-only or --cluster)"),
        }
    }
    if on_cluster && args.len() > 1 {
        bail!("--cluster runs the real-cluster benchmark alone; it takes no other option");
    }
    let tools = setup::ensure()?;
    if on_cluster {
        return cluster_bench(&tools);
    }
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

/// Where sriovdp's PCI ID library (ghw/pcidb v0.5.0) looks for the database, after
/// `~/.cache/pci.ids`. The guest's root is the host's filesystem, so the host's copy is the
/// guest's.
const PCI_IDS: [&str; 2] = ["/usr/share/hwdata/pci.ids", "/usr/share/misc/pci.ids"];

/// `cargo xtask bench --cluster`: the cluster, then one guest run whose middle step is the
/// `cluster-bench` binary, with the reference binaries' paths in its environment.
fn cluster_bench(tools: &VmTools) -> Result<()> {
    let home_cache = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/pci.ids"));
    if !PCI_IDS.iter().map(std::path::PathBuf::from).chain(home_cache).any(|p| p.is_file()) {
        bail!(
            "the reference device plugin (sriovdp) cannot start without a PCI ID database ({}): \
             install Debian's pci.ids package (`apt-get install pci.ids`)",
            PCI_IDS.join(" or ")
        );
    }
    let built = crate::k8s::ensure(&["sriovdp", "sriov-cni"])?;
    let component =
        |name: &str| built.iter().find(|b| b.name == name).with_context(|| format!("no {name} component was built"));
    let (sriovdp, sriov_cni) = (component("sriovdp")?, component("sriov-cni")?);
    let (sriovdp_bin, sriov_bin) = (sriovdp.dir.join("sriovdp"), sriov_cni.dir.join("sriov"));
    println!("==> building the cluster benchmark (release)");
    let bench = cargo::build(cargo_locked("build").args(["--release", "-p", "vfnet-e2e", "--bin", "cluster-bench"]))?
        .into_iter()
        .find(|e| e.target == "cluster-bench")
        .context("cargo built no cluster-bench")?;
    let mut cluster = cluster::Cluster::start("bench")?;
    println!(
        "==> components: Kubernetes {} (kubelet, containerd and Multus in the guest), vfnet {} (image {}), \
         sriovdp {} ({}), sriov-cni {} ({})",
        cluster.bins.version,
        env!("CARGO_PKG_VERSION"),
        crate::images::DEV_IMAGE,
        sriovdp.version,
        sriovdp_bin.display(),
        sriov_cni.version,
        sriov_bin.display()
    );
    let vm = cluster.vm(tools, "cluster-bench");
    let script = cluster.node_script(vm.results())?;
    let quoted = |p: &std::path::Path| shell_quote(&p.to_string_lossy());
    let step = Step {
        name: "cluster-bench".into(),
        command: format!(
            "export {} VFNET_SRIOVDP={} VFNET_SRIOV_CNI={} VFNET_SRIOVDP_VERSION={} VFNET_SRIOV_CNI_VERSION={} && {}",
            cluster.test_env(&script),
            quoted(&sriovdp_bin),
            quoted(&sriov_bin),
            shell_quote(&sriovdp.version),
            shell_quote(&sriov_cni.version),
            quoted(&bench.path)
        ),
        narration: "vfnet vs sriovdp + sriov-cni on the real node: pod create/delete, device plugin RSS, \
                    direct CNI ADD/DEL"
            .into(),
    };
    println!("==> booting the node for the cluster benchmark");
    let results = vm.run(&cluster::node_steps(&script, vec![step.clone()]))?;
    let logs = ["kubelet", "containerd", "multus"].map(|l| vm.results().join(format!("{l}.log")));
    if let Some(why) = cluster::node_up_failure(&results) {
        bail!("{why}\n(node logs: {})", logs.iter().map(|l| l.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    let result = results.iter().find(|r| r.name == step.name).context("the guest ran no cluster-bench step")?;
    println!("\n{}", step.narration);
    for line in result.log.lines() {
        println!("    {line}");
    }
    let alive = cluster.control_plane.check_alive();
    if !result.passed() || alive.is_err() {
        for log in &logs {
            println!("    --- last lines of {}:\n{}\n    ---", log.display(), cluster::tail_of(log, 25));
        }
    }
    alive?;
    if !result.passed() {
        bail!("{} failed: {}", step.name, result.status());
    }
    Ok(())
}
