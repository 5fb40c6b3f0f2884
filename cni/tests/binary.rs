//! The `vfnet` binary's channels: stdout carries exactly the result or the error JSON (what the
//! runtime parses), logs go to stderr or `logFile`. Only calls that fail or do nothing before
//! touching the node are made, so this runs anywhere, as any user.

#![allow(clippy::unwrap_used)] // test helpers panic on broken fixtures by design

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn vfnet(env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vfnet"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        status: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn conf(dir: &Path, extra: Value) -> Vec<u8> {
    let mut c = json!({
        "cniVersion": "1.0.0", "name": "net-a", "type": "vfnet", "logLevel": "debug",
        "stateDir": dir.join("state"), "runDir": dir.join("run"), "profileDir": dir.join("profiles"),
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut c, extra) {
        m.extend(e);
    }
    serde_json::to_vec(&c).unwrap()
}

const ENV: [(&str, &str); 4] = [
    ("CNI_CONTAINERID", "ctr-a"),
    ("CNI_NETNS", "/var/run/netns/vfnet-test-none"),
    ("CNI_IFNAME", "net1"),
    ("CNI_PATH", "/nonexistent"),
];

fn with(command: &str) -> Vec<(&str, &str)> {
    let mut env = ENV.to_vec();
    env.push(("CNI_COMMAND", command));
    env
}

#[test]
fn version_prints_only_the_version_json() {
    let run = vfnet(&[("CNI_COMMAND", "VERSION")], b"");
    assert_eq!(run.status, 0);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v, json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}));
}

#[test]
fn an_error_is_one_json_object_on_stdout_and_the_logs_are_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    // A VF that no machine has: ADD fails at the sysfs lookup, before touching anything.
    let run = vfnet(&with("ADD"), &conf(dir.path(), json!({"deviceID": "0000:ff:1f.7"})));
    assert_eq!(run.status, 1, "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", run.stdout));
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(v["code"], 105, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("0000:ff:1f.7"), "{v}");
    assert!(run.stderr.contains("failed"), "the error is logged on stderr: {:?}", run.stderr);

    let run = vfnet(&with("ADD"), b"{not json");
    assert_eq!(run.status, 1);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!((v["code"].as_u64(), v["cniVersion"].as_str()), (Some(6), Some("1.1.0")));

    let run = vfnet(&[("CNI_COMMAND", "ADD")], &conf(dir.path(), json!({})));
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["code"], 4, "{v}");
}

#[test]
fn a_del_with_nothing_to_do_prints_nothing_and_logs_go_to_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("vfnet.log");
    let run = vfnet(&with("DEL"), &conf(dir.path(), json!({"deviceID": "0000:ff:1f.7", "logFile": log})));
    assert_eq!((run.status, run.stdout.as_str()), (0, ""), "{}", run.stderr);
    assert_eq!(run.stderr, "", "with logFile, nothing on stderr either");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("no journal"), "{logged}");

    let run = vfnet(&with("DEL"), &conf(dir.path(), json!({"logFormat": "json"})));
    assert_eq!((run.status, run.stdout.as_str()), (0, ""));
    for line in run.stderr.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }

    let mut status = conf(dir.path(), json!({"cniVersion": "1.1.0"}));
    status.push(b'\n');
    let run = vfnet(&[("CNI_COMMAND", "STATUS")], &status);
    assert_eq!((run.status, run.stdout.as_str()), (0, ""), "{}", run.stderr);
}
