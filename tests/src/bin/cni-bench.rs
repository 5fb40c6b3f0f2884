//! In the VM: vfnet against Debian's Go `host-device` plugin on the same real igb VF, one run,
//! interleaved so machine noise hits both alike. No IPAM on either side.
//!
//! - vfnet ADD: profile VLAN + QoS, spoofchk, trust, journal, move (via a private namespace),
//!   rename, up. host-device ADD: move and up.
//! - DEL of each, and VERSION of each (process overhead).
//!
//! Prints medians and the ratios the CNI issue sets targets for (ADD <= 0.8, DEL <= 1.0,
//! VERSION <= 0.25 of host-device's), and exits non-zero if a run fails.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use vfnet_e2e::cni::{DEBIAN_CNI_DIR, Invocation};
use vfnet_e2e::netns::NamedNetns;
use vfnet_e2e::{igb_pf_with_vfs, say};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
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
    let vf_conf = json!({"cniVersion": "1.0.0", "name": "bench-vfnet", "type": "vfnet", "deviceID": vf.pci, "profile": "bench",
        "stateDir": scratch.join("state"), "runDir": scratch.join("run"), "profileDir": scratch.join("profiles"), "logLevel": "error"});
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
    for round in 0..iterations {
        let pod = NamedNetns::create("vfnet-bench")?;
        let run = |plugin: &PathBuf, cmd: &str, conf: &serde_json::Value| -> Result<Duration> {
            let mut inv = Invocation::vfnet(cmd, &format!("bench-{round}"), Some(pod.path()), "net1");
            inv.plugin = plugin.clone();
            let out = inv.run(conf)?;
            ensure!(out.code == Some(0), "{} {cmd} failed: {} {}", plugin.display(), out.stdout, out.stderr);
            Ok(out.elapsed)
        };
        // Alternate which plugin goes first.
        if round % 2 == 0 {
            v_add.push(run(&vfnet, "ADD", &vf_conf)?);
            v_del.push(run(&vfnet, "DEL", &vf_conf)?);
            h_add.push(run(&host_device, "ADD", &hd_conf)?);
            h_del.push(run(&host_device, "DEL", &hd_conf)?);
        } else {
            h_add.push(run(&host_device, "ADD", &hd_conf)?);
            h_del.push(run(&host_device, "DEL", &hd_conf)?);
            v_add.push(run(&vfnet, "ADD", &vf_conf)?);
            v_del.push(run(&vfnet, "DEL", &vf_conf)?);
        }
        for _ in 0..2 {
            v_ver.push(run(&vfnet, "VERSION", &json!({"cniVersion": "1.0.0"}))?);
            h_ver.push(run(&host_device, "VERSION", &json!({"cniVersion": "1.0.0"}))?);
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
    if !missed.is_empty() {
        say(format_args!("targets missed: {}", missed.join(", ")));
    }
    Ok(())
}
