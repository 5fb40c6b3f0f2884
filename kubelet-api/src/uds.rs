//! gRPC over unix sockets.
//!
//! Client: tonic's channel needs a URI; [`connect`] gives it `http://localhost` (the authority
//! kubelet's own clients use: h2 rejects a socket path as `:authority`) and a connector that
//! dials the socket. Server: [`bind_private`] creates a socket only its owner can use.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Why a socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UdsError {
    /// Connecting failed (no such socket, nobody listening, refused).
    #[error("cannot connect to {path}: {source}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// tonic's error, with the OS error as its source.
        source: tonic::transport::Error,
    },
    /// Creating the listening socket failed.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// A channel to the gRPC server listening on `path`. The connection is made now, so a missing
/// socket fails here rather than at the first call.
pub async fn connect(path: impl AsRef<Path>) -> Result<Channel, UdsError> {
    let path = path.as_ref().to_owned();
    let dial = path.clone();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let dial = dial.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(dial).await?)) }
        }))
        .await
        .map_err(|source| UdsError::Connect { path, source })
}

/// Listens on `path` with mode 0600, replacing a stale socket file. The socket is bound under a
/// temporary name, restricted, then renamed into place, so `path` never exists with wider
/// permissions. Returns the listener as a stream for `serve_with_incoming`.
pub fn bind_private(path: &Path) -> Result<UnixListenerStream, UdsError> {
    let err = |source| UdsError::Bind { path: path.to_owned(), source };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(err)?;
    let placed = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(UnixListenerStream::new(listener))
}

/// Which file a path names: device, inode and change time, so a socket removed and served anew
/// differs even when the new file gets the freed inode number back (ext4 hands it out again at
/// once), unless both fall in one tick of the kernel's coarse clock. The path itself is looked
/// at, not a symlink's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
}

/// The identity of the file at `path`, or `None` if there is none.
pub fn file_id(path: &Path) -> Option<FileId> {
    fs::symlink_metadata(path).ok().map(|m| FileId { dev: m.dev(), ino: m.ino(), ctime: (m.ctime(), m.ctime_nsec()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_served_anew_is_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sock");
        assert_eq!(file_id(&path), None, "no file");
        let first = bind_private(&path).unwrap();
        let id = file_id(&path).expect("the socket");
        assert_eq!(file_id(&path), Some(id), "the same file");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        drop(first);
        fs::remove_file(&path).unwrap();
        // The change time ticks with the kernel's coarse clock (a few ms); real re-serves are
        // further apart than that.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let _second = bind_private(&path).unwrap();
        assert_ne!(file_id(&path), Some(id), "served anew");
    }
}
