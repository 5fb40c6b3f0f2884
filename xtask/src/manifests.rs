//! The CRD YAML and the manifests: `cargo xtask crdgen` regenerates the CRDs, and two phases of
//! `cargo xtask test` check that the checked-in CRDs are what the code generates ("crds") and
//! validate `manifests/` offline ("manifests", with `validate_manifests.py`).

use std::{fs, path::Path};

use anyhow::{Context, Result, bail};

use crate::{
    cargo::cargo_locked,
    cmd::{repo_root, run},
    setup,
};

/// `cargo run -p vfnet-crds --bin crdgen`, the generator (its own `GENERATE_COMMAND`).
const CRDGEN: [&str; 6] = ["-q", "-p", "vfnet-crds", "--bin", "crdgen", "--"];
/// Where the generated YAML is checked in, relative to the workspace root.
const CRD_DIRS: [&str; 2] = ["crds", "manifests/crds"];
/// The Kubernetes version the manifests are validated against: the API level the Rust types
/// are built for (k8s-openapi's `v1_34`, the first with `resource.k8s.io/v1`).
const KUBERNETES_VERSION: &str = "1.34";

/// `cargo xtask crdgen`: rewrites the checked-in CRD YAML.
pub(crate) fn crdgen_cli(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("crdgen takes no arguments, got `{arg}`");
    }
    run(cargo_locked("run").args(CRDGEN))
}

/// `cargo xtask manifests`: the two test phases on their own.
pub(crate) fn cli(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("manifests takes no arguments, got `{arg}`");
    }
    println!("==> crds");
    check_crds()?;
    println!("==> manifests");
    validate(&setup::manifest_tools()?)
}

/// Fails, naming each stale file and the command that fixes it, unless every checked-in CRD file
/// is exactly what the generator writes now (and no other YAML lies beside them).
pub(crate) fn check_crds() -> Result<()> {
    let root = repo_root();
    let fresh = root.join("target/vfnet-crdgen");
    let _ = fs::remove_dir_all(&fresh);
    run(cargo_locked("run").args(CRDGEN).arg("--out-dir").arg(&fresh))?;
    let generated = yaml_files(&fresh)?;
    if generated.is_empty() {
        bail!("crdgen wrote no YAML into {}", fresh.display());
    }
    let (mut stale, mut left_over) = (Vec::new(), Vec::new());
    for dir in CRD_DIRS {
        for name in &generated {
            let checked_in = root.join(dir).join(name);
            let want = fs::read_to_string(fresh.join(name))?;
            match fs::read_to_string(&checked_in) {
                Ok(have) if have == want => println!("    up to date: {dir}/{name}"),
                Ok(have) => {
                    let diff = first_difference(&have, &want);
                    println!("    STALE: {dir}/{name} differs from what the code generates{diff}");
                    stale.push(format!("{dir}/{name}"));
                }
                Err(_) => {
                    println!("    MISSING: {dir}/{name}");
                    stale.push(format!("{dir}/{name}"));
                }
            }
        }
        for extra in yaml_files(&root.join(dir))?.into_iter().filter(|name| !generated.contains(name)) {
            println!("    LEFT OVER: {dir}/{extra} (no CRD generates it any more)");
            left_over.push(format!("{dir}/{extra}"));
        }
    }
    if !stale.is_empty() {
        bail!(
            "the checked-in CRD YAML is stale ({}): run `cargo run -p vfnet-crds --bin crdgen` (or `cargo xtask \
             crdgen`) and commit the result",
            stale.join(", ")
        );
    }
    if !left_over.is_empty() {
        bail!("remove {} (no CRD generates it; manifests/kustomization.yaml may still list it)", left_over.join(", "));
    }
    Ok(())
}

/// Runs `validate_manifests.py` with the pinned tools.
pub(crate) fn validate(tools: &setup::ManifestTools) -> Result<()> {
    let root = repo_root();
    let script = root.join("xtask/validate_manifests.py");
    run(std::process::Command::new(&tools.python)
        .arg(&script)
        .arg("--kubectl")
        .arg(&tools.kubectl)
        .args(["--kubernetes-version", KUBERNETES_VERSION])
        .arg(&root))
}

/// The generated kinds of file names in `dir` (none if it does not exist), sorted: `.yaml` (the
/// CRDs) and `.schema.json` (the VfConfig schema).
fn yaml_files(dir: &Path) -> Result<Vec<String>> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry.with_context(|| format!("cannot read {}", dir.display()))?.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".yaml") || name.ends_with(".schema.json") {
            names.push(name.into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// `" (line N: ...)"` for the first line where `have` and `want` differ.
fn first_difference(have: &str, want: &str) -> String {
    let mut have_lines = have.lines();
    let mut want_lines = want.lines();
    for number in 1.. {
        match (have_lines.next(), want_lines.next()) {
            (Some(h), Some(w)) if h == w => continue,
            (None, None) => return String::new(),
            (h, w) => {
                return format!(
                    "\n      line {number}: checked in: {}\n      line {number}: generated:  {}",
                    h.unwrap_or("<end of file>").trim(),
                    w.unwrap_or("<end of file>").trim()
                );
            }
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_differing_line() {
        assert_eq!(first_difference("a\nb\n", "a\nb\n"), "");
        let d = first_difference("a\nb\nc\n", "a\nB\nc\n");
        assert!(d.contains("line 2: checked in: b") && d.contains("line 2: generated:  B"), "{d}");
        assert!(first_difference("a\n", "a\nb\n").contains("checked in: <end of file>"));
    }
}
