//! What the daemon reads about the node on each scan: the SR-IOV topology from sysfs, the
//! interfaces carrying a default route, and (when a pool needs them) link types.
//!
//! Everything is read under the sysfs root (`/` on a node; a fixture tree in tests), including
//! `proc/net/route` and `proc/net/ipv6_route`.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use sriov::sysfs::{Node, Sysfs, SysfsError};

/// One scan of the node.
#[derive(Debug, Default)]
pub struct NodeView {
    /// PFs and VFs.
    pub node: Node,
    /// Interfaces that carry an IPv4 or IPv6 default route.
    pub default_route: BTreeSet<String>,
    /// Link type per netdev (`ether`, `infiniband`, `type-<n>`), read only when asked for.
    pub link_types: HashMap<String, String>,
    /// How long the scan took.
    pub took: Duration,
}

/// Reads the node. `link_types`: also read each PF and VF netdev's link type.
pub fn scan(sysfs: &Sysfs, link_types: bool) -> Result<NodeView, SysfsError> {
    let start = Instant::now();
    let node = sysfs.discover()?;
    let default_route = default_route_interfaces(sysfs.root());
    let mut types = HashMap::new();
    if link_types {
        let netdevs =
            node.pfs.iter().flat_map(|pf| pf.netdev.iter().chain(pf.vfs.iter().flat_map(|vf| vf.netdev.iter())));
        for name in netdevs {
            if let Some(t) = link_type(sysfs, name) {
                types.insert(name.clone(), t);
            }
        }
    }
    Ok(NodeView { node, default_route, link_types: types, took: start.elapsed() })
}

/// `ether`, `infiniband` or `type-<n>` from `/sys/class/net/<name>/type` (ARPHRD_* numbers).
fn link_type(sysfs: &Sysfs, name: &str) -> Option<String> {
    let raw = fs::read_to_string(sysfs.class_net().join(name).join("type")).ok()?;
    Some(match raw.trim() {
        "1" => "ether".to_owned(),
        "32" => "infiniband".to_owned(),
        other => format!("type-{other}"),
    })
}

/// Interfaces with a default route in the main tables, from `proc/net/route` (IPv4) and
/// `proc/net/ipv6_route` (IPv6) under `root`. Unreadable files count as no routes.
pub fn default_route_interfaces(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(v4) = fs::read_to_string(root.join("proc/net/route")) {
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        for line in v4.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000" {
                out.insert(f[0].to_owned());
            }
        }
    }
    if let Ok(v6) = fs::read_to_string(root.join("proc/net/ipv6_route")) {
        // dest dest_plen src src_plen next_hop metric refcnt use flags iface
        for line in v6.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            const RTF_REJECT: u32 = 0x0200;
            let reject =
                f.get(8).and_then(|fl| u32::from_str_radix(fl, 16).ok()).is_some_and(|fl| fl & RTF_REJECT != 0);
            if f.len() >= 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo" && !reject {
                out.insert(f[9].to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_default_route_interfaces() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("proc/net")).unwrap();
        fs::write(
            dir.path().join("proc/net/route"),
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             eth1\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("proc/net/ipv6_route"),
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth2\n\
             00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n\
             fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth3\n",
        )
        .unwrap();
        let got: Vec<String> = default_route_interfaces(dir.path()).into_iter().collect();
        assert_eq!(got, ["eth0", "eth2"]);
        assert!(default_route_interfaces(Path::new("/nonexistent")).is_empty());
    }
}
