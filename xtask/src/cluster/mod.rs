//! The real Kubernetes test cluster: etcd and the control plane on the host
//! ([`control_plane`]), kubelet and containerd in the emulated-igb guest (`node.sh`), every
//! component built from its published Go modules ([`crate::k8s`]), the images built here
//! ([`crate::images`]) and imported without a registry.
//!
//! `cargo xtask test` runs the real-cluster suite on it (the `cluster_*` test targets of
//! `vfnet-e2e`, run in the guest); `cargo xtask cluster up` starts the same cluster and leaves it
//! running for trying vfnet by hand, `cluster down` stops it.

mod control_plane;
mod egress;
pub(crate) mod net;
mod pki;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd::{repo_root, run, shell_quote};
use crate::setup::VmTools;
use crate::vm::{Step, StepResult, Vm};
pub(crate) use control_plane::ControlPlane;
use pki::{Identity, Pki};

/// The node's name (kubelet's `--hostname-override`): the guest's own host name is virtme-ng's.
pub(crate) const NODE_NAME: &str = "vfnet-node";
/// The guest's memory when it runs a node: kubelet, containerd, the pods and the tests.
pub(crate) const NODE_MEMORY: &str = "4G";
/// Longest a VM run on the cluster's node may take: a guard against a hung guest only, since
/// every wait in the suite has its own bound and names what it waited for. Measured: the suite
/// ran in 13 minutes on a quiet machine, 31–43 minutes on busier ones, and past 45 minutes on a
/// host whose CPU time was half stolen (`steal` in /proc/stat), so the guard leaves room for that.
const NODE_RUN_TIMEOUT: Duration = Duration::from_secs(90 * 60);
/// 2 MiB huge pages reserved on the node (512 MiB) for the userspace example pod.
const HUGEPAGES_2M: u32 = 256;
/// The OCI runtime containerd's runc shim drives: Debian's runc (vm-setup installs it). Debian's
/// crun 1.8 refuses the OCI spec version containerd 2.4 writes ("unknown version specified").
const OCI_RUNTIME: &str = "/usr/bin/runc";

/// Every client of the API server, each with its own certificate.
pub(crate) const IDENTITIES: &[Identity] = &[
    Identity { file: "admin", user: "vfnet-admin", groups: &["system:masters"] },
    Identity { file: "controller-manager", user: "system:kube-controller-manager", groups: &[] },
    Identity { file: "scheduler", user: "system:kube-scheduler", groups: &[] },
    Identity { file: "kubelet", user: "system:node:vfnet-node", groups: &["system:nodes"] },
    Identity { file: "multus", user: "multus", groups: &[] },
    Identity { file: "apiserver-kubelet-client", user: "kube-apiserver-kubelet-client", groups: &[] },
];
/// The identities used from the guest (their kubeconfigs name the guest's view of the server).
const GUEST_IDENTITIES: &[&str] = &["admin", "kubelet", "multus"];

/// The component binaries.
#[derive(Debug, Clone)]
pub(crate) struct Bins {
    pub(crate) kubernetes: PathBuf,
    pub(crate) etcd: PathBuf,
    pub(crate) containerd: PathBuf,
    pub(crate) multus: PathBuf,
    pub(crate) version: String,
}

impl Bins {
    pub(crate) fn kube(&self, name: &str) -> PathBuf {
        self.kubernetes.join(name)
    }

    /// Builds (or finds cached) every component.
    pub(crate) fn ensure() -> Result<Self> {
        let built = crate::k8s::ensure(&["kubernetes", "etcd", "containerd", "multus"])?;
        let dir = |name: &str| -> Result<PathBuf> {
            built.iter().find(|c| c.name == name).map(|c| c.dir.clone()).with_context(|| format!("no {name} component"))
        };
        let version = built.iter().find(|c| c.name == "kubernetes").map(|c| c.version.clone()).unwrap_or_default();
        Ok(Self {
            kubernetes: dir("kubernetes")?,
            etcd: dir("etcd")?.join("etcd"),
            containerd: dir("containerd")?,
            multus: dir("multus")?,
            version,
        })
    }
}

/// Where one cluster keeps its files on the host: `target/vfnet-cluster/<label>/`.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) dir: PathBuf,
}

impl Layout {
    fn new(label: &str) -> Self {
        Self { dir: repo_root().join("target/vfnet-cluster").join(label) }
    }
    pub(crate) fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }
    pub(crate) fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }
    /// The host-side kubeconfig of identity `file`.
    pub(crate) fn kubeconfig(&self, file: &str) -> PathBuf {
        self.pki_dir().join(format!("{file}.kubeconfig"))
    }
}

/// A running control plane with its PKI, ready for a node to join.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) bins: Bins,
    pub(crate) layout: Layout,
    pub(crate) images: Vec<PathBuf>,
    pub(crate) control_plane: ControlPlane,
}

impl Cluster {
    /// Builds what is missing, makes a fresh PKI and store, starts the control plane and applies
    /// the test bed's own objects (Multus's CRD and RBAC).
    pub(crate) fn start(label: &str) -> Result<Self> {
        let bins = Bins::ensure()?;
        let layout = Layout::new(label);
        fs::create_dir_all(layout.dir.join("logs"))?;
        let images = crate::images::build_all(&layout.dir.join("images"))?;
        for (name, path) in &images {
            println!("    image {name}: {}", path.display());
        }
        let pki = Pki::create(&layout.pki_dir(), &net::server_sans(), IDENTITIES)?;
        for id in IDENTITIES {
            pki.kubeconfig(id, &net::host_server(), id.file)?;
            if GUEST_IDENTITIES.contains(&id.file) {
                // Same key and certificate, the guest's view of the server.
                pki.kubeconfig(id, &net::guest_server(), &format!("{}.guest", id.file))?;
            }
        }
        println!("==> control plane (Kubernetes {}) on the host", bins.version);
        let control_plane = ControlPlane::start(&bins, &layout, &pki)?;
        let cluster = Self { bins, layout, images: images.into_iter().map(|(_, p)| p).collect(), control_plane };
        run(cluster.kubectl().args(["apply", "-f"]).arg(repo_root().join("k8s/manifests")))?;
        cluster.write_install_overlay()?;
        Ok(cluster)
    }

    /// The kustomize overlay an operator would write to install vfnet: `manifests/` with only the
    /// image reference set (to the image imported into the node's containerd).
    pub(crate) fn install_overlay(&self) -> PathBuf {
        self.layout.dir.join("install")
    }

    fn write_install_overlay(&self) -> Result<()> {
        let dir = self.install_overlay();
        fs::create_dir_all(&dir)?;
        // `<repo>/target/vfnet-cluster/<label>/install` -> `<repo>/manifests`.
        let (name, tag) = crate::images::DEV_IMAGE.rsplit_once(':').context("image reference without a tag")?;
        let text = format!(
            "# Written by `cargo xtask` for the test cluster: vfnet's manifests as published, with the\n\
             # image imported into the node's containerd.\n\
             apiVersion: kustomize.config.k8s.io/v1beta1\n\
             kind: Kustomization\n\
             resources:\n  - ../../../../manifests\n\
             images:\n  - name: vfnet\n    newName: {name}\n    newTag: {tag}\n"
        );
        fs::write(dir.join("kustomization.yaml"), text)?;
        Ok(())
    }

    /// kubectl on the host as the admin.
    pub(crate) fn kubectl(&self) -> Command {
        let mut c = Command::new(self.bins.kube("kubectl"));
        c.arg(format!("--kubeconfig={}", self.layout.kubeconfig("admin").display()));
        c
    }

    /// The VM for this cluster's node: more memory, and the uplink NIC.
    pub(crate) fn vm<'a>(&self, tools: &'a VmTools, label: &str) -> Vm<'a> {
        Vm::new(tools, label).memory(NODE_MEMORY).qemu_extra(&net::qemu_uplink()).timeout(NODE_RUN_TIMEOUT)
    }

    /// Writes `node.sh` and its `node.env` into `dir` (the VM's results directory, which the
    /// guest can write: kubelet's and containerd's logs go there too) and returns the script.
    pub(crate) fn node_script(&self, results: &Path) -> Result<PathBuf> {
        let node_dir = self.layout.dir.join("node");
        fs::create_dir_all(&node_dir)?;
        let script = node_dir.join("node.sh");
        fs::write(&script, include_str!("node.sh"))?;
        let images: Vec<String> = self.images.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let vars = [
            ("R", results.to_string_lossy().into_owned()),
            ("K8S_BIN", self.bins.kubernetes.to_string_lossy().into_owned()),
            ("CONTAINERD_BIN", self.bins.containerd.to_string_lossy().into_owned()),
            ("MULTUS_BIN", self.bins.multus.to_string_lossy().into_owned()),
            ("PKI", self.layout.pki_dir().to_string_lossy().into_owned()),
            ("IMAGES", images.join(" ")),
            ("NODE_NAME", NODE_NAME.to_owned()),
            ("NODE_IP", net::NODE_IP.to_owned()),
            ("HOST_ALIAS", net::HOST_ALIAS.to_owned()),
            ("POD_CIDR", net::POD_CIDR.to_owned()),
            ("SANDBOX_IMAGE", crate::images::PAUSE_IMAGE.to_owned()),
            ("OCI_RUNTIME", OCI_RUNTIME.to_owned()),
            ("HUGEPAGES_2M", HUGEPAGES_2M.to_string()),
            ("OVERLAY", self.install_overlay().to_string_lossy().into_owned()),
        ];
        let env: String = vars.iter().map(|(k, v)| format!("{k}={}\n", shell_quote(v))).collect();
        fs::write(node_dir.join("node.env"), env)?;
        Ok(script)
    }

    /// The environment the real-cluster tests read in the guest.
    pub(crate) fn test_env(&self, node_script: &Path) -> String {
        let vars = [
            ("VFNET_KUBECTL", self.bins.kube("kubectl")),
            ("KUBECONFIG", self.layout.pki_dir().join("admin.guest.kubeconfig")),
            ("VFNET_NODE_SCRIPT", node_script.to_path_buf()),
            ("VFNET_INSTALL_OVERLAY", self.install_overlay()),
        ];
        let mut env: Vec<String> =
            vars.iter().map(|(k, v)| format!("{k}={}", shell_quote(&v.to_string_lossy()))).collect();
        env.push(format!("VFNET_NODE_NAME={NODE_NAME}"));
        env.push(format!("VFNET_K8S_VERSION={}", shell_quote(&self.bins.version)));
        env.push(format!("VFNET_SANDBOX_IMAGE={}", shell_quote(crate::images::PAUSE_IMAGE)));
        env.join(" ")
    }
}

/// The steps of a VM run on this cluster's node: bring it up, `middle`, take it down.
pub(crate) fn node_steps(node_script: &Path, middle: Vec<Step>) -> Vec<Step> {
    let sh = |arg: &str| format!("sh {} {arg}", shell_quote(&node_script.to_string_lossy()));
    let mut steps = vec![Step { name: "node-up".into(), command: sh("up"), narration: "the node joins".into() }];
    steps.extend(middle);
    steps.push(Step { name: "node-down".into(), command: sh("down"), narration: "the node stops".into() });
    steps
}

/// The `node-up` step's failure, with the tail of its log, or nothing.
pub(crate) fn node_up_failure(results: &[StepResult]) -> Option<String> {
    let up = results.iter().find(|r| r.name == "node-up")?;
    (!up.passed()).then(|| format!("the node did not come up ({}):\n{}", up.status(), up.log_tail(60)))
}

/// The last `lines` lines of a log file.
pub(crate) fn tail_of(path: &Path, lines: usize) -> String {
    crate::vm::tail(&fs::read_to_string(path).unwrap_or_default(), lines)
}

/// `cargo xtask cluster up | down`.
pub(crate) fn cli(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("up") => up(),
        Some("down") => down(),
        Some("serve") => serve(),
        Some("control-plane") => check_control_plane(),
        _ => bail!("usage: cargo xtask cluster up | down | control-plane"),
    }
}

const LABEL: &str = "up";

/// `cluster control-plane`: starts the control plane alone on the host, checks that each
/// identity is what the authorizers make of it, and stops it.
pub(crate) fn check_control_plane() -> Result<()> {
    let cluster = Cluster::start("control-plane")?;
    let who = [
        ("admin", "create", "nodes", true),
        ("kubelet", "get", "nodes/vfnet-node", true),
        ("kubelet", "list", "secrets", false),
        ("multus", "get", "pods", true),
        ("multus", "delete", "pods", false),
        ("scheduler", "create", "bindings", true),
    ];
    for (id, verb, resource, allowed) in who {
        let out = Command::new(cluster.bins.kube("kubectl"))
            .arg(format!("--kubeconfig={}", cluster.layout.kubeconfig(id).display()))
            .args(["auth", "can-i", verb, resource])
            .output()?;
        let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        println!("    {id}: can-i {verb} {resource}: {said}");
        if said.starts_with("yes") != allowed {
            bail!("{id} may{} {verb} {resource}", if allowed { " not" } else { "" });
        }
    }
    Ok(())
}

fn results_dir() -> PathBuf {
    repo_root().join("target/vfnet-vm/runs/cluster-up")
}

/// Starts `cluster serve` in the background and waits until its node is Ready.
fn up() -> Result<()> {
    let layout = Layout::new(LABEL);
    fs::create_dir_all(&layout.dir)?;
    let log = layout.dir.join("serve.log");
    let ready = results_dir().join("ready");
    // A previous run's results must not be read as this one's.
    if results_dir().exists() {
        fs::remove_dir_all(results_dir())?;
    }
    let exe = std::env::current_exe()?;
    let file = fs::File::create(&log)?;
    // Its own process group: it outlives this command and the terminal's signals.
    let mut child = Command::new(exe);
    std::os::unix::process::CommandExt::process_group(&mut child, 0);
    let mut child = child
        .args(["cluster", "serve"])
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("cannot start `xtask cluster serve`")?;
    println!("==> starting the cluster (log: {})", log.display());
    let started = Instant::now();
    while !ready.exists() {
        if let Some(status) = child.try_wait()? {
            bail!("the cluster did not start ({status}); last lines of {}:\n{}", log.display(), tail_of(&log, 40));
        }
        let install_rc = fs::read_to_string(results_dir().join("install.rc")).unwrap_or_default();
        if !install_rc.trim().is_empty() && install_rc.trim() != "0" {
            let _ = fs::write(results_dir().join("stop"), "stop\n");
            bail!(
                "installing vfnet failed; last lines of its log:\n{}",
                tail_of(&results_dir().join("install.log"), 40)
            );
        }
        if started.elapsed() > Duration::from_secs(40 * 60) {
            bail!("the cluster did not start in 40 minutes; see {}", log.display());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    println!(
        "==> the cluster is up, with vfnet installed (`kubectl apply -k manifests/`).\n\
         \n    export KUBECONFIG={}\n    kubectl get nodes\n\n\
         The node is the emulated-igb guest; its kubelet, containerd and Multus logs are in {}.\n\
         Stop it with `cargo xtask cluster down`.",
        layout.kubeconfig("admin").display(),
        results_dir().display()
    );
    Ok(())
}

/// Asks `cluster serve` to stop (the guest sees `stop` in its results directory) and waits.
fn down() -> Result<()> {
    let results = results_dir();
    if !results.exists() {
        bail!("no cluster was started here ({} is missing)", results.display());
    }
    fs::write(results.join("stop"), "stop\n")?;
    let layout = Layout::new(LABEL);
    let pid_file = layout.dir.join("serve.pid");
    let Ok(pid) = fs::read_to_string(&pid_file) else {
        println!("    no cluster running");
        return Ok(());
    };
    let pid = pid.trim();
    let started = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "`cluster serve` (pid {pid}) still runs after 2 minutes; see {}",
                layout.dir.join("serve.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = fs::remove_file(pid_file);
    println!("==> the cluster is down");
    Ok(())
}

/// The foreground half of `cluster up`: control plane, node, vfnet installed; holds until `down`.
fn serve() -> Result<()> {
    let tools = crate::setup::ensure()?;
    let cluster = Cluster::start(LABEL)?;
    fs::write(cluster.layout.dir.join("serve.pid"), std::process::id().to_string())?;
    let script = cluster.node_script(&results_dir())?;
    let sh = |arg: &str| format!("sh {} {arg}", shell_quote(&script.to_string_lossy()));
    let middle = vec![
        Step { name: "install".into(), command: sh("install"), narration: "vfnet installed".into() },
        Step {
            name: "hold".into(),
            // Only a cluster whose install worked is held for `cluster down`.
            command: format!(
                "[ -e {} ] && {}",
                shell_quote(&results_dir().join("ready").to_string_lossy()),
                sh("hold")
            ),
            narration: "the node stays up".into(),
        },
    ];
    // Held until `cluster down`, for a day at most.
    let vm = cluster.vm(&tools, "cluster-up").timeout(Duration::from_secs(24 * 3600));
    let results = vm.run(&node_steps(&script, middle))?;
    if let Some(why) = node_up_failure(&results) {
        bail!("{why}");
    }
    Ok(())
}
