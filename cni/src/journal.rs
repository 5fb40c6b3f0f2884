//! The attachment journal: written (fsynced) before ADD touches anything, so whatever happens
//! next (a driver refusal, a crash, a pod namespace deleted under us) DEL and GC can put the VF
//! back exactly as it was. sriov-cni writes its restore state only at the end of ADD, which is
//! why a failed ADD there leaves a dirty VF (sriov-cni #212, #119).
//!
//! One file per VF, `<stateDir>/vfs/<pci>.json`: the file is both the VF's claim (who owns it)
//! and the restore record, and it is replaced in one atomic rename, so there is never a claim
//! without a record or the other way round.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sriov::netlink::{VfSetting, VfState};
use sriov::persist;
use vfnet_types::{MacAddr, PciAddress, StateDir};

use crate::config::VnicType;
use crate::error::Result;
use crate::result::CniResult;

/// The VF netdev as it was on the host before ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetdevState {
    /// Host name.
    pub name: String,
    /// MAC.
    pub mac: Option<MacAddr>,
    /// MTU.
    pub mtu: u32,
    /// Alternative names.
    pub altnames: Vec<String>,
    /// Administratively up.
    pub up: bool,
}

/// The IPAM plugin an attachment used, with the configuration to release its addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpamState {
    /// `ipam.type`.
    pub plugin: String,
    /// The configuration sent (its `cniVersion` is the one the plugin accepted).
    pub config: Map<String, Value>,
}

/// One attachment's journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`.
    pub netns: Option<PathBuf>,
    /// The network's `name`.
    pub network: String,
    /// The VF.
    pub vf: PciAddress,
    /// Its PF.
    pub pf: PciAddress,
    /// The PF netdev (VF settings go through it).
    pub pf_name: String,
    /// The VF index.
    pub vf_index: u32,
    /// How the VF was attached.
    pub vnic_type: VnicType,
    /// PF-side VF state before ADD.
    pub original: VfState,
    /// The VF netdev before ADD (not for userspace VFs).
    pub netdev: Option<NetdevState>,
    /// PF-side settings ADD applies, in order.
    pub applied: Vec<VfSetting>,
    /// MAC the pod interface gets, if set.
    pub mac: Option<MacAddr>,
    /// MTU the pod interface gets, if set.
    pub mtu: Option<u32>,
    /// IPAM, if used.
    pub ipam: Option<IpamState>,
    /// The device-info file written for Multus.
    pub device_info_file: Option<PathBuf>,
    /// True once ADD finished.
    pub complete: bool,
    /// ADD's result.
    pub result: Option<CniResult>,
}

impl Journal {
    /// The journal of `vf`, if any.
    pub fn load(state_dir: &StateDir, vf: &PciAddress) -> Result<Option<Self>> {
        Ok(persist::read_json(&state_dir.journal(vf))?)
    }

    /// Writes it durably (before anything is touched: the restore state must survive a crash).
    pub fn store(&self, state_dir: &StateDir) -> Result<()> {
        Ok(persist::write_json(&state_dir.journal(&self.vf), self)?)
    }

    /// Rewrites a journal [`Journal::store`] wrote (ADD's completion): atomic, data durable, the
    /// rename not forced to disk ([`persist::rewrite_json`]). Losing it to a power cut leaves the
    /// first version, from which DEL restores all the same.
    pub fn update(&self, state_dir: &StateDir) -> Result<()> {
        Ok(persist::rewrite_json(&state_dir.journal(&self.vf), self)?)
    }

    /// Deletes the journal of `vf`.
    pub fn remove(state_dir: &StateDir, vf: &PciAddress) -> Result<()> {
        Ok(persist::remove(&state_dir.journal(vf))?)
    }

    /// True if this journal belongs to the attachment (container id, ifname).
    pub fn is(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id == container_id && self.ifname == ifname
    }

    /// Every journal, with the files that could not be read (named in the error).
    pub fn scan(state_dir: &StateDir) -> Result<Vec<Result<Self>>> {
        let dir = state_dir.journals();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(persist::PersistError { op: "read", path: dir, source: e }.into()),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match persist::read_json::<Self>(&path) {
                Ok(Some(j)) => out.push(Ok(j)),
                Ok(None) => {}
                Err(e) => out.push(Err(e.into())),
            }
        }
        Ok(out)
    }

    /// The journal of attachment (container id, ifname): looked up by VF when the VF is known
    /// (DEL passes the same `deviceID` as ADD), else by scanning.
    pub fn find(
        state_dir: &StateDir,
        vf: Option<&PciAddress>,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<Self>> {
        if let Some(vf) = vf
            && let Some(j) = Self::load(state_dir, vf)?
            && j.is(container_id, ifname)
        {
            return Ok(Some(j));
        }
        Ok(Self::scan(state_dir)?.into_iter().filter_map(|j| j.ok()).find(|j| j.is(container_id, ifname)))
    }
}
