//! Running the delegated IPAM plugin: a hung plugin is killed (with what it started) at the
//! `ipamTimeout` deadline and ADD rolls back; a plugin that prints a lot before reading its
//! stdin cannot deadlock vfnet, and one that prints without end is refused.

#![allow(clippy::unwrap_used)] // test helpers panic on broken fixtures by design

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Rig;
use serde_json::{Value, json};

/// A 1.0.0 ADD result.
const RESULT: &str = r#"{"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.5/24"}]}"#;

/// Installs IPAM plugin `name` whose ADD runs `add` (shell), answering VERSION (up to 1.0.0)
/// and logging every other command to `<dir>/calls`. Returns its working directory.
fn script_ipam(rig: &Rig, name: &str, add: &str) -> PathBuf {
    let d = rig.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    let script = format!(
        r#"#!/bin/sh
d='{}'
case "$CNI_COMMAND" in
  VERSION) cat >/dev/null; echo '{{"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}}' ;;
  ADD) {add} ;;
  *) cat >/dev/null; echo "$CNI_COMMAND" >> "$d/calls" ;;
esac
"#,
        d.display()
    );
    let path = rig.bin_dir().join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn conf(rig: &Rig, plugin: &str, extra: Value) -> Value {
    let mut c = rig.conf_for(rig.vf(1), json!({"vlan": 100, "ipamTimeout": 1, "ipam": {"type": plugin}}));
    common::merge(&mut c, extra);
    c
}

/// True while process `pid` exists and is not a zombie (an orphan's zombie waits for init).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(Path::new("/proc").join(pid).join("stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

fn pid_in(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap().trim().to_owned()
}

#[test]
fn a_hung_ipam_plugin_is_killed_at_the_deadline_and_add_rolls_back() {
    let rig = Rig::new();
    // ADD starts a helper and waits for it, as a plugin talking to a stuck daemon would.
    let d = script_ipam(
        &rig,
        "hung-ipam",
        r#"cat >/dev/null; echo $$ > "$d/plugin"; sleep 30 & echo $! > "$d/helper"; wait"#,
    );
    let conf = conf(&rig, "hung-ipam", json!({}));
    let before = rig.host.snapshot();
    let started = Instant::now();
    let reply = rig.exec("ADD", &conf, &[]);
    let took = started.elapsed();
    reply.fails(107, &["IPAM plugin hung-ipam (ADD)", "did not finish within 1s", "killed"]);
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(10), "ADD took {took:?}");
    assert_eq!(rig.host.snapshot(), before, "the VF is rolled back");
    assert!(rig.journal(rig.vf(1)).is_none(), "journal left behind");
    assert_eq!(std::fs::read_to_string(d.join("calls")).unwrap(), "DEL\n", "the rollback runs IPAM DEL");
    for who in ["plugin", "helper"] {
        let pid = pid_in(&d, who);
        assert!(!alive(&pid), "the {who} ({pid}) outlived the deadline");
    }
}

#[test]
fn a_plugin_printing_more_than_a_pipe_holds_before_reading_stdin_does_not_deadlock() {
    let rig = Rig::new();
    // 256 KiB of padding first, then the (large) configuration is read: with a blocking write of
    // stdin before reading stdout, both sides would wait on each other.
    script_ipam(
        &rig,
        "chatty-ipam",
        &format!("head -c 262144 /dev/zero | tr '\\0' ' '; cat >/dev/null; echo '{RESULT}'"),
    );
    let conf = conf(&rig, "chatty-ipam", json!({"padding": "x".repeat(256 * 1024)}));
    let result = rig.add(&conf);
    assert_eq!(result["ips"][0]["address"], "10.9.0.5/24");
    rig.del(&conf);
}

#[test]
fn a_plugin_printing_without_end_is_refused_and_add_rolls_back() {
    let rig = Rig::new();
    script_ipam(&rig, "flood-ipam", "cat >/dev/null; head -c 2097152 /dev/zero | tr '\\0' ' '");
    let conf = conf(&rig, "flood-ipam", json!({}));
    let before = rig.host.snapshot();
    rig.exec("ADD", &conf, &[]).fails(107, &["IPAM plugin flood-ipam (ADD) printed more than 1048576 bytes"]);
    assert_eq!(rig.host.snapshot(), before);
    assert!(rig.journal(rig.vf(1)).is_none());
}

#[test]
fn ipam_timeout_is_bounded() {
    let rig = Rig::new();
    script_ipam(&rig, "any-ipam", &format!("echo '{RESULT}'"));
    for bad in [json!(0), json!(61), json!(1.5)] {
        let conf = conf(&rig, "any-ipam", json!({"ipamTimeout": bad}));
        rig.exec("ADD", &conf, &[]).fails(7, &["invalid ipamTimeout"]);
    }
}
