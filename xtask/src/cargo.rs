//! Running cargo from xtask, and finding what a build produced.

use std::{
    env,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd::{display, repo_root};

/// `cargo <subcommand>` from the workspace root, with the cargo that started xtask (`$CARGO`) so
/// the toolchain is the same.
pub(crate) fn cargo(subcommand: &str) -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.arg(subcommand).current_dir(repo_root());
    cmd
}

/// [`cargo`] for subcommands that resolve dependencies: in CI (`$CI` set) they get `--locked`,
/// so a stale `Cargo.lock` fails the run instead of being rewritten on the fly.
pub(crate) fn cargo_locked(subcommand: &str) -> Command {
    let mut cmd = cargo(subcommand);
    if env::var_os("CI").is_some() {
        cmd.arg("--locked");
    }
    cmd
}

/// An executable a cargo build produced.
#[derive(Debug)]
pub(crate) struct Executable {
    pub(crate) package: String,
    /// The target's name (`vm_harness`, `node-report`, the library's name for unit tests).
    pub(crate) target: String,
    /// Whether it is a test harness (`cargo test --no-run`), not a plain binary or example.
    pub(crate) test: bool,
    pub(crate) path: PathBuf,
    /// The package's directory: cargo runs tests from there, and so do we.
    pub(crate) package_dir: PathBuf,
}

/// Runs a cargo build command and returns the executables it produced, read from cargo's JSON
/// messages rather than guessed from `target/` (test executables carry a hash in their names).
/// Diagnostics and progress still go to the terminal as usual.
pub(crate) fn build(cmd: &mut Command) -> Result<Vec<Executable>> {
    cmd.arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let shown = display(cmd);
    println!("    $ {shown}");
    let out = cmd.output().with_context(|| format!("cannot start `{shown}`"))?;
    if !out.status.success() {
        bail!("`{shown}` failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|message| executable(&message))
        .collect())
}

fn executable(message: &Value) -> Option<Executable> {
    if message["reason"] != "compiler-artifact" {
        return None;
    }
    let manifest = PathBuf::from(message["manifest_path"].as_str()?);
    Some(Executable {
        package: package_name(message["package_id"].as_str()?)?,
        target: message["target"]["name"].as_str()?.to_owned(),
        test: message["profile"]["test"].as_bool()?,
        path: PathBuf::from(message["executable"].as_str()?),
        package_dir: manifest.parent()?.to_path_buf(),
    })
}

/// The package name in a cargo package id: `path+file:///w/tests#vfnet-e2e@0.1.0`, or
/// `path+file:///w/xtask#0.1.0` when the name is the directory's, or the old
/// `name 0.1.0 (path+file:///w/x)` form.
fn package_name(id: &str) -> Option<String> {
    let Some((url, fragment)) = id.split_once('#') else {
        return id.split_whitespace().next().map(str::to_owned);
    };
    match fragment.split_once('@') {
        Some((name, _version)) => Some(name.to_owned()),
        None => url.rsplit('/').next().map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_from_every_id_form() {
        let name = |id| package_name(id).unwrap_or_default();
        assert_eq!(name("path+file:///w/tests#vfnet-e2e@0.1.0"), "vfnet-e2e");
        assert_eq!(name("path+file:///w/xtask#0.1.0"), "xtask");
        assert_eq!(name("registry+https://github.com/rust-lang/crates.io-index#anyhow@1.0.100"), "anyhow");
        assert_eq!(name("xtask 0.1.0 (path+file:///w/xtask)"), "xtask");
    }

    #[test]
    fn reads_a_test_artifact() -> Result<()> {
        let message: Value = serde_json::from_str(
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/tests#vfnet-e2e@0.1.0",
            "manifest_path":"/w/tests/Cargo.toml","target":{"kind":["test"],"name":"vm_harness"},
            "profile":{"test":true},"executable":"/w/target/debug/deps/vm_harness-0123"}"#,
        )?;
        let exe = executable(&message).context("no executable")?;
        assert_eq!(exe.package, "vfnet-e2e");
        assert_eq!(exe.target, "vm_harness");
        assert!(exe.test);
        assert_eq!(exe.path, PathBuf::from("/w/target/debug/deps/vm_harness-0123"));
        assert_eq!(exe.package_dir, PathBuf::from("/w/tests"));
        let library: Value = serde_json::from_str(
            r#"{"reason":"compiler-artifact","package_id":"x 0.1.0 (path+file:///w/x)",
            "manifest_path":"/w/x/Cargo.toml","target":{"name":"x"},"profile":{"test":false},
            "executable":null}"#,
        )?;
        assert!(executable(&library).is_none());
        Ok(())
    }
}
