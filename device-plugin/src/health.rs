//! Device health. A VF is Unhealthy while:
//! - its PF's link is down or has no carrier (pods would get a dead uplink), or the PF has no
//!   netdev to tell;
//! - it is bound to a driver that does not fit the pool's `deviceType` (a netdevice pool needs a
//!   kernel netdev driver; a vfio-pci pool needs vfio-pci and an IOMMU group), or to none.
//!
//! Health is recomputed from sysfs on every scan; link events make that scan happen right away.

use std::fmt;

use sriov::sysfs::{Pf, Vf};
use vfnet_types::{DeviceType, is_userspace_driver};

/// A device's health, with the reason when it is not healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Usable.
    Healthy,
    /// Not usable, and why.
    Unhealthy(String),
}

impl Health {
    /// True if healthy.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Self::Healthy)
    }

    /// kubelet's word for it.
    pub fn kubelet_str(&self) -> &'static str {
        match self {
            Self::Healthy => kubelet_api::deviceplugin::HEALTHY,
            Self::Unhealthy(_) => kubelet_api::deviceplugin::UNHEALTHY,
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Healthy => f.write_str("healthy"),
            Self::Unhealthy(why) => write!(f, "unhealthy: {why}"),
        }
    }
}

/// The health of `vf` (of `pf`) in a pool of `device_type`.
pub fn check(device_type: DeviceType, pf: &Pf, vf: &Vf) -> Health {
    let pf_name = pf.netdev.as_deref().unwrap_or("?");
    match &pf.link {
        None => return Health::Unhealthy(format!("PF {} has no network interface", pf.pci)),
        Some(link) if matches!(link.operstate.as_str(), "down" | "lowerlayerdown" | "notpresent") => {
            return Health::Unhealthy(format!("PF {pf_name} is {}", link.operstate));
        }
        Some(link) if !link.carrier => return Health::Unhealthy(format!("PF {pf_name} has no carrier")),
        Some(_) => {}
    }
    let Some(driver) = vf.driver.as_deref() else {
        return Health::Unhealthy("VF is not bound to a driver".to_owned());
    };
    match device_type {
        DeviceType::Netdevice if is_userspace_driver(driver) => {
            Health::Unhealthy(format!("VF is bound to {driver}, but the pool wants a netdevice driver"))
        }
        DeviceType::VfioPci if driver != "vfio-pci" => {
            Health::Unhealthy(format!("VF is bound to {driver}, but the pool wants vfio-pci"))
        }
        DeviceType::VfioPci if vf.iommu_group.is_none() => Health::Unhealthy("VF has no IOMMU group".to_owned()),
        _ => Health::Healthy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sriov::fixture::{FixtureBuilder, PfSpec};

    #[test]
    fn follows_pf_link_and_driver() {
        let pci = "0000:00:09.0".parse().unwrap();
        let f = FixtureBuilder::new().pf(PfSpec::igb(pci, "eth0").vfs(7, 2)).build().unwrap();
        let read = || f.sysfs().pf(&pci).unwrap();
        let pf = read();
        assert_eq!(check(DeviceType::Netdevice, &pf, &pf.vfs[0]), Health::Healthy);
        let e = check(DeviceType::VfioPci, &pf, &pf.vfs[0]);
        assert_eq!(e, Health::Unhealthy("VF is bound to igbvf, but the pool wants vfio-pci".into()));

        f.set_pf_link(&pci, "down", false).unwrap();
        let pf = read();
        assert_eq!(check(DeviceType::Netdevice, &pf, &pf.vfs[0]), Health::Unhealthy("PF eth0 is down".into()));
        f.set_pf_link(&pci, "up", false).unwrap();
        let pf = read();
        assert_eq!(check(DeviceType::Netdevice, &pf, &pf.vfs[0]), Health::Unhealthy("PF eth0 has no carrier".into()));
        f.set_pf_link(&pci, "up", true).unwrap();

        f.rebind_vf(&pci, 1, Some("vfio-pci")).unwrap();
        let pf = read();
        assert_eq!(check(DeviceType::VfioPci, &pf, &pf.vfs[1]), Health::Healthy);
        assert!(!check(DeviceType::Netdevice, &pf, &pf.vfs[1]).is_healthy());
        f.rebind_vf(&pci, 1, None).unwrap();
        let pf = read();
        assert_eq!(
            check(DeviceType::VfioPci, &pf, &pf.vfs[1]),
            Health::Unhealthy("VF is not bound to a driver".into())
        );
    }
}
