//! The test rig shared by the integration tests: a [`FakeHost`] (the plugin's host over
//! `sriov::fake`, in [`host`]) or another host, temporary state/run/profile/CNI_PATH directories,
//! and [`Rig::exec`], which drives `vfnet_cni::run` as the runtime would and checks on every call
//! that stdout holds nothing but the result or the error JSON.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // helpers of tests

pub(crate) mod host;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sriov::record::DeviceRecord;
use vfnet_cni::host::Host;
use vfnet_cni::journal::Journal;
use vfnet_cni::node_config::NodeConfig;
use vfnet_types::{DeviceType, PciAddress, ProfileDir, RunDir, StateDir};

pub(crate) use self::host::FakeHost;

/// The container id of the default attachment.
pub(crate) const CTR: &str = "ctr-a";
/// Debian's reference plugins (`containernetworking-plugins`).
pub(crate) const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";
/// The recording IPAM plugin's name (see [`Rig::recording_ipam`]).
pub(crate) const REC_IPAM: &str = "rec-ipam";

/// What one plugin invocation printed and returned.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// Exit status.
    pub(crate) status: i32,
    /// stdout as printed.
    pub(crate) stdout: String,
    /// stdout parsed (`Null` when empty).
    pub(crate) json: Value,
}

impl Reply {
    /// The result of a successful call (`Null` for the commands that print nothing).
    #[track_caller]
    pub(crate) fn ok(&self) -> &Value {
        assert_eq!(self.status, 0, "expected success, got {}", self.stdout);
        &self.json
    }

    /// The error code and message (with details) of a failed call.
    #[track_caller]
    pub(crate) fn err(&self) -> (u64, String) {
        assert_eq!(self.status, 1, "expected an error, got status {} and {}", self.status, self.stdout);
        let code = self.json["code"].as_u64().expect("error code");
        let mut msg = self.json["msg"].as_str().expect("error msg").to_owned();
        if let Some(d) = self.json.get("details").and_then(Value::as_str) {
            msg = format!("{msg}: {d}");
        }
        (code, msg)
    }

    /// Asserts a failure with `code` whose message contains every one of `parts`.
    #[track_caller]
    pub(crate) fn fails(&self, code: u64, parts: &[&str]) {
        let (got, msg) = self.err();
        assert_eq!(got, code, "code of {msg:?}");
        for p in parts {
            assert!(msg.contains(p), "{msg:?} does not mention {p:?}");
        }
    }
}

/// The rig.
#[derive(Debug)]
pub(crate) struct Rig<H: Host = FakeHost> {
    /// The node.
    pub(crate) host: H,
    /// Holds stateDir, runDir, profileDir, the CNI_PATH directory and IPAM logs.
    pub(crate) dir: tempfile::TempDir,
    /// `CNI_NETNS` of the default pod.
    pub(crate) netns: PathBuf,
    /// The default pod namespace's label in the fake.
    pub(crate) pod: String,
}

impl Rig<FakeHost> {
    /// One igb PF `pf0` with 4 VFs, and a pod namespace.
    pub(crate) fn new() -> Self {
        Self::with(FakeHost::igb(4))
    }

    /// A rig around `fake`, with a pod namespace registered.
    pub(crate) fn with(fake: FakeHost) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let netns = dir.path().join("netns/pod-a");
        let pod = fake.add_netns(&netns);
        let rig = Self { host: fake, dir, netns, pod };
        std::fs::create_dir_all(rig.bin_dir()).unwrap();
        rig
    }

    /// The PCI address of VF `index` of `pf0`.
    pub(crate) fn vf(&self, index: u32) -> PciAddress {
        self.host.vf_pci(index)
    }

    /// Makes the node's configuration an admin's: the rig's directories, no network definition
    /// overrides, `require_device_records` as given. Network definitions must then leave the
    /// directories out ([`Rig::tenant_conf`]).
    pub(crate) fn admin_node(&self, require_device_records: bool) -> NodeConfig {
        let node = NodeConfig {
            path: self.dir.path().join("node.json"),
            state_dir: self.state_dir(),
            run_dir: self.run_dir(),
            profile_dir: Some(self.profile_dir()),
            require_device_records,
            ..NodeConfig::default()
        };
        self.host.set_node_config(node.clone());
        node
    }

    /// Registers another pod namespace; returns its path and label.
    pub(crate) fn new_pod(&self, name: &str) -> (PathBuf, String) {
        let path = self.dir.path().join("netns").join(name);
        let label = self.host.add_netns(&path);
        (path, label)
    }
}

impl<H: Host> Rig<H> {
    /// A rig around another host, with the pod namespace at `netns`.
    pub(crate) fn other(host: H, netns: PathBuf) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rig = Self { host, dir, netns, pod: String::new() };
        std::fs::create_dir_all(rig.bin_dir()).unwrap();
        rig
    }

    pub(crate) fn state_dir(&self) -> StateDir {
        StateDir::new(self.dir.path().join("state"))
    }

    pub(crate) fn run_dir(&self) -> RunDir {
        RunDir::new(self.dir.path().join("run"))
    }

    pub(crate) fn profile_dir(&self) -> ProfileDir {
        ProfileDir::new(self.dir.path().join("profiles"))
    }

    /// A 1.1.0 configuration for VF `vf` as a tenant writes it (no directories), plus `extra`.
    pub(crate) fn tenant_conf(&self, vf: PciAddress, extra: Value) -> Value {
        let mut c = json!({"cniVersion": "1.1.0", "name": "net-a", "type": "vfnet", "deviceID": vf.to_string()});
        merge(&mut c, extra);
        c
    }

    /// The directory on `CNI_PATH` (before Debian's).
    pub(crate) fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// A 1.1.0 configuration for VF `vf` with the rig's directories, plus `extra`.
    pub(crate) fn conf_for(&self, vf: PciAddress, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.1.0",
            "name": "net-a",
            "type": "vfnet",
            "deviceID": vf.to_string(),
            "stateDir": self.state_dir().path(),
            "runDir": self.run_dir().path(),
            "profileDir": self.profile_dir().path(),
        });
        merge(&mut c, extra);
        c
    }

    /// Runs `command` with `conf` on stdin and the default environment (container [`CTR`], the
    /// default pod, `net1`, CNI_PATH = the rig's bin directory then Debian's), `env` overriding
    /// it (an empty value unsets a variable).
    pub(crate) fn exec(&self, command: &str, conf: &Value, env: &[(&str, &str)]) -> Reply {
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        vars.insert("CNI_COMMAND".into(), command.into());
        vars.insert("CNI_CONTAINERID".into(), CTR.into());
        vars.insert("CNI_NETNS".into(), self.netns.display().to_string());
        vars.insert("CNI_IFNAME".into(), "net1".into());
        vars.insert("CNI_PATH".into(), format!("{}:{DEBIAN_CNI_DIR}", self.bin_dir().display()));
        for (k, v) in env {
            if v.is_empty() {
                vars.remove(*k);
            } else {
                vars.insert((*k).to_owned(), (*v).to_owned());
            }
        }
        let stdin = serde_json::to_vec(conf).unwrap();
        let out = vfnet_cni::run(&self.host, |k| vars.get(k).cloned(), &stdin);
        check_stdout(command, conf, out.status, &out.stdout);
        let json = if out.stdout.is_empty() { Value::Null } else { serde_json::from_str(&out.stdout).unwrap() };
        Reply { status: out.status, stdout: out.stdout, json }
    }

    /// ADD, which must succeed; returns the result.
    #[track_caller]
    pub(crate) fn add(&self, conf: &Value) -> Value {
        self.exec("ADD", conf, &[]).ok().clone()
    }

    /// DEL, which must succeed.
    #[track_caller]
    pub(crate) fn del(&self, conf: &Value) {
        self.exec("DEL", conf, &[]).ok();
    }

    /// The journal file of `vf`.
    pub(crate) fn journal_path(&self, vf: PciAddress) -> PathBuf {
        self.state_dir().journal(&vf)
    }

    /// The journal of `vf`, if any.
    pub(crate) fn journal(&self, vf: PciAddress) -> Option<Journal> {
        Journal::load(&self.state_dir(), &vf).unwrap()
    }

    /// Writes VfProfile `name` with `spec` into the profile directory.
    pub(crate) fn profile(&self, name: &str, spec: Value) {
        let obj = json!({
            "apiVersion": "vfnet.dev/v1alpha1",
            "kind": "VfProfile",
            "metadata": {"name": name, "uid": "0b7c", "resourceVersion": "42"},
            "spec": spec,
        });
        std::fs::create_dir_all(self.profile_dir()).unwrap();
        std::fs::write(self.profile_dir().profile(name), obj.to_string()).unwrap();
    }

    /// Writes the device plugin's record of `vf`, of a pool without profile rules.
    pub(crate) fn record(&self, vf: PciAddress, physical_network: Option<&str>) {
        self.pool_record(vf, physical_network, false, None);
    }

    /// Writes the device plugin's record of `vf`, of pool `vfnet.dev/pool-a` with its
    /// `requireProfile` and `allowedProfiles`.
    pub(crate) fn pool_record(
        &self,
        vf: PciAddress,
        physical_network: Option<&str>,
        require_profile: bool,
        allowed_profiles: Option<&[&str]>,
    ) {
        DeviceRecord {
            pci: vf,
            resource_name: "vfnet.dev/pool-a".into(),
            physical_network: physical_network.map(str::to_owned),
            device_type: DeviceType::Netdevice,
            pf: "0000:01:00.0".parse().unwrap(),
            pf_name: Some("pf0".into()),
            vf_index: 1,
            require_profile,
            allowed_profiles: allowed_profiles.map(|a| a.iter().map(|p| (*p).to_owned()).collect()),
        }
        .store(&self.run_dir())
        .unwrap();
    }

    /// Installs the recording IPAM plugin [`REC_IPAM`] in the bin directory. It logs each call
    /// (`COMMAND CONTAINERID IFNAME`) and its stdin, answers ADD with `result` (a 1.0.0 result),
    /// VERSION with versions up to `max_version`, other commands with nothing, and fails any
    /// command `C` for which [`Rig::ipam_fail`] created `fail-C` (printing its content).
    pub(crate) fn recording_ipam(&self, result: &Value, max_version: &str) {
        let d = self.ipam_dir();
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("result.json"), result.to_string()).unwrap();
        let versions: Vec<&str> =
            ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"].into_iter().filter(|v| *v <= max_version).collect();
        std::fs::write(
            d.join("version.json"),
            json!({"cniVersion": max_version, "supportedVersions": versions}).to_string(),
        )
        .unwrap();
        let script = format!(
            r#"#!/bin/sh
d='{}'
input=$(cat)
echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME" >> "$d/calls"
printf '%s\n' "$input" >> "$d/stdin"
if [ -e "$d/fail-$CNI_COMMAND" ]; then
  cat "$d/fail-$CNI_COMMAND"
  exit 1
fi
case "$CNI_COMMAND" in
  VERSION) cat "$d/version.json" ;;
  ADD) cat "$d/result.json" ;;
esac
"#,
            d.display()
        );
        let path = self.bin_dir().join(REC_IPAM);
        let tmp = self.bin_dir().join(format!(".{REC_IPAM}.tmp"));
        std::fs::write(&tmp, script).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// Makes the recording IPAM plugin fail `command` with code 11 (or succeed again).
    pub(crate) fn ipam_fail(&self, command: &str, fail: bool) {
        if fail {
            self.ipam_fail_with(command, 11);
        } else {
            let _ = std::fs::remove_file(self.ipam_dir().join(format!("fail-{command}")));
        }
    }

    /// Makes the recording IPAM plugin fail `command` with error `code`.
    pub(crate) fn ipam_fail_with(&self, command: &str, code: u32) {
        let err = json!({"cniVersion": "1.0.0", "code": code, "msg": "injected IPAM failure"});
        std::fs::write(self.ipam_dir().join(format!("fail-{command}")), err.to_string()).unwrap();
    }

    /// The recording IPAM plugin's calls, without VERSION queries.
    pub(crate) fn ipam_calls(&self) -> Vec<String> {
        read_lines(&self.ipam_dir().join("calls")).into_iter().filter(|l| !l.starts_with("VERSION")).collect()
    }

    /// The configurations the recording IPAM plugin received, with their command.
    pub(crate) fn ipam_stdin(&self) -> Vec<(String, Value)> {
        let calls = read_lines(&self.ipam_dir().join("calls"));
        let stdin = read_lines(&self.ipam_dir().join("stdin"));
        calls
            .into_iter()
            .zip(stdin)
            .map(|(c, s)| (c.split(' ').next().unwrap_or_default().to_owned(), serde_json::from_str(&s).unwrap()))
            .collect()
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|s| s.lines().map(str::to_owned).collect()).unwrap_or_default()
}

/// Merges the keys of `extra` into `base` (objects merge recursively; `null` removes a key).
pub(crate) fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                if v.is_null() {
                    b.remove(&k);
                } else if let Some(slot) = b.get_mut(&k).filter(|s| s.is_object() && v.is_object()) {
                    merge(slot, v);
                } else {
                    b.insert(k, v);
                }
            }
        }
        (b, e) => *b = e,
    }
}

/// The stdout contract: nothing but the result or the error JSON, in the config's version.
#[track_caller]
fn check_stdout(command: &str, conf: &Value, status: i32, stdout: &str) {
    if stdout.is_empty() {
        assert_eq!(status, 0, "{command} failed without printing an error");
        assert_ne!(command, "ADD", "a successful ADD prints its result");
        return;
    }
    let v: Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("{command} stdout is not one JSON value ({e}): {stdout:?}"));
    let obj = v.as_object().unwrap_or_else(|| panic!("{command} stdout is not a JSON object: {stdout}"));
    let version = conf.get("cniVersion").and_then(Value::as_str);
    let supported = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
    match status {
        0 => {
            assert!(obj.contains_key("cniVersion") && !obj.contains_key("code"), "{command}: {stdout}");
            if command != "VERSION" {
                assert_eq!(obj["cniVersion"].as_str(), version, "{command} answers in the config's version");
            }
        }
        1 => {
            for k in obj.keys() {
                assert!(
                    ["cniVersion", "code", "msg", "details"].contains(&k.as_str()),
                    "{command}: stray key {k}: {stdout}"
                );
            }
            assert!(obj["code"].as_u64().is_some_and(|c| c > 0), "{command}: {stdout}");
            assert!(obj["msg"].as_str().is_some_and(|m| !m.is_empty()), "{command}: {stdout}");
            if let Some(v) = version.filter(|v| supported.contains(v)) {
                assert_eq!(obj["cniVersion"].as_str(), Some(v), "errors answer in the config's version");
            }
        }
        other => panic!("{command}: exit status {other}"),
    }
}
