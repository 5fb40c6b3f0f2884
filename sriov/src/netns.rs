//! Network namespaces.
//!
//! `setns(2)` moves only the calling thread. A thread pool (tokio's workers, `spawn_blocking`)
//! reuses threads, so entering a namespace there leaks it into unrelated work. Every entry here
//! happens on a dedicated scoped thread that exits afterwards; the caller's thread never moves.
//! Sockets opened inside stay bound to that namespace (see [`crate::netlink::Netlink::in_netns`]).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::{NSFS_MAGIC, PROC_SUPER_MAGIC, fstatfs};

/// Why a namespace could not be opened or entered.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Nothing at the path: the namespace (and with it its pod) is gone.
    #[error("network namespace {path} is gone (no such file)")]
    Gone {
        /// The namespace path.
        path: PathBuf,
    },
    /// Something is at the path, but it is not a namespace: typically a bind mount that was
    /// undone, leaving the empty mount point file behind.
    #[error("{path} is not a network namespace ({reason})")]
    NotNamespace {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// The path could not be opened for another reason.
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `setns` failed.
    #[error("cannot enter network namespace {path}: {errno}")]
    Enter {
        /// The path.
        path: PathBuf,
        /// The OS error.
        errno: Errno,
    },
    /// Creating a namespace failed.
    #[error("cannot create a network namespace: {0}")]
    Create(Errno),
    /// The thread running inside the namespace panicked.
    #[error("the thread working in network namespace {path} panicked")]
    Panicked {
        /// The path.
        path: PathBuf,
    },
}

/// The path shown for namespaces without one.
const ANONYMOUS: &str = "anonymous network namespace";

/// An open network namespace. The namespace lives at least as long as this handle.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens the namespace at `path` (`/run/netns/<name>`, `/proc/<pid>/ns/net`, ...), telling a
    /// namespace that is gone from a path that is not a namespace at all.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NetnsError> {
        let path = path.as_ref().to_owned();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(NetnsError::Gone { path }),
            Err(source) => return Err(NetnsError::Open { path, source }),
        };
        let fs_type =
            fstatfs(&file).map_err(|e| NetnsError::Open { path: path.clone(), source: e.into() })?.filesystem_type();
        // Namespace files live on nsfs; old kernels showed them on procfs.
        if fs_type != NSFS_MAGIC && fs_type != PROC_SUPER_MAGIC {
            let reason = match file.metadata() {
                Ok(m) if m.len() == 0 && m.is_file() => "an empty file: the namespace bind mount is gone".to_owned(),
                Ok(m) if m.is_dir() => "a directory".to_owned(),
                _ => format!("a file on filesystem type {:#x}", fs_type.0),
            };
            return Err(NetnsError::NotNamespace { path, reason });
        }
        Ok(Self { file, path })
    }

    /// The calling thread's namespace (through `/proc/thread-self`: `/proc/self` would name the
    /// main thread's).
    pub fn current() -> Result<Self, NetnsError> {
        Self::open("/proc/thread-self/ns/net")
    }

    /// Creates a new namespace with no name and no process in it; it lives as long as the handle
    /// (and any socket or link moved into it keeps it referenced). Used as a private staging area
    /// so that names never collide during moves.
    pub fn create_anonymous() -> Result<Self, NetnsError> {
        let path = PathBuf::from(ANONYMOUS);
        std::thread::scope(|s| {
            s.spawn(|| {
                unshare(CloneFlags::CLONE_NEWNET).map_err(NetnsError::Create)?;
                let file = File::open("/proc/thread-self/ns/net")
                    .map_err(|source| NetnsError::Open { path: path.clone(), source })?;
                Ok(Self { file, path: path.clone() })
            })
            .join()
            .map_err(|_| NetnsError::Panicked { path: path.clone() })?
        })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a fresh thread inside this namespace and returns its result. The calling
    /// thread's namespace is untouched.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(&self.file, CloneFlags::CLONE_NEWNET)
                    .map_err(|errno| NetnsError::Enter { path: self.path.clone(), errno })?;
                Ok(f())
            })
            .join()
            .map_err(|_| NetnsError::Panicked { path: self.path.clone() })?
        })
    }

    /// The namespace's identity (nsfs device and inode), stable while any handle is open.
    pub fn id(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().ok().map(|m| (m.dev(), m.ino()))
    }

    /// True for namespaces made by [`Netns::create_anonymous`].
    pub fn is_anonymous(&self) -> bool {
        self.path == Path::new(ANONYMOUS)
    }

    /// True if both handles refer to the same namespace (same nsfs inode).
    pub fn same_as(&self, other: &Netns) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), other.file.metadata()) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        }
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let err = Netns::open(dir.path().join("pod")).unwrap_err();
        assert!(matches!(err, NetnsError::Gone { .. }), "{err}");
        assert!(err.to_string().contains("pod"));
    }

    #[test]
    fn plain_file_is_not_a_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod");
        std::fs::write(&path, "").unwrap();
        let err = Netns::open(&path).unwrap_err();
        assert!(matches!(err, NetnsError::NotNamespace { .. }), "{err}");
        assert!(err.to_string().contains("bind mount is gone"), "{err}");
        let err = Netns::open(dir.path()).unwrap_err();
        assert!(matches!(err, NetnsError::NotNamespace { .. }), "{err}");
    }

    #[test]
    fn current_namespace_opens() {
        let ns = Netns::current().unwrap();
        assert!(ns.same_as(&Netns::current().unwrap()));
    }
}
