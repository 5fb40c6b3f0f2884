//! `cargo xtask k8s-components`: the real components of the real-node test bed, built on this
//! machine from their published Go modules (through the Go module proxy) by the pinned build
//! modules under `k8s/`: our own `go.mod`/`go.sum` (the build list) and, for etcd, a `main` that
//! calls etcd's. The versions live in those `go.mod` files alone. The components: Kubernetes
//! (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl), etcd,
//! containerd (containerd, its runc shim, ctr), Multus' thin CNI plugin, and the two SR-IOV
//! components vfnet is measured against: the SR-IOV network device plugin (sriovdp) and the SR-IOV
//! CNI plugin (sriov).
//!
//! Each component's binaries go to `target/vfnet-k8s/<component>-<version>/` and are kept:
//! a second run finds them and costs nothing (a rebuild from Go's warm cache takes seconds
//! anyway). Measured cold on this project's 2-core machine:
//! Kubernetes 1.37.2's first four binaries in about 7 minutes (2.8 GB peak RSS, about 0.5 GB of
//! modules, 3.8 GB of build cache; kubectl added to that warm cache in under 30 s), etcd in 25 s,
//! containerd in 48 s, Multus in 53 to 93 s as the machine's load went (0.7 GB peak RSS),
//! sriovdp in 56 s, sriov-cni in 9 s (these three from an empty build cache, their modules
//! downloaded). Every binary links dynamically against the host's libc: cgo is on, Go's default
//! where a C compiler is.
//!
//! Kubernetes' own go.mod replaces its staging modules (`k8s.io/api`, ...) with local paths the
//! proxy cannot serve, so ours replaces each staging module that upstream requires at `v0.0.0`
//! with the release's `v0.<minor>.<patch>`. The SR-IOV plugins are old: sriovdp is a 2022-11-27
//! commit, with its upstream go.mod's `replace`s copied; sriov-cni is v2.1.0 (2019, CNI spec up
//! to 0.3.1), the only release found on the proxy, under its first module path
//! `github.com/intel/sriov-cni` and built against the CNI libraries of its time (see
//! `k8s/sriov-cni/go.mod`).

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
    /// What `go build` makes, and how each says its version.
    binaries: &'static [(&'static str, Ask)],
}

/// How a built binary is asked its version, so that a run shows each one starts and, where it
/// can say, that it is the version we pinned (which catches a stamp that no longer takes).
enum Ask {
    /// These arguments print a line naming the version.
    Args(&'static [&'static str]),
    /// A CNI plugin with no version of its own to tell: `CNI_COMMAND=VERSION` gets the CNI spec
    /// versions it speaks.
    Cni,
    /// It has no way to say (sriovdp): it only has to exist.
    Nothing,
}

/// What most binaries answer, the containerd shim included.
const VERSION: Ask = Ask::Args(&["--version"]);

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
            "k8s.io/kubernetes/cmd/kubectl",
        ],
        // Upstream's release tags.
        tags: "selinux,notest,grpcnotrace",
        stamp: &["k8s.io/component-base/version.gitVersion={v}"],
        binaries: &[
            ("kube-apiserver", VERSION),
            ("kube-controller-manager", VERSION),
            ("kube-scheduler", VERSION),
            ("kubelet", VERSION),
            ("kubectl", Ask::Args(&["version", "--client"])),
        ],
    },
    Component {
        name: "etcd",
        dir: "etcd",
        module: "go.etcd.io/etcd/server/v3",
        packages: &["."],
        tags: "",
        stamp: &[],
        binaries: &[("etcd", VERSION)],
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
        binaries: &[("containerd", VERSION), ("containerd-shim-runc-v2", VERSION), ("ctr", VERSION)],
    },
    Component {
        name: "multus",
        dir: "multus",
        module: "gopkg.in/k8snetworkplumbingwg/multus-cni.v4",
        // The thin plugin, which delegates to the CNI plugins its configuration names.
        packages: &["gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus"],
        tags: "",
        // As upstream's hack/build-go.sh stamps it.
        stamp: &["gopkg.in/k8snetworkplumbingwg/multus-cni.v4/pkg/multus.version={v}"],
        binaries: &[("multus", Ask::Args(&["-version"]))],
    },
    Component {
        name: "sriovdp",
        dir: "sriovdp",
        module: "github.com/k8snetworkplumbingwg/sriov-network-device-plugin",
        packages: &["github.com/k8snetworkplumbingwg/sriov-network-device-plugin/cmd/sriovdp"],
        tags: "",
        stamp: &[],
        binaries: &[("sriovdp", Ask::Nothing)],
    },
    Component {
        name: "sriov-cni",
        dir: "sriov-cni",
        module: "github.com/intel/sriov-cni",
        packages: &["github.com/intel/sriov-cni/cmd/sriov"],
        tags: "",
        stamp: &[],
        binaries: &[("sriov", Ask::Cni)],
    },
];

/// `cargo xtask k8s-components`.
pub(crate) fn cli(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("k8s-components takes no arguments, got `{arg}`");
    }
    for c in COMPONENTS {
        let Built { dir, version, .. } = build(c).with_context(|| format!("component {}", c.name))?;
        for (b, ask) in c.binaries {
            let mut cmd = Command::new(dir.join(b));
            let said = match ask {
                Ask::Args(args) => {
                    let said = stdout_of(cmd.args(*args))?;
                    let plain = version.trim_start_matches('v');
                    said.lines()
                        .find(|l| l.contains(plain))
                        .with_context(|| format!("`{b} {}` does not name {version}: {said}", args.join(" ")))?
                        .trim()
                        .to_owned()
                }
                Ask::Cni => format!("CNI {}", stdout_of(cmd.env("CNI_COMMAND", "VERSION"))?.trim()),
                Ask::Nothing => "says no version".to_owned(),
            };
            println!("    {b}: {said}");
        }
    }
    Ok(())
}

/// A component built (or found built): where its binaries are, and the version they are.
pub(crate) struct Built {
    pub(crate) name: &'static str,
    pub(crate) dir: PathBuf,
    pub(crate) version: String,
}

/// Builds the components named `names` (or finds them built).
pub(crate) fn ensure(names: &[&str]) -> Result<Vec<Built>> {
    names
        .iter()
        .map(|n| {
            let c = COMPONENTS.iter().find(|c| c.name == *n).with_context(|| format!("no component {n}"))?;
            build(c).with_context(|| format!("component {n}"))
        })
        .collect()
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

/// Builds `c` unless its binaries for this version are there.
fn build(c: &Component) -> Result<Built> {
    let module_dir = repo_root().join("k8s").join(c.dir);
    let version = version(c, &module_dir)?;
    let out = repo_root().join("target/vfnet-k8s").join(format!("{}-{version}", c.name));
    if c.binaries.iter().all(|(b, _)| out.join(b).is_file()) {
        println!("==> {} {version}: built already", c.name);
        return Ok(Built { name: c.name, dir: out, version });
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
    for (b, _) in c.binaries {
        if !tmp.join(b).is_file() {
            bail!("go build made no {b} in {}", tmp.display());
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    std::fs::rename(&tmp, &out).with_context(|| format!("cannot move {} to {}", tmp.display(), out.display()))?;
    Ok(Built { name: c.name, dir: out, version })
}
