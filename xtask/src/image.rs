//! The image's static binaries, checked in the test command: built for musl, really static and
//! non-PIE (no interpreter, ELF type EXEC), and run. The `Containerfile` ships exactly these; no
//! container engine runs on the build machines, so the image itself is built elsewhere from the
//! same commands.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::{
    cargo::{self, Executable, cargo_locked},
    cmd::repo_root,
    setup::MUSL_TARGET,
};

/// The binaries the image ships.
const BINARIES: [(&str, &str); 2] = [("vfnet-cni", "vfnet"), ("vfnet-device-plugin", "vfnet-device-plugin")];

/// Builds the static binaries (release, musl). `cargo xtask demo` runs these too, so its timings
/// are the shipped binaries', and after `cargo xtask test` its build is already done.
pub(crate) fn build_static_binaries() -> Result<Vec<Executable>> {
    let mut cmd = cargo_locked("build");
    cmd.args(["--release", "--target", MUSL_TARGET]);
    for (package, bin) in BINARIES {
        cmd.args(["-p", package, "--bin", bin]);
    }
    cargo::build(&mut cmd)
}

/// Builds, checks and runs the static binaries.
pub(crate) fn check_static_binaries() -> Result<()> {
    let built = build_static_binaries()?;
    for (_, bin) in BINARIES {
        let exe = built.iter().find(|e| e.target == bin).with_context(|| format!("cargo built no {bin}"))?;
        let kind = elf_kind(&exe.path)?;
        ensure!(kind == "static, non-PIE", "{} is {kind}, not a static non-PIE executable", exe.path.display());
        println!("    {bin}: {kind}, {} KiB", std::fs::metadata(&exe.path)?.len() / 1024);
    }
    let dir = built.iter().find(|e| e.target == "vfnet").and_then(|e| e.path.parent()).context("no vfnet")?;
    let out = Command::new(dir.join("vfnet")).env_clear().env("CNI_COMMAND", "VERSION").output()?;
    let version = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success() && version.contains("supportedVersions"), "static vfnet VERSION answered {version:?}");
    println!("    vfnet VERSION: {version}");
    let out = Command::new(dir.join("vfnet-device-plugin")).arg("--help").output()?;
    ensure!(out.status.success(), "static vfnet-device-plugin --help failed: {}", String::from_utf8_lossy(&out.stderr));
    println!("    vfnet-device-plugin --help: ok");
    check_containerfile(dir)
}

/// Every file the Containerfile copies out of the build stage is one of the built binaries.
fn check_containerfile(built_dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(repo_root().join("Containerfile")).context("Containerfile")?;
    let mut copied = 0;
    for line in text.lines().filter(|l| l.starts_with("COPY --from=build")) {
        let src = line.split_whitespace().nth(2).context("COPY without source")?;
        let name = Path::new(src).file_name().context("COPY source without file name")?;
        ensure!(
            src.contains(&format!("/{MUSL_TARGET}/release/")),
            "Containerfile copies {src}, not a {MUSL_TARGET} release binary"
        );
        ensure!(built_dir.join(name).is_file(), "Containerfile copies {src}, which the build does not produce");
        copied += 1;
    }
    if copied != BINARIES.len() {
        bail!("Containerfile copies {copied} binaries, expected {}", BINARIES.len());
    }
    println!("    Containerfile ships exactly the checked binaries");
    Ok(())
}

/// "static, non-PIE", "static-pie", or "dynamic" from the ELF header and program headers.
fn elf_kind(path: &Path) -> Result<&'static str> {
    let bytes = std::fs::read(path)?;
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| bytes.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| bytes.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    ensure!(bytes.starts_with(b"\x7fELF\x02\x01"), "{} is not a little-endian ELF64 file", path.display());
    let e_type = u16_at(16).context("short ELF header")?;
    let phoff = usize::try_from(u64_at(32).context("short ELF header")?)?;
    let phentsize = usize::from(u16_at(54).context("short ELF header")?);
    let phnum = usize::from(u16_at(56).context("short ELF header")?);
    let has_interp = (0..phnum).any(|i| u32_at(phoff + i * phentsize) == Some(3)); // PT_INTERP
    Ok(match (e_type, has_interp) {
        (_, true) => "dynamic",
        (2, false) => "static, non-PIE", // ET_EXEC
        _ => "static-pie",
    })
}
