//! IPAM delegation (spec "Delegated plugins"): the plugin named by `ipam.type` is found on
//! `CNI_PATH` and run with the same environment and the full network configuration on stdin.
//!
//! An IPAM plugin may speak older spec versions than the configuration (Debian's reference
//! plugins stop at 1.0.0): when it answers "incompatible CNI versions" (code 1), vfnet asks it
//! for VERSION and retries with the newest version both support. The version used is kept in the
//! journal so DEL and GC speak the same one.
//!
//! Every call has a deadline ([`DEFAULT_TIMEOUT`], or `ipamTimeout`): a plugin that hangs is
//! killed with its process group and reaped, and the call fails with 107, so ADD rolls back and
//! answers before the runtime gives up on it.

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::env::{Command, Env};
use crate::error::{CniError, Code, Result};
use crate::version::{SUPPORTED, Version};

/// How long one IPAM plugin call may take unless the network sets `ipamTimeout`.
///
/// host-local answers in milliseconds; dhcp waits on its daemon, which gives up on an
/// unanswered DHCP request after 10 s by default (its `-timeout`), so 30 s covers that with room.
/// The ceiling is the runtime's: kubelet allows each CRI call 2 minutes
/// (`--runtime-request-timeout`), and containerd and CRI-O run CNI ADD inside RunPodSandbox, so a
/// hung IPAM ADD plus the rollback's IPAM DEL, each bounded by this, must fit in that for vfnet to
/// answer with its own error and a rolled-back VF instead of being abandoned mid-ADD.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest `ipamTimeout`: a hung ADD and the rollback's DEL at 60 s each fill kubelet's
/// 2 minutes; waiting longer only holds the VF's lock after the runtime has given up.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The most a plugin may print on stdout (a result is a few KiB); more is refused, not buffered.
const MAX_STDOUT: u64 = 1 << 20;

/// How often a plugin whose stdout is closed is checked for its exit.
const POLL: Duration = Duration::from_millis(5);

/// The error JSON a delegated plugin printed (spec "Error"). It is kept as the cause of vfnet's
/// 107 so that its code can be acted on: 1 (incompatible version) makes vfnet retry with an
/// older version, and STATUS keeps a 51.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("code {code}: {msg}")]
pub struct PluginError {
    /// The plugin's `code`.
    pub code: u64,
    /// Its `msg`, with its `details` if it gave any.
    pub msg: String,
}

impl PluginError {
    fn from_json(v: &Value, stdout: &str) -> Self {
        let msg = v.get("msg").and_then(Value::as_str).unwrap_or(stdout);
        let msg = match v.get("details").and_then(Value::as_str).filter(|d| !d.is_empty()) {
            Some(d) => format!("{msg} ({d})"),
            None => msg.to_owned(),
        };
        Self { code: v.get("code").and_then(Value::as_u64).unwrap_or(0), msg }
    }
}

/// The code of the plugin's own error behind `e`, if the plugin printed one.
pub fn plugin_code(e: &CniError) -> Option<u64> {
    e.find_cause::<PluginError>().map(|p| p.code)
}

/// An IPAM plugin and how to call it.
#[derive(Debug, Clone)]
pub struct Ipam {
    /// `ipam.type`.
    pub plugin: String,
    /// Its executable.
    pub path: PathBuf,
    /// The configuration to send (the network configuration, `cniVersion` possibly lowered).
    pub config: Map<String, Value>,
    /// The deadline of each call (`ipamTimeout`).
    pub timeout: Duration,
}

/// Finds `name` in the `CNI_PATH` directories.
pub fn find_plugin(name: &str, cni_path: &[PathBuf]) -> Result<PathBuf> {
    cni_path.iter().map(|dir| dir.join(name)).find(|p| p.is_file()).ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            format!(
                "invalid ipam.type: plugin {name:?} not found in CNI_PATH ({})",
                cni_path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")
            ),
        )
    })
}

impl Ipam {
    /// The IPAM plugin of a configuration.
    pub fn new(plugin: &str, cni_path: &[PathBuf], config: &Map<String, Value>, timeout: Duration) -> Result<Self> {
        Ok(Self { plugin: plugin.to_owned(), path: find_plugin(plugin, cni_path)?, config: config.clone(), timeout })
    }

    /// The version it is called with.
    pub fn cni_version(&self) -> &str {
        self.config.get("cniVersion").and_then(Value::as_str).unwrap_or_default()
    }

    /// Runs `command`; returns the plugin's stdout JSON if it printed any.
    pub fn exec(&self, command: Command, env: &Env) -> Result<Option<Value>> {
        exec_plugin(&self.plugin, &self.path, command, env, &Value::Object(self.config.clone()), self.timeout)
    }

    /// Runs `command`, lowering the spec version once if the plugin does not speak the
    /// configuration's (the version that worked stays in [`Ipam::config`]).
    pub fn call(&mut self, command: Command, env: &Env) -> Result<Option<Value>> {
        match self.exec(command, env) {
            Err(e) if plugin_code(&e) == Some(1) => {
                let version = self.negotiate(env)?;
                tracing::info!(plugin = %self.plugin, %version, "IPAM plugin speaks an older CNI version; retrying");
                self.config.insert("cniVersion".into(), Value::String(version.as_str().to_owned()));
                self.exec(command, env)
            }
            other => other,
        }
    }

    /// ADD: the plugin's result.
    pub fn add(&mut self, env: &Env) -> Result<Value> {
        self.call(Command::Add, env)?
            .ok_or_else(|| CniError::new(Code::Ipam, format!("IPAM plugin {} printed no result for ADD", self.plugin)))
    }

    /// The newest version both vfnet and the plugin support, no newer than the configuration's.
    fn negotiate(&self, env: &Env) -> Result<Version> {
        let want = Version::parse(self.cni_version())?;
        let answer = self.version(env)?.unwrap_or_default();
        let theirs: Vec<&str> = answer
            .get("supportedVersions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        SUPPORTED.into_iter().rev().find(|v| *v <= want && theirs.contains(&v.as_str())).ok_or_else(|| {
            CniError::new(
                Code::Ipam,
                format!(
                    "IPAM plugin {} supports none of vfnet's CNI versions up to {want} (it offers {theirs:?})",
                    self.plugin
                ),
            )
        })
    }

    /// The plugin's VERSION answer.
    fn version(&self, env: &Env) -> Result<Option<Value>> {
        let query = serde_json::json!({"cniVersion": "0.3.0"});
        exec_plugin(&self.plugin, &self.path, Command::Version, env, &query, self.timeout)
    }

    /// True if the plugin speaks 1.1.0 (so GC and STATUS may be forwarded).
    pub fn speaks_1_1(&self, env: &Env) -> bool {
        self.version(env)
            .ok()
            .flatten()
            .and_then(|v| v.get("supportedVersions").cloned())
            .and_then(|v| v.as_array().map(|a| a.iter().any(|s| s.as_str() == Some("1.1.0"))))
            .unwrap_or(false)
    }
}

/// Runs a delegated plugin, killing it (and its process group) if it has not finished within
/// `timeout`. A failure carries the plugin's own error JSON as its cause ([`PluginError`]).
pub fn exec_plugin(
    name: &str,
    path: &Path,
    command: Command,
    env: &Env,
    config: &Value,
    timeout: Duration,
) -> Result<Option<Value>> {
    let mut cmd = Process::new(path);
    cmd.env("CNI_COMMAND", command.as_str())
        .env("CNI_PATH", env.path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group, so that a timeout kills what it started too (a shell plugin's
        // children would otherwise outlive it and hold its stdout open).
        .process_group(0);
    for (var, value) in [
        ("CNI_CONTAINERID", env.container_id.clone()),
        ("CNI_NETNS", env.netns.as_ref().map(|p| p.display().to_string())),
        ("CNI_IFNAME", env.ifname.clone()),
    ] {
        match value {
            Some(v) => cmd.env(var, v),
            None => cmd.env_remove(var),
        };
    }
    // Runtimes pass IgnoreUnknown=1 so that plugins tolerate the K8S_* keys; the Go reference
    // plugins refuse unknown CNI_ARGS without it, so vfnet adds it when delegating.
    let mut args: Vec<String> = Vec::new();
    if !env.args.contains_key("IgnoreUnknown") {
        args.push("IgnoreUnknown=1".into());
    }
    args.extend(env.args.iter().map(|(k, v)| format!("{k}={v}")));
    cmd.env("CNI_ARGS", args.join(";"));
    let what = format!("IPAM plugin {name} ({})", command.as_str());
    let mut child = cmd
        .spawn()
        .map_err(|e| CniError::new(Code::Ipam, format!("cannot run {what} at {}", path.display())).caused_by(e))?;
    let input = serde_json::to_vec(config).unwrap_or_default();
    let (status, stdout) = match wait(&mut child, input, timeout) {
        Ok(Some(done)) => done,
        Ok(None) => {
            return Err(CniError::new(
                Code::Ipam,
                format!("{what} did not finish within {timeout:?} (ipamTimeout); it was killed"),
            ));
        }
        Err(e) => return Err(CniError::new(Code::Ipam, format!("cannot run {what}")).caused_by(e)),
    };
    if stdout.len() as u64 > MAX_STDOUT {
        return Err(CniError::new(Code::Ipam, format!("{what} printed more than {MAX_STDOUT} bytes")));
    }
    let stdout = String::from_utf8_lossy(&stdout);
    if !status.success() {
        let e = CniError::new(Code::Ipam, format!("{what} failed ({status})"));
        return Err(match serde_json::from_str::<Value>(&stdout) {
            Ok(v) => e.caused_by(PluginError::from_json(&v, stdout.trim())),
            Err(_) => e.details(stdout.trim()),
        });
    }
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&stdout)
        .map(Some)
        .map_err(|e| CniError::new(Code::Ipam, format!("{what} printed invalid JSON")).caused_by(e))
}

/// Feeds `input` to the child and reads its stdout on threads (a plugin may print before it
/// reads, or print more than a pipe holds, and must never block the wait), then waits for its
/// exit. `None`: it did not finish within `timeout`, and has been killed and reaped.
fn wait(child: &mut Child, input: Vec<u8>, timeout: Duration) -> io::Result<Option<(ExitStatus, Vec<u8>)>> {
    let deadline = Instant::now() + timeout;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading stdin closes the pipe; its exit status tells. A
        // hung one is killed, which ends this write too.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let _ = tx.send(read_capped(stdout));
        });
    } else {
        let _ = tx.send(Ok(Vec::new()));
    }
    let stdout = match rx.recv_timeout(timeout) {
        Ok(read) => read,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            kill(child);
            return Ok(None);
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(io::Error::other("the stdout reader died")),
    };
    // stdout is closed; the plugin normally exits with it.
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        if now >= deadline {
            kill(child);
            return Ok(None);
        }
        std::thread::sleep(POLL.min(deadline - now));
    };
    Ok(Some((status, stdout?)))
}

/// Reads up to [`MAX_STDOUT`] + 1 bytes, then drains the rest so the plugin is not blocked.
fn read_capped(mut stdout: impl Read) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    (&mut stdout).take(MAX_STDOUT + 1).read_to_end(&mut buf)?;
    io::copy(&mut stdout, &mut io::sink())?;
    Ok(buf)
}

/// Kills the plugin's process group and reaps the plugin. It is not reaped yet, so its pid (the
/// group's id) cannot have been reused.
fn kill(child: &mut Child) {
    use nix::sys::signal::{Signal, killpg};
    let group = i32::try_from(child.id()).map(nix::unistd::Pid::from_raw);
    if !group.is_ok_and(|g| killpg(g, Signal::SIGKILL).is_ok()) {
        let _ = child.kill();
    }
    if let Err(e) = child.wait() {
        tracing::warn!(pid = child.id(), error = %e, "cannot reap the killed IPAM plugin");
    }
}
