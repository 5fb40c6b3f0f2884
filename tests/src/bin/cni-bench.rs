//! In the VM: vfnet against Debian's Go `host-device` plugin on the same real igb VF, one run,
//! interleaved so machine noise hits both alike. No IPAM on either side.
//!
//! - vfnet ADD: profile VLAN + QoS, spoofchk, trust, journal, move (via a private namespace),
//!   rename, up. host-device ADD: move and up.
//! - DEL of each, and VERSION of each (process overhead).
//!
//! Prints medians and the ratios the CNI issue sets targets for (ADD <= 0.8, DEL <= 1.0,
//! VERSION <= 0.25 of host-device's), and exits non-zero if a run fails. Beside the medians, the
//! per-step breakdown of vfnet's ADD and DEL: each step's median from the `steps` field of the
//! plugin's own `done` log line (`cni/src/timing.rs`), and "exec+exit", the wall time outside the
//! plugin's `run` (process start, reading stdin, exit), so a regression shows its step.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use vfnet_e2e::cni::{DEBIAN_CNI_DIR, Invocation, install_node_config};
use vfnet_e2e::netns::NamedNetns;
use vfnet_e2e::{igb_pf_with_vfs, say};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One command's steps over the rounds, in the order the plugin ran them.
#[derive(Default)]
struct Breakdown {
    order: Vec<String>,
    samples: BTreeMap<String, Vec<Duration>>,
}

impl Breakdown {
    /// Adds one invocation: the `done` line of its JSON log (stderr) and its wall time.
    fn add(&mut self, stderr: &str, wall: Duration) -> Result<()> {
        let done = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["fields"]["message"] == "done")
            .with_context(|| format!("no `done` log line in vfnet's stderr:\n{stderr}"))?;
        let fields = &done["fields"];
        let total = fields["total_ms"].as_f64().context("`done` without total_ms")?;
        let steps = fields["steps"].as_str().context("`done` without steps")?;
        let mut push = |name: &str, ms: f64| {
            if !self.samples.contains_key(name) {
                self.order.push(name.to_owned());
            }
            self.samples.entry(name.to_owned()).or_default().push(Duration::from_secs_f64(ms.max(0.0) / 1e3));
        };
        push("exec+exit", wall.as_secs_f64() * 1e3 - total);
        for step in steps.split_whitespace() {
            let (name, value) = step.split_once('=').with_context(|| format!("step {step:?} is not name=ms"))?;
            push(name, value.parse().with_context(|| format!("step {step:?}"))?);
        }
        Ok(())
    }

    fn print(&self, command: &str) {
        println!("vfnet {command}, per step (medians):");
        for name in &self.order {
            let d = median(self.samples[name].clone());
            println!("    {name:<22} {:>10}", ms(d));
            say(format_args!("bench {command} step {name}: median {}", ms(d)));
        }
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut vfnet = None;
    let mut iterations = 15;
    let mut trace = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--vfnet" => vfnet = args.next().map(PathBuf::from),
            "--iterations" => iterations = args.next().context("--iterations N")?.parse()?,
            "--trace" => trace = true,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let vfnet = vfnet.context("--vfnet PATH (the release binary) is required")?;
    let scratch = std::env::var_os("VFNET_SCRATCH").map_or_else(std::env::temp_dir, PathBuf::from).join("cni-bench");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(scratch.join("profiles"))?;
    // Both plugins run from the guest's tmpfs: the guest's root is the host's filesystem over
    // 9p, whose reads would otherwise dominate and penalise whichever binary is larger.
    let bin = scratch.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(&vfnet, bin.join("vfnet"))?;
    std::fs::copy(PathBuf::from(DEBIAN_CNI_DIR).join("host-device"), bin.join("host-device"))?;
    let (vfnet, host_device) = (bin.join("vfnet"), bin.join("host-device"));
    let pf = igb_pf_with_vfs(4)?;
    let vf = pf.vfs[0].clone();
    std::fs::write(
        scratch.join("profiles/bench.json"),
        json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile", "metadata": {"name": "bench"},
               "spec": {"vlan": 100, "vlanQoS": 3, "spoofChk": true, "trust": true}})
        .to_string(),
    )?;
    // The directories are the node configuration's, as on a node (the release binary honours no
    // network definition that names them); the journal lives on the guest's tmpfs.
    install_node_config(&json!({"stateDir": scratch.join("state"), "runDir": scratch.join("run"),
        "profileDir": scratch.join("profiles")}))?;
    // Info-level JSON logs: the `done` line carries the step breakdown (one line per call).
    let vf_conf = json!({"cniVersion": "1.0.0", "name": "bench-vfnet", "type": "vfnet", "deviceID": vf.pci, "profile": "bench",
        "logLevel": "info", "logFormat": "json"});
    let hd_conf = json!({"cniVersion": "1.0.0", "name": "bench-hd", "type": "host-device", "pciBusID": vf.pci});
    say(format_args!(
        "benchmarking on VF {} ({} VF {}), {iterations} interleaved rounds",
        vf.pci,
        pf.netdev.as_deref().unwrap_or("-"),
        vf.index
    ));

    if trace {
        // One ADD and DEL with debug logs, to see where the time goes.
        let pod = NamedNetns::create("vfnet-trace")?;
        let mut conf = vf_conf.clone();
        conf["logLevel"] = json!("debug");
        for cmd in ["ADD", "DEL"] {
            let mut inv = Invocation::vfnet(cmd, "trace", Some(pod.path()), "net1");
            inv.plugin = vfnet.clone();
            let out = inv.run(&conf)?;
            println!("{cmd} took {:?} (exit {:?})\n{}", out.elapsed, out.code, out.stderr);
        }
    }
    let (mut v_add, mut v_del, mut h_add, mut h_del, mut v_ver, mut h_ver) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut add_steps, mut del_steps) = (Breakdown::default(), Breakdown::default());
    for round in 0..iterations {
        let pod = NamedNetns::create("vfnet-bench")?;
        let run = |plugin: &PathBuf, cmd: &str, conf: &serde_json::Value| -> Result<(Duration, String)> {
            let mut inv = Invocation::vfnet(cmd, &format!("bench-{round}"), Some(pod.path()), "net1");
            inv.plugin = plugin.clone();
            let out = inv.run(conf)?;
            ensure!(out.code == Some(0), "{} {cmd} failed: {} {}", plugin.display(), out.stdout, out.stderr);
            Ok((out.elapsed, out.stderr))
        };
        let mut vfnet_pair = || -> Result<()> {
            let (add, log) = run(&vfnet, "ADD", &vf_conf)?;
            add_steps.add(&log, add)?;
            v_add.push(add);
            let (del, log) = run(&vfnet, "DEL", &vf_conf)?;
            del_steps.add(&log, del)?;
            v_del.push(del);
            Ok(())
        };
        // Alternate which plugin goes first.
        if round % 2 == 0 {
            vfnet_pair()?;
            h_add.push(run(&host_device, "ADD", &hd_conf)?.0);
            h_del.push(run(&host_device, "DEL", &hd_conf)?.0);
        } else {
            h_add.push(run(&host_device, "ADD", &hd_conf)?.0);
            h_del.push(run(&host_device, "DEL", &hd_conf)?.0);
            vfnet_pair()?;
        }
        for _ in 0..2 {
            v_ver.push(run(&vfnet, "VERSION", &json!({"cniVersion": "1.0.0"}))?.0);
            h_ver.push(run(&host_device, "VERSION", &json!({"cniVersion": "1.0.0"}))?.0);
        }
    }
    let rows = [
        ("ADD", median(v_add), median(h_add), 0.8),
        ("DEL", median(v_del), median(h_del), 1.0),
        ("VERSION", median(v_ver), median(h_ver), 0.25),
    ];
    println!("{:<8} {:>12} {:>14} {:>7} {:>7}", "", "vfnet", "host-device", "ratio", "target");
    let mut missed = Vec::new();
    for (name, v, h, target) in rows {
        let ratio = v.as_secs_f64() / h.as_secs_f64();
        println!("{name:<8} {:>12} {:>14} {ratio:>7.2} {:>7}", ms(v), ms(h), format!("<={target}"));
        say(format_args!(
            "bench {name}: vfnet median {} host-device median {} ratio {ratio:.2} (target <= {target})",
            ms(v),
            ms(h)
        ));
        if ratio > target {
            missed.push(name);
        }
    }
    add_steps.print("ADD");
    del_steps.print("DEL");
    if !missed.is_empty() {
        say(format_args!("targets missed: {}", missed.join(", ")));
    }
    Ok(())
}
