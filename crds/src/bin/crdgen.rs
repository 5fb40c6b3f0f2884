//! `crdgen`: writes vfnet's CustomResourceDefinitions as YAML, and the JSON schema of the DRA
//! driver's opaque VfConfig (`vfconfig.schema.json`) beside them.
//!
//! Without arguments it writes them to `crds/` and `manifests/crds/` of the workspace; with
//! `--out-dir DIR` to DIR only (how `cargo xtask test` checks the checked-in files are current).
// Saying what was written is this program's job.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn dirs(args: &[String]) -> Result<Vec<PathBuf>, String> {
    match args {
        [] => {
            let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            let root = crate_dir.parent().unwrap_or(crate_dir);
            Ok(crds::crd::OUTPUT_DIRS.iter().map(|dir| root.join(dir)).collect())
        }
        [flag, dir] if flag == "--out-dir" => Ok(vec![PathBuf::from(dir)]),
        _ => Err("usage: crdgen [--out-dir DIR]".to_owned()),
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let dirs = dirs(args)?;
    let files = crds::crd::files().map_err(|e| e.to_string())?;
    for dir in &dirs {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for file in &files {
            let path = dir.join(&file.name);
            std::fs::write(&path, &file.text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            println!("{}", path.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::FAILURE
        }
    }
}
