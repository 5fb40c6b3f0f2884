//! A sysfs directory held open, its entries reached relative to it.
//!
//! Discovery reads about ten entries of every PCI function. Naming each by its full path makes
//! the kernel walk the whole path every time (the root, `sys/bus/pci/devices/<pci>`, the link
//! into `sys/devices/...`): on a node with 1024 VFs those walks were a large part of discovery.
//! The directory is opened once with `O_PATH` (no read access needed, `open(2)`) and every entry
//! is then one `*at(2)` call of one component. Errors still name the entry's full path.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir as DirStream;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, fstatat};
use nix::unistd::read;

use super::{Result, SysfsError};

/// The largest sysfs attribute: `show()` fills at most one page (`Documentation/filesystems/sysfs.rst`).
pub(super) const ATTR_MAX: usize = 4096;

/// An open directory and the path it was opened by.
#[derive(Debug)]
pub(super) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens directory `path`, following links. The raw error is returned for the caller to name.
    pub(super) fn open(path: PathBuf) -> nix::Result<Self> {
        let fd = Self::open_fd(AT_FDCWD, path.as_os_str())?;
        Ok(Self { fd, path })
    }

    /// Opens `name` under this directory, following links; `path` names the result in errors
    /// (a VF reached through its PF's `virtfnN` is named by its `sys/bus/pci/devices` path).
    pub(super) fn sub(&self, name: &str, path: PathBuf) -> nix::Result<Self> {
        let fd = Self::open_fd(self.fd.as_fd(), OsStr::new(name))?;
        Ok(Self { fd, path })
    }

    fn open_fd(base: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
        // Without O_DIRECTORY, like the `stat` it replaces: a non-directory fails on first use.
        openat(base, name, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
    }

    /// The path this directory was opened by.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The full path of entry `name`, for error messages.
    pub(super) fn entry(&self, name: &str) -> PathBuf {
        if name == "." {
            return self.path.clone();
        }
        self.path.join(name)
    }

    /// Whether `name` exists, following links (`Path::exists`).
    pub(super) fn exists(&self, name: &str) -> bool {
        fstatat(self.fd.as_fd(), name, nix::fcntl::AtFlags::empty()).is_ok()
    }

    /// Whether `name` itself exists, not following a final link (`symlink_metadata`).
    pub(super) fn exists_nofollow(&self, name: &str) -> bool {
        fstatat(self.fd.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
    }

    /// The target of link `name`, as `readlink(2)` gives it.
    pub(super) fn read_link(&self, name: &str) -> nix::Result<PathBuf> {
        readlinkat(self.fd.as_fd(), name).map(PathBuf::from)
    }

    /// The target of symlink `name`: `None` if there is no such link, an error if it dangles.
    pub(super) fn link_target(&self, name: &str) -> Result<Option<PathBuf>> {
        let target = match self.read_link(name) {
            Ok(t) => t,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(SysfsError::Read { path: self.entry(name), source: e.into() }),
        };
        match fstatat(self.fd.as_fd(), name, nix::fcntl::AtFlags::empty()) {
            Ok(_) => Ok(Some(target)),
            Err(Errno::ENOENT) => Err(SysfsError::Dangling { path: self.entry(name), target }),
            Err(e) => Err(SysfsError::Read { path: self.entry(name), source: e.into() }),
        }
    }

    /// Reads attribute `name` into `buf`, trimmed. One `read(2)` of a page, no second read to
    /// see end-of-file: `show()` fills at most one page and sysfs hands it over whole on the first
    /// read (`Documentation/filesystems/sysfs.rst`), as systemd's `read_virtual_file` relies on.
    pub(super) fn read_attr<'b>(&self, name: &str, buf: &'b mut [u8; ATTR_MAX]) -> io::Result<&'b str> {
        let fd = openat(self.fd.as_fd(), name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        let len = read(&fd, buf)?;
        std::str::from_utf8(&buf[..len])
            .map(str::trim)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
    }

    /// The names in subdirectory `name` (`.` and `..` left out), or `None` if it does not exist.
    pub(super) fn list(&self, name: &str) -> Result<Option<Vec<String>>> {
        let read_err = |e: Errno| SysfsError::Read { path: self.entry(name), source: e.into() };
        let stream = match DirStream::openat(
            self.fd.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(s) => s,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        let mut names = Vec::new();
        for entry in stream {
            let entry = entry.map_err(read_err)?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_string_lossy().into_owned());
            }
        }
        Ok(Some(names))
    }
}

/// A stack buffer for [`Dir::read_attr`].
pub(super) fn attr_buf() -> [u8; ATTR_MAX] {
    [0; ATTR_MAX]
}
