//! `vfnet install <dir>`: the DaemonSet's init container puts the plugin on the node. The image
//! has no shell, so the binary copies itself: to a temporary file in the same directory, fsynced,
//! then renamed over `<dir>/vfnet`, so a runtime exec'ing the plugin at that moment sees either the
//! old binary or the new one, never a half-written file (runtimes exec it for every pod).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Copies `source` to `<dir>/vfnet` atomically (mode 0755, [`sriov::persist::replace_with`]);
/// returns the installed path.
pub fn install(source: &Path, dir: &Path) -> io::Result<PathBuf> {
    let meta = fs::metadata(dir).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!("{} is not a directory", dir.display())));
    }
    let target = dir.join("vfnet");
    sriov::persist::replace_with(&target, 0o755, |dst| io::copy(&mut File::open(source)?, dst).map(drop)).map_err(
        |e| {
            io::Error::new(
                e.source.kind(),
                format!("installing {} as {}: {}", source.display(), target.display(), e.source),
            )
        },
    )?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_atomically_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, b"new binary").unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        fs::write(bin.join("vfnet"), b"old").unwrap();
        let installed = install(&src, &bin).unwrap();
        assert_eq!(fs::read(&installed).unwrap(), b"new binary");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&installed).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::read_dir(&bin).unwrap().count(), 1, "no temporary file left");
        let e = install(&src, &dir.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
