//! The emulated-igb test VM: boots the Debian kernel under QEMU (TCG) with virtme-ng, with the
//! host's filesystem as the guest's root, and runs a list of steps in it.
//!
//! vng's exit status says nothing about the guest (it is 255 even when the script succeeded), so
//! results travel through files: the guest writes each step's output to `<results>/<step>.log`,
//! its exit code to `<step>.rc`, and `done` once the script reached its end. A run without `done`
//! — a VM that did not boot, a script that died, a timeout — is a failed run, never a skip.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    cmd::{display, repo_root, shell_quote},
    setup::VmTools,
};

/// Longest a whole VM run may take before qemu is killed and the run failed, unless
/// `$VFNET_VM_TIMEOUT_SECS` says otherwise (a slower CI machine, or checking the timeout itself).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const TIMEOUT_ENV: &str = "VFNET_VM_TIMEOUT_SECS";
/// Modules the tests need: the PF and VF drivers, vfio-pci for VF passthrough, and the software
/// devices the CNI and tests build on. A failing one is logged, not fatal: the tests say what
/// they missed.
const MODULES: &[&str] = &["igb", "igbvf", "vfio-pci", "8021q", "macvlan", "macvtap", "veth"];
/// Prefix of the guest script's own progress lines on the console, echoed live by the host.
const GUEST_PREFIX: &str = "vfnet-guest:";
/// Prefix tests print to say which PF and VFs they used; echoed from the step logs.
const VM_PREFIX: &str = "vfnet-vm:";
/// File names the harness itself uses in the results directory (`done`, `console.log`,
/// `guest.sh`): no step may be named so.
const RESERVED_NAMES: &[&str] = &["done", "console", "guest"];

/// One command line the guest runs, as root, with `VFNET_VM=1`.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// Names the step's result files, so it must be a plain file name.
    pub(crate) name: String,
    /// A shell command line.
    pub(crate) command: String,
    /// What to tell the user when showing this step's output.
    pub(crate) narration: String,
}

/// What the guest left behind for one step.
#[derive(Debug)]
pub(crate) struct StepResult {
    pub(crate) name: String,
    /// `None` when the guest never wrote the step's exit code.
    pub(crate) rc: Option<i32>,
    pub(crate) log: String,
}

impl StepResult {
    pub(crate) fn passed(&self) -> bool {
        self.rc == Some(0)
    }

    /// How the step ended, in words.
    pub(crate) fn status(&self) -> String {
        match self.rc {
            Some(rc) => format!("exit {rc}"),
            None => "no exit code: it did not finish".to_owned(),
        }
    }

    /// The last `lines` lines of the step's output, for failure reports.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

/// One VM run: which kernel, and the host directory the guest writes its results into.
#[derive(Debug)]
pub(crate) struct Vm<'a> {
    tools: &'a VmTools,
    results: PathBuf,
    memory: String,
    /// QEMU options added after the igb NIC's (the cluster node's uplink).
    qemu_extra: String,
    /// The run's time limit unless `$VFNET_VM_TIMEOUT_SECS` says otherwise.
    timeout: Duration,
}

impl<'a> Vm<'a> {
    /// A VM whose results go to `target/vfnet-vm/runs/<label>/`, emptied at each run so stale
    /// results can never pass for new ones.
    pub(crate) fn new(tools: &'a VmTools, label: &str) -> Self {
        let results = repo_root().join("target/vfnet-vm/runs").join(label);
        Self { tools, results, memory: "2G".into(), qemu_extra: String::new(), timeout: DEFAULT_TIMEOUT }
    }

    /// The guest's memory (QEMU's syntax, `2G`).
    pub(crate) fn memory(mut self, memory: &str) -> Self {
        memory.clone_into(&mut self.memory);
        self
    }

    /// More QEMU options, after the igb NIC's.
    pub(crate) fn qemu_extra(mut self, options: &str) -> Self {
        options.clone_into(&mut self.qemu_extra);
        self
    }

    /// The run's time limit (a cluster run boots a node and runs its pods: longer).
    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The host directory the guest writes its results into.
    pub(crate) fn results(&self) -> &Path {
        &self.results
    }

    /// Boots the VM, runs `steps` in order (all of them, whatever each returns) and collects
    /// their results. Fails only when the run itself failed: no boot, no `done`, a timeout.
    pub(crate) fn run(&self, steps: &[Step]) -> Result<Vec<StepResult>> {
        // One VM at a time on this machine, whoever starts it: two would share the results
        // directory and halve each other's CPU. The lock is released when this run ends.
        let lock_path = repo_root().join("target/vfnet-vm/vm.lock");
        fs::create_dir_all(lock_path.parent().unwrap_or(&lock_path))?;
        let lock = fs::File::create(&lock_path).with_context(|| format!("cannot open {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            println!("    another VM run holds {}; waiting for it", lock_path.display());
            lock.lock().with_context(|| format!("cannot lock {}", lock_path.display()))?;
        }
        let script = self.prepare(steps)?;
        let finished = self.boot(&script, steps.len())?;
        if !self.results.join("done").exists() {
            return Err(self.incomplete(finished));
        }
        let results: Vec<StepResult> = steps.iter().map(|step| self.result(step)).collect();
        for result in &results {
            for line in result.log.lines().map(str::trim_start).filter(|line| line.starts_with(VM_PREFIX)) {
                println!("    [{}] {line}", result.name);
            }
        }
        Ok(results)
    }

    /// Empties the results directory and writes the guest script into it.
    fn prepare(&self, steps: &[Step]) -> Result<PathBuf> {
        for step in steps {
            let plain =
                !step.name.is_empty() && step.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !plain || RESERVED_NAMES.contains(&step.name.as_str()) {
                bail!("step name `{}` cannot name its result files", step.name);
            }
        }
        if self.results.exists() {
            fs::remove_dir_all(&self.results).with_context(|| format!("cannot empty {}", self.results.display()))?;
        }
        fs::create_dir_all(&self.results).with_context(|| format!("cannot create {}", self.results.display()))?;
        let script = self.results.join("guest.sh");
        fs::write(&script, guest_script(&self.results, steps))
            .with_context(|| format!("cannot write {}", script.display()))?;
        Ok(script)
    }

    /// Runs the VM to its end or its timeout, copying its console to `console.log`. Returns
    /// whether it ended by itself.
    fn boot(&self, script: &Path, steps: usize) -> Result<bool> {
        let mut vng = self.command(script);
        println!(
            "==> booting the VM (kernel {}, {steps} step(s), results in {})",
            self.tools.kernel_version,
            self.results.display()
        );
        println!("    $ {}", display(&vng));
        let started = Instant::now();
        let mut child = vng
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.tools.vng.display()))?;
        let first_guest_line = follow_console(&mut child, &self.results.join("console.log"))?;
        let finished = wait_or_kill(&mut child, started + timeout(self.timeout)?)?;
        let wall = started.elapsed().as_secs_f64();
        match first_guest_line.join().unwrap_or(None) {
            Some(at) => println!(
                "    VM ran {wall:.1} s; the guest script started {:.1} s after launch",
                (at - started).as_secs_f64()
            ),
            None => println!("    VM ran {wall:.1} s; the guest script never started"),
        }
        Ok(finished)
    }

    /// The error for a run whose script did not reach its end, with the console's last lines.
    fn incomplete(&self, finished: bool) -> anyhow::Error {
        let console_path = self.results.join("console.log");
        let console = fs::read_to_string(&console_path).unwrap_or_default();
        let why = if finished {
            "the VM stopped before the guest script finished"
        } else {
            "the VM timed out and was killed"
        };
        anyhow::anyhow!(
            "{why} (no {}/done). Last console lines (all in {}):\n{}",
            self.results.display(),
            console_path.display(),
            tail(&console, 40)
        )
    }

    /// The vng command line. q35 with an emulated Intel IOMMU, because vfio-pci needs an IOMMU
    /// (the Debian kernel has no no-IOMMU mode); `-v` because without it the guest script's
    /// output never reaches the host console.
    fn command(&self, script: &Path) -> Command {
        let mut vng = Command::new(&self.tools.vng);
        vng.arg("-v")
            .arg("--disable-kvm")
            .arg("--run")
            .arg(&self.tools.kernel)
            .args(["--memory", &self.memory, "--cpus", "2"])
            .arg(format!(
                "--qemu-opts=-machine q35 -device intel-iommu -device igb,netdev=n0 -netdev user,id=n0 {}",
                self.qemu_extra
            ))
            .args(["--append", "intel_iommu=on"])
            .arg("--rwdir")
            .arg(&self.results)
            .arg("--exec")
            .arg(format!("sh {}", shell_quote(&script.to_string_lossy())))
            .current_dir(repo_root());
        vng
    }

    fn result(&self, step: &Step) -> StepResult {
        let read = |ext: &str| fs::read_to_string(self.results.join(format!("{}.{ext}", step.name)));
        StepResult {
            name: step.name.clone(),
            rc: read("rc").ok().and_then(|rc| rc.trim().parse().ok()),
            log: read("log").unwrap_or_default(),
        }
    }
}

fn timeout(default: Duration) -> Result<Duration> {
    match std::env::var(TIMEOUT_ENV) {
        Ok(secs) => {
            let secs = secs.parse().with_context(|| format!("{TIMEOUT_ENV}={secs} is not a number of seconds"))?;
            Ok(Duration::from_secs(secs))
        }
        Err(_) => Ok(default),
    }
}

/// The script the guest runs. POSIX sh; each step runs in its own `sh -c` so a step that exits
/// or fails cannot stop the steps after it.
fn guest_script(results: &Path, steps: &[Step]) -> String {
    let mut script = format!(
        r#"#!/bin/sh
# Generated by `cargo xtask` (xtask/src/vm.rs) for one VM run; runs as root in the guest.
set -u
R={results}
say() {{ echo "{GUEST_PREFIX} $*"; }}
say "script started at guest uptime $(cut -d' ' -f1 /proc/uptime) s, kernel $(uname -r)"
for m in {modules}; do
    modprobe "$m" || say "modprobe $m failed (exit $?)"
done
# The PF's netdev appears a moment after modprobe returns.
n=0
until ls -d /sys/bus/pci/drivers/igb/*/net/* >/dev/null 2>&1; do
    n=$((n + 1))
    if [ "$n" -gt 300 ]; then say "no igb PF netdev after 30 s"; break; fi
    sleep 0.1
done
say "igb PF netdevs: $(ls -d /sys/bus/pci/drivers/igb/*/net/* 2>/dev/null | tr '\n' ' ')"
# Scratch space on a tmpfs: some tools fail on the 9p root or the overlays.
S=/tmp/vfnet-scratch
mkdir -p "$S" && mount -t tmpfs -o size=512m tmpfs "$S" || say "no tmpfs on $S"
export VFNET_VM=1 VFNET_SCRATCH="$S" TMPDIR="$S" RUST_BACKTRACE=1
# The CNI plugin's node configuration (root's, at its fixed path; the guest's /etc is an overlay):
# the VM tests name their own scratch directories in their network definitions, so this one lets
# them. The demo and the benchmark write their own, as an admin would.
mkdir -p /etc/vfnet && chmod 0755 /etc/vfnet
echo '{{"allowNetworkOverrides": true}}' >/etc/vfnet/node.json && chmod 0644 /etc/vfnet/node.json
step() {{
    say "step $1: $2"
    sh -c "$2" >"$R/$1.log" 2>&1 </dev/null
    rc=$?
    echo "$rc" >"$R/$1.rc"
    say "step $1: exit $rc"
}}
"#,
        results = shell_quote(&results.to_string_lossy()),
        modules = MODULES.join(" "),
    );
    for step in steps {
        script.push_str(&format!("step {} {}\n", shell_quote(&step.name), shell_quote(&step.command)));
    }
    script.push_str("sync\necho done >\"$R/done\"\nsay \"all steps done\"\n");
    script
}

/// Copies vng's stdout and stderr into `console_path`, echoing the guest script's own lines
/// live. The returned thread yields when the first of those lines arrived (the script started).
fn follow_console(child: &mut Child, console_path: &Path) -> Result<thread::JoinHandle<Option<Instant>>> {
    let console =
        fs::File::create(console_path).with_context(|| format!("cannot create {}", console_path.display()))?;
    let console = Arc::new(Mutex::new(console));
    let stderr = child.stderr.take().map(|err| {
        let console = Arc::clone(&console);
        thread::spawn(move || copy_lines(err, &console))
    });
    let stdout = child.stdout.take();
    Ok(thread::spawn(move || {
        let from_stdout = stdout.and_then(|out| copy_lines(out, &console));
        let from_stderr = stderr.and_then(|handle| handle.join().unwrap_or(None));
        from_stdout.into_iter().chain(from_stderr).min()
    }))
}

fn copy_lines(stream: impl Read, console: &Mutex<fs::File>) -> Option<Instant> {
    let mut first_guest_line = None;
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
        if let Ok(mut file) = console.lock() {
            // The console log is only for diagnosis: losing a line must not stop the run.
            let _ = file.write_all(&buf);
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        if line.starts_with(GUEST_PREFIX) {
            first_guest_line.get_or_insert_with(Instant::now);
            println!("    {line}");
        }
        buf.clear();
    }
    first_guest_line
}

/// Waits for vng until `deadline`; then kills it and everything it started (qemu is vng's child,
/// not vng itself). Returns whether vng finished by itself.
fn wait_or_kill(child: &mut Child, deadline: Instant) -> Result<bool> {
    loop {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            let pids = process_tree(child.id());
            println!("    timeout: killing vng and its children {pids:?}");
            let _ = Command::new("kill").arg("-KILL").args(pids.iter().map(u32::to_string)).status();
            child.wait()?;
            return Ok(false);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// `root` and all its descendants, from the parent pids in `/proc/<pid>/stat`.
fn process_tree(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // The command name may hold spaces and parentheses: the fields after the last ')' are
        // the state, then the parent pid.
        let ppid = fs::read_to_string(entry.path().join("stat")).ok().and_then(|stat| {
            let (_, fields) = stat.rsplit_once(')')?;
            fields.split_whitespace().nth(1)?.parse::<u32>().ok()
        });
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(&pid) = tree.get(next) {
        tree.extend(parents.iter().filter(|(_, ppid)| *ppid == pid).map(|(child, _)| *child));
        next += 1;
    }
    tree
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_script_runs_every_step_and_ends_with_done() {
        let steps = [
            Step { name: "one".into(), command: "echo 'hi there'".into(), narration: String::new() },
            Step { name: "two".into(), command: "exit 1".into(), narration: String::new() },
        ];
        let script = guest_script(Path::new("/r s"), &steps);
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains("\nset -u\n"));
        assert!(script.contains("\nR='/r s'\n"));
        assert!(script.contains("\nstep one 'echo '\\''hi there'\\'''\nstep two 'exit 1'\n"));
        assert!(script.trim_end().ends_with("say \"all steps done\""));
        assert!(script.contains("export VFNET_VM=1"));
    }

    #[test]
    fn process_tree_includes_the_root() {
        assert_eq!(process_tree(u32::MAX), vec![u32::MAX]);
        assert!(process_tree(std::process::id()).contains(&std::process::id()));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
