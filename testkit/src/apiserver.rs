//! A stand-in Kubernetes API server for tests: plain HTTP/1.1 on 127.0.0.1, one request per
//! connection, speaking the real list/watch protocol for the collections the daemon uses
//! (VfProfiles, VfPools, Nodes) and accepting Events (`events.k8s.io/v1`, create and patch).
//!
//! - Objects carry `resourceVersion`s from one counter; every change is kept in a history, and a
//!   watch from resource version R streams the changes after R (chunked, one JSON event per
//!   line), then the new ones as they happen.
//! - A watch from before the compacted version is answered like the real server: HTTP 200, then
//!   an `ERROR` event with a 410 `Expired` Status. [`ApiServer::expire_watches`] sends that on
//!   every open watch.
//! - [`ApiServer::freeze`] holds changes back from open watches (a watch that silently stopped
//!   delivering); [`ApiServer::compact`] forgets the history.
//! - [`ApiServer::stop`] closes the port and every connection (the server goes away);
//!   [`ApiServer::restart`] serves again on the same port with the same objects.
//!
//! A real server on a real socket (rather than tower-test's mock service) lets the daemon run
//! unchanged, from a kubeconfig file through kube's HTTP client, including the binary as a child
//! process, and makes "the server goes away" an actual refused connection.
//!
//! Used by the device plugin's cluster tests and by the demo (`vfnet-demo`). Test support: a
//! failure to bind or a malformed object handed to [`ApiServer::apply`] panics, failing the test.

#![allow(clippy::unwrap_used)] // test support: a broken set-up fails the test

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The VfProfile collection.
pub const PROFILES: &str = "/apis/vfnet.dev/v1alpha1/vfprofiles";
/// The VfPool collection.
pub const POOLS: &str = "/apis/vfnet.dev/v1alpha1/vfpools";
/// The Node collection.
pub const NODES: &str = "/api/v1/nodes";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    collection: String,
    kind: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
struct State {
    rv: u64,
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    history: Vec<Change>,
    /// Watches from before this version get 410.
    compacted: u64,
    frozen: bool,
    /// Open watches end with a 410 ERROR event when `kill` fires and this is set.
    expire: bool,
    kill: CancellationToken,
    requests: Vec<String>,
    events: Vec<Value>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Bumped on every change (and unfreeze): open watches look at the history again.
    tick: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The server. Dropping it does not stop it: call [`ApiServer::stop`], or let the runtime end.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    down: CancellationToken,
    listener: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Serves on a free port of 127.0.0.1. Needs a tokio runtime.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tick, _) = watch::channel(0);
        let shared = Arc::new(Shared { state: Mutex::new(State { rv: 1, ..State::default() }), tick });
        let mut s = Self { addr, shared, down: CancellationToken::new(), listener: None };
        s.serve(listener);
        s
    }

    fn serve(&mut self, listener: TcpListener) {
        let (shared, down) = (Arc::clone(&self.shared), self.down.clone());
        self.listener = Some(tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    c = listener.accept() => match c { Ok((c, _)) => c, Err(_) => continue },
                    () = down.cancelled() => return,
                };
                let (shared, down) = (Arc::clone(&shared), down.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = handle(conn, &shared) => {}
                        // The server going away drops every connection.
                        () = down.cancelled() => {}
                    }
                });
            }
        }));
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Writes a kubeconfig for this server into `dir` (`<dir>/kubeconfig`, a bearer token user),
    /// for kube's client as the daemon builds it.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster: {{server: \"http://{}\"}}\n\
                 users:\n- name: node\n  user: {{token: node-token}}\ncontexts:\n- name: mock\n  context: {{cluster: mock, user: node}}\n\
                 current-context: mock\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }

    /// Goes away: the port closes and every connection drops.
    pub async fn stop(&mut self) {
        self.down.cancel();
        if let Some(l) = self.listener.take() {
            let _ = l.await;
        }
    }

    /// Comes back on the same port, with the same objects and history.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.down = CancellationToken::new();
        self.serve(listener);
    }

    /// Creates or replaces `object` (by `metadata.name`) in `collection`.
    pub fn apply(&self, collection: &str, mut object: Value) {
        let mut s = self.shared.lock();
        s.rv += 1;
        let rv = s.rv;
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let objects = s.objects.entry(collection.to_owned()).or_default();
        let kind = if objects.contains_key(&name) { "MODIFIED" } else { "ADDED" };
        let uid = objects
            .get(&name)
            .map_or_else(|| format!("uid-{name}-{rv}"), |o| o["metadata"]["uid"].as_str().unwrap().to_owned());
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        object["metadata"]["uid"] = json!(uid);
        object["metadata"]["creationTimestamp"] = json!("2026-11-24T00:00:00Z");
        object["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Apply"}]);
        objects.insert(name, object.clone());
        s.history.push(Change { rv, collection: collection.to_owned(), kind, object });
        drop(s);
        self.shared.tick.send_modify(|t| *t += 1);
    }

    /// Deletes object `name` of `collection`.
    pub fn delete(&self, collection: &str, name: &str) {
        let mut s = self.shared.lock();
        s.rv += 1;
        let rv = s.rv;
        let Some(mut object) = s.objects.entry(collection.to_owned()).or_default().remove(name) else { return };
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        s.history.push(Change { rv, collection: collection.to_owned(), kind: "DELETED", object });
        drop(s);
        self.shared.tick.send_modify(|t| *t += 1);
    }

    /// Holds changes back from open watches (until [`ApiServer::unfreeze`]).
    pub fn freeze(&self) {
        self.shared.lock().frozen = true;
    }

    /// Lets open watches see changes again.
    pub fn unfreeze(&self) {
        self.shared.lock().frozen = false;
        self.shared.tick.send_modify(|t| *t += 1);
    }

    /// Forgets the history: watches from before now get 410 Gone.
    pub fn compact(&self) {
        let mut s = self.shared.lock();
        s.compacted = s.rv;
        s.history.clear();
    }

    /// Ends every open watch with an `ERROR` event carrying a 410 `Expired` Status.
    pub fn expire_watches(&self) {
        let mut s = self.shared.lock();
        s.expire = true;
        let kill = std::mem::take(&mut s.kill);
        drop(s);
        kill.cancel();
    }

    /// The request lines received so far (`GET /apis/...?... HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    /// List requests (not watches) of `collection` so far.
    pub fn lists(&self, collection: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with(&format!("GET {collection}?")) && !r.contains("watch=true"))
            .count()
    }

    /// The Events created or patched so far (request bodies).
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }
}

/// A VfProfile object.
pub fn profile(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile", "metadata": {"name": name}, "spec": spec})
}

/// A VfPool object.
pub fn pool(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfPool", "metadata": {"name": name}, "spec": spec})
}

/// A Node object with `labels`.
pub fn node(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    body: Vec<u8>,
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Request)> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let line = line.trim_end().to_owned();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await.ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), decode(v))).collect();
    Some((line.clone(), Request { method, path: path.to_owned(), query, body }))
}

async fn respond(conn: &mut TcpStream, code: u16, body: &Value) {
    let text = body.to_string();
    let reason = match code {
        200 => "OK",
        201 => "Created",
        404 => "Not Found",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.write_all(text.as_bytes()).await;
    let _ = conn.shutdown().await;
}

async fn chunk(conn: &mut TcpStream, event: &Value) -> bool {
    let line = format!("{event}\n");
    let framed = format!("{:x}\r\n{line}\r\n", line.len());
    conn.write_all(framed.as_bytes()).await.is_ok() && conn.flush().await.is_ok()
}

fn selected(req: &Request, object: &Value) -> bool {
    match req.query.get("fieldSelector").and_then(|f| f.strip_prefix("metadata.name=")) {
        Some(name) => object["metadata"]["name"] == name,
        None => true,
    }
}

fn list_kind(collection: &str) -> (&'static str, &'static str) {
    match collection {
        PROFILES => ("vfnet.dev/v1alpha1", "VfProfileList"),
        POOLS => ("vfnet.dev/v1alpha1", "VfPoolList"),
        _ => ("v1", "NodeList"),
    }
}

async fn handle(conn: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(conn);
    let Some((line, req)) = read_request(&mut reader).await else { return };
    let mut conn = reader.into_inner();
    shared.lock().requests.push(line);
    let collection = [PROFILES, POOLS, NODES].into_iter().find(|c| req.path == *c);
    match (req.method.as_str(), collection) {
        ("GET", Some(c)) if req.query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch_collection(conn, shared, c, &req).await;
        }
        ("GET", Some(c)) => {
            let body = {
                let s = shared.lock();
                let items: Vec<Value> = s
                    .objects
                    .get(c)
                    .into_iter()
                    .flat_map(|m| m.values())
                    .filter(|o| selected(&req, o))
                    .cloned()
                    .collect();
                let (api_version, kind) = list_kind(c);
                json!({"apiVersion": api_version, "kind": kind,
                       "metadata": {"resourceVersion": s.rv.to_string()}, "items": items})
            };
            respond(&mut conn, 200, &body).await;
        }
        ("GET", None) => {
            // One object: /<collection>/<name>.
            let found = [PROFILES, POOLS, NODES].into_iter().find_map(|c| {
                let name = req.path.strip_prefix(c)?.strip_prefix('/')?;
                shared.lock().objects.get(c)?.get(name).cloned()
            });
            match found {
                Some(o) => respond(&mut conn, 200, &o).await,
                None => respond(&mut conn, 404, &status(404, "NotFound", "not found")).await,
            }
        }
        ("POST", _) if req.path == EVENTS => {
            let mut event: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            shared.lock().events.push(event.clone());
            event["metadata"]["resourceVersion"] = json!("1");
            respond(&mut conn, 201, &event).await;
        }
        ("PATCH", _) if req.path.starts_with(EVENTS) => {
            let event: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            shared.lock().events.push(event.clone());
            respond(&mut conn, 200, &event).await;
        }
        _ => {
            respond(&mut conn, 404, &status(404, "NotFound", &format!("no route for {} {}", req.method, req.path)))
                .await
        }
    }
}

async fn watch_collection(mut conn: TcpStream, shared: &Shared, collection: &str, req: &Request) {
    let mut sent: u64 = req.query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    if conn.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let (compacted, kill) = {
        let s = shared.lock();
        (s.compacted, s.kill.clone())
    };
    let gone = |rv: u64| {
        json!({"type": "ERROR", "object": status(410, "Expired",
            &format!("too old resource version: {rv} ({compacted})"))})
    };
    if sent < compacted {
        chunk(&mut conn, &gone(sent)).await;
        let _ = conn.write_all(b"0\r\n\r\n").await;
        return;
    }
    let mut tick = shared.tick.subscribe();
    loop {
        let pending: Vec<Change> = {
            let s = shared.lock();
            if s.frozen {
                Vec::new()
            } else {
                s.history
                    .iter()
                    .filter(|c| c.rv > sent && c.collection == collection && selected(req, &c.object))
                    .cloned()
                    .collect()
            }
        };
        for c in pending {
            if !chunk(&mut conn, &json!({"type": c.kind, "object": c.object})).await {
                return;
            }
            sent = c.rv;
        }
        tokio::select! {
            r = tick.changed() => if r.is_err() { return },
            () = kill.cancelled() => {
                if shared.lock().expire {
                    chunk(&mut conn, &gone(sent)).await;
                }
                let _ = conn.write_all(b"0\r\n\r\n").await;
                return;
            }
        }
    }
}
