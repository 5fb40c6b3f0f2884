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
//!   sysfs was mounted in;
//! - `sys/bus/pci/devices/<pci>` links to the device's real directory,
//!   `sys/devices/pci<domain>:<bus>/<bridges...>/<pci>`, whose first component is the PCIe root
//!   complex the device hangs off (what DRA's `resource.kubernetes.io/pcieRoot` names).
//!
//! Every path is taken relative to an injectable root (`/` on a node, a temp dir in tests, see
//! [`crate::fixture`]).

mod dir;

use std::fs;
use std::io;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use serde::Serialize;

use crate::PciAddress;
use dir::Dir;

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
    /// The PCIe root complex above it (`pci0000:00`): the first component of its real directory
    /// under `sys/devices`. `None` when its `sys/bus/pci/devices` entry is not a link into a
    /// `sys/devices/pci*` tree (some hypervisors' virtual buses).
    pub pcie_root: Option<String>,
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

    /// `<root>/sys/bus/pci/devices`.
    fn pci_devices(&self) -> PathBuf {
        self.root.join("sys/bus/pci/devices")
    }

    /// `<root>/sys/bus/pci/devices/<pci>`.
    pub fn pci_dir(&self, pci: &PciAddress) -> PathBuf {
        self.pci_devices().join(pci.to_string())
    }

    /// `<root>/sys/class/net`.
    pub fn class_net(&self) -> PathBuf {
        self.root.join("sys/class/net")
    }

    /// Finds every PF and its VFs. A device whose entries are broken is skipped and reported in
    /// [`Node::problems`]; only an unreadable PCI device list fails the whole discovery.
    ///
    /// Everything is read afresh on each call (the device plugin rescans on uevents); the cost is
    /// kept down by reaching each device's entries relative to its open directory ([`Dir`]).
    pub fn discover(&self) -> Result<Node> {
        let path = self.pci_devices();
        let devices = Dir::open(path.clone()).map_err(|e| SysfsError::Read { path: path.clone(), source: e.into() })?;
        let names = devices.list(".")?.ok_or_else(|| SysfsError::Read { path, source: Errno::ENOENT.into() })?;
        let mut pcis: Vec<(PciAddress, String)> =
            names.into_iter().filter_map(|name| Some((name.parse::<PciAddress>().ok()?, name))).collect();
        pcis.sort_unstable();
        let mut node = Node::default();
        for (pci, name) in pcis {
            if !devices.exists(&format!("{name}/sriov_totalvfs")) {
                continue;
            }
            match self.read_pf(Some(&devices), &pci, Some(&mut node.problems)) {
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
        self.read_pf(None, pci, None)
    }

    /// Reads the PF that owns netdev `name`.
    pub fn pf_by_netdev(&self, name: &str) -> Result<Pf> {
        let pci = self.netdev_pci(name)?;
        self.pf(&pci)
    }

    /// The PCI address of the device behind netdev `name` (its `device` link).
    pub fn netdev_pci(&self, name: &str) -> Result<PciAddress> {
        let no_netdev = || SysfsError::NoNetdev { name: name.to_owned(), path: self.class_net().join(name) };
        let class_net = Dir::open(self.class_net()).map_err(|_| no_netdev())?;
        if !class_net.exists_nofollow(name) {
            return Err(no_netdev());
        }
        let link = format!("{name}/device");
        let target = class_net.link_target(&link)?.ok_or_else(|| SysfsError::Missing {
            path: class_net.entry(&link),
            what: "a netdev backed by a PCI device",
        })?;
        parse_pci_name(&class_net, &link, &target)
    }

    /// Reads one VF.
    pub fn vf(&self, pci: &PciAddress) -> Result<Vf> {
        let loc = self.locate_vf(pci)?;
        let bus = Dir::open(self.pci_devices()).ok();
        read_vf_at(&self.open_device(None, pci)?, bus.as_ref(), pci, loc.index, &loc.pf, loc.pf_netdev)
    }

    /// Resolves a VF's PCI address to its PF and index, through `physfn` and the PF's `virtfnN`.
    pub fn locate_vf(&self, vf: &PciAddress) -> Result<VfLocation> {
        let dir = self.open_device(None, vf)?;
        let target =
            dir.link_target("physfn")?.ok_or_else(|| SysfsError::NotAVf { pci: *vf, path: dir.entry("physfn") })?;
        let pf = parse_pci_name(&dir, "physfn", &target)?;
        let pf_dir = self.open_device(None, &pf)?;
        // The lowest N whose intact virtfnN link names the VF. Only that link is checked for
        // dangling: the others are not used.
        let index = virtfn_names(&pf_dir)?
            .into_iter()
            .find(|(_, name)| {
                pf_dir.read_link(name).is_ok_and(|t| parse_pci_name(&pf_dir, name, &t).is_ok_and(|p| p == *vf))
                    && pf_dir.exists(name)
            })
            .map(|(index, _)| index)
            .ok_or(SysfsError::VfNotListed { vf: *vf, pf })?;
        Ok(VfLocation { vf: *vf, pf, pf_netdev: first_netdev(&pf_dir)?, index })
    }

    /// The PCI address of VF `index` of PF `pf`.
    pub fn vf_pci(&self, pf: &PciAddress, index: u32) -> Result<PciAddress> {
        let dir = self.open_device(None, pf)?;
        let total_vfs = read_u32(&dir, "sriov_totalvfs")?;
        if index >= total_vfs {
            return Err(SysfsError::VfIndexOutOfRange { pf: *pf, index, total_vfs });
        }
        let link = format!("virtfn{index}");
        match dir.link_target(&link)? {
            Some(target) => parse_pci_name(&dir, &link, &target),
            None => {
                let num_vfs = read_u32(&dir, "sriov_numvfs")?;
                Err(SysfsError::VfNotEnabled { pf: *pf, index, num_vfs })
            }
        }
    }

    /// Sets the number of enabled VFs. The kernel refuses to change a non-zero count to another
    /// non-zero count (EBUSY, `sriov_numvfs_store`), so this goes through zero when it must.
    /// VF creation is asynchronous for the VF drivers: see [`Sysfs::wait_for_vfs`].
    pub fn set_num_vfs(&self, pf: &PciAddress, num: u32) -> Result<()> {
        let dir = self.open_device(None, pf)?;
        let total_vfs = read_u32(&dir, "sriov_totalvfs")?;
        if num > total_vfs {
            return Err(SysfsError::TooManyVfs { pf: *pf, requested: num, total_vfs });
        }
        let current = read_u32(&dir, "sriov_numvfs")?;
        if current == num {
            return Ok(());
        }
        let path = dir.entry("sriov_numvfs");
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

    /// Opens a device's directory: under `devices` (the open `sys/bus/pci/devices`, during a
    /// discovery) or by its full path.
    fn open_device(&self, devices: Option<&Dir>, pci: &PciAddress) -> Result<Dir> {
        let opened = match devices {
            Some(devices) => devices.sub(&pci.to_string(), self.pci_dir(pci)),
            None => Dir::open(self.pci_dir(pci)),
        };
        match opened {
            Ok(dir) => Ok(dir),
            Err(Errno::ENOENT) => {
                let path = self.pci_dir(pci);
                match fs::symlink_metadata(&path) {
                    Ok(_) => Err(dangling(&path)),
                    Err(_) => Err(SysfsError::NoDevice { pci: *pci, path }),
                }
            }
            Err(e) => Err(SysfsError::Read { path: self.pci_dir(pci), source: e.into() }),
        }
    }

    fn read_pf(
        &self,
        devices: Option<&Dir>,
        pci: &PciAddress,
        mut problems: Option<&mut Vec<SysfsError>>,
    ) -> Result<Pf> {
        let dir = self.open_device(devices, pci)?;
        if !dir.exists("sriov_totalvfs") {
            return Err(SysfsError::NotAPf { pci: *pci, path: dir.entry("sriov_totalvfs") });
        }
        let total_vfs = read_u32(&dir, "sriov_totalvfs")?;
        let num_vfs = read_u32(&dir, "sriov_numvfs")?;
        let netdev = first_netdev(&dir)?;
        let link = match &netdev {
            Some(name) => Some(read_link_status(&dir, name)?),
            None => None,
        };
        // `sys/bus/pci/devices`, whose links give the VFs' PCIe roots: the one discovery holds
        // open, or opened here once for all VFs (unopenable: the roots are unknown).
        let opened;
        let bus = match devices {
            Some(d) => Some(d),
            None => {
                opened = Dir::open(self.pci_devices()).ok();
                opened.as_ref()
            }
        };
        let read = |(index, name): &(u32, String)| {
            self.open_virtfn(&dir, name).and_then(|(vf_pci, vf_dir)| {
                if *index >= total_vfs {
                    return Err(SysfsError::VfIndexOutOfRange { pf: *pci, index: *index, total_vfs });
                }
                read_vf_at(&vf_dir, bus, &vf_pci, *index, pci, netdev.clone())
            })
        };
        let mut vfs = Vec::new();
        for vf in par_map(&virtfn_names(&dir)?, read) {
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
            vendor: read_pci_id(&dir, "vendor")?,
            device: read_pci_id(&dir, "device")?,
            driver: link_name(&dir, "driver")?,
            numa_node: read_numa_node(&dir)?,
            total_vfs,
            num_vfs,
            link,
            vfs,
        })
    }

    /// Follows the PF's `virtfnN` link `name` to its VF: the VF's address and open directory.
    ///
    /// The directory is opened through the link itself, which is also what tells a dangling link
    /// (ENOENT). The kernel adds a VF's `sys/bus/pci/devices` entry before its `virtfnN` link and
    /// removes it after (`pci_iov_add_virtfn`, `pci_iov_remove_virtfn`), so both reach the same
    /// directory; errors name it by its `sys/bus/pci/devices/<vf>` path as elsewhere.
    fn open_virtfn(&self, pf_dir: &Dir, name: &str) -> Result<(PciAddress, Dir)> {
        let target = match pf_dir.read_link(name) {
            Ok(t) => t,
            // Gone between the listing and now: the VF is being removed.
            Err(Errno::ENOENT) => return Err(dangling(&pf_dir.entry(name))),
            Err(e) => return Err(SysfsError::Read { path: pf_dir.entry(name), source: e.into() }),
        };
        // Opened before the target is parsed: a dangling link is reported as dangling, whatever
        // it names.
        let open = |path: PathBuf| match pf_dir.sub(name, path) {
            Ok(dir) => Ok(dir),
            Err(Errno::ENOENT) => Err(SysfsError::Dangling { path: pf_dir.entry(name), target: target.clone() }),
            Err(e) => Err(SysfsError::Read { path: pf_dir.entry(name), source: e.into() }),
        };
        match parse_pci_name(pf_dir, name, &target) {
            Ok(vf) => Ok((vf, open(self.pci_dir(&vf))?)),
            Err(not_pci) => {
                open(PathBuf::new())?;
                Err(not_pci)
            }
        }
    }
}

/// Reads the VF whose directory is `dir` as VF `index` of `pf`; `bus` is `sys/bus/pci/devices`
/// (for its PCIe root; `None`: unknown).
fn read_vf_at(
    dir: &Dir,
    bus: Option<&Dir>,
    pci: &PciAddress,
    index: u32,
    pf: &PciAddress,
    pf_netdev: Option<String>,
) -> Result<Vf> {
    match dir.link_target("physfn")? {
        Some(target) if parse_pci_name(dir, "physfn", &target)? == *pf => {}
        Some(_) => return Err(SysfsError::VfNotListed { vf: *pci, pf: *pf }),
        None => return Err(SysfsError::NotAVf { pci: *pci, path: dir.entry("physfn") }),
    }
    Ok(Vf {
        pci: *pci,
        index,
        pf_pci: *pf,
        pf_netdev,
        vendor: read_pci_id(dir, "vendor")?,
        device: read_pci_id(dir, "device")?,
        driver: link_name(dir, "driver")?,
        netdev: first_netdev(dir)?,
        iommu_group: link_name(dir, "iommu_group")?
            .map(|g| {
                g.parse::<u32>().map_err(|_| SysfsError::Parse {
                    path: dir.entry("iommu_group"),
                    value: g.clone(),
                    expected: "a link to an IOMMU group number",
                })
            })
            .transpose()?,
        numa_node: read_numa_node(dir)?,
        pcie_root: match bus {
            Some(bus) => read_pcie_root(bus, pci)?,
            None => None,
        },
    })
}

/// The PCIe root of device `pci` from its `sys/bus/pci/devices` link (`bus` is that directory).
/// No link (the device is going away, or the entry is a plain directory) or a target outside a
/// `sys/devices/pci*` tree: `None`.
fn read_pcie_root(bus: &Dir, pci: &PciAddress) -> Result<Option<String>> {
    let name = pci.to_string();
    match bus.read_link(&name) {
        Ok(target) => Ok(pcie_root_of(&target, &name)),
        Err(Errno::ENOENT | Errno::EINVAL) => Ok(None),
        Err(e) => Err(SysfsError::Read { path: bus.entry(&name), source: e.into() }),
    }
}

/// The PCIe root in the target of link `sys/bus/pci/devices/<name>`: the target is resolved
/// against that directory and must read `sys/devices/pci<...>/.../<name>`, as in the helper
/// Kubernetes offers DRA drivers (`deviceattribute.GetPCIeRootAttributeByPCIBusID`).
fn pcie_root_of(target: &Path, name: &str) -> Option<String> {
    use std::path::Component;
    let mut parts: Vec<&str> = vec!["sys", "bus", "pci", "devices"];
    for c in target.components() {
        match c {
            Component::RootDir => parts.clear(),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::Prefix(_) => return None,
        }
    }
    match parts.as_slice() {
        ["sys", "devices", root, .., last] if root.starts_with("pci") && *last == name => Some((*root).to_owned()),
        _ => None,
    }
}

/// The most threads one PF's VFs are read on.
const MAX_WORKERS: usize = 4;
/// Fewer items than this per thread, and a thread costs more than it saves.
const ITEMS_PER_WORKER: usize = 32;

/// `items.iter().map(f)` on up to [`MAX_WORKERS`] threads (the calling one included), in order.
///
/// Reading a VF is some 25 `*at(2)` calls, nearly all of it kernel time that runs in parallel
/// on separate cores (RCU path walks); a PF of 256 VFs is read about as many times faster as
/// there are cores. A thread that cannot be started leaves its share to the calling thread.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| thread::available_parallelism().map_or(1, NonZeroUsize::get));
    let workers = cores.min(MAX_WORKERS).min(items.len() / ITEMS_PER_WORKER).max(1);
    if workers == 1 {
        return items.iter().map(f).collect();
    }
    let f = &f;
    thread::scope(|s| {
        let mut chunks = items.chunks(items.len().div_ceil(workers));
        let own = chunks.next().unwrap_or_default();
        let others: Vec<_> = chunks
            .map(|chunk| {
                let spawned = thread::Builder::new()
                    .name("sysfs-discovery".into())
                    .spawn_scoped(s, move || chunk.iter().map(f).collect::<Vec<_>>());
                (chunk, spawned.ok())
            })
            .collect();
        let mut out: Vec<R> = own.iter().map(f).collect();
        for (chunk, handle) in others {
            match handle {
                Some(h) => out.extend(h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))),
                None => out.extend(chunk.iter().map(f)),
            }
        }
        out
    })
}

fn dangling(path: &Path) -> SysfsError {
    let target = fs::read_link(path).unwrap_or_default();
    SysfsError::Dangling { path: path.to_owned(), target }
}

/// The last component of symlink `name`'s target (a driver name, an IOMMU group number).
fn link_name(dir: &Dir, name: &str) -> Result<Option<String>> {
    Ok(dir.link_target(name)?.and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned())))
}

/// The PCI address link `name` of `dir` points at (its target's last component).
fn parse_pci_name(dir: &Dir, name: &str, target: &Path) -> Result<PciAddress> {
    let pci = target.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok());
    pci.ok_or_else(|| SysfsError::Parse {
        path: dir.entry(name),
        value: target.display().to_string(),
        expected: "a link to a PCI device directory",
    })
}

/// The PF's `virtfnN` entries as (N, name), in index order.
fn virtfn_names(pf_dir: &Dir) -> Result<Vec<(u32, String)>> {
    let names = pf_dir
        .list(".")?
        .ok_or_else(|| SysfsError::Read { path: pf_dir.path().to_owned(), source: Errno::ENOENT.into() })?;
    let mut out: Vec<_> =
        names.into_iter().filter_map(|name| Some((name.strip_prefix("virtfn")?.parse::<u32>().ok()?, name))).collect();
    out.sort_unstable_by_key(|(i, _)| *i);
    Ok(out)
}

/// The first netdev under `<dev>/net/`, in name order (a PCI function normally has one).
fn first_netdev(dev_dir: &Dir) -> Result<Option<String>> {
    Ok(dev_dir.list("net")?.and_then(|names| names.into_iter().min()))
}

/// Reads attribute `name`, trimmed, into `buf`; a missing attribute is [`SysfsError::Missing`].
fn read_trimmed<'b>(dir: &Dir, name: &str, buf: &'b mut [u8; dir::ATTR_MAX]) -> Result<&'b str> {
    dir.read_attr(name, buf).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => SysfsError::Missing { path: dir.entry(name), what: "a required sysfs attribute" },
        _ => SysfsError::Read { path: dir.entry(name), source },
    })
}

fn read_u32(dir: &Dir, name: &str) -> Result<u32> {
    let mut buf = dir::attr_buf();
    let value = read_trimmed(dir, name, &mut buf)?;
    value.parse().map_err(|_| SysfsError::Parse {
        path: dir.entry(name),
        value: value.to_owned(),
        expected: "a non-negative integer",
    })
}

fn read_pci_id(dir: &Dir, name: &str) -> Result<PciId> {
    let mut buf = dir::attr_buf();
    let value = read_trimmed(dir, name, &mut buf)?;
    let digits = value.strip_prefix("0x").unwrap_or(value);
    u16::from_str_radix(digits, 16).map(PciId).map_err(|_| SysfsError::Parse {
        path: dir.entry(name),
        value: value.to_owned(),
        expected: "a 16-bit hex PCI id such as 0x8086",
    })
}

/// `numa_node` is -1 when the platform has no NUMA information, and absent on some buses.
fn read_numa_node(dir: &Dir) -> Result<Option<u32>> {
    let mut buf = dir::attr_buf();
    match read_trimmed(dir, "numa_node", &mut buf) {
        Ok("-1") => Ok(None),
        Ok(v) => v.parse().map(Some).map_err(|_| SysfsError::Parse {
            path: dir.entry("numa_node"),
            value: v.to_owned(),
            expected: "a NUMA node number or -1",
        }),
        Err(SysfsError::Missing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Link status of the device's netdev `netdev` (`<dev>/net/<netdev>/`).
fn read_link_status(dev_dir: &Dir, netdev: &str) -> Result<LinkStatus> {
    let mut buf = dir::attr_buf();
    let operstate = read_trimmed(dev_dir, &format!("net/{netdev}/operstate"), &mut buf)?.to_owned();
    let carrier_name = format!("net/{netdev}/carrier");
    // Reading `carrier` of an interface that is down fails with EINVAL: no carrier.
    let carrier = match dev_dir.read_attr(&carrier_name, &mut buf) {
        Ok(v) => v == "1",
        Err(e) if e.raw_os_error() == Some(22) || e.kind() == io::ErrorKind::NotFound => false,
        Err(source) => return Err(SysfsError::Read { path: dev_dir.entry(&carrier_name), source }),
    };
    let mtu_name = format!("net/{netdev}/mtu");
    let mtu_s = read_trimmed(dev_dir, &mtu_name, &mut buf)?;
    let mtu = mtu_s.parse().map_err(|_| SysfsError::Parse {
        path: dev_dir.entry(&mtu_name),
        value: mtu_s.to_owned(),
        expected: "an MTU",
    })?;
    Ok(LinkStatus { operstate, carrier, mtu })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{FixtureBuilder, PfSpec};

    #[test]
    fn pcie_root_is_the_first_component_under_sys_devices() {
        let vf = "0000:01:10.0";
        let root = |target: &str| pcie_root_of(Path::new(target), vf);
        assert_eq!(root("../../../devices/pci0000:00/0000:00:02.0/0000:01:10.0").as_deref(), Some("pci0000:00"));
        assert_eq!(root("/sys/devices/pci0001:80/0000:01:10.0").as_deref(), Some("pci0001:80"));
        // A hypervisor's virtual bus, a target naming another device, no root at all.
        assert_eq!(root("../../../devices/LNXSYSTM:00/VMBUS:00/pci7870:00/0000:01:10.0"), None);
        assert_eq!(root("../../../devices/pci0000:00/0000:01:10.1"), None);
        assert_eq!(root("../../../devices/0000:01:10.0"), None);
        assert_eq!(root("../../devices/pci0000:00/0000:01:10.0"), None);
    }

    #[test]
    fn vfs_carry_their_pcie_root() {
        let f = FixtureBuilder::new()
            .pf(PfSpec::igb("0000:00:09.0".parse().unwrap(), "eth0").vfs(7, 2))
            .pf(PfSpec::igb("0001:03:00.0".parse().unwrap(), "eth1").vfs(7, 1))
            .build()
            .unwrap();
        let sysfs = f.sysfs();
        let node = sysfs.discover().unwrap();
        let roots: Vec<Option<&str>> = node.vfs().map(|vf| vf.pcie_root.as_deref()).collect();
        assert_eq!(roots, [Some("pci0000:00"), Some("pci0000:00"), Some("pci0001:00")]);
        // The single reads agree with discovery.
        let vf = node.pfs[1].vfs[0].pci;
        assert_eq!(sysfs.vf(&vf).unwrap().pcie_root.as_deref(), Some("pci0001:00"));
        assert_eq!(sysfs.pf(&node.pfs[1].pci).unwrap().vfs, node.pfs[1].vfs);
        // No link, no root; the VF is read all the same.
        let entry = sysfs.pci_dir(&vf);
        fs::remove_file(&entry).unwrap();
        assert_eq!(sysfs.pf(&node.pfs[1].pci).unwrap().vfs[0].pcie_root, None);
    }
}
