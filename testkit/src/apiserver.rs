//! A stand-in Kubernetes API server for tests: plain HTTP/1.1 on 127.0.0.1, one request per
//! connection, speaking the real list/watch protocol for the collections the daemon uses
//! (VfProfiles, VfPools, Nodes) and accepting Events (`events.k8s.io/v1`, create and patch).
//!
//! For the DRA driver (`resource.k8s.io/v1`):
//! - ResourceSlices ([`SLICES`], cluster-scoped): list and watch (with `labelSelector`
//!   equalities), server-side apply by name (`PATCH <SLICES>/<name>` with
//!   `application/apply-patch+yaml`: the body becomes the object), delete by name;
//!   [`ApiServer::slices`] shows them.
//! - ResourceClaims ([`claims`], namespaced): GET by name from what [`ApiServer::apply_claim`]
//!   added, and apply of their `status` subresource, which merges the patch's `status` keys into
//!   the claim and is recorded ([`ApiServer::claim_status_patches`]).
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
/// The ResourceSlice collection (cluster-scoped).
pub const SLICES: &str = "/apis/resource.k8s.io/v1/resourceslices";
/// Where the namespaced `resource.k8s.io/v1` collections start.
const RESOURCE_NAMESPACES: &str = "/apis/resource.k8s.io/v1/namespaces/";
/// The collections served by path (lists, watches, objects by name, deletes).
const COLLECTIONS: [&str; 4] = [PROFILES, POOLS, NODES, SLICES];
/// The content type of a server-side apply.
const APPLY_PATCH: &str = "application/apply-patch+yaml";
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
    /// The bodies of ResourceClaim status applies.
    claim_status_patches: Vec<Value>,
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

    /// Creates or replaces `object` (by `metadata.name`) in `collection` as `manager`, with the
    /// server's metadata: a new object keeps the `uid` it brings (a test that must know it, such
    /// as a claim's, names it) or gets one. Returns whether it was created, and the object stored.
    fn put(&self, collection: &str, mut object: Value, manager: &str) -> (bool, Value) {
        let mut s = self.lock();
        s.rv += 1;
        let rv = s.rv;
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let brought = object["metadata"]["uid"].as_str().map(str::to_owned);
        let objects = s.objects.entry(collection.to_owned()).or_default();
        let created = !objects.contains_key(&name);
        let uid = match objects.get(&name) {
            Some(o) => o["metadata"]["uid"].as_str().unwrap().to_owned(),
            None => brought.unwrap_or_else(|| format!("uid-{name}-{rv}")),
        };
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        object["metadata"]["uid"] = json!(uid);
        object["metadata"]["creationTimestamp"] = json!("2026-11-24T00:00:00Z");
        object["metadata"]["managedFields"] = json!([{"manager": manager, "operation": "Apply"}]);
        objects.insert(name, object.clone());
        let kind = if created { "ADDED" } else { "MODIFIED" };
        s.history.push(Change { rv, collection: collection.to_owned(), kind, object: object.clone() });
        drop(s);
        self.tick.send_modify(|t| *t += 1);
        (created, object)
    }

    /// Deletes object `name` of `collection`; returns it, `None` if there was none.
    fn remove(&self, collection: &str, name: &str) -> Option<Value> {
        let mut s = self.lock();
        s.rv += 1;
        let rv = s.rv;
        let mut object = s.objects.entry(collection.to_owned()).or_default().remove(name)?;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        s.history.push(Change { rv, collection: collection.to_owned(), kind: "DELETED", object: object.clone() });
        drop(s);
        self.tick.send_modify(|t| *t += 1);
        Some(object)
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

    /// Creates or replaces `object` (by `metadata.name`) in `collection`. A new object keeps the
    /// `metadata.uid` it brings, else gets one.
    pub fn apply(&self, collection: &str, object: Value) {
        self.shared.put(collection, object, "kubectl");
    }

    /// Creates or replaces ResourceClaim `claim` in its `metadata.namespace` ([`claims`]). Give it
    /// a `metadata.uid`: kubelet names a claim by namespace, name and UID.
    pub fn apply_claim(&self, claim: Value) {
        let namespace = claim["metadata"]["namespace"].as_str().unwrap().to_owned();
        self.apply(&claims(&namespace), claim);
    }

    /// Deletes object `name` of `collection`.
    pub fn delete(&self, collection: &str, name: &str) {
        self.shared.remove(collection, name);
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

    /// The ResourceSlices now, by name.
    pub fn slices(&self) -> Vec<Value> {
        self.shared.lock().objects.get(SLICES).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// The ResourceClaim status applies so far (request bodies), in order.
    pub fn claim_status_patches(&self) -> Vec<Value> {
        self.shared.lock().claim_status_patches.clone()
    }
}

/// The ResourceClaim collection of `namespace`.
pub fn claims(namespace: &str) -> String {
    format!("{RESOURCE_NAMESPACES}{namespace}/resourceclaims")
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
    content_type: String,
    body: Vec<u8>,
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Request)> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let line = line.trim_end().to_owned();
    let mut length = 0usize;
    let mut content_type = String::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await.ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        match header.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("content-length") => length = v.trim().parse().ok()?,
            Some((k, v)) if k.eq_ignore_ascii_case("content-type") => v.trim().clone_into(&mut content_type),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), decode(v))).collect();
    Some((line.clone(), Request { method, path: path.to_owned(), query, content_type, body }))
}

async fn respond(conn: &mut TcpStream, code: u16, body: &Value) {
    let text = body.to_string();
    let reason = match code {
        200 => "OK",
        201 => "Created",
        404 => "Not Found",
        415 => "Unsupported Media Type",
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

/// Whether `object` passes the request's `fieldSelector` (`metadata.name=<name>` only) and
/// `labelSelector` (equalities only: `k=v[,k=v]`).
fn selected(req: &Request, object: &Value) -> bool {
    let name = match req.query.get("fieldSelector").and_then(|f| f.strip_prefix("metadata.name=")) {
        Some(name) => object["metadata"]["name"] == name,
        None => true,
    };
    let labels = req.query.get("labelSelector").is_none_or(|selector| {
        selector.split(',').filter(|t| !t.is_empty()).all(|term| match term.split_once('=') {
            Some((k, v)) => object["metadata"]["labels"][k.trim()] == v.trim_start_matches('=').trim(),
            None => false,
        })
    });
    name && labels
}

fn list_kind(collection: &str) -> (&'static str, &'static str) {
    match collection {
        PROFILES => ("vfnet.dev/v1alpha1", "VfProfileList"),
        POOLS => ("vfnet.dev/v1alpha1", "VfPoolList"),
        SLICES => ("resource.k8s.io/v1", "ResourceSliceList"),
        _ => ("v1", "NodeList"),
    }
}

async fn handle(conn: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(conn);
    let Some((line, req)) = read_request(&mut reader).await else { return };
    let mut conn = reader.into_inner();
    shared.lock().requests.push(line);
    let collection = COLLECTIONS.into_iter().find(|c| req.path == *c);
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
            // One object: /<collection>/<name>, or a claim.
            let found = match (object_path(&req.path), claim_path(&req.path)) {
                (Some((c, name)), _) => shared.lock().objects.get(c).and_then(|m| m.get(name)).cloned(),
                (None, Some((c, name, None))) => shared.lock().objects.get(&c).and_then(|m| m.get(name)).cloned(),
                _ => None,
            };
            match found {
                Some(o) => respond(&mut conn, 200, &o).await,
                None => respond(&mut conn, 404, &status(404, "NotFound", "not found")).await,
            }
        }
        ("PATCH", None) if object_path(&req.path).is_some_and(|(c, _)| c == SLICES) => {
            // Server-side apply of a slice: the body, JSON (a subset of YAML), is the object.
            let Some((_, name)) = object_path(&req.path) else { return };
            let Some(object) = applied(&mut conn, &req).await else { return };
            if object["metadata"]["name"] != name {
                let message = format!("the name in the body does not match {name}");
                return respond(&mut conn, 400, &status(400, "BadRequest", &message)).await;
            }
            let manager = req.query.get("fieldManager").map_or("unknown", String::as_str);
            let (created, stored) = shared.put(SLICES, object, manager);
            respond(&mut conn, if created { 201 } else { 200 }, &stored).await;
        }
        ("PATCH", None) if claim_path(&req.path).is_some_and(|(_, _, sub)| sub == Some("status")) => {
            let Some((c, name, _)) = claim_path(&req.path) else { return };
            let Some(patch) = applied(&mut conn, &req).await else { return };
            shared.lock().claim_status_patches.push(patch.clone());
            let Some(mut claim) = shared.lock().objects.get(&c).and_then(|m| m.get(name)).cloned() else {
                return respond(&mut conn, 404, &status(404, "NotFound", "not found")).await;
            };
            // What this stand-in knows of merging: the patch's status keys replace the claim's.
            if let Some(keys) = patch["status"].as_object() {
                if !claim["status"].is_object() {
                    claim["status"] = json!({});
                }
                for (k, v) in keys {
                    claim["status"][k] = v.clone();
                }
            }
            let manager = req.query.get("fieldManager").map_or("unknown", String::as_str);
            let (_, stored) = shared.put(&c, claim, manager);
            respond(&mut conn, 200, &stored).await;
        }
        ("DELETE", None) if object_path(&req.path).is_some() => {
            let Some((c, name)) = object_path(&req.path) else { return };
            match shared.remove(c, name) {
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

/// `<collection>/<name>` of a collection served by path.
fn object_path(path: &str) -> Option<(&'static str, &str)> {
    COLLECTIONS.into_iter().find_map(|c| {
        let name = path.strip_prefix(c)?.strip_prefix('/')?;
        (!name.is_empty() && !name.contains('/')).then_some((c, name))
    })
}

/// A ResourceClaim's path: its collection ([`claims`]), its name, and the subresource if any.
fn claim_path(path: &str) -> Option<(String, &str, Option<&str>)> {
    let (namespace, rest) = path.strip_prefix(RESOURCE_NAMESPACES)?.split_once('/')?;
    let mut parts = rest.strip_prefix("resourceclaims/")?.split('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let sub = parts.next();
    parts.next().is_none().then(|| (claims(namespace), name, sub))
}

/// The object of a server-side apply; `None` once the request was answered with what is wrong
/// (another patch type, a body that is not a JSON object).
async fn applied(conn: &mut TcpStream, req: &Request) -> Option<Value> {
    if req.content_type != APPLY_PATCH {
        let message = format!("this stand-in takes only server-side apply ({APPLY_PATCH}), not {:?}", req.content_type);
        respond(conn, 415, &status(415, "UnsupportedMediaType", &message)).await;
        return None;
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(v) if v.is_object() => Some(v),
        _ => {
            respond(conn, 400, &status(400, "BadRequest", "the apply body is not a JSON object")).await;
            None
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
