//! IPAM delegation (spec "Delegated plugins"): the plugin named by `ipam.type` is found on
//! `CNI_PATH` and run with the same environment and the full network configuration on stdin.
//!
//! An IPAM plugin may speak older spec versions than the configuration (Debian's reference
//! plugins stop at 1.0.0): when it answers "incompatible CNI versions" (code 1), vfnet asks it
//! for VERSION and retries with the newest version both support. The version used is kept in the
//! journal so DEL and GC speak the same one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::{Map, Value};

use crate::env::{Command, Env};
use crate::error::{CniError, Code, Result};
use crate::version::{SUPPORTED, Version};

/// An IPAM plugin and how to call it.
#[derive(Debug, Clone)]
pub struct Ipam {
    /// `ipam.type`.
    pub plugin: String,
    /// Its executable.
    pub path: PathBuf,
    /// The configuration to send (the network configuration, `cniVersion` possibly lowered).
    pub config: Map<String, Value>,
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
    pub fn new(plugin: &str, cni_path: &[PathBuf], config: &Map<String, Value>) -> Result<Self> {
        Ok(Self { plugin: plugin.to_owned(), path: find_plugin(plugin, cni_path)?, config: config.clone() })
    }

    /// The version it is called with.
    pub fn cni_version(&self) -> &str {
        self.config.get("cniVersion").and_then(Value::as_str).unwrap_or_default()
    }

    /// Runs `command`; returns the plugin's stdout JSON if it printed any.
    pub fn exec(&self, command: Command, env: &Env) -> Result<Option<Value>> {
        exec_plugin(&self.plugin, &self.path, command, env, &Value::Object(self.config.clone()))
    }

    /// Runs `command`, lowering the spec version once if the plugin does not speak the
    /// configuration's (the version that worked stays in [`Ipam::config`]).
    pub fn call(&mut self, command: Command, env: &Env) -> Result<Option<Value>> {
        match self.exec(command, env) {
            Err(e) if e.details.starts_with("code 1:") => {
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
        let answer =
            exec_plugin(&self.plugin, &self.path, Command::Version, env, &serde_json::json!({"cniVersion": "0.3.0"}))?
                .unwrap_or_default();
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

    /// True if the plugin speaks 1.1.0 (so GC and STATUS may be forwarded).
    pub fn speaks_1_1(&self, env: &Env) -> bool {
        exec_plugin(&self.plugin, &self.path, Command::Version, env, &serde_json::json!({"cniVersion": "0.3.0"}))
            .ok()
            .flatten()
            .and_then(|v| v.get("supportedVersions").cloned())
            .and_then(|v| v.as_array().map(|a| a.iter().any(|s| s.as_str() == Some("1.1.0"))))
            .unwrap_or(false)
    }
}

/// Runs a delegated plugin. A failure carries the plugin's own error JSON in the details.
pub fn exec_plugin(name: &str, path: &Path, command: Command, env: &Env, config: &Value) -> Result<Option<Value>> {
    let mut cmd = Process::new(path);
    cmd.env("CNI_COMMAND", command.as_str())
        .env("CNI_PATH", env.path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
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
    let mut child =
        cmd.spawn().map_err(|e| CniError::new(Code::Ipam, format!("cannot run {what} at {}: {e}", path.display())))?;
    let input = serde_json::to_vec(config).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading stdin closes the pipe; its exit status tells.
        let _ = stdin.write_all(&input);
    }
    let out = child.wait_with_output().map_err(|e| CniError::new(Code::Ipam, format!("{what}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let detail = match serde_json::from_str::<Value>(&stdout) {
            Ok(v) => format!(
                "code {}: {}",
                v.get("code").and_then(Value::as_u64).unwrap_or(0),
                v.get("msg").and_then(Value::as_str).unwrap_or(stdout.trim())
            ),
            Err(_) => stdout.trim().to_owned(),
        };
        return Err(CniError::new(Code::Ipam, format!("{what} failed ({})", out.status)).details(detail));
    }
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&stdout)
        .map(Some)
        .map_err(|e| CniError::new(Code::Ipam, format!("{what} printed invalid JSON: {e}")))
}
