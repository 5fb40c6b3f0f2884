//! `cargo xtask k8s-components`: the real Kubernetes components of the real-node test bed,
//! built on this machine from their published Go modules (through the Go module proxy) by the
//! pinned build modules under `k8s/`: our own `go.mod`/`go.sum` (the build list) and, for etcd, a
//! `main` that calls etcd's. The versions live in those `go.mod` files alone.
//!
//! Each component's binaries go to `target/vfnet-k8s/<component>-<version>/` and are kept:
//! a second run finds them and costs nothing (a rebuild from Go's warm cache takes about a
//! second anyway). Measured cold on this project's 2-core machine: Kubernetes 1.37.2's four
//! binaries in about 7 minutes (2.8 GB peak RSS, about 0.5 GB of modules, 3.8 GB of build
//! cache), etcd in 25 s, containerd in 48 s.
//!
//! Kubernetes' own go.mod replaces its staging modules (`k8s.io/api`, ...) with local paths the
//! proxy cannot serve, so ours replaces each staging module that upstream requires at `v0.0.0`
//! with the release's `v0.<minor>.<patch>`. Not yet wired into `cargo xtask test`: the real-node
//! suite that uses these binaries comes next.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd::{repo_root, run, stdout_of};

/// One component: its build module under `k8s/`, the module whose version names the build, the
/// packages to build, and its build tags and version stamp.
struct Component {
    name: &'static str,
    dir: &'static str,
    module: &'static str,
    packages: &'static [&'static str],
    tags: &'static str,
    /// `-X` flags, `{v}` being the version.
    stamp: &'static [&'static str],
    binaries: &'static [&'static str],
}

const COMPONENTS: &[Component] = &[
    Component {
        name: "kubernetes",
        dir: "kubernetes",
        module: "k8s.io/kubernetes",
        packages: &[
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "k8s.io/kubernetes/cmd/kubelet",
        ],
        // Upstream's release tags.
        tags: "selinux,notest,grpcnotrace",
        stamp: &["k8s.io/component-base/version.gitVersion={v}"],
        binaries: &["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"],
    },
    Component {
        name: "etcd",
        dir: "etcd",
        module: "go.etcd.io/etcd/server/v3",
        packages: &["."],
        tags: "",
        stamp: &[],
        binaries: &["etcd"],
    },
    Component {
        name: "containerd",
        dir: "containerd",
        module: "github.com/containerd/containerd/v2",
        packages: &[
            "github.com/containerd/containerd/v2/cmd/containerd",
            "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
            "github.com/containerd/containerd/v2/cmd/ctr",
        ],
        tags: "",
        stamp: &["github.com/containerd/containerd/v2/version.Version={v}"],
        binaries: &["containerd", "containerd-shim-runc-v2", "ctr"],
    },
];

/// `cargo xtask k8s-components`.
pub(crate) fn cli(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("k8s-components takes no arguments, got `{arg}`");
    }
    for c in COMPONENTS {
        let dir = build(c).with_context(|| format!("component {}", c.name))?;
        // Each runs and says its version (the shim has no --version).
        for b in c.binaries.iter().filter(|b| !b.ends_with("-shim-runc-v2")) {
            let said = stdout_of(Command::new(dir.join(b)).arg("--version"))?;
            println!("    {b}: {}", said.lines().next().unwrap_or_default());
        }
    }
    Ok(())
}

/// The version of `c`'s module in its build module's build list.
fn version(c: &Component, module_dir: &Path) -> Result<String> {
    let v = stdout_of(Command::new("go").args(["list", "-m", "-f", "{{.Version}}", c.module]).current_dir(module_dir))?;
    let v = v.trim();
    if v.is_empty() {
        bail!("{} has no version in {}/go.mod", c.module, module_dir.display());
    }
    Ok(v.to_owned())
}

/// Builds `c` unless its binaries for this version are there; returns their directory.
fn build(c: &Component) -> Result<PathBuf> {
    let module_dir = repo_root().join("k8s").join(c.dir);
    let version = version(c, &module_dir)?;
    let out = repo_root().join("target/vfnet-k8s").join(format!("{}-{version}", c.name));
    if c.binaries.iter().all(|b| out.join(b).is_file()) {
        println!("==> {} {version}: built already", c.name);
        return Ok(out);
    }
    println!("==> building {} {version} from its Go modules", c.name);
    let tmp = out.with_file_name(format!("{}-{version}.partial", c.name));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let ldflags: Vec<String> = std::iter::once("-s -w".to_owned())
        .chain(c.stamp.iter().map(|x| format!("-X {}", x.replace("{v}", &version))))
        .collect();
    let mut go = Command::new("go");
    go.arg("build").arg("-trimpath").arg(format!("-ldflags={}", ldflags.join(" "))).arg("-o").arg(&tmp);
    if !c.tags.is_empty() {
        go.arg(format!("-tags={}", c.tags));
    }
    go.args(c.packages).current_dir(&module_dir).env("GOFLAGS", "-mod=readonly");
    run(&mut go)?;
    for b in c.binaries {
        if !tmp.join(b).is_file() {
            bail!("go build made no {b} in {}", tmp.display());
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    std::fs::rename(&tmp, &out).with_context(|| format!("cannot move {} to {}", tmp.display(), out.display()))?;
    Ok(out)
}
