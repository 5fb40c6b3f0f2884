//! Publishing: the DRA pools' devices as ResourceSlices, kept in line with every rescan.
//!
//! The publisher owns the slices labelled `vfnet.dev/node=<node>`. For each DRA pool it builds the
//! slices ([`slices::build`]); when their content differs from what it last published (a VF came
//! or went, a health or driver change, a numVfs change), it bumps the pool's generation and
//! applies every slice of the pool with server-side apply (field manager [`FIELD_MANAGER`]), then
//! deletes the slices no pool wants any more (a pool removed, or fewer slices). The scheduler
//! reads a pool only when all its `resourceSliceCount` slices carry the newest generation, so a
//! half-published update is never allocated from.
//!
//! The generation starts above the highest one found on the API server, so it only grows across
//! daemon restarts. The slices belong to the Node (owner reference): deleting the Node deletes
//! them. A failed write is retried every [`RETRY`] until it lands.
//!
//! The publisher watches its slices too: kubelet deletes every ResourceSlice of its node when it
//! starts (the plugins are to publish again), and an admin may delete or edit one. A slice of ours
//! deleted, or carrying a generation we did not write, makes the publisher list and publish the
//! whole node again (seen on the real node: after a kubelet restart the pools were gone and no
//! claim could be allocated until they were published again).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::resource::v1::ResourceSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::DraView;
use super::slices;

/// The field manager of everything vfnet writes through server-side apply.
pub const FIELD_MANAGER: &str = "vfnet.dev";
/// How soon a failed publication is tried again.
pub const RETRY: Duration = Duration::from_secs(5);

/// The label selector of this node's slices.
fn node_selector(node: &str) -> String {
    format!("{}={}", slices::NODE_LABEL, slices::label_value(node))
}

/// The Node as the slices' owner (`None` until the API server serves it).
async fn owner(client: &Client, node: &str) -> Option<OwnerReference> {
    match Api::<Node>::all(client.clone()).get(node).await {
        Ok(n) => Some(OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Node".to_owned(),
            name: node.to_owned(),
            uid: n.uid().unwrap_or_default(),
            ..OwnerReference::default()
        }),
        Err(e) => {
            tracing::warn!(%node, error = %e, "cannot read the Node for the slices' owner reference");
            None
        }
    }
}

/// What was last published, per DRA pool name.
#[derive(Default)]
struct Published {
    generations: BTreeMap<String, i64>,
    slices: BTreeMap<String, Vec<ResourceSlice>>,
    names: BTreeSet<String>,
    listed: bool,
}

impl Published {
    /// Forgets what the API server holds: the next pass lists and publishes everything.
    fn invalidate(&mut self) {
        self.slices.clear();
        self.listed = false;
    }

    /// Whether a watch event says our slices are not as we left them.
    fn disturbed(&self, event: &watcher::Event<ResourceSlice>) -> Option<String> {
        match event {
            watcher::Event::Delete(s) if self.names.contains(&s.name_any()) => {
                Some(format!("ResourceSlice {} was deleted", s.name_any()))
            }
            // Our own writes come back as events too, some after a newer write of ours: only a
            // generation above the newest we wrote is someone else's.
            watcher::Event::Apply(s) => {
                let ours = self.generations.get(&s.spec.pool.name)?;
                (s.spec.pool.generation > *ours).then(|| {
                    format!(
                        "ResourceSlice {} carries generation {}, above ours ({ours})",
                        s.name_any(),
                        s.spec.pool.generation
                    )
                })
            }
            _ => None,
        }
    }
}

/// Publishes `view`'s pools until `stop`.
pub async fn run(client: Client, node: String, mut view: watch::Receiver<Arc<DraView>>, stop: CancellationToken) {
    let api: Api<ResourceSlice> = Api::all(client.clone());
    let mut published = Published::default();
    let mut owner_ref = None;
    let mut events = watcher::watcher(api.clone(), watcher::Config::default().labels(&node_selector(&node)))
        .default_backoff()
        .boxed();
    loop {
        if owner_ref.is_none() {
            owner_ref = owner(&client, &node).await;
        }
        let current = Arc::clone(&view.borrow_and_update());
        let ok = match publish(&api, &node, &current, owner_ref.as_ref(), &mut published).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "publishing the ResourceSlices failed; retrying");
                false
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            changed = view.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(RETRY), if !ok || owner_ref.is_none() => {}
            event = events.next() => match event {
                Some(Ok(e)) => if let Some(why) = published.disturbed(&e) {
                    tracing::warn!(reason = %why, "publishing this node's ResourceSlices again");
                    published.invalidate();
                },
                Some(Err(e)) => tracing::debug!(error = %e, "ResourceSlice watch"),
                None => break,
            },
        }
    }
}

async fn publish(
    api: &Api<ResourceSlice>,
    node: &str,
    view: &DraView,
    owner: Option<&OwnerReference>,
    published: &mut Published,
) -> Result<(), kube::Error> {
    if !published.listed {
        let existing = api.list(&ListParams::default().labels(&node_selector(node))).await?;
        for s in existing.items {
            let pool = s.spec.pool.name.clone();
            let g = published.generations.entry(pool).or_insert(0);
            *g = (*g).max(s.spec.pool.generation);
            published.names.insert(s.name_any());
        }
        published.listed = true;
    }
    let mut wanted = BTreeSet::new();
    for (pool_name, state) in &view.pools {
        let generation = published.generations.get(pool_name).copied().unwrap_or(0);
        let fresh = slices::build(node, &state.pool, &state.devices, generation + 1, owner.cloned());
        wanted.extend(fresh.iter().map(ResourceExt::name_any));
        if published.slices.get(pool_name).is_some_and(|old| slices::same_content(old, &fresh)) {
            continue;
        }
        for s in &fresh {
            api.patch(&s.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(s)).await?;
        }
        tracing::info!(
            pool = %pool_name,
            generation = generation + 1,
            slices = fresh.len(),
            devices = state.devices.devices.len(),
            "ResourceSlices published"
        );
        published.generations.insert(pool_name.clone(), generation + 1);
        published.names.extend(wanted.iter().cloned());
        published.slices.insert(pool_name.clone(), fresh);
    }
    published.slices.retain(|pool, _| view.pools.contains_key(pool));
    let stale: Vec<String> = published.names.difference(&wanted).cloned().collect();
    for name in stale {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(slice = %name, "ResourceSlice deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
        published.names.remove(&name);
    }
    Ok(())
}
