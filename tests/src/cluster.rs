//! The real-cluster suite's view of the cluster `cargo xtask test` started: kubectl (the one built
//! with the cluster) as the admin, from inside the node's guest, and the node script that
//! restarts kubelet. Everything it needs comes from the environment the harness sets
//! (`VFNET_KUBECTL`, `KUBECONFIG`, `VFNET_NODE_SCRIPT`, `VFNET_NODE_NAME`, `VFNET_INSTALL_OVERLAY`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::node_files::NodeFiles;
use crate::say;

/// A variable the harness sets; its absence means the test runs outside the cluster run.
fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| {
        format!("${name} is not set: the real-cluster tests run on the cluster `cargo xtask test` starts")
    })
}

/// The node's name.
pub fn node_name() -> Result<String> {
    env("VFNET_NODE_NAME")
}

/// The repository root (the guest sees the host's filesystem at the same paths).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `kubectl <args>` as the admin: its stdout, or an error with its stderr.
pub fn kubectl(args: &[&str]) -> Result<String> {
    kubectl_stdin(args, None)
}

/// `kubectl <args>` with `stdin` fed to it.
pub fn kubectl_stdin(args: &[&str], stdin: Option<&str>) -> Result<String> {
    let out = kubectl_output(args, stdin)?;
    if !out.status.success() {
        bail!("kubectl {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `kubectl <args>`'s whole output, whatever its status.
pub fn kubectl_output(args: &[&str], stdin: Option<&str>) -> Result<std::process::Output> {
    use std::io::Write;
    let kubectl = env("VFNET_KUBECTL")?;
    let mut child = Command::new(&kubectl)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {kubectl}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// `kubectl get <args> -o json`, read in-process (`api.rs`); an object not there is an error.
pub fn get_json(args: &[&str]) -> Result<Value> {
    crate::api::get(args)?.with_context(|| format!("{} not found", args.join(" ")))
}

/// `kubectl apply -f -` of `yaml`.
pub fn apply(yaml: &str) -> Result<String> {
    kubectl_stdin(&["apply", "-f", "-"], Some(yaml))
}

/// Polls `check` every 500 ms until it gives `Some`, for at most `timeout`; the error says what
/// was awaited and the last thing `check` saw.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let started = Instant::now();
    let mut last = String::from("nothing yet");
    loop {
        match check() {
            Ok(Some(v)) => {
                say(format_args!("{what}: after {:.1} s", started.elapsed().as_secs_f64()));
                return Ok(v);
            }
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if started.elapsed() > timeout {
            bail!("{what}: not within {} s (last: {last})", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The Node's `status.<field>.<resource>` (capacity or allocatable), as a count.
pub fn node_resource(field: &str, resource: &str) -> Result<Option<u64>> {
    let node = get_json(&["node", &node_name()?])?;
    Ok(node["status"][field][resource].as_str().and_then(|v| v.parse().ok()))
}

static INSTALLED: Once = Once::new();

/// vfnet installed as an operator installs it: `kubectl apply -k` of the overlay that sets only
/// the image, the node labelled as SR-IOV capable (the example pools select such nodes), and the
/// DaemonSet rolled out. Idempotent; each test calls it, whichever runs first does the work.
pub fn ensure_installed() -> Result<()> {
    let mut result = Ok(());
    INSTALLED.call_once(|| result = install());
    result
}

fn install() -> Result<()> {
    let overlay = env("VFNET_INSTALL_OVERLAY")?;
    say(format_args!("kubectl apply -k {overlay}"));
    let out = kubectl(&["apply", "-k", &overlay])?;
    for line in out.lines() {
        say(format_args!("  {line}"));
    }
    kubectl(&["label", "node", &node_name()?, "feature.node.kubernetes.io/network-sriov.capable=true", "--overwrite"])?;
    let rolled =
        kubectl_output(&["-n", "vfnet-system", "rollout", "status", "daemonset/vfnet-node", "--timeout=300s"], None)?;
    if !rolled.status.success() {
        let pods = kubectl(&["-n", "vfnet-system", "get", "pods", "-o", "wide"]).unwrap_or_default();
        let events = kubectl(&["-n", "vfnet-system", "get", "events"]).unwrap_or_default();
        bail!("the vfnet DaemonSet did not roll out: {}\n{pods}\n{events}", String::from_utf8_lossy(&rolled.stderr));
    }
    say("vfnet DaemonSet rolled out");
    Ok(())
}

/// The pods of the vfnet DaemonSet.
pub fn daemon_pods() -> Result<Vec<Value>> {
    let list = get_json(&["-n", "vfnet-system", "pods", "-l", "app.kubernetes.io/component=node-agent"])?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// The host pid of a running container of pod `uid` (its first process), found through its
/// cgroup: kubelet's cgroupfs driver puts each pod under `.../pod<uid>/<container id>`.
pub fn container_pid(pod_uid: &str, container_id: &str) -> Result<u32> {
    let id = container_id.rsplit("://").next().unwrap_or(container_id);
    let pod_part = format!("pod{pod_uid}");
    for entry in fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cgroup) = fs::read_to_string(entry.path().join("cgroup")) else { continue };
        if cgroup.contains(&pod_part) && cgroup.contains(id) {
            return Ok(pid);
        }
    }
    bail!("no process of container {id} (pod {pod_uid}) in /proc")
}

/// The environment of process `pid`, as `KEY=value` strings.
pub fn environ(pid: u32) -> Result<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/environ"))?;
    Ok(raw.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

/// Restarts the vfnet daemon (its pods deleted) and waits for a new one to be ready.
pub fn restart_daemon() -> Result<()> {
    let old: Vec<String> =
        daemon_pods()?.iter().filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned)).collect();
    for name in &old {
        kubectl(&["-n", "vfnet-system", "delete", "pod", name, "--wait=true"])?;
    }
    wait_for("a new vfnet daemon pod ready", Duration::from_secs(180), || {
        Ok(daemon_pods()?
            .iter()
            .any(|p| {
                !old.iter().any(|o| p["metadata"]["name"] == o.as_str())
                    && p["status"]["containerStatuses"][0]["ready"] == true
            })
            .then_some(()))
    })
}

/// The node's CNI configuration swapped for one whose only network is vfnet, restored on drop:
/// containerd then runs vfnet itself (it reloads its configuration directory when it changes).
#[derive(Debug)]
pub struct DirectCni {
    _files: NodeFiles,
}

const MULTUS_CONF: &str = "/etc/cni/net.d/00-multus.conf";
const DIRECT_CONF: &str = "/etc/cni/net.d/00-vfnet.conflist";

impl DirectCni {
    /// Replaces Multus's configuration with `conflist`.
    pub fn install(conflist: &Value) -> Result<Self> {
        let mut files = NodeFiles::new();
        files.set(MULTUS_CONF, None)?.set(DIRECT_CONF, Some(&serde_json::to_vec_pretty(conflist)?))?;
        Ok(Self { _files: files })
    }
}
