//! Running the `vfnet` binary (and Debian's reference plugins) the way a container runtime does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use sriov::PciAddress;
use sriov::netlink::{LinkOps, Netlink, VfState};

/// Debian's CNI plugins.
pub const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";

/// The directory of vfnet's binaries: `VFNET_BIN_DIR` (set by the harness), else the
/// directory above the test executable's `deps/`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VFNET_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
}

/// Writes the CNI plugin's node configuration at its fixed path, root's alone, as the DaemonSet's
/// `vfnet install --node-config` would. In the VM only (see [`crate::node_files`]).
pub fn install_node_config(config: &Value) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = Path::new(vfnet_types::layout::NODE_CONFIG);
    let dir = path.parent().context("the node configuration has a directory")?;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    crate::node_files::write_atomic(path, &serde_json::to_vec_pretty(config)?)
}

/// What a plugin run produced.
#[derive(Debug)]
pub struct Output {
    /// Exit code (`None`: killed by a signal, e.g. an injected crash).
    pub code: Option<i32>,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl Output {
    /// stdout as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("stdout is not JSON: {:?} (stderr: {})", self.stdout, self.stderr))
    }

    /// Fails unless the plugin succeeded.
    pub fn ok(self) -> Result<Self> {
        anyhow::ensure!(
            self.code == Some(0),
            "plugin failed ({:?}): stdout {} stderr {}",
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }

    /// The CNI error code of a failed run.
    pub fn error_code(&self) -> Option<u64> {
        serde_json::from_str::<Value>(&self.stdout).ok()?.get("code")?.as_u64()
    }
}

/// One plugin invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The plugin executable.
    pub plugin: PathBuf,
    /// `CNI_COMMAND`.
    pub command: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

impl Invocation {
    /// `vfnet` `command` for container `id`.
    pub fn vfnet(command: &str, id: &str, netns: Option<&Path>, ifname: &str) -> Self {
        Self {
            plugin: bin_dir().join("vfnet"),
            command: command.into(),
            container_id: id.into(),
            netns: netns.map(Path::to_path_buf),
            ifname: ifname.into(),
            args: String::new(),
            env: Vec::new(),
        }
    }

    /// Runs it with `config` on stdin.
    pub fn run(&self, config: &Value) -> Result<Output> {
        let path = format!("{}:{DEBIAN_CNI_DIR}", bin_dir().display());
        let mut cmd = Command::new(&self.plugin);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", &self.command)
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_IFNAME", &self.ifname)
            .env("CNI_ARGS", &self.args)
            .env("CNI_PATH", path)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ns) = &self.netns {
            cmd.env("CNI_NETNS", ns);
        }
        let start = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("run {}", self.plugin.display()))?;
        child.stdin.take().context("stdin")?.write_all(config.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
        })
    }
}

/// A VF's host-side state: its PF-side settings and its netdev in the host namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfSnapshot {
    /// The PF's view.
    pub pf_side: VfState,
    /// Host netdev (name, MAC, MTU), `None` if not in the host namespace.
    pub netdev: Option<(String, String, u32)>,
}

/// Reads a VF's snapshot.
pub fn snapshot(pf_name: &str, vf_index: u32, vf: &PciAddress) -> Result<VfSnapshot> {
    let nl = Netlink::new()?;
    let pf = nl.link_by_name(pf_name)?;
    let pf_side =
        nl.vf_states(pf.index)?.into_iter().find(|s| s.index == vf_index).context("VF not in the PF's table")?;
    let netdev = nl.link_by_pci(vf).ok().map(|l| (l.name, l.mac.map(|m| m.to_string()).unwrap_or_default(), l.mtu));
    Ok(VfSnapshot { pf_side, netdev })
}

/// Waits until the VF's netdev is back in the host namespace (after a namespace died, the kernel
/// returns it asynchronously).
pub fn wait_for_host_netdev(vf: &PciAddress, timeout: Duration) -> Result<String> {
    let start = Instant::now();
    let nl = Netlink::new()?;
    loop {
        if let Ok(l) = nl.link_by_pci(vf) {
            return Ok(l.name);
        }
        anyhow::ensure!(start.elapsed() < timeout, "VF {vf} netdev did not come back to the host within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
