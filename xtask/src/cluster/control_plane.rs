//! etcd and the control plane (API server, controller manager, scheduler), run on the host: the
//! guest is emulated (TCG), where Go programs run many times slower, and only the node's own
//! components (kubelet, containerd) need the igb NIC.
//!
//! Every process listens on loopback only. The guest reaches the API server through QEMU's user
//! networking, whose host address maps to the host's loopback (see [`super::net`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::net;
use super::pki::Pki;
use super::{Bins, Layout, tail_of};
use crate::cmd::display;

/// How long each component may take to answer its health check after it started.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The control plane's processes; dropping it stops them (SIGTERM, then SIGKILL).
#[derive(Debug)]
pub(crate) struct ControlPlane {
    procs: Vec<Proc>,
}

#[derive(Debug)]
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ControlPlane {
    /// Starts etcd, the API server, the controller manager and the scheduler, each waited for
    /// until healthy. An error names the component and carries the tail of its log.
    pub(crate) fn start(bins: &Bins, layout: &Layout, pki: &Pki) -> Result<Self> {
        if let Err(e) = std::net::TcpListener::bind((net::APISERVER_BIND, net::APISERVER_PORT)) {
            bail!(
                "cannot use {}:{} for the API server ({e}): another test cluster still running? \
                 (`cargo xtask cluster down`)",
                net::APISERVER_BIND,
                net::APISERVER_PORT
            );
        }
        let mut cp = Self { procs: Vec::new() };
        let etcd_dir = layout.dir.join("etcd");
        let _ = fs::remove_dir_all(&etcd_dir);
        let etcd_url = format!("http://127.0.0.1:{}", net::ETCD_CLIENT_PORT);
        let peer_url = format!("http://127.0.0.1:{}", net::ETCD_PEER_PORT);
        let mut etcd = Command::new(&bins.etcd);
        etcd.arg("--name=vfnet-test")
            .arg(format!("--data-dir={}", etcd_dir.display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=vfnet-test={peer_url}"))
            // A throwaway test store: no fsync per write.
            .arg("--unsafe-no-fsync");
        cp.spawn("etcd", etcd, layout)?;
        cp.wait_ready("etcd", || http_ok(&format!("127.0.0.1:{}", net::ETCD_CLIENT_PORT), "/health"))?;

        let egress_socket = layout.dir.join("egress.sock");
        super::egress::start(&egress_socket)?;
        let egress_config = layout.dir.join("egress-selector.yaml");
        fs::write(&egress_config, super::egress::selector_config(&egress_socket))?;
        let mut api = Command::new(bins.kube("kube-apiserver"));
        api.arg(format!("--etcd-servers={etcd_url}"))
            .arg(format!("--bind-address={}", net::APISERVER_BIND))
            .arg(format!("--secure-port={}", net::APISERVER_PORT))
            .arg(format!("--advertise-address={}", net::HOST_ALIAS))
            .arg(format!("--service-cluster-ip-range={}", net::SERVICE_CIDR))
            .arg(format!("--client-ca-file={}", pki.ca_cert().display()))
            .arg(format!("--tls-cert-file={}", pki.cert("apiserver").display()))
            .arg(format!("--tls-private-key-file={}", pki.key("apiserver").display()))
            .arg(format!("--kubelet-client-certificate={}", pki.cert("apiserver-kubelet-client").display()))
            .arg(format!("--kubelet-client-key={}", pki.key("apiserver-kubelet-client").display()))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!("--service-account-key-file={}", pki.sa_pub().display()))
            .arg(format!("--service-account-signing-key-file={}", pki.sa_key().display()))
            // The manifests' least-privilege RBAC is what is tested: no AlwaysAllow.
            .arg("--authorization-mode=Node,RBAC")
            .arg("--enable-admission-plugins=NodeRestriction")
            // The DaemonSet's device plugin is privileged (sysfs writes, netlink on the PF).
            .arg("--allow-privileged=true")
            // The node's address, never its name: a name would be looked up in the host's DNS.
            .arg("--kubelet-preferred-address-types=InternalIP")
            .arg(format!("--egress-selector-config-file={}", egress_config.display()))
            .arg("--profiling=false")
            .arg("--v=1");
        cp.spawn("kube-apiserver", api, layout)?;
        let admin = layout.kubeconfig("admin");
        cp.wait_ready("kube-apiserver", || kubectl_ok(bins, &admin, "/readyz"))?;

        let mut cm = Command::new(bins.kube("kube-controller-manager"));
        cm.arg(format!("--kubeconfig={}", layout.kubeconfig("controller-manager").display()))
            .arg(format!("--authentication-kubeconfig={}", layout.kubeconfig("controller-manager").display()))
            .arg(format!("--authorization-kubeconfig={}", layout.kubeconfig("controller-manager").display()))
            .arg(format!("--service-account-private-key-file={}", pki.sa_key().display()))
            .arg(format!("--root-ca-file={}", pki.ca_cert().display()))
            .arg("--use-service-account-credentials=true")
            .arg(format!("--service-cluster-ip-range={}", net::SERVICE_CIDR))
            .arg("--leader-elect=false")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", net::CONTROLLER_MANAGER_PORT))
            .arg("--v=1");
        cp.spawn("kube-controller-manager", cm, layout)?;
        let mut sched = Command::new(bins.kube("kube-scheduler"));
        sched
            .arg(format!("--kubeconfig={}", layout.kubeconfig("scheduler").display()))
            .arg(format!("--authentication-kubeconfig={}", layout.kubeconfig("scheduler").display()))
            .arg(format!("--authorization-kubeconfig={}", layout.kubeconfig("scheduler").display()))
            .arg("--leader-elect=false")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", net::SCHEDULER_PORT))
            .arg("--v=1");
        cp.spawn("kube-scheduler", sched, layout)?;
        // Both serve /healthz over TLS with their own self-signed certificates: kubectl cannot ask
        // them, so readiness is asked of what they do. The controller manager's service-account
        // controller gives every namespace its `default` ServiceAccount (which pods need).
        cp.wait_ready("kube-controller-manager", || {
            kubectl_ok(bins, &admin, "/api/v1/namespaces/default/serviceaccounts/default")
        })?;
        cp.wait_ready("kube-scheduler", || {
            kubectl_ok(bins, &admin, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases")
                && cp_log_says(layout, "kube-scheduler", "Starting Kubernetes Scheduler")
        })?;
        Ok(cp)
    }

    fn spawn(&mut self, name: &'static str, mut cmd: Command, layout: &Layout) -> Result<()> {
        let log = layout.log(name);
        let file = fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let shown = display(&cmd);
        println!("    {name}: $ {shown}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("{name}: cannot start `{shown}`"))?;
        self.procs.push(Proc { name, child, log });
        Ok(())
    }

    /// Polls `ready` until it holds; fails when the component exits or the time is up.
    fn wait_ready(&mut self, name: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
        let started = Instant::now();
        loop {
            if ready() {
                println!("    {name}: ready after {:.1} s", started.elapsed().as_secs_f64());
                return Ok(());
            }
            self.check_alive()?;
            if started.elapsed() > READY_TIMEOUT {
                let log = self.procs.iter().find(|p| p.name == name).map(|p| p.log.clone());
                let tail = log.as_deref().map(|l| tail_of(l, 30)).unwrap_or_default();
                bail!("{name} not ready after {} s; last lines of its log:\n{tail}", READY_TIMEOUT.as_secs());
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Each component still running, or the first one that exited, with its log's tail.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        for p in &mut self.procs {
            if let Some(status) = p.child.try_wait()? {
                bail!("{} exited ({status}); last lines of {}:\n{}", p.name, p.log.display(), tail_of(&p.log, 30));
            }
        }
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Reverse order: the scheduler and controller manager before the API server, etcd last.
        for p in self.procs.iter_mut().rev() {
            stop(p.child.id());
            let deadline = Instant::now() + Duration::from_secs(10);
            while p.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// SIGTERM to `pid`.
pub(crate) fn stop(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

fn cp_log_says(layout: &Layout, name: &str, needle: &str) -> bool {
    fs::read_to_string(layout.log(name)).is_ok_and(|t| t.contains(needle))
}

/// `kubectl get --raw <path>` as `kubeconfig` succeeds.
fn kubectl_ok(bins: &Bins, kubeconfig: &Path, path: &str) -> bool {
    Command::new(bins.kube("kubectl"))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["get", "--raw", path, "--request-timeout=5s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A plain-HTTP GET on loopback answering 200 (etcd's /health).
fn http_ok(addr: &str, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}
