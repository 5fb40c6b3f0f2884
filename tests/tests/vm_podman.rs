//! A real container runtime on a real igb VF (emulated 82576): Debian's podman 4.3 with its CNI
//! backend (libcni) runs a container on a network whose conflist chains vfnet and Debian's
//! `tuning` plugin after it. The container reports what it sees itself (its own busybox `ip` and
//! its sysfs); the host reads the PF's VF table during the run and the VF's state after
//! `podman run --rm` has exited. Runs in the VM only.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sriov::PciAddress;
use sriov::sysfs::Pf;
use vfnet_e2e::cni::{DEBIAN_CNI_DIR, VfSnapshot, bin_dir, snapshot};
use vfnet_e2e::{igb_pf_with_vfs, say};

/// The podman network (the conflist's `name`).
const NETWORK: &str = "vfnet-podman";
const VLAN: u16 = 400;
const SUBNET_PREFIX: &str = "10.77.0.";
/// Set by `tuning`, never by vfnet (the config gives vfnet no `mtu`): seeing it in the container
/// proves the chained plugin ran on the interface vfnet's result named.
const TUNED_MTU: u32 = 1400;
/// Busybox applets the container's rootfs gets.
const APPLETS: &[&str] = &["sh", "ip", "cat", "ls", "echo", "readlink", "sleep"];
/// What the container prints once it has reported, before it waits for the host.
const READY: &str = "vfnet-podman-ready";
/// Podman under TCG: pulling nothing, but starting conmon, crun and the plugins takes a while.
const START_TIMEOUT: Duration = Duration::from_secs(240);
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);

/// The container's script: report the interface, then wait until the host closes stdin.
const REPORT: &str = "echo links: $(ls /sys/class/net); ip addr show dev eth0; ip link show dev eth0; \
     echo \"device: $(readlink /sys/class/net/eth0/device)\"; cat /sys/class/net/eth0/device/uevent; \
     echo \"mtu: $(cat /sys/class/net/eth0/mtu)\"; echo vfnet-podman-ready; read -r _";

/// A test's private directories (on the guest's tmpfs: podman's storage database fails to open
/// on the 9p root). Names are short: podman refuses a `--runroot` longer than 50 characters.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Result<Self> {
        let base = std::env::var_os("VFNET_SCRATCH").map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = base.join(format!("podman-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["net", "state", "run", "profiles", "ipam", "storage", "runroot"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let runroot = dir.join("runroot");
        ensure!(runroot.as_os_str().len() <= 50, "podman refuses a runroot over 50 characters: {}", runroot.display());
        Ok(Self { dir })
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.join(sub)
    }

    /// A minimal rootfs: busybox-static and a few applet links.
    fn rootfs(&self) -> Result<PathBuf> {
        let root = self.path("rootfs");
        for sub in ["bin", "proc", "sys", "dev", "etc", "tmp", "run"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .context("copy /bin/busybox (Debian's busybox-static) into the rootfs")?;
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
        }
        Ok(root)
    }

    /// podman's configuration: the CNI backend, vfnet's directory before Debian's plugins, and
    /// this test's conflist directory.
    fn containers_conf(&self) -> Result<PathBuf> {
        let toml_str = |p: &Path| Value::from(p.to_string_lossy()).to_string();
        let conf = format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [{}, {}]\nnetwork_config_dir = {}\n",
            toml_str(&bin_dir()),
            toml_str(Path::new(DEBIAN_CNI_DIR)),
            toml_str(&self.path("net")),
        );
        let path = self.path("containers.conf");
        std::fs::write(&path, conf)?;
        Ok(path)
    }

    /// Writes the network: vfnet on `vf` (VLAN 400, host-local IPAM), then `tuning`.
    fn conflist(&self, vf: &PciAddress, tuning: Value) -> Result<Value> {
        let mut tuning_plugin = json!({"type": "tuning"});
        if let (Value::Object(m), Value::Object(t)) = (&mut tuning_plugin, tuning) {
            m.extend(t);
        }
        let conf = json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [
                {
                    "type": "vfnet",
                    "deviceID": vf,
                    "vlan": VLAN,
                    "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": self.path("ipam")},
                    "stateDir": self.path("state"),
                    "runDir": self.path("run"),
                    "profileDir": self.path("profiles"),
                    "logLevel": "debug",
                    "logFile": self.path("vfnet.log"),
                },
                tuning_plugin,
            ],
        });
        std::fs::write(self.path("net").join(format!("{NETWORK}.conflist")), serde_json::to_string_pretty(&conf)?)?;
        Ok(conf)
    }

    fn journal_exists(&self, vf: &PciAddress) -> bool {
        self.path("state").join("vfs").join(format!("{vf}.json")).exists()
    }

    /// Addresses host-local holds for the network (files named after addresses).
    fn reservations(&self) -> usize {
        std::fs::read_dir(self.path("ipam").join(NETWORK))
            .map(|d| {
                d.flatten().filter(|e| e.file_name().to_string_lossy().parse::<std::net::IpAddr>().is_ok()).count()
            })
            .unwrap_or(0)
    }

    /// vfnet's own log of this test (for failure messages).
    fn vfnet_log(&self) -> String {
        std::fs::read_to_string(self.path("vfnet.log")).unwrap_or_else(|e| format!("(no vfnet log: {e})"))
    }

    /// The vfnet commands that succeeded, in order, with the container ID the runtime gave each
    /// (from the log's `vfnet{cmd=… container=… ifname=…}: done total_ms=… steps=…` lines).
    fn vfnet_runs(&self) -> Vec<(String, String)> {
        let field = |line: &str, key: &str| {
            let rest = line.split_once(&format!("{key}="))?.1;
            let value = rest.split([' ', '}']).next()?;
            Some(value.trim_matches('"').to_owned())
        };
        self.vfnet_log()
            .lines()
            .filter(|l| l.contains("}: done total_ms="))
            .filter_map(|l| Some((field(l, "cmd")?, field(l, "container")?)))
            .collect()
    }

    /// Fails unless vfnet's log shows exactly one ADD then a DEL for the same container, and
    /// returns that container's ID.
    fn add_then_del(&self) -> Result<String> {
        let runs = self.vfnet_runs();
        let adds: Vec<&String> = runs.iter().filter(|(c, _)| c == "ADD").map(|(_, id)| id).collect();
        let [id] = adds[..] else { bail!("expected one vfnet ADD, the log shows {runs:?}:\n{}", self.vfnet_log()) };
        let add_at = runs.iter().position(|(c, _)| c == "ADD").unwrap_or_default();
        ensure!(
            runs[add_at..].iter().any(|(c, i)| c == "DEL" && i == id),
            "no vfnet DEL for container {id} after its ADD; the log shows {runs:?}:\n{}",
            self.vfnet_log()
        );
        ensure!(id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()), "not a podman container ID: {id}");
        Ok(id.clone())
    }
}

/// `podman run` of a busybox container attached to the test network, with its output read
/// line by line as it comes so the host can act while the container waits.
struct Podman {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Podman {
    /// The podman command line, for the report.
    fn command(s: &Scratch, rootfs: &Path, script: &str) -> Result<Command> {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", s.containers_conf()?)
            .arg("--storage-driver")
            .arg("vfs")
            .arg("--root")
            .arg(s.path("storage"))
            .arg("--runroot")
            .arg(s.path("runroot"))
            .args(["run", "--rm", "-i", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"])
            .args(["--network", NETWORK, "--rootfs"])
            .arg(rootfs)
            .args(["/bin/sh", "-c", script]);
        Ok(cmd)
    }

    fn start(mut cmd: Command) -> Result<Self> {
        let args: Vec<String> = cmd.get_args().map(|a| quote(&a.to_string_lossy())).collect();
        let env: Vec<String> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), quote(&v?.to_string_lossy()))))
            .collect();
        say(format_args!("$ {} podman {}", env.join(" "), args.join(" ")));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("start podman (Debian's podman package, installed by cargo xtask vm-setup)")?;
        let stdin = child.stdin.take();
        let out = child.stdout.take().context("podman stdout")?;
        let mut err = child.stderr.take().context("podman stderr")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Ok(Self { child, stdin, lines, stdout: Vec::new(), stderr: Some(stderr) })
    }

    /// Collects the container's output until it prints `marker`. Fails if podman ends first.
    fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.trim() == marker;
                    self.stdout.push(line);
                    if done {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "no `{marker}` from the container within {timeout:?}; output so far:\n{}",
                        self.stdout.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("podman ended before `{marker}`; output:\n{}", self.stdout.join("\n"))
                }
            }
        }
    }

    /// Closes the container's stdin (its `read` returns) and waits for podman to exit.
    /// Returns the exit status and podman's stderr.
    fn finish(&mut self, timeout: Duration) -> Result<(ExitStatus, String)> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"done\n");
        }
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("podman did not exit within {timeout:?} after the container was told to");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        self.stdout.extend(self.lines.try_iter());
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        Ok((status, stderr))
    }
}

impl Drop for Podman {
    /// A test that failed midway still lets the container end, so `--rm` cleans up and the VF
    /// goes back before the next test.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.finish(EXIT_TIMEOUT);
        }
    }
}

/// What the container said about its `eth0`.
#[derive(Debug)]
struct Seen {
    pci: String,
    address: String,
    mtu: u32,
    mac: String,
    flags: String,
}

impl Seen {
    fn parse(lines: &[String]) -> Result<Self> {
        let all = lines.join("\n");
        let find = |prefix: &str| lines.iter().find_map(|l| l.trim().strip_prefix(prefix).map(str::trim));
        let links = find("links:").with_context(|| format!("no links line in:\n{all}"))?;
        let mut names: Vec<&str> = links.split_whitespace().collect();
        names.sort_unstable();
        ensure!(names == ["eth0", "lo"], "the container's links are {links:?}, not eth0 and lo:\n{all}");
        let pci = find("PCI_SLOT_NAME=").with_context(|| format!("eth0 is not a PCI device:\n{all}"))?.to_owned();
        let address = lines
            .iter()
            .find_map(|l| l.trim().strip_prefix("inet ").and_then(|rest| rest.split_whitespace().next()))
            .with_context(|| format!("eth0 has no IPv4 address:\n{all}"))?
            .to_owned();
        let mtu = find("mtu:").and_then(|m| m.parse().ok()).with_context(|| format!("no mtu line in:\n{all}"))?;
        let mac = lines
            .iter()
            .find_map(|l| l.trim().strip_prefix("link/ether ").and_then(|rest| rest.split_whitespace().next()))
            .with_context(|| format!("eth0 has no MAC:\n{all}"))?
            .to_owned();
        // `N: eth0: <FLAGS> mtu M ...` from `ip link`.
        let flags = lines
            .iter()
            .find_map(|l| l.split_once("eth0: <").and_then(|(_, rest)| rest.split_once('>')).map(|(f, _)| f))
            .with_context(|| format!("no link line for eth0 in:\n{all}"))?
            .to_owned();
        Ok(Self { pci, address, mtu, mac, flags })
    }
}

/// `arg` as a shell word, for showing command lines.
fn quote(arg: &str) -> String {
    if arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c)) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

fn pf_name(pf: &Pf) -> Result<String> {
    pf.netdev.clone().context("igb PF without netdev")
}

/// After `podman run --rm` returned: waits (briefly) until the VF is exactly as before.
fn wait_restored(pfn: &str, vf: &sriov::sysfs::Vf, before: &VfSnapshot) -> Result<VfSnapshot> {
    let start = Instant::now();
    loop {
        let now = snapshot(pfn, vf.index, &vf.pci)?;
        if &now == before || start.elapsed() > Duration::from_secs(30) {
            return Ok(now);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn podman_runs_a_container_on_a_vf_chained_with_tuning() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let pfn = pf_name(&pf)?;
    let vf = pf.vfs[0].clone();
    let before = snapshot(&pfn, vf.index, &vf.pci)?;
    let (host_name, host_mac, _) = before.netdev.clone().context("the VF has no netdev in the host namespace")?;
    ensure!(before.pf_side.vlan == 0, "VF {} starts with vlan {}", vf.pci, before.pf_side.vlan);
    let s = Scratch::new("chain")?;
    let rootfs = s.rootfs()?;
    let conflist = s.conflist(&vf.pci, json!({"mtu": TUNED_MTU}))?;
    let containers_conf = std::fs::read_to_string(s.containers_conf()?)?;
    say(format_args!("containers.conf: {}", containers_conf.trim().replace('\n', " | ")));
    say(format_args!("{NETWORK}.conflist: {conflist}"));

    let started = Instant::now();
    let mut podman = Podman::start(Podman::command(&s, &rootfs, REPORT)?)?;
    podman.wait_for(READY, START_TIMEOUT).with_context(|| format!("vfnet log:\n{}", s.vfnet_log()))?;
    let up = started.elapsed();
    for line in &podman.stdout {
        say(format_args!("container| {line}"));
    }

    // The container's own view.
    let seen = Seen::parse(&podman.stdout)?;
    ensure!(seen.pci == vf.pci.to_string(), "the container's eth0 is {} but vfnet was given VF {}", seen.pci, vf.pci);
    ensure!(
        seen.address.starts_with(SUBNET_PREFIX) && seen.address.ends_with("/24"),
        "eth0 address {} is not host-local's 10.77.0.0/24",
        seen.address
    );
    ensure!(seen.mtu == TUNED_MTU, "eth0 mtu {} (tuning should have set {TUNED_MTU})", seen.mtu);
    ensure!(seen.mac == host_mac, "eth0 MAC {} is not the VF's {host_mac}", seen.mac);
    ensure!(seen.flags.split(',').any(|f| f == "UP"), "eth0 is not up: <{}>", seen.flags);
    say(format_args!(
        "container up after {up:?}: its eth0 is VF {} (PCI_SLOT_NAME, MAC {}), {} from host-local, \
         mtu {} set by the chained tuning plugin",
        seen.pci, seen.mac, seen.address, seen.mtu
    ));

    // The host's view while the container runs.
    let during = snapshot(&pfn, vf.index, &vf.pci)?;
    ensure!(during.pf_side.vlan == VLAN, "PF {pfn} VF {} vlan during the run: {:?}", vf.index, during.pf_side);
    ensure!(during.netdev.is_none(), "the VF netdev is still in the host namespace: {:?}", during.netdev);
    ensure!(s.journal_exists(&vf.pci), "no vfnet journal for {} during the run", vf.pci);
    ensure!(s.reservations() == 1, "host-local holds {} addresses during the run", s.reservations());
    say(format_args!(
        "host during the run: PF {pfn} VF {} vlan {VLAN}, VF netdev gone from the host, journal in stateDir",
        vf.index
    ));

    // `podman run --rm` ends: libcni runs DEL (tuning, then vfnet).
    let (status, stderr) = podman.finish(EXIT_TIMEOUT)?;
    ensure!(status.success(), "podman exited with {status}: {stderr}\nvfnet log:\n{}", s.vfnet_log());
    for line in stderr.lines() {
        say(format_args!("podman stderr| {line}"));
    }
    let after = wait_restored(&pfn, &vf, &before)?;
    ensure!(after == before, "after podman run --rm: {after:?} != before {before:?}\nvfnet log:\n{}", s.vfnet_log());
    ensure!(!s.journal_exists(&vf.pci), "vfnet journal left in stateDir after the container ended");
    ensure!(s.reservations() == 0, "host-local still holds an address after the container ended");
    let id = s.add_then_del()?;
    say(format_args!(
        "after podman run --rm ({:?} in all): vfnet ran ADD then DEL for container {}; VF {} back in the host \
         as {host_name} (MAC, mtu {}) with vlan {}, no journal, address released",
        started.elapsed(),
        &id[..12],
        vf.pci,
        after.netdev.as_ref().map_or(0, |n| n.2),
        after.pf_side.vlan
    ));
    Ok(())
}

/// The chained plugin fails after vfnet succeeded: podman gives up on the container, and what
/// vfnet did must be undone by the runtime's DEL.
#[test]
#[ignore = "needs the emulated igb VM: run through cargo xtask test"]
fn podman_undoes_vfnet_when_the_chained_plugin_fails() -> Result<()> {
    let pf = igb_pf_with_vfs(4)?;
    let pfn = pf_name(&pf)?;
    let vf = pf.vfs[1].clone();
    let before = snapshot(&pfn, vf.index, &vf.pci)?;
    let s = Scratch::new("fail")?;
    let rootfs = s.rootfs()?;
    s.conflist(&vf.pci, json!({"sysctl": {"net.ipv4.conf.eth0.vfnet_no_such_knob": "1"}}))?;
    let mut podman = Podman::start(Podman::command(&s, &rootfs, REPORT)?)?;
    let reached = podman.wait_for(READY, START_TIMEOUT);
    let (status, stderr) = podman.finish(EXIT_TIMEOUT)?;
    ensure!(reached.is_err() && !status.success(), "the container ran although tuning must fail: {status}");
    ensure!(stderr.contains("vfnet_no_such_knob"), "podman's error does not name tuning's failure: {stderr}");
    let after = wait_restored(&pfn, &vf, &before)?;
    ensure!(after == before, "after the failed start: {after:?} != before {before:?}\nvfnet log:\n{}", s.vfnet_log());
    ensure!(!s.journal_exists(&vf.pci), "vfnet journal left after the failed start");
    ensure!(s.reservations() == 0, "host-local still holds an address after the failed start");
    let id = s.add_then_del()?;
    say(format_args!(
        "tuning failed after vfnet's ADD ({}); podman's teardown ran vfnet DEL for container {}: VF {} exactly \
         as before (vlan {}), no journal, address released",
        stderr.lines().find(|l| l.contains("vfnet_no_such_knob")).unwrap_or_default().trim(),
        &id[..12],
        vf.pci,
        after.pf_side.vlan
    ));
    Ok(())
}
