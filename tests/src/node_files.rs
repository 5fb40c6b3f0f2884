//! Node files a test replaces and puts back: the CNI plugin's node configuration, containerd's
//! network configuration. In the VM only (`VFNET_VM=1`): the guest's `/etc` is an overlay whose
//! writes stay in the guest; on the host these paths are the machine's own.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

/// Writes `bytes` at `path` in one step (a sibling temporary file renamed over it), mode 0644,
/// so a reader (containerd, a CNI run) never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    in_vm(path)?;
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn in_vm(path: &Path) -> Result<()> {
    ensure!(std::env::var("VFNET_VM").as_deref() == Ok("1"), "refusing to change {} outside the VM", path.display());
    Ok(())
}

/// Files set for a test, each put back as it was (content, or absent) by [`NodeFiles::restore`]
/// or on drop, the last set first.
#[derive(Debug, Default)]
pub struct NodeFiles {
    /// Each path with what it held before its first change (`None`: it did not exist).
    saved: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl NodeFiles {
    /// Nothing changed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `path` to `content` (`None`: removes it), keeping what it held first.
    pub fn set(&mut self, path: impl Into<PathBuf>, content: Option<&[u8]>) -> Result<&mut Self> {
        let path = path.into();
        in_vm(&path)?;
        if !self.saved.iter().any(|(p, _)| *p == path) {
            let before = match std::fs::read(&path) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            self.saved.push((path.clone(), before));
        }
        put(&path, content)?;
        Ok(self)
    }

    /// Puts every file back, the last set first. Keeps going past a failure and reports them all.
    pub fn restore(&mut self) -> Result<()> {
        let errors: Vec<String> = std::mem::take(&mut self.saved)
            .into_iter()
            .rev()
            .filter_map(|(path, before)| put(&path, before.as_deref()).err().map(|e| format!("{e:#}")))
            .collect();
        ensure!(errors.is_empty(), "restoring node files: {}", errors.join("; "));
        Ok(())
    }
}

impl Drop for NodeFiles {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            eprintln!("{e:#}");
        }
    }
}

fn put(path: &Path, content: Option<&[u8]>) -> Result<()> {
    match content {
        Some(bytes) => write_atomic(path, bytes),
        None => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        },
    }
}
