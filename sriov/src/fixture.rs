//! Fake sysfs trees for tests and benchmarks, laid out with the kernel's real link structure:
//!
//! ```text
//! sys/devices/<root>/<pci>/                  the device directories (vendor, device, ...)
//! sys/bus/pci/devices/<pci>     -> ../../../devices/<root>/<pci>
//! sys/bus/pci/drivers/<driver>/
//! sys/class/net/<if>            -> ../../devices/<root>/<pci>/net/<if>
//! <pci>/net/<if>/device         -> ../../../<pci>
//! <pci>/net/<if>/type           1 (ARPHRD_ETHER)
//! <pf>/virtfnN                  -> ../<vf>
//! <vf>/physfn                   -> ../<pf>
//! <dev>/driver                  -> ../../../bus/pci/drivers/<driver>
//! <vf>/iommu_group              -> ../../../kernel/iommu_groups/<n>
//! ```
//!
//! `<root>` is the PCIe root complex, one per PCI domain: `pci<domain>:00` ([`pcie_root`]).
//! Devices sit right under it, without the bridges a real tree has between the root and an
//! endpoint (nothing reads them).
//!
//! Build one with [`FixtureBuilder`], then point a [`Sysfs`] at [`Fixture::root`].

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::PciAddress;
use crate::sysfs::Sysfs;

/// One PF to lay out.
#[derive(Debug, Clone)]
pub struct PfSpec {
    /// PCI address of the PF. Its VFs get consecutive addresses from `first_vf`.
    pub pci: PciAddress,
    /// Netdev name (`None`: a PF without a netdev).
    pub netdev: Option<String>,
    /// PF driver.
    pub driver: String,
    /// Vendor id.
    pub vendor: u16,
    /// PF device id.
    pub device: u16,
    /// VF device id.
    pub vf_device: u16,
    /// VF driver (`None`: VFs left unbound).
    pub vf_driver: Option<String>,
    /// `sriov_totalvfs`.
    pub total_vfs: u32,
    /// `sriov_numvfs`: how many VFs exist.
    pub num_vfs: u32,
    /// Address of VF 0.
    pub first_vf: PciAddress,
    /// NUMA node (`None` writes -1).
    pub numa_node: Option<u32>,
    /// PF `operstate`.
    pub operstate: String,
    /// PF MTU.
    pub mtu: u32,
}

impl PfSpec {
    /// An Intel 82576 (igb) PF as QEMU emulates it: 8086:10c9, VFs 8086:10ca on igbvf, 7 VFs at
    /// most, VFs on the next bus.
    pub fn igb(pci: PciAddress, netdev: &str) -> Self {
        let first_vf = PciAddress { bus: pci.bus.wrapping_add(1), device: 0, function: 0, ..pci };
        Self {
            pci,
            netdev: Some(netdev.to_owned()),
            driver: "igb".into(),
            vendor: 0x8086,
            device: 0x10c9,
            vf_device: 0x10ca,
            vf_driver: Some("igbvf".into()),
            total_vfs: 7,
            num_vfs: 0,
            first_vf,
            numa_node: None,
            operstate: "up".into(),
            mtu: 1500,
        }
    }

    /// Sets `sriov_totalvfs` and `sriov_numvfs`.
    pub fn vfs(mut self, total: u32, num: u32) -> Self {
        self.total_vfs = total;
        self.num_vfs = num;
        self
    }

    /// Sets the NUMA node.
    pub fn numa(mut self, node: u32) -> Self {
        self.numa_node = Some(node);
        self
    }

    /// Sets the VF driver.
    pub fn vf_driver(mut self, driver: Option<&str>) -> Self {
        self.vf_driver = driver.map(str::to_owned);
        self
    }

    /// The address of VF `index`: consecutive device/function numbers from `first_vf`, moving
    /// to the next bus after 256 functions.
    pub fn vf_pci(&self, index: u32) -> PciAddress {
        let base = u32::from(self.first_vf.device) * 8 + u32::from(self.first_vf.function) + index;
        PciAddress {
            domain: self.first_vf.domain,
            bus: self.first_vf.bus.wrapping_add((base / 256) as u8),
            device: ((base % 256) / 8) as u8,
            function: (base % 8) as u8,
        }
    }

    /// The netdev name of VF `index`, if VFs get netdevs (`<pf>v<index>`).
    pub fn vf_netdev(&self, index: u32) -> Option<String> {
        let pf = self.netdev.as_deref().unwrap_or("pf");
        is_netdev_driver(self.vf_driver.as_deref()).then(|| format!("{pf}v{index}"))
    }
}

/// The PCIe root complex the fixture puts device `pci` under: one per PCI domain,
/// `pci<domain>:00` (`pci0000:00` for domain 0), as a host bridge per segment has it.
pub fn pcie_root(pci: &PciAddress) -> String {
    format!("pci{:04x}:00", pci.domain)
}

/// Drivers that expose no netdev: the VF belongs to a userspace app.
fn is_netdev_driver(driver: Option<&str>) -> bool {
    !matches!(driver, None | Some("vfio-pci" | "uio_pci_generic" | "igb_uio"))
}

/// Builds a fixture node.
#[derive(Debug, Default)]
pub struct FixtureBuilder {
    pfs: Vec<PfSpec>,
}

impl FixtureBuilder {
    /// An empty node.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a PF.
    pub fn pf(mut self, spec: PfSpec) -> Self {
        self.pfs.push(spec);
        self
    }

    /// A node with `pfs` igb-like PFs sharing `vfs` VFs evenly (e.g. 4 × 256 = 1024), each PF
    /// with its VFs on buses of its own, alternating NUMA nodes 0 and 1.
    pub fn many(pfs: u32, vfs: u32) -> Self {
        let per_pf = vfs.div_ceil(pfs.max(1));
        let buses_per_pf = per_pf.div_ceil(256) + 1;
        let mut builder = Self::new();
        for i in 0..pfs {
            let bus = 0x10 + (i * buses_per_pf) as u8;
            let pci = PciAddress { domain: 0, bus, device: 0, function: 0 };
            let mut spec = PfSpec::igb(pci, &format!("ens{}f0", i + 1)).vfs(per_pf.max(1), per_pf).numa(i % 2);
            spec.vendor = 0x8086;
            spec.device = 0x1593;
            spec.vf_device = 0x1889;
            spec.driver = "ice".into();
            spec.vf_driver = Some("iavf".into());
            builder = builder.pf(spec);
        }
        builder
    }

    /// Writes the tree into a new temporary directory.
    pub fn build(self) -> io::Result<Fixture> {
        let dir = tempfile::tempdir()?;
        let fixture = Fixture { dir, pfs: self.pfs.clone() };
        for dir in
            ["sys/bus/pci/devices", "sys/bus/pci/drivers", "sys/class/net", "sys/kernel/iommu_groups", "sys/devices"]
        {
            fs::create_dir_all(fixture.root().join(dir))?;
        }
        let mut iommu_group = 10;
        for pf in &self.pfs {
            fixture.add_device(&pf.pci, pf.vendor, pf.device, Some(&pf.driver), pf.numa_node, None)?;
            let pf_dir = fixture.device_dir(&pf.pci);
            fs::write(pf_dir.join("sriov_totalvfs"), format!("{}\n", pf.total_vfs))?;
            fs::write(pf_dir.join("sriov_numvfs"), format!("{}\n", pf.num_vfs))?;
            if let Some(netdev) = &pf.netdev {
                fixture.add_netdev(&pf.pci, netdev, &pf.operstate, pf.mtu)?;
            }
            for index in 0..pf.num_vfs {
                let vf = pf.vf_pci(index);
                fixture.add_device(
                    &vf,
                    pf.vendor,
                    pf.vf_device,
                    pf.vf_driver.as_deref(),
                    pf.numa_node,
                    Some(iommu_group),
                )?;
                iommu_group += 1;
                symlink(format!("../{}", pf.pci), fixture.device_dir(&vf).join("physfn"))?;
                symlink(format!("../{vf}"), pf_dir.join(format!("virtfn{index}")))?;
                if let Some(netdev) = pf.vf_netdev(index) {
                    fixture.add_netdev(&vf, &netdev, "up", 1500)?;
                }
            }
        }
        Ok(fixture)
    }
}

/// A fake sysfs tree in a temporary directory, removed on drop.
#[derive(Debug)]
pub struct Fixture {
    dir: tempfile::TempDir,
    pfs: Vec<PfSpec>,
}

impl Fixture {
    /// The fake root (the directory holding `sys/`).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A [`Sysfs`] reading this tree.
    pub fn sysfs(&self) -> Sysfs {
        Sysfs::new(self.root())
    }

    /// The PFs it was built with.
    pub fn pfs(&self) -> &[PfSpec] {
        &self.pfs
    }

    /// The real directory of a device (`sys/devices/<root>/<pci>`, [`pcie_root`]).
    pub fn device_dir(&self, pci: &PciAddress) -> PathBuf {
        self.root().join("sys/devices").join(pcie_root(pci)).join(pci.to_string())
    }

    fn add_device(
        &self,
        pci: &PciAddress,
        vendor: u16,
        device: u16,
        driver: Option<&str>,
        numa: Option<u32>,
        iommu_group: Option<u32>,
    ) -> io::Result<()> {
        let dir = self.device_dir(pci);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("vendor"), format!("0x{vendor:04x}\n"))?;
        fs::write(dir.join("device"), format!("0x{device:04x}\n"))?;
        fs::write(dir.join("numa_node"), numa.map_or("-1\n".to_owned(), |n| format!("{n}\n")))?;
        symlink(
            format!("../../../devices/{}/{pci}", pcie_root(pci)),
            self.root().join("sys/bus/pci/devices").join(pci.to_string()),
        )?;
        if let Some(group) = iommu_group {
            fs::create_dir_all(self.root().join(format!("sys/kernel/iommu_groups/{group}")))?;
            symlink(format!("../../../kernel/iommu_groups/{group}"), dir.join("iommu_group"))?;
        }
        self.bind(pci, driver)
    }

    fn add_netdev(&self, pci: &PciAddress, name: &str, operstate: &str, mtu: u32) -> io::Result<()> {
        let dir = self.device_dir(pci).join("net").join(name);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("operstate"), format!("{operstate}\n"))?;
        fs::write(dir.join("carrier"), if operstate == "up" { "1\n" } else { "0\n" })?;
        fs::write(dir.join("mtu"), format!("{mtu}\n"))?;
        // ARPHRD_ETHER: every fixture NIC is Ethernet.
        fs::write(dir.join("type"), "1\n")?;
        symlink(format!("../../../{pci}"), dir.join("device"))?;
        symlink(
            format!("../../devices/{}/{pci}/net/{name}", pcie_root(pci)),
            self.root().join("sys/class/net").join(name),
        )
    }

    fn remove_netdevs(&self, pci: &PciAddress) -> io::Result<()> {
        let net = self.device_dir(pci).join("net");
        if let Ok(entries) = fs::read_dir(&net) {
            for entry in entries {
                let _ = fs::remove_file(self.root().join("sys/class/net").join(entry?.file_name()));
            }
            fs::remove_dir_all(&net)?;
        }
        Ok(())
    }

    /// Binds a device to `driver` (or unbinds it), as writing to `bind`/`unbind` would: the
    /// `driver` link changes and the netdev appears or vanishes with a netdev driver.
    pub fn bind(&self, pci: &PciAddress, driver: Option<&str>) -> io::Result<()> {
        let link = self.device_dir(pci).join("driver");
        let _ = fs::remove_file(&link);
        if let Some(driver) = driver {
            fs::create_dir_all(self.root().join("sys/bus/pci/drivers").join(driver))?;
            symlink(format!("../../../bus/pci/drivers/{driver}"), &link)?;
        }
        Ok(())
    }

    /// Rebinds VF `index` of the PF at `pf` to `driver`, adding or removing its netdev.
    pub fn rebind_vf(&self, pf: &PciAddress, index: u32, driver: Option<&str>) -> io::Result<()> {
        let spec = self.spec(pf)?;
        let vf = spec.vf_pci(index);
        self.remove_netdevs(&vf)?;
        self.bind(&vf, driver)?;
        if is_netdev_driver(driver) {
            let name = format!("{}v{index}", spec.netdev.as_deref().unwrap_or("pf"));
            self.add_netdev(&vf, &name, "up", 1500)?;
        }
        Ok(())
    }

    /// Sets a PF netdev's operstate and carrier.
    pub fn set_pf_link(&self, pf: &PciAddress, operstate: &str, carrier: bool) -> io::Result<()> {
        let spec = self.spec(pf)?;
        let name = spec.netdev.as_deref().ok_or_else(|| io::Error::other("PF has no netdev"))?;
        let dir = self.device_dir(pf).join("net").join(name);
        fs::write(dir.join("operstate"), format!("{operstate}\n"))?;
        fs::write(dir.join("carrier"), if carrier { "1\n" } else { "0\n" })
    }

    /// Changes the number of VFs the way the kernel does on a `sriov_numvfs` write: VF devices
    /// and links appear or vanish.
    pub fn set_num_vfs(&self, pf: &PciAddress, num: u32) -> io::Result<()> {
        let spec = self.spec(pf)?;
        let pf_dir = self.device_dir(pf);
        let current: u32 = fs::read_to_string(pf_dir.join("sriov_numvfs"))?.trim().parse().map_err(io::Error::other)?;
        for index in num..current {
            let vf = spec.vf_pci(index);
            self.remove_netdevs(&vf)?;
            fs::remove_file(pf_dir.join(format!("virtfn{index}")))?;
            fs::remove_file(self.root().join("sys/bus/pci/devices").join(vf.to_string()))?;
            fs::remove_dir_all(self.device_dir(&vf))?;
        }
        for index in current..num {
            let vf = spec.vf_pci(index);
            self.add_device(
                &vf,
                spec.vendor,
                spec.vf_device,
                spec.vf_driver.as_deref(),
                spec.numa_node,
                Some(1000 + index),
            )?;
            symlink(format!("../{pf}"), self.device_dir(&vf).join("physfn"))?;
            symlink(format!("../{vf}"), pf_dir.join(format!("virtfn{index}")))?;
            if let Some(netdev) = spec.vf_netdev(index) {
                self.add_netdev(&vf, &netdev, "up", 1500)?;
            }
        }
        fs::write(pf_dir.join("sriov_numvfs"), format!("{num}\n"))
    }

    fn spec(&self, pf: &PciAddress) -> io::Result<PfSpec> {
        self.pfs
            .iter()
            .find(|s| s.pci == *pf)
            .cloned()
            .ok_or_else(|| io::Error::other(format!("no PF {pf} in this fixture")))
    }
}
