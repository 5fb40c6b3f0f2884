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

/// Writes the node configuration the binary reads (`VFNET_NODE_CONFIG`, a hook of the
/// `test-hooks` build the tests get): the directories under `dir`, as an admin sets them, plus
/// `extra`. Returns its path.
fn node_config(dir: &Path, extra: Value) -> String {
    let mut c = json!({"stateDir": dir.join("state"), "runDir": dir.join("run"), "profileDir": dir.join("profiles")});
    if let (Value::Object(m), Value::Object(e)) = (&mut c, extra) {
        m.extend(e);
    }
    let path = dir.join("node.json");
    std::fs::write(&path, c.to_string()).unwrap();
    path.display().to_string()
}

fn conf(extra: Value) -> Vec<u8> {
    let mut c = json!({"cniVersion": "1.0.0", "name": "net-a", "type": "vfnet", "logLevel": "debug"});
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

fn with<'a>(command: &'a str, node_config: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut env = ENV.to_vec();
    env.push(("CNI_COMMAND", command));
    env.push(("VFNET_NODE_CONFIG", node_config));
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
    let node = node_config(dir.path(), json!({}));
    // A VF that no machine has: ADD fails at the sysfs lookup, before touching anything.
    let run = vfnet(&with("ADD", &node), &conf(json!({"deviceID": "0000:ff:1f.7"})));
    assert_eq!(run.status, 1, "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", run.stdout));
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(v["code"], 105, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("0000:ff:1f.7"), "{v}");
    assert!(run.stderr.contains("failed"), "the error is logged on stderr: {:?}", run.stderr);

    let run = vfnet(&with("ADD", &node), b"{not json");
    assert_eq!(run.status, 1);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!((v["code"].as_u64(), v["cniVersion"].as_str()), (Some(6), Some("1.1.0")));

    let run = vfnet(&[("CNI_COMMAND", "ADD"), ("VFNET_NODE_CONFIG", &node)], &conf(json!({})));
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["code"], 4, "{v}");
}

#[test]
fn a_del_with_nothing_to_do_prints_nothing_and_logs_go_to_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("vfnet.log");
    let logging = node_config(dir.path(), json!({"logFile": log}));
    let run = vfnet(&with("DEL", &logging), &conf(json!({"deviceID": "0000:ff:1f.7"})));
    assert_eq!((run.status, run.stdout.as_str()), (0, ""), "{}", run.stderr);
    assert_eq!(run.stderr, "", "with logFile, nothing on stderr either");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("no journal"), "{logged}");

    let node = node_config(dir.path(), json!({}));
    let run = vfnet(&with("DEL", &node), &conf(json!({"logFormat": "json"})));
    assert_eq!((run.status, run.stdout.as_str()), (0, ""));
    for line in run.stderr.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }

    let mut status = conf(json!({"cniVersion": "1.1.0"}));
    status.push(b'\n');
    let run = vfnet(&[("CNI_COMMAND", "STATUS"), ("VFNET_NODE_CONFIG", &node)], &status);
    assert_eq!((run.status, run.stdout.as_str()), (0, ""), "{}", run.stderr);
}

/// Tenants write network definitions: a definition naming a host path is refused, naming the key
/// and the node configuration (and leaves nothing at that path); an unsafe node configuration
/// stops the plugin (113).
#[test]
fn host_paths_are_the_node_configuration_s() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_config(dir.path(), json!({}));
    let victim = dir.path().join("victim");
    for key in ["stateDir", "runDir", "profileDir", "logFile", "podResourcesSocket"] {
        let run = vfnet(&with("ADD", &node), &conf(json!({"deviceID": "0000:ff:1f.7", key: victim})));
        let v: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(v["code"], 7, "{key}: {v}");
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.starts_with(&format!("invalid {key}: set by the node configuration ({node}, key {key})")), "{msg}");
        assert!(!victim.exists(), "{key}: the plugin created {}", victim.display());
    }
    let open = node_config(dir.path(), json!({"allowNetworkOverrides": true}));
    let run = vfnet(&with("DEL", &open), &conf(json!({"deviceID": "0000:ff:1f.7", "logFile": victim})));
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(victim.exists(), "with overrides allowed, the definition's logFile is honoured");

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).unwrap();
    let run = vfnet(&with("DEL", &open), &conf(json!({"deviceID": "0000:ff:1f.7"})));
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["code"], 113, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("writable by group or others (mode 0666)"), "{v}");
}
