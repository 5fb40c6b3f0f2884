//! Where vfnet's binaries meet on the node: the file contract between the device plugin (which
//! writes profiles and device records, and answers on its socket) and the CNI plugin (which reads
//! them, and keeps its locks and journals).
//!
//! ```text
//! /run/vfnet/                      RunDir (tmpfs: gone at reboot, like the attachments)
//!   profiles/<name>.json           ProfileDir: every VfProfile, as the API serves it
//!   devices/<pci>.json             device records of the VFs the device plugin allocated
//!   locks/<pci>.lock               the CNI's per-VF locks
//!   daemon.sock                    the device plugin's node socket (profiles missing above)
//!   cluster-pools.json             the device plugin's cache of the pools it serves
//! /var/lib/vfnet/                  StateDir (survives the plugin, not meant for tmpfs wipes)
//!   vfs/<pci>.json                 the CNI's write-ahead journal of each attached VF
//! /etc/vfnet/node.json             NODE_CONFIG: the CNI's node configuration (root-owned)
//! ```
//!
//! Each directory is a type with one default, so a path is spelled once here and nowhere else.

use std::path::{Path, PathBuf};

use crate::PciAddress;

/// The default [`RunDir`].
pub const DEFAULT_RUN_DIR: &str = "/run/vfnet";
/// The default [`StateDir`].
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vfnet";
/// The CNI plugin's node configuration: the admin's settings of the plugin on this node (its
/// directories, log file, PodResources socket and policy), fixed at build time so that nothing a
/// network definition says can point the root plugin elsewhere. Written by the DaemonSet.
pub const NODE_CONFIG: &str = "/etc/vfnet/node.json";

/// Multus's device-info directory (the device-info spec's): CNI plugins write under `cni/`,
/// device plugins under `dp/`.
macro_rules! devinfo_dir {
    () => {
        "/var/run/k8s.cni.cncf.io/devinfo"
    };
}
/// Multus's device-info directory; the CNI plugin writes device-info files only below it.
pub const DEVINFO_DIR: &str = devinfo_dir!();
/// Where device plugins put their device-info files (the node daemon's default).
pub const DEVINFO_DEVICE_PLUGIN_DIR: &str = concat!(devinfo_dir!(), "/dp");

macro_rules! dir_type {
    ($t:ident) => {
        impl $t {
            /// The directory at `path`.
            pub fn new(path: impl Into<PathBuf>) -> Self {
                Self(path.into())
            }

            /// The directory itself.
            pub fn path(&self) -> &Path {
                &self.0
            }
        }

        impl AsRef<Path> for $t {
            fn as_ref(&self) -> &Path {
                &self.0
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.display().fmt(f)
            }
        }
    };
}

/// vfnet's runtime directory, shared by the device plugin and the CNI plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
pub struct RunDir(PathBuf);
dir_type!(RunDir);

impl Default for RunDir {
    fn default() -> Self {
        Self::new(DEFAULT_RUN_DIR)
    }
}

impl RunDir {
    /// `profiles/`: where the device plugin mirrors VfProfiles (the CNI's default profile dir).
    pub fn profiles(&self) -> ProfileDir {
        ProfileDir(self.0.join("profiles"))
    }

    /// `devices/`: the device records.
    pub fn devices(&self) -> PathBuf {
        self.0.join("devices")
    }

    /// `devices/<pci>.json`: the record of VF `pci`.
    pub fn device_record(&self, pci: &PciAddress) -> PathBuf {
        self.devices().join(format!("{pci}.json"))
    }

    /// `locks/`: the CNI plugin's per-VF locks.
    pub fn locks(&self) -> PathBuf {
        self.0.join("locks")
    }

    /// `locks/<pci>.lock`: the lock of VF `pci`.
    pub fn lock(&self, pci: &PciAddress) -> PathBuf {
        self.locks().join(format!("{pci}.lock"))
    }

    /// `daemon.sock`: the device plugin's node socket, where the CNI plugin asks for what is not
    /// on the node's files (a profile not mirrored yet).
    pub fn daemon_socket(&self) -> PathBuf {
        self.0.join("daemon.sock")
    }

    /// `cluster-pools.json`: the device plugin's cache of the cluster pools it serves, so a
    /// restart during an API outage still serves them.
    pub fn cluster_pools_cache(&self) -> PathBuf {
        self.0.join("cluster-pools.json")
    }
}

/// Where VfProfiles are read from (`<name>.json`, the object as the API serves it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
pub struct ProfileDir(PathBuf);
dir_type!(ProfileDir);

impl Default for ProfileDir {
    /// `<default run dir>/profiles`, where the device plugin mirrors them.
    fn default() -> Self {
        RunDir::default().profiles()
    }
}

impl ProfileDir {
    /// `<name>.json`: the file of profile `name`.
    pub fn profile(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.json"))
    }
}

/// The CNI plugin's durable state: the journals that let DEL restore a VF after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
pub struct StateDir(PathBuf);
dir_type!(StateDir);

impl Default for StateDir {
    fn default() -> Self {
        Self::new(DEFAULT_STATE_DIR)
    }
}

impl StateDir {
    /// `vfs/`: one journal per attached VF.
    pub fn journals(&self) -> PathBuf {
        self.0.join("vfs")
    }

    /// `vfs/<pci>.json`: the journal of VF `pci`.
    pub fn journal(&self, pci: &PciAddress) -> PathBuf {
        self.journals().join(format!("{pci}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_layout() {
        let vf: PciAddress = "0000:01:00.2".parse().unwrap();
        let run = RunDir::default();
        assert_eq!(run.profiles().profile("a"), Path::new("/run/vfnet/profiles/a.json"));
        assert_eq!(ProfileDir::default(), run.profiles());
        assert_eq!(run.device_record(&vf), Path::new("/run/vfnet/devices/0000:01:00.2.json"));
        assert_eq!(run.lock(&vf), Path::new("/run/vfnet/locks/0000:01:00.2.lock"));
        assert_eq!(run.daemon_socket(), Path::new("/run/vfnet/daemon.sock"));
        assert_eq!(StateDir::default().journal(&vf), Path::new("/var/lib/vfnet/vfs/0000:01:00.2.json"));
    }
}
