//! SR-IOV discovery from sysfs.
//!
//! The kernel exposes SR-IOV topology as links between PCI device directories
//! (`Documentation/ABI/testing/sysfs-bus-pci`):
//!
//! - a PF's directory holds `sriov_totalvfs`, `sriov_numvfs` and one `virtfnN -> ../<vf>` link per
//!   enabled VF, N being the VF index the PF's netlink VF calls use;
//! - a VF's directory holds `physfn -> ../<pf>`;
//! - any PCI function may hold `driver -> .../drivers/<name>`, `iommu_group -> .../<n>`,
//!   `numa_node` (-1 when unknown) and `net/<ifname>/` for each netdev it owns in the namespace
//!   sysfs was mounted in.
//!
//! Every path is taken relative to an injectable root (`/` on a node, a temp dir in tests, see
//! [`crate::fixture`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::PciAddress;

/// What can go wrong while reading or writing SR-IOV state in sysfs. Each variant names the
/// file or device involved.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    /// A read failed for a reason other than the file being absent where that is allowed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A write failed (the kernel refused the value, or the file is not writable).
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The OS error.
        source: io::Error,
    },
    /// A file that must exist does not.
    #[error("{path} is missing ({what})")]
    Missing {
        /// The absent file.
        path: PathBuf,
        /// Why it is needed.
        what: &'static str,
    },
    /// A symbolic link points at nothing.
    #[error("{path} is a dangling link (to {target})")]
    Dangling {
        /// The link.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// A file holds something unexpected.
    #[error("{path} holds {value:?}, which is not {expected}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Its content.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The device exists but has no SR-IOV capability.
    #[error("{pci} is not an SR-IOV physical function ({path} does not exist)")]
    NotAPf {
        /// The device.
        pci: PciAddress,
        /// The `sriov_totalvfs` file looked for.
        path: PathBuf,
    },
    /// The device exists but is not a VF.
    #[error("{pci} is not an SR-IOV virtual function ({path} does not exist)")]
    NotAVf {
        /// The device.
        pci: PciAddress,
        /// The `physfn` link looked for.
        path: PathBuf,
    },
    /// No PCI device with that address.
    #[error("PCI device {pci} does not exist ({path})")]
    NoDevice {
        /// The address.
        pci: PciAddress,
        /// The directory looked for.
        path: PathBuf,
    },
    /// No netdev of that name in the namespace sysfs shows.
    #[error("network device {name} does not exist ({path})")]
    NoNetdev {
        /// The interface name.
        name: String,
        /// The path looked for.
        path: PathBuf,
    },
    /// A VF index the PF can never have.
    #[error("VF index {index} is beyond PF {pf}'s sriov_totalvfs of {total_vfs}")]
    VfIndexOutOfRange {
        /// The PF.
        pf: PciAddress,
        /// The requested index.
        index: u32,
        /// `sriov_totalvfs`.
        total_vfs: u32,
    },
    /// A VF index the PF could have but has not enabled.
    #[error("PF {pf} has no VF {index}: only {num_vfs} VFs are enabled (sriov_numvfs)")]
    VfNotEnabled {
        /// The PF.
        pf: PciAddress,
        /// The requested index.
        index: u32,
        /// `sriov_numvfs`.
        num_vfs: u32,
    },
    /// The VF's `physfn` names a PF that does not list it among its `virtfnN` links.
    #[error("VF {vf} names PF {pf} as its physfn, but no virtfnN link of that PF points back to it")]
    VfNotListed {
        /// The VF.
        vf: PciAddress,
        /// The PF.
        pf: PciAddress,
    },
    /// More VFs requested than the device supports.
    #[error("cannot enable {requested} VFs on {pf}: sriov_totalvfs is {total_vfs}")]
    TooManyVfs {
        /// The PF.
        pf: PciAddress,
        /// Requested count.
        requested: u32,
        /// `sriov_totalvfs`.
        total_vfs: u32,
    },
    /// A wait for the kernel (VF creation, driver binding) ran out of time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
    },
}

/// Result alias for this module.
pub type Result<T, E = SysfsError> = std::result::Result<T, E>;

/// A PCI vendor or device id; serialized as four hex digits (`8086`), as `lspci -n` and the
/// device plugin selectors write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciId(pub u16);

impl std::fmt::Display for PciId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04x}", self.0)
    }
}

impl Serialize for PciId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Link status of a netdev as sysfs reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkStatus {
    /// RFC 2863 operational state (`up`, `down`, `lowerlayerdown`, ...).
    pub operstate: String,
    /// Carrier detected. The kernel refuses to read `carrier` of an interface that is
    /// administratively down; that reads as `false`.
    pub carrier: bool,
    /// MTU in bytes.
    pub mtu: u32,
}

/// An SR-IOV physical function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pf {
    /// PCI address.
    pub pci: PciAddress,
    /// Its netdev in the namespace sysfs shows, if it has one.
    pub netdev: Option<String>,
    /// PCI vendor id.
    pub vendor: PciId,
    /// PCI device id.
    pub device: PciId,
    /// Bound driver.
    pub driver: Option<String>,
    /// NUMA node, `None` when the platform does not say (`-1`).
    pub numa_node: Option<u32>,
    /// `sriov_totalvfs`: the most VFs the device supports.
    pub total_vfs: u32,
    /// `sriov_numvfs`: VFs enabled now.
    pub num_vfs: u32,
    /// Link status of [`Pf::netdev`].
    pub link: Option<LinkStatus>,
    /// Its VFs by index.
    pub vfs: Vec<Vf>,
}

/// An SR-IOV virtual function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Vf {
    /// PCI address.
    pub pci: PciAddress,
    /// Index under its PF (the N of `virtfnN`; netlink's VF number).
    pub index: u32,
    /// The PF's PCI address.
    pub pf_pci: PciAddress,
    /// The PF's netdev, through which VF settings are made.
    pub pf_netdev: Option<String>,
    /// PCI vendor id.
    pub vendor: PciId,
    /// PCI device id.
    pub device: PciId,
    /// Bound driver (`igbvf`, `iavf`, `vfio-pci`, ...), `None` when unbound.
    pub driver: Option<String>,
    /// Its netdev in the namespace sysfs shows: `None` when bound to a userspace driver, or when
    /// the netdev has moved into another network namespace.
    pub netdev: Option<String>,
    /// IOMMU group, the number in `/dev/vfio/<group>`.
    pub iommu_group: Option<u32>,
    /// NUMA node.
    pub numa_node: Option<u32>,
}

/// Where a VF sits: its PF and index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VfLocation {
    /// The VF.
    pub vf: PciAddress,
    /// Its PF.
    pub pf: PciAddress,
    /// The PF's netdev, if it has one.
    pub pf_netdev: Option<String>,
    /// The VF's index under the PF.
    pub index: u32,
}

/// Everything discovery found, plus what it had to skip.
#[derive(Debug, Default)]
pub struct Node {
    /// PFs in PCI address order.
    pub pfs: Vec<Pf>,
    /// Devices skipped because their sysfs entries are broken, each naming the file.
    pub problems: Vec<SysfsError>,
}

impl Node {
    /// Every VF of every PF.
    pub fn vfs(&self) -> impl Iterator<Item = &Vf> {
        self.pfs.iter().flat_map(|pf| pf.vfs.iter())
    }
}

/// Access to sysfs under a root directory.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Self::new("/")
    }
}

impl Sysfs {
    /// Sysfs under `root` (`/` on a node).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/sys/bus/pci/devices/<pci>`.
    pub fn pci_dir(&self, pci: &PciAddress) -> PathBuf {
        self.root.join("sys/bus/pci/devices").join(pci.to_string())
    }

    /// `<root>/sys/class/net`.
    pub fn class_net(&self) -> PathBuf {
        self.root.join("sys/class/net")
    }

    /// Finds every PF and its VFs. A device whose entries are broken is skipped and reported in
    /// [`Node::problems`]; only an unreadable PCI device list fails the whole discovery.
    pub fn discover(&self) -> Result<Node> {
        let devices = self.root.join("sys/bus/pci/devices");
        let entries = fs::read_dir(&devices).map_err(|source| SysfsError::Read { path: devices.clone(), source })?;
        let mut node = Node::default();
        for entry in entries {
            let entry = entry.map_err(|source| SysfsError::Read { path: devices.clone(), source })?;
            let name = entry.file_name();
            let Some(pci) = name.to_str().and_then(|n| n.parse::<PciAddress>().ok()) else {
                continue;
            };
            if !entry.path().join("sriov_totalvfs").exists() {
                continue;
            }
            match self.read_pf(&pci, Some(&mut node.problems)) {
                Ok(pf) => node.pfs.push(pf),
                Err(e) => node.problems.push(e),
            }
        }
        node.pfs.sort_by_key(|pf| pf.pci);
        for problem in &node.problems {
            tracing::warn!(%problem, "skipped a device during SR-IOV discovery");
        }
        Ok(node)
    }

    /// Reads one PF and its VFs. Any broken VF entry is an error.
    pub fn pf(&self, pci: &PciAddress) -> Result<Pf> {
        self.read_pf(pci, None)
    }

    /// Reads the PF that owns netdev `name`.
    pub fn pf_by_netdev(&self, name: &str) -> Result<Pf> {
        let pci = self.netdev_pci(name)?;
        self.pf(&pci)
    }

    /// The PCI address of the device behind netdev `name` (its `device` link).
    pub fn netdev_pci(&self, name: &str) -> Result<PciAddress> {
        let dir = self.class_net().join(name);
        if fs::symlink_metadata(&dir).is_err() {
            return Err(SysfsError::NoNetdev { name: name.to_owned(), path: dir });
        }
        let link = dir.join("device");
        let target = link_target(&link)?
            .ok_or(SysfsError::Missing { path: link.clone(), what: "a netdev backed by a PCI device" })?;
        parse_pci_name(&link, &target)
    }

    /// Reads one VF.
    pub fn vf(&self, pci: &PciAddress) -> Result<Vf> {
        let loc = self.locate_vf(pci)?;
        self.read_vf(pci, loc.index, &loc.pf, loc.pf_netdev)
    }

    /// Resolves a VF's PCI address to its PF and index, through `physfn` and the PF's `virtfnN`.
    pub fn locate_vf(&self, vf: &PciAddress) -> Result<VfLocation> {
        let dir = self.existing_pci_dir(vf)?;
        let physfn = dir.join("physfn");
        let target = link_target(&physfn)?.ok_or(SysfsError::NotAVf { pci: *vf, path: physfn.clone() })?;
        let pf = parse_pci_name(&physfn, &target)?;
        let pf_dir = self.existing_pci_dir(&pf)?;
        let index = virtfn_links(&pf_dir)?
            .into_iter()
            .find_map(|(index, target)| matches!(target, Ok(t) if t == *vf).then_some(index))
            .ok_or(SysfsError::VfNotListed { vf: *vf, pf })?;
        Ok(VfLocation { vf: *vf, pf, pf_netdev: first_netdev(&pf_dir)?, index })
    }

    /// The PCI address of VF `index` of PF `pf`.
    pub fn vf_pci(&self, pf: &PciAddress, index: u32) -> Result<PciAddress> {
        let dir = self.existing_pci_dir(pf)?;
        let total_vfs = read_u32(&dir.join("sriov_totalvfs"))?;
        if index >= total_vfs {
            return Err(SysfsError::VfIndexOutOfRange { pf: *pf, index, total_vfs });
        }
        let link = dir.join(format!("virtfn{index}"));
        match link_target(&link)? {
            Some(target) => parse_pci_name(&link, &target),
            None => {
                let num_vfs = read_u32(&dir.join("sriov_numvfs"))?;
                Err(SysfsError::VfNotEnabled { pf: *pf, index, num_vfs })
            }
        }
    }

    /// Sets the number of enabled VFs. The kernel refuses to change a non-zero count to another
    /// non-zero count (EBUSY, `sriov_numvfs_store`), so this goes through zero when it must.
    /// VF creation is asynchronous for the VF drivers: see [`Sysfs::wait_for_vfs`].
    pub fn set_num_vfs(&self, pf: &PciAddress, num: u32) -> Result<()> {
        let dir = self.existing_pci_dir(pf)?;
        let total_vfs = read_u32(&dir.join("sriov_totalvfs"))?;
        if num > total_vfs {
            return Err(SysfsError::TooManyVfs { pf: *pf, requested: num, total_vfs });
        }
        let path = dir.join("sriov_numvfs");
        let current = read_u32(&path)?;
        if current == num {
            return Ok(());
        }
        let write = |value: u32| {
            tracing::info!(pf = %pf, value, "writing sriov_numvfs");
            fs::write(&path, value.to_string()).map_err(|source| SysfsError::Write {
                path: path.clone(),
                value: value.to_string(),
                source,
            })
        };
        if current != 0 && num != 0 {
            write(0)?;
        }
        write(num)
    }

    /// Polls until PF `pf` has exactly `num` VFs, each bound to a driver and, if `with_netdevs`,
    /// each with a netdev. Returns the PF as then read.
    pub fn wait_for_vfs(&self, pf: &PciAddress, num: u32, with_netdevs: bool, timeout: Duration) -> Result<Pf> {
        let start = Instant::now();
        loop {
            let read = self.pf(pf);
            if let Ok(p) = &read {
                let ready = p.vfs.len() == num as usize
                    && p.vfs.iter().all(|vf| vf.driver.is_some() && (!with_netdevs || vf.netdev.is_some()));
                if ready {
                    return read;
                }
            }
            if start.elapsed() >= timeout {
                let what = format!("{num} VFs of {pf}{}", if with_netdevs { " with netdevs" } else { "" });
                return Err(SysfsError::Timeout { what, waited: start.elapsed() });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn existing_pci_dir(&self, pci: &PciAddress) -> Result<PathBuf> {
        let dir = self.pci_dir(pci);
        match fs::metadata(&dir) {
            Ok(_) => Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::symlink_metadata(&dir) {
                Ok(_) => Err(dangling(&dir)),
                Err(_) => Err(SysfsError::NoDevice { pci: *pci, path: dir }),
            },
            Err(source) => Err(SysfsError::Read { path: dir, source }),
        }
    }

    fn read_pf(&self, pci: &PciAddress, mut problems: Option<&mut Vec<SysfsError>>) -> Result<Pf> {
        let dir = self.existing_pci_dir(pci)?;
        let totalvfs = dir.join("sriov_totalvfs");
        if !totalvfs.exists() {
            return Err(SysfsError::NotAPf { pci: *pci, path: totalvfs });
        }
        let total_vfs = read_u32(&totalvfs)?;
        let num_vfs = read_u32(&dir.join("sriov_numvfs"))?;
        let netdev = first_netdev(&dir)?;
        let link = match &netdev {
            Some(name) => Some(read_link_status(&dir.join("net").join(name))?),
            None => None,
        };
        let mut vfs = Vec::new();
        for (index, vf_pci) in virtfn_links(&dir)? {
            let vf = vf_pci.and_then(|vf_pci| {
                if index >= total_vfs {
                    return Err(SysfsError::VfIndexOutOfRange { pf: *pci, index, total_vfs });
                }
                self.read_vf(&vf_pci, index, pci, netdev.clone())
            });
            match vf {
                Ok(vf) => vfs.push(vf),
                Err(e) => match problems.as_deref_mut() {
                    Some(p) => p.push(e),
                    None => return Err(e),
                },
            }
        }
        Ok(Pf {
            pci: *pci,
            netdev,
            vendor: read_pci_id(&dir.join("vendor"))?,
            device: read_pci_id(&dir.join("device"))?,
            driver: link_name(&dir.join("driver"))?,
            numa_node: read_numa_node(&dir.join("numa_node"))?,
            total_vfs,
            num_vfs,
            link,
            vfs,
        })
    }

    fn read_vf(&self, pci: &PciAddress, index: u32, pf: &PciAddress, pf_netdev: Option<String>) -> Result<Vf> {
        let dir = self.existing_pci_dir(pci)?;
        let physfn = dir.join("physfn");
        match link_target(&physfn)? {
            Some(target) if parse_pci_name(&physfn, &target)? == *pf => {}
            Some(_) => return Err(SysfsError::VfNotListed { vf: *pci, pf: *pf }),
            None => return Err(SysfsError::NotAVf { pci: *pci, path: physfn }),
        }
        Ok(Vf {
            pci: *pci,
            index,
            pf_pci: *pf,
            pf_netdev,
            vendor: read_pci_id(&dir.join("vendor"))?,
            device: read_pci_id(&dir.join("device"))?,
            driver: link_name(&dir.join("driver"))?,
            netdev: first_netdev(&dir)?,
            iommu_group: link_name(&dir.join("iommu_group"))?
                .map(|g| {
                    g.parse::<u32>().map_err(|_| SysfsError::Parse {
                        path: dir.join("iommu_group"),
                        value: g.clone(),
                        expected: "a link to an IOMMU group number",
                    })
                })
                .transpose()?,
            numa_node: read_numa_node(&dir.join("numa_node"))?,
        })
    }
}

fn dangling(path: &Path) -> SysfsError {
    let target = fs::read_link(path).unwrap_or_default();
    SysfsError::Dangling { path: path.to_owned(), target }
}

/// The target of symlink `path`: `None` if there is no such link, an error if it dangles.
fn link_target(path: &Path) -> Result<Option<PathBuf>> {
    let target = match fs::read_link(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SysfsError::Read { path: path.to_owned(), source }),
    };
    match fs::metadata(path) {
        Ok(_) => Ok(Some(target)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SysfsError::Dangling { path: path.to_owned(), target }),
        Err(source) => Err(SysfsError::Read { path: path.to_owned(), source }),
    }
}

/// The last component of symlink `path`'s target (a driver name, an IOMMU group number).
fn link_name(path: &Path) -> Result<Option<String>> {
    Ok(link_target(path)?.and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned())))
}

fn parse_pci_name(link: &Path, target: &Path) -> Result<PciAddress> {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.parse().map_err(|_| SysfsError::Parse {
        path: link.to_owned(),
        value: target.display().to_string(),
        expected: "a link to a PCI device directory",
    })
}

/// The PF's `virtfnN` links as (N, VF address or why that link is broken), in index order.
fn virtfn_links(pf_dir: &Path) -> Result<Vec<(u32, Result<PciAddress>)>> {
    let entries = fs::read_dir(pf_dir).map_err(|source| SysfsError::Read { path: pf_dir.to_owned(), source })?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| SysfsError::Read { path: pf_dir.to_owned(), source })?;
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(|n| n.strip_prefix("virtfn")).and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let link = entry.path();
        let vf = link_target(&link).and_then(|t| match t {
            Some(target) => parse_pci_name(&link, &target),
            None => Err(dangling(&link)),
        });
        out.push((index, vf));
    }
    out.sort_unstable_by_key(|(i, _)| *i);
    Ok(out)
}

/// The first netdev under `<dev>/net/`, in name order (a PCI function normally has one).
fn first_netdev(dev_dir: &Path) -> Result<Option<String>> {
    let net = dev_dir.join("net");
    let entries = match fs::read_dir(&net) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SysfsError::Read { path: net, source }),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| SysfsError::Read { path: net.clone(), source })?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names.into_iter().next())
}

fn read_trimmed(path: &Path) -> Result<String> {
    fs::read_to_string(path).map(|s| s.trim().to_owned()).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => SysfsError::Missing { path: path.to_owned(), what: "a required sysfs attribute" },
        _ => SysfsError::Read { path: path.to_owned(), source },
    })
}

fn read_u32(path: &Path) -> Result<u32> {
    let value = read_trimmed(path)?;
    value.parse().map_err(|_| SysfsError::Parse { path: path.to_owned(), value, expected: "a non-negative integer" })
}

fn read_pci_id(path: &Path) -> Result<PciId> {
    let value = read_trimmed(path)?;
    let digits = value.strip_prefix("0x").unwrap_or(&value);
    u16::from_str_radix(digits, 16).map(PciId).map_err(|_| SysfsError::Parse {
        path: path.to_owned(),
        value: value.clone(),
        expected: "a 16-bit hex PCI id such as 0x8086",
    })
}

/// `numa_node` is -1 when the platform has no NUMA information, and absent on some buses.
fn read_numa_node(path: &Path) -> Result<Option<u32>> {
    match read_trimmed(path) {
        Ok(v) if v == "-1" => Ok(None),
        Ok(v) => v.parse().map(Some).map_err(|_| SysfsError::Parse {
            path: path.to_owned(),
            value: v,
            expected: "a NUMA node number or -1",
        }),
        Err(SysfsError::Missing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_link_status(netdev_dir: &Path) -> Result<LinkStatus> {
    let operstate = read_trimmed(&netdev_dir.join("operstate"))?;
    let carrier_path = netdev_dir.join("carrier");
    // Reading `carrier` of an interface that is down fails with EINVAL: no carrier.
    let carrier = match fs::read_to_string(&carrier_path) {
        Ok(v) => v.trim() == "1",
        Err(e) if e.raw_os_error() == Some(22) || e.kind() == io::ErrorKind::NotFound => false,
        Err(source) => return Err(SysfsError::Read { path: carrier_path, source }),
    };
    let mtu_path = netdev_dir.join("mtu");
    let mtu_s = read_trimmed(&mtu_path)?;
    let mtu = mtu_s.parse().map_err(|_| SysfsError::Parse { path: mtu_path, value: mtu_s, expected: "an MTU" })?;
    Ok(LinkStatus { operstate, carrier, mtu })
}
