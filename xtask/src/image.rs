//! The image's static binaries, checked in the test command: built for musl, really static and
//! non-PIE (no interpreter, ELF type EXEC), and run. The `Containerfile` ships exactly these; no
//! container engine runs on the build machines, so `cargo xtask images` (`images.rs`) builds the
//! image from the Containerfile's final stage as parsed here.

use std::path::{Path, PathBuf};
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
    let stage = final_stage()?;
    let copied = stage.binaries(built_dir)?;
    if copied.len() != BINARIES.len() {
        bail!("Containerfile copies {} binaries, expected {}", copied.len(), BINARIES.len());
    }
    println!("    Containerfile ships exactly the checked binaries");
    Ok(())
}

/// What the Containerfile's final stage puts in the image. `cargo xtask images` builds the image
/// from this, and the static-binaries check reads the same parse, so the image the test bed runs
/// and the Containerfile cannot drift apart.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FinalStage {
    /// `COPY --from=build <source> <destination>`, in order: (source, destination).
    pub(crate) copies: Vec<(String, String)>,
    /// `USER`, verbatim (`0:0`).
    pub(crate) user: Option<String>,
    /// `ENTRYPOINT`, exec (JSON) form only: a shell form would need a shell the image lacks.
    pub(crate) entrypoint: Vec<String>,
}

impl FinalStage {
    /// The built binary behind each copy, as (host path, destination): each source must be a
    /// musl release binary that the build put in `built_dir`.
    pub(crate) fn binaries(&self, built_dir: &Path) -> Result<Vec<(PathBuf, String)>> {
        self.copies
            .iter()
            .map(|(src, dst)| {
                let name = Path::new(src).file_name().with_context(|| format!("COPY source {src} has no file name"))?;
                ensure!(
                    src.contains(&format!("/{MUSL_TARGET}/release/")),
                    "Containerfile copies {src}, not a {MUSL_TARGET} release binary"
                );
                let host = built_dir.join(name);
                ensure!(host.is_file(), "Containerfile copies {src}, which the build does not produce");
                Ok((host, dst.clone()))
            })
            .collect()
    }
}

/// The repository's Containerfile, final stage parsed.
pub(crate) fn final_stage() -> Result<FinalStage> {
    let path = repo_root().join("Containerfile");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_final_stage(&text).with_context(|| format!("{}: final stage", path.display()))
}

/// Parses the instructions after the last `FROM`, which must be `FROM scratch`: the image has no
/// base layers to start from. Only what the image builder reproduces is accepted (`COPY
/// --from=build`, `USER`, exec-form `ENTRYPOINT`); anything else is an error rather than an
/// instruction silently dropped from the built image.
fn parse_final_stage(text: &str) -> Result<FinalStage> {
    let instructions = instructions(text);
    let last_from = instructions
        .iter()
        .rposition(|line| keyword(line).0.eq_ignore_ascii_case("FROM"))
        .context("no FROM instruction")?;
    let from = &instructions[last_from];
    ensure!(keyword(from).1 == "scratch", "`{from}`: the final stage must start FROM scratch");
    let mut stage = FinalStage { copies: Vec::new(), user: None, entrypoint: Vec::new() };
    for line in &instructions[last_from + 1..] {
        let (word, rest) = keyword(line);
        match word.to_ascii_uppercase().as_str() {
            "COPY" => match rest.split_whitespace().collect::<Vec<_>>()[..] {
                ["--from=build", src, dst] => stage.copies.push((src.to_owned(), dst.to_owned())),
                _ => bail!("`{line}`: only `COPY --from=build <source> <destination>` is supported"),
            },
            "USER" if !rest.is_empty() => stage.user = Some(rest.to_owned()),
            "ENTRYPOINT" => {
                stage.entrypoint = serde_json::from_str(rest)
                    .with_context(|| format!("`{line}`: only the exec (JSON array) form is supported"))?;
            }
            _ => bail!("`{line}`: unsupported instruction in the final stage (COPY --from=build, USER, ENTRYPOINT)"),
        }
    }
    ensure!(!stage.copies.is_empty(), "the final stage copies nothing");
    Ok(stage)
}

/// The Containerfile's instructions: comments and blank lines dropped, `\`-continued lines joined.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head.trim_end());
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        out.push(current.trim_end().to_owned());
    }
    out
}

/// An instruction's keyword and the rest of the line, trimmed.
fn keyword(line: &str) -> (&str, &str) {
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    (word, rest.trim())
}

/// "static, non-PIE", "static-pie", or "dynamic" from the ELF header and program headers.
pub(crate) fn elf_kind(path: &Path) -> Result<&'static str> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_repository_containerfile() -> Result<()> {
        let stage = final_stage()?;
        let destinations: Vec<&str> = stage.copies.iter().map(|(_, dst)| dst.as_str()).collect();
        assert_eq!(destinations, ["/usr/bin/vfnet", "/usr/bin/vfnet-device-plugin"]);
        assert_eq!(stage.user.as_deref(), Some("0:0"));
        assert_eq!(stage.entrypoint, ["/usr/bin/vfnet-device-plugin"]);
        Ok(())
    }

    #[test]
    fn reads_only_the_final_stage() -> Result<()> {
        let text = "FROM rust AS build\nRUN cargo build \\\n  --release\nCOPY . .\n\n# the image\nFROM scratch\n\
                    COPY --from=build /src/target/a/release/x /x\nENTRYPOINT [\"/x\", \"run\"]\n";
        let stage = parse_final_stage(text)?;
        assert_eq!(stage.copies, [("/src/target/a/release/x".to_owned(), "/x".to_owned())]);
        assert_eq!(stage.user, None);
        assert_eq!(stage.entrypoint, ["/x", "run"]);
        Ok(())
    }

    #[test]
    fn rejects_what_the_image_builder_cannot_reproduce() {
        let base = "FROM rust AS build\nFROM scratch\nCOPY --from=build /a /a\n";
        for (extra, expected) in [
            ("RUN true", "unsupported instruction"),
            ("ENV A=1", "unsupported instruction"),
            ("COPY --from=build --chmod=700 /b /b", "only `COPY --from=build"),
            ("COPY /b /b", "only `COPY --from=build"),
            ("ENTRYPOINT /a", "exec (JSON array) form"),
        ] {
            let err = parse_final_stage(&format!("{base}{extra}\n")).err().map(|e| format!("{e:#}"));
            assert!(err.as_deref().is_some_and(|e| e.contains(expected)), "{extra}: {err:?}");
        }
        let err = parse_final_stage("FROM debian\nCOPY --from=build /a /a\n").err().map(|e| format!("{e:#}"));
        assert!(err.is_some_and(|e| e.contains("FROM scratch")));
    }
}
