//! Named network namespaces as `ip netns add` makes them (a bind mount of a namespace file under
//! `/run/netns`), because that is what runtimes pass as `CNI_NETNS`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

/// A named namespace; deleted on drop unless already deleted.
#[derive(Debug)]
pub struct NamedNetns {
    path: PathBuf,
    deleted: bool,
}

impl NamedNetns {
    /// Creates `/run/netns/<name>`.
    pub fn create(name: &str) -> Result<Self> {
        let dir = Path::new("/run/netns");
        fs::create_dir_all(dir)?;
        let path = dir.join(name);
        if path.exists() {
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            let _ = fs::remove_file(&path);
        }
        fs::write(&path, "").with_context(|| format!("create {}", path.display()))?;
        let target = path.clone();
        std::thread::spawn(move || -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET).context("unshare")?;
            mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .with_context(|| format!("bind mount onto {}", target.display()))?;
            Ok(())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("namespace thread panicked"))??;
        Ok(Self { path, deleted: false })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes it as `ip netns del` does (the namespace dies with its last reference; physical
    /// netdevs in it then return to the host namespace).
    pub fn delete(&mut self) -> Result<()> {
        if !self.deleted {
            umount2(&self.path, MntFlags::MNT_DETACH).with_context(|| format!("umount {}", self.path.display()))?;
            fs::remove_file(&self.path)?;
            self.deleted = true;
        }
        Ok(())
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = self.delete();
    }
}
