//! The node socket (`<run-dir>/daemon.sock`): where the CNI plugin asks the daemon for a VfProfile
//! that is not in the profile directory yet (created a moment ago, or the mirror lagging).
//!
//! The daemon has the API credentials and the VfProfile watch; asking it keeps the CNI plugin, a
//! binary exec'd once per pod, free of a Kubernetes client, TLS and an async runtime. The
//! protocol (one JSON request line, one JSON response line) is [`vfnet_types::node_socket`].
//!
//! - **DRA.** The pod's prepared claim VFs, and the attachments the CNI reports for the claims'
//!   device status, are the DRA driver's ([`crate::dra::driver`]).
//! - **Answers.** In cluster mode, from the watch's store if it holds the profile (or from the
//!   file the watch mirrored while its store waits for a list to complete); else the daemon GETs it from the API server (within [`API_GET_TIMEOUT`]) and mirrors what it got into
//!   the profile directory, as the watch would. In file-only mode there is no API server to ask,
//!   and the answer says so.
//! - **Access.** Mode 0600 (root): the socket is bound inside a fresh 0700 directory, chmod'ed,
//!   then renamed into place, so it is never reachable with wider permissions; the rename
//!   replaces a stale socket of an earlier run. The socket is removed at shutdown (unless another
//!   daemon has replaced it since).
//! - **Bounds.** A request is at most [`MAX_REQUEST_BYTES`]; a connection gets
//!   [`CONNECTION_TIMEOUT`] in all and at most [`MAX_CONNECTIONS`] are served at once (the others
//!   are told the daemon is busy), so a stuck or flooding client cannot pin the daemon. The
//!   CNI plugin gives the exchange 3 s; the daemon answers well within that.

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::Store;
use kubelet_api::uds::{FileId, file_id};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vfnet_types::node_socket::{MAX_REQUEST_BYTES, Request, Response};
use vfnet_types::{ProfileDir, RunDir};

use crate::cluster;
use crate::dra::driver::Driver;

/// How long the API server gets to serve one profile (the CNI plugin waits 3 s in all).
pub const API_GET_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one connection may take, from accept to the answer written.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_millis(2500);
/// How many connections are served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// Why the node socket cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve the node socket {path}: {step}: {source}")]
pub struct NodeSocketError {
    /// The socket's path.
    pub path: PathBuf,
    /// What failed.
    pub step: &'static str,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// Where the daemon gets the profiles it is asked for.
pub(crate) trait Profiles: Send + Sync + 'static {
    /// VfProfile `name` (a valid file name).
    fn profile(&self, name: &str) -> impl Future<Output = Response> + Send;
}

/// File-only mode: no API server to ask.
pub(crate) struct FileOnly;

impl Profiles for FileOnly {
    async fn profile(&self, _name: &str) -> Response {
        Response::Error(
            "no API server: the daemon runs in file-only mode (its --pools file, no --kubeconfig or service account)"
                .to_owned(),
        )
    }
}

/// Cluster mode: the VfProfile watch's store, else the API server.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    /// The VfProfile watch's objects.
    pub(crate) store: Store<DynamicObject>,
    /// The VfProfile collection.
    pub(crate) api: Api<DynamicObject>,
    /// Where fetched profiles are mirrored.
    pub(crate) dir: ProfileDir,
}

impl Profiles for Cluster {
    async fn profile(&self, name: &str) -> Response {
        if let Some(obj) = self.store.find(|p| p.metadata.name.as_deref() == Some(name)) {
            tracing::debug!(profile = %name, "node socket: VfProfile served from the watch");
            return Response::Profile(cluster::served_profile(&obj));
        }
        // During a (re-)list the watch mirrors each profile as it arrives, while its store
        // publishes them only once the list is complete: a file the watch wrote meanwhile is the
        // object as served, and saves a request.
        let path = self.dir.profile(name);
        let mirrored = tokio::task::spawn_blocking(move || std::fs::read(path).ok()).await.ok().flatten();
        if let Some(value) = mirrored.and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok()) {
            tracing::debug!(profile = %name, "node socket: VfProfile served from the watch's mirror file");
            return Response::Profile(value);
        }
        let obj = match tokio::time::timeout(API_GET_TIMEOUT, self.api.get_opt(name)).await {
            Err(_) => {
                return Response::Error(format!(
                    "the API server did not answer within {}s",
                    API_GET_TIMEOUT.as_secs_f32()
                ));
            }
            Ok(Err(e)) => return Response::Error(format!("the API server did not serve it: {}", with_causes(&e))),
            Ok(Ok(None)) => return Response::NotFound,
            Ok(Ok(Some(obj))) => obj,
        };
        let served = cluster::served_profile(&obj);
        let dir = self.dir.clone();
        // The file the watch would have written: the next ADD reads it without asking.
        if let Err(e) = tokio::task::spawn_blocking(move || cluster::mirror_profile(&dir, &obj)).await {
            tracing::error!(error = %e, "profile file task failed");
        }
        tracing::info!(profile = %name, "node socket: VfProfile fetched from the API server and mirrored");
        Response::Profile(served)
    }
}

/// An error with its causes: kube's own message can be as terse as "client error (Connect)".
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let m = c.to_string();
        if !msg.contains(&m) {
            msg = format!("{msg}: {m}");
        }
        cause = c.source();
    }
    msg
}

/// The bound node socket.
pub(crate) struct NodeSocket {
    listener: UnixListener,
    path: PathBuf,
    /// The socket file's identity: removed at shutdown only if still this one.
    id: Option<FileId>,
}

/// Binds `<run_dir>/daemon.sock` with mode 0600, replacing a stale one.
pub(crate) fn bind(run_dir: &RunDir) -> Result<NodeSocket, NodeSocketError> {
    let path = run_dir.daemon_socket();
    let err = |step| {
        let path = path.clone();
        move |source| NodeSocketError { path, step, source }
    };
    sriov::persist::create_private_dir(run_dir.path()).map_err(|e| NodeSocketError {
        path: path.clone(),
        step: "create the run directory",
        source: e.source,
    })?;
    // Bound where only root can reach it, made 0600, then moved into place.
    let private = run_dir.path().join(format!(".daemon.sock.{}.d", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private).map_err(err("create a private directory"))?;
    let staged = private.join("s");
    let bound = (|| {
        let listener = std::os::unix::net::UnixListener::bind(&staged).map_err(err("bind"))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600)).map_err(err("chmod 0600"))?;
        std::fs::rename(&staged, &path).map_err(err("move into place"))?;
        listener.set_nonblocking(true).map_err(err("set non-blocking"))?;
        UnixListener::from_std(listener).map_err(err("register"))
    })();
    let _ = std::fs::remove_dir_all(&private);
    let listener = bound?;
    tracing::info!(socket = %path.display(), "serving the node socket (profiles for the CNI plugin)");
    Ok(NodeSocket { listener, id: file_id(&path), path })
}

/// Serves `socket` until `stop`, then removes it (if it is still this one).
pub(crate) fn serve<P: Profiles>(
    socket: NodeSocket,
    profiles: P,
    dra: Option<Arc<Driver>>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let profiles = Arc::new(profiles);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                c = socket.listener.accept() => c,
                () = stop.cancelled() => break,
            };
            let stream = match conn {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "node socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                let busy = Response::Error(format!("the daemon is busy ({MAX_CONNECTIONS} requests under way)"));
                let _ = stream.try_write(&busy.to_line());
                continue;
            };
            let profiles = Arc::clone(&profiles);
            let dra = dra.clone();
            tokio::spawn(async move {
                if tokio::time::timeout(CONNECTION_TIMEOUT, connection(stream, &*profiles, dra.as_deref()))
                    .await
                    .is_err()
                {
                    tracing::debug!("node socket: a client took over {CONNECTION_TIMEOUT:?}; dropped");
                }
                drop(slot);
            });
        }
        let NodeSocket { listener, path, id } = socket;
        drop(listener);
        if id.is_some() && file_id(&path) == id {
            let removed = tokio::task::spawn_blocking(move || std::fs::remove_file(&path)).await;
            if let Ok(Err(e)) = removed {
                tracing::warn!(error = %e, "cannot remove the node socket");
            }
        }
    })
}

/// One exchange: reads the request line, writes the answer.
async fn connection<S: AsyncRead + AsyncWrite + Unpin, P: Profiles>(stream: S, profiles: &P, dra: Option<&Driver>) {
    let (read, mut write) = tokio::io::split(stream);
    let answer = match read_request(read).await {
        Ok(Request::Profile(name)) => profile(profiles, &name).await,
        // Without the DRA driver (file-only mode) no pod has claimed VFs.
        Ok(Request::DraDevices(pod)) => match dra {
            Some(d) => Response::DraDevices(d.pod_devices(&pod).await),
            None => Response::DraDevices(Vec::new()),
        },
        Ok(Request::DraAttached(a)) => match dra {
            Some(d) => d.attached(a).await.map_or_else(Response::Error, |()| Response::Done),
            None => Response::Error("no DRA driver: the daemon runs in file-only mode".to_owned()),
        },
        Err(e) => e,
    };
    if let Response::Error(e) = &answer {
        tracing::debug!(error = %e, "node socket: request not served");
    }
    let _ = write.write_all(&answer.to_line()).await;
    let _ = write.shutdown().await;
}

/// Reads one bounded request line; an unusable one is answered with what is wrong.
async fn read_request<R: AsyncRead + Unpin>(read: R) -> Result<Request, Response> {
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64 + 1));
    reader.read_until(b'\n', &mut line).await.map_err(|e| Response::Error(format!("cannot read the request: {e}")))?;
    if line.len() > MAX_REQUEST_BYTES {
        return Err(Response::Error(format!("bad request: over {MAX_REQUEST_BYTES} bytes")));
    }
    Request::parse(&line).map_err(|e| Response::Error(format!("bad request: {e}")))
}

async fn profile<P: Profiles>(profiles: &P, name: &str) -> Response {
    if !cluster::safe_name(name) {
        return Response::Error(format!("bad request: {name:?} is not a VfProfile name"));
    }
    profiles.profile(name).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    /// Profiles from a map, as an API server with these objects would serve them.
    struct Served(BTreeMap<String, serde_json::Value>);

    impl Profiles for Served {
        async fn profile(&self, name: &str) -> Response {
            self.0.get(name).cloned().map_or(Response::NotFound, Response::Profile)
        }
    }

    fn served() -> Served {
        Served([("tenant-a".to_owned(), json!({"kind": "VfProfile", "spec": {"vlan": 100}}))].into())
    }

    /// The answer to `request` (bytes as the client sends them, then its end closed).
    async fn exchange(request: &[u8], profiles: &impl Profiles) -> Response {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serving = connection(server, profiles, None);
        let asking = async {
            client.write_all(request).await.unwrap();
            client.shutdown().await.unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            answer
        };
        let ((), answer) = tokio::join!(serving, asking);
        assert_eq!(answer.last(), Some(&b'\n'), "one line: {answer:?}");
        Response::parse(&answer).unwrap()
    }

    fn error(r: Response) -> String {
        match r {
            Response::Error(e) => e,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[tokio::test]
    async fn answers_a_profile_or_not_found() {
        let p = served();
        assert_eq!(
            exchange(b"{\"profile\":\"tenant-a\"}\n", &p).await,
            Response::Profile(json!({"kind": "VfProfile", "spec": {"vlan": 100}}))
        );
        assert_eq!(exchange(b"{\"profile\":\"tenant-b\"}\n", &p).await, Response::NotFound);
        // The client's closed end stands for the newline.
        assert_eq!(exchange(b"{\"profile\":\"tenant-b\"}", &p).await, Response::NotFound);
    }

    #[tokio::test]
    async fn refuses_bad_requests_with_the_reason() {
        let p = served();
        let long = format!("{{\"profile\":\"{}\"}}\n", "a".repeat(MAX_REQUEST_BYTES));
        assert_eq!(error(exchange(long.as_bytes(), &p).await), "bad request: over 4096 bytes");
        let e = error(exchange(b"{\"profile\": tenant-a}\n", &p).await);
        assert!(e.starts_with("bad request: not a node socket message: "), "{e}");
        let e = error(exchange(b"{\"pool\":\"a\"}\n", &p).await);
        assert!(e.contains("unknown variant `pool`"), "{e}");
        for name in ["../etc/passwd", "", ".hidden"] {
            let e = error(exchange(&Request::Profile(name.into()).to_line(), &p).await);
            assert_eq!(e, format!("bad request: {name:?} is not a VfProfile name"));
        }
    }

    #[tokio::test]
    async fn file_only_mode_has_no_api_server() {
        let e = error(exchange(&Request::Profile("tenant-a".into()).to_line(), &FileOnly).await);
        assert!(e.starts_with("no API server: the daemon runs in file-only mode"), "{e}");
    }

    #[tokio::test]
    async fn the_socket_is_private_replaces_a_stale_one_and_goes_at_shutdown() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::new(tmp.path().join("run"));
        std::fs::create_dir_all(run.path()).unwrap();
        // A socket nobody serves any more (an earlier run's).
        drop(std::os::unix::net::UnixListener::bind(run.daemon_socket()).unwrap());
        let stop = CancellationToken::new();
        let task = serve(bind(&run).unwrap(), served(), None, stop.clone());
        let mode = std::fs::metadata(run.daemon_socket()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(run.path()).unwrap().count(), 1, "no staging directory left");

        let socket = run.daemon_socket();
        let answer = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
            s.write_all(&Request::Profile("tenant-a".into()).to_line()).unwrap();
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).unwrap();
            answer
        })
        .await
        .unwrap();
        assert!(matches!(Response::parse(&answer).unwrap(), Response::Profile(_)));

        // A client that sends nothing is dropped after the connection's time.
        let mut idle = tokio::net::UnixStream::connect(run.daemon_socket()).await.unwrap();
        let t = std::time::Instant::now();
        let mut rest = Vec::new();
        idle.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty() && t.elapsed() >= CONNECTION_TIMEOUT - Duration::from_millis(100), "{rest:?}");

        stop.cancel();
        task.await.unwrap();
        assert!(!run.daemon_socket().exists(), "removed at shutdown");
    }
}
