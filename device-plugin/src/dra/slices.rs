//! One pool's devices as `ResourceSlice`s (`resource.k8s.io/v1`), as a pure function of the node
//! name, the pool, its devices and a generation.
//!
//! # Layout
//!
//! Every VfPool of a node is one DRA pool, named `<node>/<vfpool>` ([`pool_name`]), of driver
//! [`DRIVER`]. Its devices, in PCI address order, are published in slices of at most
//! [`MAX_DEVICES_PER_SLICE`] (the API's limit for slices without taints or counters); a pool
//! with no devices publishes one slice without devices, so the scheduler sees that the pool
//! exists and is empty rather than not published yet. Every slice of a pool carries one
//! generation and the number of slices (`spec.pool.resourceSliceCount`), and is named
//! `<node>-vfnet.dev-<vfpool>-<index>` ([`slice_name`]), labelled [`POOL_LABEL`] and
//! [`NODE_LABEL`] ([`label_value`]), and owned by what the caller passes (the daemon passes its
//! Node, so the slices are garbage-collected with it). A device is named after its PCI address:
//! `0000:01:10.0` is `vf-0000-01-10-0` ([`device_name`], [`parse_device_name`]).
//!
//! Names derive from a Node name and a VfPool name, DNS subdomains both (the API server checks
//! them), so every name built from them is one too. What could break is length: a slice name
//! or pool name over 253 characters, or a label value over 63, is cut and ends in `-` and 16 hex
//! digits of a hash of the whole (FNV-1a, stable across releases), which keeps distinct names
//! distinct and lets the publisher compute the same value to select its slices by label.
//!
//! # Attributes
//!
//! Operators select VFs with CEL over these, in a DeviceClass or a claim:
//! `device.attributes["vfnet.dev"].physicalNetwork == "physnet1"`. Unqualified names are in the
//! driver's domain, `vfnet.dev`. An attribute marked *when known* is left out when the node does
//! not tell; a string attribute longer than 64 characters (the API's limit) is left out too, as
//! a cut value would match the wrong CEL: the full pool name is in `spec.pool.name` all the same.
//!
//! | attribute                        | type   | value                                              |
//! |----------------------------------|--------|----------------------------------------------------|
//! | `resource.kubernetes.io/pciBusID`| string | the VF's PCI address, `0000:01:10.0`               |
//! | `resource.kubernetes.io/pcieRoot`| string | its PCIe root complex, `pci0000:00` (when known)   |
//! | `pfName`                         | string | its PF's netdev, `ens1f0` (when known)             |
//! | `pfPciAddress`                   | string | its PF's PCI address                               |
//! | `vfIndex`                        | int    | its index under the PF (netlink's VF number)       |
//! | `vendor`                         | string | PCI vendor id, 4 lower-case hex digits, `8086`     |
//! | `deviceId`                       | string | the VF's PCI device id, `1889`                     |
//! | `driver`                         | string | the bound driver, `iavf`, `vfio-pci` (when bound)  |
//! | `numaNode`                       | int    | its NUMA node (when known)                         |
//! | `linkType`                       | string | `ether`, `infiniband`, `type-<n>` (when known)     |
//! | `physicalNetwork`                | string | the pool's `spec.physicalNetwork` (when set)       |
//! | `pool`                           | string | the VfPool's name                                  |
//! | `deviceType`                     | string | the pool's `deviceType`: `netdevice`, `vfio-pci`   |
//! | `healthy`                        | bool   | the VF's health (see [`crate::health`])            |
//!
//! `healthy` is an attribute rather than a taint so that a health change is an ordinary update
//! of the pool; vfnet's DeviceClass requires `device.attributes["vfnet.dev"].healthy`, so the
//! scheduler never allocates an unhealthy VF. `linkType` comes from the scan's link types, which
//! the daemon must ask the scan for.

use std::collections::BTreeMap;

use k8s_openapi::api::resource::v1::{
    Device as DraDevice, DeviceAttribute, ResourcePool, ResourceSlice, ResourceSliceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sriov::PciAddress;

use crate::inventory::{Device, PoolDevices};
use crate::pools::Pool;

/// The DRA driver name: `spec.driver` of every slice, and the domain of vfnet's attributes.
pub const DRIVER: &str = "vfnet.dev";

/// The most devices one slice holds: the API's limit for a slice whose devices have no taints
/// and consume no counters (64 otherwise).
pub const MAX_DEVICES_PER_SLICE: usize = 128;

/// Label on every slice: the VfPool's name ([`label_value`]).
pub const POOL_LABEL: &str = "vfnet.dev/pool";

/// Label on every slice: the node's name ([`label_value`]).
pub const NODE_LABEL: &str = "vfnet.dev/node";

/// The longest string attribute value the API takes.
pub const MAX_STRING_ATTRIBUTE: usize = 64;

/// The longest object name and DRA pool name (a DNS subdomain, or several separated by `/`).
const MAX_NAME: usize = 253;

/// The longest label value.
const MAX_LABEL_VALUE: usize = 63;

/// Attribute names, as the table in the module documentation lists them.
pub mod attr {
    /// The VF's PCI address (Kubernetes' standard attribute).
    pub const PCI_BUS_ID: &str = "resource.kubernetes.io/pciBusID";
    /// Its PCIe root complex (Kubernetes' standard attribute).
    pub const PCIE_ROOT: &str = "resource.kubernetes.io/pcieRoot";
    /// Its PF's netdev.
    pub const PF_NAME: &str = "pfName";
    /// Its PF's PCI address.
    pub const PF_PCI_ADDRESS: &str = "pfPciAddress";
    /// Its index under the PF.
    pub const VF_INDEX: &str = "vfIndex";
    /// PCI vendor id.
    pub const VENDOR: &str = "vendor";
    /// The VF's PCI device id.
    pub const DEVICE_ID: &str = "deviceId";
    /// The bound driver.
    pub const DRIVER: &str = "driver";
    /// NUMA node.
    pub const NUMA_NODE: &str = "numaNode";
    /// Link type.
    pub const LINK_TYPE: &str = "linkType";
    /// The pool's physical network.
    pub const PHYSICAL_NETWORK: &str = "physicalNetwork";
    /// The VfPool's name.
    pub const POOL: &str = "pool";
    /// The pool's device type.
    pub const DEVICE_TYPE: &str = "deviceType";
    /// The VF's health.
    pub const HEALTHY: &str = "healthy";
}

/// The DRA pool of VfPool `pool` on `node`: `<node>/<vfpool>`, shortened if over 253 characters
/// (see the module documentation).
pub fn pool_name(node: &str, pool: &str) -> String {
    shorten(&format!("{node}/{pool}"), MAX_NAME)
}

/// The device name of VF `pci`, a DNS label: `0000:01:10.0` is `vf-0000-01-10-0`.
pub fn device_name(pci: &PciAddress) -> String {
    format!("vf-{:04x}-{:02x}-{:02x}-{:x}", pci.domain, pci.bus, pci.device, pci.function)
}

/// The PCI address a [`device_name`] names; `None` for any other string (upper case included).
pub fn parse_device_name(name: &str) -> Option<PciAddress> {
    let mut parts = name.strip_prefix("vf-")?.split('-');
    let (domain, bus, device, function) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let pci: PciAddress = format!("{domain}:{bus}:{device}.{function}").parse().ok()?;
    (device_name(&pci) == name).then_some(pci)
}

/// The device of `devices` that [`device_name`] calls `name` (the reverse of it).
pub fn device_pci<'a>(devices: &'a PoolDevices, name: &str) -> Option<&'a Device> {
    devices.get(&parse_device_name(name)?.to_string())
}

/// The name of slice `index` of VfPool `pool` on `node`: `<node>-vfnet.dev-<pool>-<index>`. Over
/// 253 characters, the part before `-<index>` is shortened (see the module documentation), so
/// the index stays readable and the names of one pool stay distinct.
pub fn slice_name(node: &str, pool: &str, index: usize) -> String {
    let suffix = format!("-{index}");
    let base = shorten(&format!("{node}-{DRIVER}-{pool}"), MAX_NAME - suffix.len());
    base + &suffix
}

/// `name` as a label value: itself when it is at most 63 characters (a DNS subdomain is a valid
/// label value then), else shortened (see the module documentation). The publisher selects its
/// slices with the same function.
pub fn label_value(name: &str) -> String {
    shorten(name, MAX_LABEL_VALUE)
}

/// The slices of `pool`'s `devices` on `node` at `generation`, owned by `owner`: devices in PCI
/// address order, [`MAX_DEVICES_PER_SLICE`] a slice, one empty slice for no devices. See the
/// module documentation for names, labels and attributes.
pub fn build(
    node: &str,
    pool: &Pool,
    devices: &PoolDevices,
    generation: i64,
    owner: Option<OwnerReference>,
) -> Vec<ResourceSlice> {
    let mut sorted: Vec<&Device> = devices.devices.iter().collect();
    // Already in PCI order (the inventory sorts): a stable sort of sorted input is one pass.
    sorted.sort_by_key(|d| d.pci);
    let chunks: Vec<&[&Device]> =
        if sorted.is_empty() { vec![&[]] } else { sorted.chunks(MAX_DEVICES_PER_SLICE).collect() };
    let pool_ref =
        ResourcePool { name: pool_name(node, &pool.name), generation, resource_slice_count: chunks.len() as i64 };
    let labels =
        BTreeMap::from([(POOL_LABEL.to_owned(), label_value(&pool.name)), (NODE_LABEL.to_owned(), label_value(node))]);
    let owners = owner.map(|o| vec![o]);
    chunks
        .iter()
        .enumerate()
        .map(|(index, chunk)| ResourceSlice {
            metadata: ObjectMeta {
                name: Some(slice_name(node, &pool.name, index)),
                labels: Some(labels.clone()),
                owner_references: owners.clone(),
                ..ObjectMeta::default()
            },
            spec: ResourceSliceSpec {
                driver: DRIVER.to_owned(),
                node_name: Some(node.to_owned()),
                pool: pool_ref.clone(),
                devices: (!chunk.is_empty()).then(|| chunk.iter().map(|d| dra_device(pool, d)).collect()),
                ..ResourceSliceSpec::default()
            },
        })
        .collect()
}

/// One VF as a DRA device.
fn dra_device(pool: &Pool, d: &Device) -> DraDevice {
    DraDevice { name: device_name(&d.pci), attributes: Some(attributes(pool, d)), ..DraDevice::default() }
}

/// The attributes of `d` in `pool` (the table in the module documentation).
fn attributes(pool: &Pool, d: &Device) -> BTreeMap<String, DeviceAttribute> {
    let mut out = BTreeMap::new();
    let mut put = |name: &str, value: Option<DeviceAttribute>| {
        if let Some(value) = value {
            out.insert(name.to_owned(), value);
        }
    };
    put(attr::PCI_BUS_ID, string(d.pci.to_string()));
    put(attr::PCIE_ROOT, d.pcie_root.clone().and_then(string));
    put(attr::PF_NAME, d.pf_netdev.clone().and_then(string));
    put(attr::PF_PCI_ADDRESS, string(d.pf.to_string()));
    put(attr::VF_INDEX, Some(int(i64::from(d.vf_index))));
    put(attr::VENDOR, string(d.vendor.to_string()));
    put(attr::DEVICE_ID, string(d.device.to_string()));
    put(attr::DRIVER, d.driver.clone().and_then(string));
    put(attr::NUMA_NODE, d.numa_node.map(|n| int(i64::from(n))));
    put(attr::LINK_TYPE, d.link_type.clone().and_then(string));
    put(attr::PHYSICAL_NETWORK, pool.spec.physical_network.clone().and_then(string));
    put(attr::POOL, string(pool.name.clone()));
    put(attr::DEVICE_TYPE, string(pool.spec.device_type.to_string()));
    put(attr::HEALTHY, Some(DeviceAttribute { bool: Some(d.health.is_healthy()), ..DeviceAttribute::default() }));
    out
}

/// A string attribute; `None` if the API would refuse it as too long.
fn string(value: String) -> Option<DeviceAttribute> {
    (value.len() <= MAX_STRING_ATTRIBUTE).then(|| DeviceAttribute { string: Some(value), ..DeviceAttribute::default() })
}

fn int(value: i64) -> DeviceAttribute {
    DeviceAttribute { int: Some(value), ..DeviceAttribute::default() }
}

/// True if `a` and `b` publish the same thing, whatever their generations: the same slices by
/// name (in any order: a list from the API server comes in its own), each with the same labels,
/// owners and spec. The API server's own metadata (resourceVersion, uid, generation, timestamps,
/// managed fields) and annotations are not looked at, and an absent list equals an empty one
/// (the API server drops empty lists). The publisher bumps the generation only when this is
/// false.
///
/// Cheap: no copies; names, counts and scalars are compared before the devices, and the first
/// difference ends it.
pub fn same_content(a: &[ResourceSlice], b: &[ResourceSlice]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    fn by_name(slices: &[ResourceSlice]) -> Vec<&ResourceSlice> {
        let mut v: Vec<&ResourceSlice> = slices.iter().collect();
        v.sort_unstable_by(|x, y| x.metadata.name.cmp(&y.metadata.name));
        v
    }
    by_name(a).into_iter().zip(by_name(b)).all(|(x, y)| same_slice(x, y))
}

fn same_slice(a: &ResourceSlice, b: &ResourceSlice) -> bool {
    // Destructured whole: a field a new API version adds does not compile until it is decided.
    let ResourceSliceSpec {
        all_nodes,
        devices,
        driver,
        node_name,
        node_selector,
        per_device_node_selection,
        pool: ResourcePool { name: pool, generation: _, resource_slice_count },
        shared_counters,
    } = &a.spec;
    let s = &b.spec;
    a.metadata.name == b.metadata.name
        && non_empty_map(&a.metadata.labels) == non_empty_map(&b.metadata.labels)
        && list(&a.metadata.owner_references) == list(&b.metadata.owner_references)
        && *driver == s.driver
        && *node_name == s.node_name
        && *pool == s.pool.name
        && *resource_slice_count == s.pool.resource_slice_count
        && *all_nodes == s.all_nodes
        && *per_device_node_selection == s.per_device_node_selection
        && *node_selector == s.node_selector
        && list(shared_counters) == list(&s.shared_counters)
        && list(devices) == list(&s.devices)
}

fn list<T>(v: &Option<Vec<T>>) -> &[T] {
    v.as_deref().unwrap_or_default()
}

fn non_empty_map<K, V>(m: &Option<BTreeMap<K, V>>) -> Option<&BTreeMap<K, V>> {
    m.as_ref().filter(|m| !m.is_empty())
}

/// `s` if at most `max` bytes; else its longest head that leaves room for `-` and 16 hex digits
/// of its FNV-1a hash, without trailing characters a DNS name or label value may not end in.
fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let hash = format!("{:016x}", fnv1a(s.as_bytes()));
    let mut cut = max.saturating_sub(hash.len() + 1);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = s[..cut].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if head.is_empty() { hash } else { format!("{head}-{hash}") }
}

/// 64-bit FNV-1a: tiny and fixed, unlike std's hasher, whose output may change between releases
/// (the names must not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{inventory, node, pools};
    use sriov::fixture::{FixtureBuilder, PfSpec};
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::sync::Arc;

    const NODE: &str = "node-1";

    fn pool(extra: &str) -> Arc<Pool> {
        let text = format!("- metadata: {{name: tenant-a}}\n  spec: {{resourceName: tenant_a{extra}}}\n");
        pools::parse(&text, Path::new("p"), "vfnet.dev").unwrap().remove(0)
    }

    fn devices_of(f: &sriov::fixture::Fixture, pool: &Arc<Pool>) -> PoolDevices {
        let view = node::scan(&f.sysfs(), true).unwrap();
        inventory::build(std::slice::from_ref(pool), &view).pools.remove(0)
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: NODE.into(),
            uid: "3c3d0ad4-5d6b-4a3e-9b1e-2f0d5f7f0a11".into(),
            ..OwnerReference::default()
        }
    }

    /// k8s' IsDNS1123Subdomain.
    fn is_dns_subdomain(s: &str) -> bool {
        s.len() <= 253
            && s.split('.').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    }

    /// k8s' IsValidLabelValue, for non-empty values.
    fn is_label_value(s: &str) -> bool {
        s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    }

    fn device_names(slices: &[ResourceSlice]) -> Vec<String> {
        slices.iter().flat_map(|s| list(&s.spec.devices).iter().map(|d| d.name.clone())).collect()
    }

    #[test]
    fn a_thousand_vfs_are_eight_full_slices_of_one_generation() {
        let f = FixtureBuilder::many(16, 1024).build().unwrap();
        let pool = pool("");
        let devices = devices_of(&f, &pool);
        assert_eq!(devices.devices.len(), 1024);
        let slices = build(NODE, &pool, &devices, 7, Some(owner()));
        assert_eq!(slices.len(), 8);
        let names: BTreeSet<&str> = slices.iter().filter_map(|s| s.metadata.name.as_deref()).collect();
        assert_eq!(names.len(), 8);
        for (i, s) in slices.iter().enumerate() {
            let name = s.metadata.name.as_deref().unwrap();
            assert_eq!(name, format!("node-1-vfnet.dev-tenant-a-{i}"));
            assert!(is_dns_subdomain(name), "{name}");
            assert_eq!(list(&s.spec.devices).len(), 128);
            assert_eq!(s.spec.driver, DRIVER);
            assert_eq!(s.spec.node_name.as_deref(), Some(NODE));
            assert_eq!(
                s.spec.pool,
                ResourcePool { name: "node-1/tenant-a".into(), generation: 7, resource_slice_count: 8 }
            );
            let labels = s.metadata.labels.as_ref().unwrap();
            assert_eq!(labels.get(POOL_LABEL).map(String::as_str), Some("tenant-a"));
            assert_eq!(labels.get(NODE_LABEL).map(String::as_str), Some(NODE));
            assert_eq!(s.metadata.owner_references.as_deref(), Some(&[owner()][..]));
        }
        // Every device once, in PCI order across the slices, each name a DNS label.
        let names = device_names(&slices);
        let expected: Vec<String> = devices.devices.iter().map(|d| device_name(&d.pci)).collect();
        assert_eq!(names, expected);
        assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), 1024);
        assert!(names.iter().all(|n| n.len() <= 63 && is_dns_subdomain(n) && !n.contains('.')));
    }

    #[test]
    fn a_hundred_and_thirty_vfs_are_two_slices_and_none_one_empty_slice() {
        let f = FixtureBuilder::many(2, 130).build().unwrap();
        let pool = pool("");
        let slices = build(NODE, &pool, &devices_of(&f, &pool), 1, None);
        let sizes: Vec<usize> = slices.iter().map(|s| list(&s.spec.devices).len()).collect();
        assert_eq!(sizes, [128, 2]);
        assert!(slices.iter().all(|s| s.spec.pool.resource_slice_count == 2 && s.metadata.owner_references.is_none()));

        let empty = build(NODE, &pool, &PoolDevices::default(), 3, None);
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].spec.devices, None);
        assert_eq!(empty[0].spec.pool.resource_slice_count, 1);
        assert_eq!(empty[0].metadata.name.as_deref(), Some("node-1-vfnet.dev-tenant-a-0"));
    }

    #[test]
    fn attributes_of_one_vf_and_its_health() {
        let pf = "0001:03:00.0".parse().unwrap();
        let f = FixtureBuilder::new()
            .pf(PfSpec::igb("0000:00:09.0".parse().unwrap(), "eth0").vfs(7, 1))
            .pf(PfSpec::igb(pf, "eth1").vfs(7, 3).numa(1))
            .build()
            .unwrap();
        let pool = pool(", physicalNetwork: physnet1");
        let before = build(NODE, &pool, &devices_of(&f, &pool), 1, None);
        let vf = &list(&before[0].spec.devices)[3];
        assert_eq!(vf.name, "vf-0001-04-00-2");
        let s = |v: &str| DeviceAttribute { string: Some(v.into()), ..DeviceAttribute::default() };
        let expected = BTreeMap::from([
            ("resource.kubernetes.io/pciBusID".to_owned(), s("0001:04:00.2")),
            ("resource.kubernetes.io/pcieRoot".to_owned(), s("pci0001:00")),
            ("pfName".to_owned(), s("eth1")),
            ("pfPciAddress".to_owned(), s("0001:03:00.0")),
            ("vfIndex".to_owned(), int(2)),
            ("vendor".to_owned(), s("8086")),
            ("deviceId".to_owned(), s("10ca")),
            ("driver".to_owned(), s("igbvf")),
            ("numaNode".to_owned(), int(1)),
            ("linkType".to_owned(), s("ether")),
            ("physicalNetwork".to_owned(), s("physnet1")),
            ("pool".to_owned(), s("tenant-a")),
            ("deviceType".to_owned(), s("netdevice")),
            ("healthy".to_owned(), DeviceAttribute { bool: Some(true), ..DeviceAttribute::default() }),
        ]);
        assert_eq!(vf.attributes.as_ref(), Some(&expected));
        // The VF of domain 0 has no NUMA node: no such attribute.
        let first = list(&before[0].spec.devices)[0].attributes.as_ref().unwrap();
        assert_eq!(first.get(attr::PCIE_ROOT), Some(&s("pci0000:00")));
        assert!(!first.contains_key(attr::NUMA_NODE));

        // A rescan that finds the same: the same content, whatever the generation.
        let again = build(NODE, &pool, &devices_of(&f, &pool), 2, None);
        assert!(same_content(&before, &again));
        // The PF goes down: its VFs turn unhealthy, and the content changes.
        f.set_pf_link(&pf, "down", false).unwrap();
        let down = build(NODE, &pool, &devices_of(&f, &pool), 2, None);
        let healthy = |slices: &[ResourceSlice], i: usize| {
            list(&slices[0].spec.devices)[i].attributes.as_ref().unwrap()[attr::HEALTHY].bool
        };
        assert_eq!((healthy(&down, 0), healthy(&down, 3)), (Some(true), Some(false)));
        assert!(!same_content(&before, &down));
    }

    #[test]
    fn device_names_round_trip() {
        let f = FixtureBuilder::many(2, 20).build().unwrap();
        let pool = pool("");
        let devices = devices_of(&f, &pool);
        for d in &devices.devices {
            let name = device_name(&d.pci);
            assert_eq!(device_pci(&devices, &name).map(|found| found.pci), Some(d.pci));
        }
        let pci: PciAddress = "0000:01:10.0".parse().unwrap();
        assert_eq!(device_name(&pci), "vf-0000-01-10-0");
        assert_eq!(parse_device_name("vf-0000-01-10-0"), Some(pci));
        for bad in ["vf-0000-01-10", "vf-0000-01-10-0-1", "VF-0000-01-10-0", "vf-0000-0A-10-0", "0000:01:10.0", "vf-"] {
            assert_eq!(parse_device_name(bad), None, "{bad}");
        }
        assert!(device_pci(&devices, "vf-0000-01-10-0").is_none(), "not in this pool");
    }

    #[test]
    fn long_names_are_shortened_into_valid_distinct_ones() {
        let label = |n: usize| "a".repeat(n);
        let node = format!("{}.example.com", "n".repeat(240));
        let pool_a = format!("{}-a", "p".repeat(250));
        let pool_b = format!("{}-b", "p".repeat(250));
        let names: Vec<String> = (0..12).map(|i| slice_name(&node, &pool_a, i)).collect();
        assert!(names.iter().all(|n| n.len() <= 253 && is_dns_subdomain(n)), "{names:?}");
        assert!(names[11].ends_with("-11"));
        assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), 12);
        assert_ne!(slice_name(&node, &pool_a, 0), slice_name(&node, &pool_b, 0));

        let (a, b) = (pool_name(&node, &pool_a), pool_name(&node, &pool_b));
        assert!(a.len() <= 253 && a != b);
        assert!(a.split('/').all(is_dns_subdomain), "{a}");
        assert_eq!(pool_name("node-1", "tenant-a"), "node-1/tenant-a");

        assert_eq!(label_value(&label(63)), label(63));
        let (la, lb) = (label_value(&pool_a), label_value(&pool_b));
        assert!(is_label_value(&la) && is_label_value(&lb) && la != lb, "{la} {lb}");
        // A cut that would end on a separator drops it.
        let dotted = format!("{}.{}", "x".repeat(45), "y".repeat(30));
        assert!(is_label_value(&label_value(&dotted)), "{}", label_value(&dotted));
        // Stable: the same input, the same name.
        assert_eq!(label_value(&pool_a), la);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);

        // Too long for a string attribute: left out, not cut.
        let f = FixtureBuilder::many(1, 1).build().unwrap();
        let p = pool(&format!(", physicalNetwork: {}", "x".repeat(65)));
        let slices = build(NODE, &p, &devices_of(&f, &p), 1, None);
        let attrs = list(&slices[0].spec.devices)[0].attributes.as_ref().unwrap();
        assert!(!attrs.contains_key(attr::PHYSICAL_NETWORK) && attrs.contains_key(attr::POOL));
    }

    #[test]
    fn same_content_ignores_server_metadata_order_and_generation() {
        let f = FixtureBuilder::many(2, 130).build().unwrap();
        let pool = pool("");
        let devices = devices_of(&f, &pool);
        let ours = build(NODE, &pool, &devices, 1, Some(owner()));
        // As the API server lists them: its metadata added, another generation, reversed.
        let mut served: Vec<ResourceSlice> = build(NODE, &pool, &devices, 5, Some(owner()));
        for s in &mut served {
            s.metadata.resource_version = Some("4711".into());
            s.metadata.uid = Some("u".into());
            s.metadata.generation = Some(3);
        }
        served.reverse();
        assert!(same_content(&ours, &served));
        assert!(!same_content(&ours, &served[..1]));
        assert!(!same_content(&ours, &build(NODE, &pool, &devices, 1, None)), "owner differs");
        assert!(!same_content(&ours, &build("node-2", &pool, &devices, 1, Some(owner()))));
        let mut fewer = devices.clone();
        fewer.devices.pop();
        assert!(!same_content(&ours, &build(NODE, &pool, &fewer, 1, Some(owner()))));
        // An empty pool, as served: the empty list dropped.
        let mut empty = build(NODE, &pool, &PoolDevices::default(), 1, None);
        let served_empty = empty.clone();
        empty[0].spec.devices = Some(Vec::new());
        assert!(same_content(&empty, &served_empty));
    }

    #[test]
    fn serializes_as_a_v1_resource_slice() {
        let f = FixtureBuilder::many(1, 2).build().unwrap();
        let pool = pool("");
        let slices = build(NODE, &pool, &devices_of(&f, &pool), 1, Some(owner()));
        let json = serde_json::to_value(&slices[0]).unwrap();
        assert_eq!(json["apiVersion"], "resource.k8s.io/v1");
        assert_eq!(json["kind"], "ResourceSlice");
        assert_eq!(json["metadata"]["name"], "node-1-vfnet.dev-tenant-a-0");
        assert_eq!(json["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(json["spec"]["driver"], "vfnet.dev");
        assert_eq!(json["spec"]["nodeName"], NODE);
        assert_eq!(
            json["spec"]["pool"],
            serde_json::json!({"name": "node-1/tenant-a", "generation": 1, "resourceSliceCount": 1})
        );
        let device = &json["spec"]["devices"][0];
        assert_eq!(device["name"], "vf-0000-11-00-0");
        assert_eq!(
            device["attributes"]["resource.kubernetes.io/pciBusID"],
            serde_json::json!({"string": "0000:11:00.0"})
        );
        assert_eq!(device["attributes"]["vfIndex"], serde_json::json!({"int": 0}));
        assert_eq!(device["attributes"]["healthy"], serde_json::json!({"bool": true}));
        let back: ResourceSlice = serde_json::from_value(json).unwrap();
        assert_eq!(back, slices[0]);
        // An empty pool's slice has no devices key at all.
        let empty = serde_json::to_value(&build(NODE, &pool, &PoolDevices::default(), 1, None)[0]).unwrap();
        assert!(empty["spec"].get("devices").is_none(), "{empty}");
    }
}
