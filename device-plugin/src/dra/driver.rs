//! The DRA driver's node side: preparing and unpreparing claims for kubelet, the pods' prepared
//! VFs for the CNI plugin, and the claims' device status after the CNI attached them.
//!
//! - **Prepare** (kubelet's `NodePrepareResources`): the claim is read from the API server (kubelet
//!   sends only its name and UID); for each device the scheduler allocated from one of this node's
//!   DRA pools, the opaque `vfnet.dev` configurations that apply (class first, then claim) are
//!   merged and governed by the VfProfile they name, with the CNI's rules
//!   ([`crds::vfconfig::govern`]): a refusal is the claim's error, which kubelet puts in the pod's
//!   events, and nothing on the node is touched. Then the VF's device record and device-info file
//!   (what the CNI and Multus read), its CDI spec (what the container gets, as Allocate gives it)
//!   and the checkpoint are written, in that order. Prepare is idempotent: a claim in the
//!   checkpoint is answered from it (its CDI spec rewritten if a reboot wiped it).
//! - **Unprepare** releases a claim only once its VFs are clean: while a CNI journal still holds
//!   one (DEL not done, or a restore that failed), the answer is an error and kubelet retries.
//! - **Device status** (KEP-4817): after ADD the CNI reports the interface, its addresses and MAC;
//!   they go into the claim's `status.devices` by server-side apply, with vfnet's own data (PF,
//!   VF index, VLAN). Unprepare clears them.
//!
//! One lock serializes the claims' preparation: kubelet prepares a pod's claims in one call and
//! pods one at a time per claim, and the work per claim is a GET and a few small files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::resource::v1::ResourceClaim;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::{Mutex, watch};
use vfnet_types::StateDir;
use vfnet_types::node_socket::{Attachment, DraDevice, PodRef, Response};

use super::checkpoint::{self, Checkpoint, PodRef as CheckpointPod, PreparedClaim, PreparedConfig, PreparedVf};
use super::publish::FIELD_MANAGER;
use super::slices::{self, DRIVER};
use super::{DraView, cdi, claims};
use crate::allocate::{self, Paths};
use crate::node_socket::{Cluster as ProfileSource, Profiles};

/// One prepared device, as kubelet's reply lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The requests it satisfies.
    pub request_names: Vec<String>,
    /// Its pool.
    pub pool_name: String,
    /// Its name in the pool.
    pub device_name: String,
    /// The CDI devices the container gets.
    pub cdi_device_ids: Vec<String>,
}

/// Why a claim is not prepared (or unprepared); the message reaches the pod's events.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The API server did not serve the claim.
    #[error("cannot read ResourceClaim {claim}: {source}")]
    Get {
        /// `namespace/name`.
        claim: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The claim kubelet named is not the one the API server has.
    #[error("ResourceClaim {claim} has UID {found}, kubelet asked for {asked}")]
    Uid {
        /// `namespace/name`.
        claim: String,
        /// The API server's.
        found: String,
        /// kubelet's.
        asked: String,
    },
    /// The allocation or its configuration.
    #[error(transparent)]
    Claim(#[from] claims::ClaimError),
    /// A device that is not (or no longer) here.
    #[error("ResourceClaim {claim}: device {device} of pool {pool} {problem}")]
    Device {
        /// `namespace/name`.
        claim: String,
        /// The pool.
        pool: String,
        /// The device.
        device: String,
        /// What is wrong.
        problem: String,
    },
    /// The configurations contradict each other.
    #[error("ResourceClaim {claim}, request {request}: {source}")]
    Merge {
        /// `namespace/name`.
        claim: String,
        /// The request.
        request: String,
        /// Why.
        #[source]
        source: crds::vfconfig::ConfigError,
    },
    /// The profile's rules refuse the claim.
    #[error("ResourceClaim {claim}, request {request}: {source} (vfnet error {code})")]
    Governed {
        /// `namespace/name`.
        claim: String,
        /// The request.
        request: String,
        /// The CNI error code of the same refusal.
        code: u32,
        /// Why.
        #[source]
        source: crds::vfconfig::GovernError,
    },
    /// The profile could not be read.
    #[error("ResourceClaim {claim}: VfProfile {profile}: {problem}")]
    Profile {
        /// `namespace/name`.
        claim: String,
        /// The profile.
        profile: String,
        /// Why.
        problem: String,
    },
    /// A file (record, CDI spec, checkpoint) could not be written.
    #[error("ResourceClaim {claim}: {problem}")]
    Node {
        /// `namespace/name`.
        claim: String,
        /// What failed.
        problem: String,
    },
    /// Unprepare while a VF is still attached.
    #[error(
        "ResourceClaim {claim}: VF {vf} is still attached (its CNI journal {journal} exists): unprepared once DEL has restored it"
    )]
    StillAttached {
        /// `namespace/name`.
        claim: String,
        /// The VF.
        vf: String,
        /// The journal file.
        journal: String,
    },
}

/// One device's health, for kubelet's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHealth {
    /// The pool.
    pub pool: String,
    /// The device.
    pub device: String,
    /// Healthy or not.
    pub healthy: bool,
    /// Why not.
    pub message: String,
}

/// Where the driver keeps things.
#[derive(Debug, Clone)]
pub struct DriverPaths {
    /// Device records and device-info files (as Allocate writes them).
    pub allocate: Paths,
    /// CDI specs (`/var/run/cdi`).
    pub cdi_dir: PathBuf,
    /// The checkpoint's directory (persistent).
    pub checkpoint_dir: PathBuf,
    /// The CNI's journals (a VF with one is still attached).
    pub state_dir: StateDir,
}

/// The DRA driver of this node.
pub struct Driver {
    client: Client,
    paths: DriverPaths,
    view: watch::Receiver<Arc<DraView>>,
    checkpoint: Mutex<Checkpoint>,
    profiles: ProfileSource,
    /// Per claim UID, the attachments reported (the status apply carries them all).
    attached: Mutex<BTreeMap<String, BTreeMap<String, Attachment>>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("paths", &self.paths).finish_non_exhaustive()
    }
}

/// Runs `f` on a blocking thread (file writes fsync).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| format!("task failed: {e}"))
}

impl Driver {
    /// Loads the checkpoint and rewrites the CDI specs of the claims it holds (a reboot empties
    /// `/var/run/cdi`).
    pub(crate) async fn start(
        client: Client,
        paths: DriverPaths,
        view: watch::Receiver<Arc<DraView>>,
        profiles: ProfileSource,
    ) -> Result<Self, String> {
        let (dir, cdi_dir, dev_root) =
            (paths.checkpoint_dir.clone(), paths.cdi_dir.clone(), paths.allocate.dev_root.clone());
        let checkpoint = blocking(move || -> Result<Checkpoint, String> {
            let (checkpoint, warning) = checkpoint::load(&dir).map_err(|e| e.to_string())?;
            let rewritten = match warning {
                // A checkpoint set aside: the CDI specs on disk are the only trace of its claims,
                // so they are rewritten for what is known and none is removed.
                Some(w) => {
                    tracing::error!(warning = %w, "DRA checkpoint unusable; starting without it");
                    checkpoint.write_cdi(&cdi_dir, &dev_root).map_err(|e| e.to_string())?
                }
                None => checkpoint.restore_cdi(&cdi_dir, &dev_root).map_err(|e| e.to_string())?,
            };
            if !checkpoint.claims.is_empty() {
                tracing::info!(
                    claims = checkpoint.claims.len(),
                    rewritten = rewritten.len(),
                    "DRA checkpoint loaded; CDI specs restored"
                );
            }
            Ok(checkpoint)
        })
        .await??;
        Ok(Self {
            client,
            paths,
            view,
            checkpoint: Mutex::new(checkpoint),
            profiles,
            attached: Mutex::new(BTreeMap::new()),
        })
    }

    /// The DRA pools, as the daemon's last scan saw them.
    pub fn view(&self) -> watch::Receiver<Arc<DraView>> {
        self.view.clone()
    }

    /// Every DRA device's health.
    pub fn health(&self) -> Vec<DeviceHealth> {
        let view = Arc::clone(&self.view.borrow());
        view.pools
            .iter()
            .flat_map(|(pool, state)| {
                state.devices.devices.iter().map(move |d| DeviceHealth {
                    pool: pool.clone(),
                    device: slices::device_name(&d.pci),
                    healthy: d.health.is_healthy(),
                    message: d.health.to_string(),
                })
            })
            .collect()
    }

    fn reply(claim: &PreparedClaim) -> Vec<Prepared> {
        claim
            .devices
            .iter()
            .map(|d| Prepared {
                request_names: d.request_names.clone(),
                pool_name: d.pool_name.clone(),
                device_name: d.device_name.clone(),
                cdi_device_ids: vec![cdi::cdi_device_id(&claim.uid, &d.device_name)],
            })
            .collect()
    }

    /// Prepares claim `namespace/name` (UID `uid`).
    pub async fn prepare(&self, namespace: &str, name: &str, uid: &str) -> Result<Vec<Prepared>, PrepareError> {
        let key = format!("{namespace}/{name}");
        let node_err = |problem: String| PrepareError::Node { claim: key.clone(), problem };
        let mut checkpoint = self.checkpoint.lock().await;
        let claim = Api::<ResourceClaim>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .map_err(|source| PrepareError::Get { claim: key.clone(), source })?;
        let found = claim.uid().unwrap_or_default();
        if found != uid {
            return Err(PrepareError::Uid { claim: key, found, asked: uid.to_owned() });
        }
        let pods = claims::reserved_pods(&claim);
        if let Some(done) = checkpoint.claims.get_mut(uid) {
            // Kubelet retried, restarted, or another pod shares the claim: same answer, with the
            // pods it is reserved for now.
            done.pods = pods.iter().cloned().map(CheckpointPod::from).collect();
            let (done, cdi_dir, dev_root, dir) = (
                done.clone(),
                self.paths.cdi_dir.clone(),
                self.paths.allocate.dev_root.clone(),
                self.paths.checkpoint_dir.clone(),
            );
            let snapshot = checkpoint.clone();
            let reply = Self::reply(&done);
            blocking(move || -> Result<(), String> {
                let spec = cdi::spec_for_claim(&done.uid, &done.devices, &dev_root);
                cdi::write(&cdi_dir, &done.uid, &spec).map_err(|e| e.to_string())?;
                checkpoint::store(&dir, &snapshot).map_err(|e| e.to_string())
            })
            .await
            .map_err(&node_err)?
            .map_err(&node_err)?;
            tracing::info!(claim = %key, "claim already prepared");
            return Ok(reply);
        }
        let allocated = claims::allocated(&claim, DRIVER)?;
        let view = Arc::clone(&self.view.borrow());
        let mut vfs = Vec::new();
        let mut records = Vec::new();
        for a in &allocated {
            let device_err = |problem: &str| PrepareError::Device {
                claim: key.clone(),
                pool: a.pool.clone(),
                device: a.device.clone(),
                problem: problem.to_owned(),
            };
            let state = view.pools.get(&a.pool).ok_or_else(|| device_err("is not served by vfnet on this node"))?;
            let dev =
                slices::device_pci(&state.devices, &a.device).ok_or_else(|| device_err("is gone from this node"))?;
            if !dev.health.is_healthy() {
                return Err(device_err(&format!("is unhealthy: {}", dev.health)));
            }
            let merged = crds::vfconfig::merge(&a.configs).map_err(|source| PrepareError::Merge {
                claim: key.clone(),
                request: a.request.clone(),
                source,
            })?;
            let profile = match &merged.profile {
                None => None,
                Some(p) => self.profile(&key, p).await?,
            };
            let governed =
                crds::vfconfig::govern(&merged, &state.pool.name, &state.pool.spec, profile.as_ref(), namespace)
                    .map_err(|source| PrepareError::Governed {
                        claim: key.clone(),
                        request: a.request.clone(),
                        code: source.code(),
                        source,
                    })?;
            let mut vf = PreparedVf::new(&state.pool, dev, &a.pool, &a.device, vec![a.request.clone()]);
            vf.config = PreparedConfig {
                profile: governed.profile,
                vnic_type: governed.vnic_type.to_string(),
                vlan: governed.vlan,
            };
            vfs.push(vf);
            records.push((Arc::clone(&state.pool), dev.clone()));
        }
        let pods = pods.into_iter().map(CheckpointPod::from).collect();
        let prepared = PreparedClaim::new(uid, namespace, name, pods, vfs);
        checkpoint.claims.insert(uid.to_owned(), prepared.clone());
        let snapshot = checkpoint.clone();
        let (paths, reply) = (self.paths.clone(), Self::reply(&prepared));
        let written = async {
            for (pool, dev) in &records {
                allocate::record(pool, &[dev], &paths.allocate).await.map_err(|e| e.to_string())?;
            }
            blocking(move || -> Result<(), String> {
                let spec = cdi::spec_for_claim(&prepared.uid, &prepared.devices, &paths.allocate.dev_root);
                cdi::write(&paths.cdi_dir, &prepared.uid, &spec).map_err(|e| e.to_string())?;
                checkpoint::store(&paths.checkpoint_dir, &snapshot).map_err(|e| e.to_string())
            })
            .await?
        }
        .await;
        if let Err(e) = written {
            checkpoint.claims.remove(uid);
            return Err(node_err(e));
        }
        tracing::info!(claim = %key, devices = reply.len(), "claim prepared");
        Ok(reply)
    }

    /// VfProfile `name` (`None`: there is none of that name).
    async fn profile(&self, claim: &str, name: &str) -> Result<Option<crds::profile::VfProfile>, PrepareError> {
        let err =
            |problem: String| PrepareError::Profile { claim: claim.to_owned(), profile: name.to_owned(), problem };
        if !crate::cluster::safe_name(name) {
            return Err(err("is not a VfProfile name".to_owned()));
        }
        match self.profiles.profile(name).await {
            Response::Profile(v) => serde_json::from_value(v).map(Some).map_err(|e| err(format!("unreadable: {e}"))),
            Response::NotFound => Ok(None),
            Response::Error(e) => Err(err(e)),
            other => Err(err(format!("unexpected answer {other:?}"))),
        }
    }

    /// Unprepares claim `uid`: once no CNI journal holds its VFs.
    pub async fn unprepare(&self, namespace: &str, name: &str, uid: &str) -> Result<(), PrepareError> {
        let key = format!("{namespace}/{name}");
        let mut checkpoint = self.checkpoint.lock().await;
        let Some(claim) = checkpoint.claims.get(uid).cloned() else {
            tracing::debug!(claim = %key, "unprepare: not prepared here");
            return Ok(());
        };
        for d in &claim.devices {
            let journal = self.paths.state_dir.journal(&d.pci);
            if journal.exists() {
                return Err(PrepareError::StillAttached {
                    claim: key,
                    vf: d.pci.to_string(),
                    journal: journal.display().to_string(),
                });
            }
        }
        checkpoint.claims.remove(uid);
        let snapshot = checkpoint.clone();
        let (cdi_dir, dir, uid_owned) = (self.paths.cdi_dir.clone(), self.paths.checkpoint_dir.clone(), uid.to_owned());
        let node_err = |problem: String| PrepareError::Node { claim: key.clone(), problem };
        blocking(move || -> Result<(), String> {
            cdi::remove(&cdi_dir, &uid_owned).map_err(|e| e.to_string())?;
            checkpoint::store(&dir, &snapshot).map_err(|e| e.to_string())
        })
        .await
        .map_err(&node_err)?
        .map_err(&node_err)?;
        let had_status = self.attached.lock().await.remove(uid).is_some();
        if had_status {
            // Our entries of status.devices go with an apply that lists none.
            let patch = json!({
                "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": {"name": name, "namespace": namespace},
                "status": {"devices": []},
            });
            let api = Api::<ResourceClaim>::namespaced(self.client.clone(), namespace);
            if let Err(e) =
                api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await
            {
                tracing::debug!(claim = %key, error = %e, "cannot clear the claim's device status (it may be gone)");
            }
        }
        tracing::info!(claim = %key, "claim unprepared");
        Ok(())
    }

    /// The VFs prepared for `pod`'s claims.
    pub async fn pod_devices(&self, pod: &PodRef) -> Vec<DraDevice> {
        let checkpoint = self.checkpoint.lock().await;
        checkpoint
            .for_pod(&pod.namespace, &pod.name, pod.uid.as_deref())
            .into_iter()
            .map(|(claim, d)| DraDevice {
                claim: claim.uid.clone(),
                claim_name: format!("{}/{}", claim.namespace, claim.name),
                pool: d.pool_name.clone(),
                device: d.device_name.clone(),
                vf: d.pci,
                profile: d.config.profile.clone(),
                vnic_type: d.config.vnic_type.clone(),
                vlan: d.config.vlan,
            })
            .collect()
    }

    /// Records what ADD attached in the claim's status.
    pub async fn attached(&self, a: Attachment) -> Result<(), String> {
        let claim = {
            let checkpoint = self.checkpoint.lock().await;
            checkpoint.claims.get(&a.claim).cloned().ok_or_else(|| format!("claim {} is not prepared here", a.claim))?
        };
        let key = format!("{}/{}", claim.namespace, claim.name);
        // The VLAN each VF is on: the claim's choice, else its profile's.
        let mut vlans = BTreeMap::new();
        for d in &claim.devices {
            let vlan = match (d.config.vlan, &d.config.profile) {
                (Some(v), _) => Some(v),
                (None, Some(p)) => self.profile(&key, p).await.ok().flatten().and_then(|p| p.spec.vlan),
                (None, None) => None,
            };
            vlans.insert(d.device_name.clone(), vlan);
        }
        let mut attached = self.attached.lock().await;
        let entries = attached.entry(a.claim.clone()).or_default();
        entries.insert(a.device.clone(), a);
        let now = k8s_openapi::jiff::Timestamp::now();
        let devices: Vec<serde_json::Value> = entries
            .values()
            .map(|a| {
                let vf = claim.devices.iter().find(|d| d.device_name == a.device);
                let mut network = serde_json::Map::new();
                if let Some(i) = &a.interface {
                    network.insert("interfaceName".into(), json!(i));
                }
                if !a.ips.is_empty() {
                    network.insert("ips".into(), json!(a.ips));
                }
                if let Some(m) = &a.mac {
                    network.insert("hardwareAddress".into(), json!(m));
                }
                json!({
                    "driver": DRIVER,
                    "pool": a.pool,
                    "device": a.device,
                    "conditions": [{
                        "type": "Ready", "status": "True", "reason": "Attached",
                        "message": format!("attached by vfnet{}", a.interface.as_ref().map(|i| format!(" as {i}")).unwrap_or_default()),
                        "lastTransitionTime": now.to_string(),
                    }],
                    "networkData": network,
                    "data": {
                        "vf": vf.map(|d| d.pci.to_string()),
                        "pf": vf.map(|d| d.pf.to_string()),
                        "pfName": vf.and_then(|d| d.pf_name.clone()),
                        "vfIndex": vf.map(|d| d.vf_index),
                        "vlan": a.vlan.or(vlans.get(&a.device).copied().flatten()),
                        "profile": vf.and_then(|d| d.config.profile.clone()),
                        "vnicType": vf.map(|d| d.config.vnic_type.clone()),
                    },
                })
            })
            .collect();
        let patch = json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": claim.name, "namespace": claim.namespace},
            "status": {"devices": devices},
        });
        drop(attached);
        Api::<ResourceClaim>::namespaced(self.client.clone(), &claim.namespace)
            .patch_status(&claim.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(|e| {
                format!("cannot write ResourceClaim {}/{}'s device status: {e}", claim.namespace, claim.name)
            })?;
        tracing::info!(claim = %key, "claim device status written");
        Ok(())
    }
}
