//! `vfnet install <dir>`: the DaemonSet's init container puts the plugin on the node. The image
//! has no shell, so the binary copies itself: to a temporary file in the same directory, fsynced,
//! then renamed over `<dir>/vfnet`, so a runtime exec'ing the plugin at that moment sees either the
//! old binary or the new one, never a half-written file (runtimes exec it for every pod).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::node_config::NodeConfig;

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

/// Installs the node configuration `src` (checked with [`NodeConfig::parse`]) as `dest`,
/// atomically, mode 0644 in a directory of mode 0755: root's alone, as the plugin requires of it.
pub fn install_node_config(src: &Path, dest: &Path) -> io::Result<()> {
    let bytes = fs::read(src).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", src.display())))?;
    NodeConfig::parse(&bytes).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a node configuration: {e}", src.display()))
    })?;
    let dir = dest.parent().unwrap_or(Path::new("/"));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    sriov::persist::replace_with(dest, 0o644, |f| f.write_all(&bytes)).map_err(|e| {
        io::Error::new(e.source.kind(), format!("installing {} as {}: {}", src.display(), dest.display(), e.source))
    })
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

    #[test]
    fn installs_a_checked_node_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("node.json");
        let dest = dir.path().join("etc/vfnet/node.json");
        fs::write(&src, br#"{"requireDeviceRecords": true}"#).unwrap();
        install_node_config(&src, &dest).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(fs::metadata(dest.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o755);
        assert!(NodeConfig::parse(&fs::read(&dest).unwrap()).unwrap().require_device_records);
        fs::write(&src, br#"{"stateDir": "relative"}"#).unwrap();
        let e = install_node_config(&src, &dest).unwrap_err().to_string();
        assert!(e.contains("is not a node configuration: stateDir"), "{e}");
        assert!(NodeConfig::parse(&fs::read(&dest).unwrap()).unwrap().require_device_records, "the old one stays");
    }
}
