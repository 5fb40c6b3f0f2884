//! The real-Kubernetes test bed's images, written as OCI archives (`oci.rs`) for
//! `ctr -n k8s.io images import`: the test bed has no registry and no container engine.
//!
//! - `vfnet:dev`: what the Containerfile's final stage describes, read from it (one parser,
//!   `image.rs`, for this and the static-binaries check).
//! - `vfnet-pause:1`: the pod sandbox, our own `vfnet-pause` (testkit) in place of
//!   registry.k8s.io/pause; containerd's CRI sandbox image setting must name it.
//! - `vfnet-workload:1`: Debian's static busybox with the applets the tests' pods run.
//!
//! Names are full references, as kubelet normalises a pod's `image:` (`vfnet:dev` →
//! `docker.io/library/vfnet:dev`) before asking containerd for it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::{
    cargo::{self, cargo_locked},
    cmd::{repo_root, stdout_of},
    image::{FinalStage, build_static_binaries, elf_kind, final_stage},
    oci::{self, DEFAULT_PATH_ENV, Entry, Image, Written},
    setup::MUSL_TARGET,
};

pub(crate) const DEV_IMAGE: &str = "docker.io/library/vfnet:dev";
pub(crate) const PAUSE_IMAGE: &str = "docker.io/library/vfnet-pause:1";
pub(crate) const WORKLOAD_IMAGE: &str = "docker.io/library/vfnet-workload:1";

/// Debian's busybox-static (`dpkg -L busybox-static`); `cargo xtask vm-setup` installs it.
const BUSYBOX: &str = "/bin/busybox";

/// The workload image's commands, each a `/bin/<applet>` symlink to busybox. Debian's
/// busybox-static has no `printenv`; `env` prints the environment.
const APPLETS: [&str; 16] = [
    "sh", "sleep", "cat", "env", "ls", "ip", "grep", "echo", "true", "mkdir", "hostname", "ifconfig", "wc", "head",
    "tail", "date",
];

/// `cargo xtask images`: builds the binaries, writes the three archives to
/// `target/vfnet-images/` and says what each is.
pub(crate) fn cli(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("images takes no arguments, got `{arg}`");
    }
    let out_dir = repo_root().join("target/vfnet-images");
    for written in write_all(&out_dir)? {
        println!(
            "{}\n    {} ({} KiB, {})\n    manifest {}",
            written.name,
            written.path.display(),
            written.size / 1024,
            if written.rewritten { "written" } else { "unchanged" },
            written.manifest_digest
        );
    }
    Ok(())
}

/// Builds the binaries and writes the three image archives into `out_dir`, returning each
/// image's name and archive. An archive whose content is unchanged is left as it is.
pub(crate) fn build_all(out_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    Ok(write_all(out_dir)?.into_iter().map(|w| (w.name, w.path)).collect())
}

fn write_all(out_dir: &Path) -> Result<Vec<Written>> {
    let built = build_static_binaries()?;
    let built_dir = built
        .iter()
        .find(|e| e.target == "vfnet")
        .and_then(|e| e.path.parent())
        .context("cargo built no vfnet")?
        .to_path_buf();
    let pause = build_pause()?;
    let applets = stdout_of(Command::new(BUSYBOX).arg("--list"))
        .with_context(|| format!("{BUSYBOX} (Debian's busybox-static; `cargo xtask vm-setup` installs it)"))?;
    let images = [
        dev_image(&final_stage()?, &built_dir)?,
        pause_image(&pause),
        workload_image(Path::new(BUSYBOX), &applets.lines().collect::<Vec<_>>())?,
    ];
    for image in &images {
        check_static(image)?;
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    images.iter().map(|image| oci::write(image, &out_dir.join(archive_name(&image.name)))).collect()
}

/// Builds `vfnet-pause` static (release, musl), as the image binaries are.
fn build_pause() -> Result<PathBuf> {
    let mut cmd = cargo_locked("build");
    cmd.args(["--release", "--target", MUSL_TARGET, "-p", "vfnet-testkit", "--bin", "vfnet-pause"]);
    let built = cargo::build(&mut cmd)?;
    built.into_iter().find(|e| e.target == "vfnet-pause").map(|e| e.path).context("cargo built no vfnet-pause")
}

/// `vfnet:dev` from the Containerfile's final stage: each `COPY --from=build` a built binary at
/// its destination, with the stage's `USER` and `ENTRYPOINT`.
fn dev_image(stage: &FinalStage, built_dir: &Path) -> Result<Image> {
    let entries = stage.binaries(built_dir)?.into_iter().map(|(host, dst)| Entry::host_file(&dst, host, 0o755));
    Ok(Image {
        name: DEV_IMAGE.to_owned(),
        entries: entries.collect(),
        entrypoint: stage.entrypoint.clone(),
        cmd: Vec::new(),
        env: vec![DEFAULT_PATH_ENV.to_owned()],
        user: stage.user.clone(),
    })
}

fn pause_image(pause: &Path) -> Image {
    Image {
        name: PAUSE_IMAGE.to_owned(),
        entries: vec![Entry::host_file("/vfnet-pause", pause, 0o755)],
        entrypoint: vec!["/vfnet-pause".to_owned()],
        cmd: Vec::new(),
        env: vec![DEFAULT_PATH_ENV.to_owned()],
        user: None,
    }
}

/// busybox and its applet links, and a `/tmp`; `available` is what `busybox --list` names, so a
/// link to an applet this busybox lacks fails here rather than as "applet not found" in a pod.
fn workload_image(busybox: &Path, available: &[&str]) -> Result<Image> {
    let missing: Vec<&str> = APPLETS.into_iter().filter(|a| !available.contains(a)).collect();
    ensure!(missing.is_empty(), "{} has no applet {}", busybox.display(), missing.join(", "));
    let mut entries = vec![Entry::host_file("/bin/busybox", busybox, 0o755), Entry::dir("/tmp", 0o1777)];
    entries.extend(APPLETS.map(|applet| Entry::symlink(&format!("/bin/{applet}"), "busybox")));
    Ok(Image {
        name: WORKLOAD_IMAGE.to_owned(),
        entries,
        entrypoint: Vec::new(),
        cmd: vec!["sh".to_owned()],
        env: vec![DEFAULT_PATH_ENV.to_owned()],
        user: None,
    })
}

/// Every program from the build machine in an image is statically linked: the images have no
/// libc, and a dynamic one would fail to exec with a bare "no such file or directory".
fn check_static(image: &Image) -> Result<()> {
    for entry in &image.entries {
        if let oci::Kind::File(oci::Content::Host(host)) = &entry.kind {
            let kind = elf_kind(host).with_context(|| format!("{}: {}", image.name, entry.path))?;
            ensure!(kind != "dynamic", "{}: {} ({}) is dynamically linked", image.name, entry.path, host.display());
        }
    }
    Ok(())
}

/// The archive's file name: `docker.io/library/vfnet:dev` → `vfnet-dev.tar`.
fn archive_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    format!("{}.tar", last.replace(':', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_image_is_the_containerfiles_final_stage() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-images-{}", std::process::id()));
        let release = dir.join(format!("{MUSL_TARGET}/release"));
        std::fs::create_dir_all(&release)?;
        for bin in ["vfnet", "vfnet-device-plugin"] {
            std::fs::write(release.join(bin), bin)?;
        }
        let image = dev_image(&final_stage()?, &release)?;
        let files: Vec<(&str, u32)> = image.entries.iter().map(|e| (e.path.as_str(), e.mode)).collect();
        assert_eq!(files, [("/usr/bin/vfnet", 0o755), ("/usr/bin/vfnet-device-plugin", 0o755)]);
        assert_eq!(image.entrypoint, ["/usr/bin/vfnet-device-plugin"]);
        assert_eq!(image.user.as_deref(), Some("0:0"));
        assert_eq!(image.name, DEV_IMAGE);
        std::fs::remove_file(release.join("vfnet"))?;
        assert!(dev_image(&final_stage()?, &release).is_err(), "a missing binary must fail");
        Ok(())
    }

    #[test]
    fn workload_links_every_applet_to_busybox() -> Result<()> {
        let image = workload_image(Path::new(BUSYBOX), &APPLETS)?;
        let links: Vec<&str> = image
            .entries
            .iter()
            .filter(|e| matches!(&e.kind, oci::Kind::Symlink(target) if target == "busybox"))
            .map(|e| e.path.trim_start_matches("/bin/"))
            .collect();
        assert_eq!(links, APPLETS);
        assert!(image.entries.iter().any(|e| e.path == "/tmp" && e.mode == 0o1777));
        assert_eq!(image.cmd, ["sh"]);
        assert!(image.entrypoint.is_empty());
        let err = workload_image(Path::new(BUSYBOX), &APPLETS[1..]).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.ends_with("no applet sh")));
        Ok(())
    }

    #[test]
    fn archive_names() {
        assert_eq!(archive_name(DEV_IMAGE), "vfnet-dev.tar");
        assert_eq!(archive_name(PAUSE_IMAGE), "vfnet-pause-1.tar");
        assert_eq!(archive_name(WORKLOAD_IMAGE), "vfnet-workload-1.tar");
    }
}
