//! The pools file (`--pools`): `VfPool` objects in YAML or JSON, checked as a whole before any of
//! it is used.
//!
//! The file holds either a list of `VfPool` objects, a `List` object with `items` (what
//! `kubectl get vfpools -o yaml` prints), or one `VfPool` object. Every error names the file and
//! the place: a line and column for syntax and unknown keys, `pools[i] (name)` and the key for
//! rule violations.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crds::pool::{PoolMeta, PoolObject as VfPool, PoolSpecError, VfPoolSpec};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use sriov::sysfs::Node;
use vfnet_types::range::VfRangeError;

use crate::selector::Selector;

/// Why a pools file cannot be used. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PoolsError {
    /// The file cannot be read.
    #[error("cannot read pools file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid YAML or JSON, or does not have the shape of pools (unknown or
    /// missing keys, wrong types). The message carries the line and column.
    #[error("pools file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A pool breaks a rule.
    #[error("pools file {path}: pools[{index}] ({name}): {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The pool's position in the file.
        index: usize,
        /// The pool's name.
        name: String,
        /// Which key, and what is wrong.
        source: PoolSpecError,
    },
    /// Two pools share a name or a resource name.
    #[error("pools file {path}: pools[{second}] has {key} {value:?}, as pools[{first}] has")]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// `metadata.name` or `spec.resourceName`.
        key: &'static str,
        /// The shared value.
        value: String,
        /// The first pool with it.
        first: usize,
        /// The second one.
        second: usize,
    },
    /// A VF range names VFs a PF of this node can never have.
    #[error("pools file {path}: pools[{index}] ({name}): {key}: {source}")]
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// The pool's position.
        index: usize,
        /// The pool's name.
        name: String,
        /// The selector entry (`spec.selector.pfNames[0]`).
        key: String,
        /// The range and the PF's `sriov_totalvfs`.
        source: Box<VfRangeError>,
    },
}

/// A validated pool, ready to match VFs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// `metadata.name`.
    pub name: String,
    /// Position in the file (for messages).
    pub index: usize,
    /// The spec as written.
    pub spec: VfPoolSpec,
    /// `<prefix>/<resourceName>`: what kubelet knows the pool as.
    pub resource: String,
    /// The compiled selector.
    pub selector: Selector,
}

impl Pool {
    /// The socket file name in the device-plugins directory: `vfnet-<resourceName>.sock`
    /// (unique: resource names are unique within a file and carry no `/`).
    pub fn socket_name(&self) -> String {
        format!("vfnet-{}.sock", self.spec.resource_name)
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.resource)
    }
}

/// Reads and checks a pools file. `prefix` is the resource prefix (`vfnet.dev`).
pub fn load(path: &Path, prefix: &str) -> Result<Vec<Arc<Pool>>, PoolsError> {
    let text = std::fs::read_to_string(path).map_err(|source| PoolsError::Read { path: path.to_owned(), source })?;
    parse(&text, path, prefix)
}

/// Parses and checks the text of a pools file; `path` is only used in messages.
pub fn parse(text: &str, path: &Path, prefix: &str) -> Result<Vec<Arc<Pool>>, PoolsError> {
    let syntax = |message: String| PoolsError::Syntax { path: path.to_owned(), message };
    let looks_json = text.trim_start().starts_with(['{', '[']);
    let doc: PoolsDocument = if looks_json {
        serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| syntax(e.to_string()))?
    };
    let mut pools = Vec::with_capacity(doc.0.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut resources: HashMap<String, usize> = HashMap::new();
    for (index, pool) in doc.0.into_iter().enumerate() {
        let invalid = |source: PoolSpecError| PoolsError::Invalid {
            path: path.to_owned(),
            index,
            name: pool.metadata.name.clone(),
            source,
        };
        pool.validate().map_err(invalid)?;
        let selector = Selector::compile(&pool.spec.selector).map_err(invalid)?;
        let duplicate = |key, value: &str, first| PoolsError::Duplicate {
            path: path.to_owned(),
            key,
            value: value.to_owned(),
            first,
            second: index,
        };
        if let Some(&first) = names.get(&pool.metadata.name) {
            return Err(duplicate("metadata.name", &pool.metadata.name, first));
        }
        if let Some(&first) = resources.get(&pool.spec.resource_name) {
            return Err(duplicate("spec.resourceName", &pool.spec.resource_name, first));
        }
        names.insert(pool.metadata.name.clone(), index);
        resources.insert(pool.spec.resource_name.clone(), index);
        let resource = format!("{prefix}/{}", pool.spec.resource_name);
        pools.push(Arc::new(Pool { name: pool.metadata.name, index, spec: pool.spec, resource, selector }));
    }
    Ok(pools)
}

/// Checks the pools' VF ranges against the PFs of `node` they name: a range beyond a PF's
/// `sriov_totalvfs` can never select anything and is a mistake. PFs the node does not have are
/// not an error (pools are cluster-wide).
pub fn check_against_node(pools: &[Arc<Pool>], node: &Node, path: &Path) -> Result<(), PoolsError> {
    for pool in pools {
        if let Some((key, source)) = out_of_range(pool, node) {
            return Err(PoolsError::OutOfRange {
                path: path.to_owned(),
                index: pool.index,
                name: pool.name.clone(),
                key,
                source: Box::new(source),
            });
        }
    }
    Ok(())
}

/// The first VF range of `pool` that names VFs a PF of `node` can never have: the selector key
/// and the error.
pub fn out_of_range(pool: &Pool, node: &Node) -> Option<(String, VfRangeError)> {
    node.pfs.iter().find_map(|pf| pool.selector.range_error(pf))
}

/// A `VfPool` the API server serves, as the cluster sync hands it to the daemon: its name, and
/// the object in pools-file form or why it could not be read as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPool {
    /// `metadata.name`.
    pub name: String,
    /// The object, or what is wrong with it (naming the key).
    pub object: Result<VfPool, String>,
}

/// A pool set aside: its name and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The pool's name.
    pub name: String,
    /// What is wrong, naming the key.
    pub reason: String,
}

/// Checks pools served by the API server one by one. Unlike a pools file, where the first
/// problem refuses the whole file, a bad pool is set aside with its reason and the others are
/// used; of two pools with one `resourceName`, the first (in the given order) wins. Returns the
/// usable pools and the refused ones.
pub fn from_cluster(pools: &[ClusterPool], prefix: &str) -> (Vec<Arc<Pool>>, Vec<Refused>) {
    let mut usable: Vec<Arc<Pool>> = Vec::with_capacity(pools.len());
    let mut refused = Vec::new();
    for cp in pools {
        let checked = cp.object.clone().and_then(|pool| {
            pool.validate().map_err(|e| e.to_string())?;
            let selector = Selector::compile(&pool.spec.selector).map_err(|e| e.to_string())?;
            if let Some(other) = usable.iter().find(|p| p.spec.resource_name == pool.spec.resource_name) {
                return Err(format!(
                    "spec.resourceName: {:?} is also the resource of pool {} on this node",
                    pool.spec.resource_name, other.name
                ));
            }
            let resource = format!("{prefix}/{}", pool.spec.resource_name);
            // Cluster pools have no position: index 0 keeps a pool equal to itself as others come
            // and go.
            Ok(Pool { name: pool.metadata.name, index: 0, spec: pool.spec, resource, selector })
        });
        match checked {
            Ok(pool) => usable.push(Arc::new(pool)),
            Err(reason) => refused.push(Refused { name: cp.name.clone(), reason }),
        }
    }
    (usable, refused)
}

/// The pools-file form of `pools` (what [`parse`] reads back): the daemon's cache of the cluster
/// pools it serves.
pub fn to_objects(pools: &[Arc<Pool>]) -> Vec<VfPool> {
    pools
        .iter()
        .map(|p| VfPool {
            api_version: format!("{}/{}", crds::GROUP, crds::VERSION),
            kind: crds::pool::KIND.to_owned(),
            metadata: PoolMeta { name: p.name.clone(), other: BTreeMap::new() },
            spec: p.spec.clone(),
            status: None,
        })
        .collect()
}

/// The pools of a file, whatever its shape.
#[derive(Debug)]
struct PoolsDocument(Vec<VfPool>);

impl<'de> Deserialize<'de> for PoolsDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DocumentVisitor)
    }
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = PoolsDocument;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of VfPool objects, a List with `items`, or one VfPool object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        // An empty YAML document: no pools.
        Ok(PoolsDocument(Vec::new()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut pools = Vec::new();
        while let Some(pool) = seq.next_element::<VfPool>()? {
            pools.push(pool);
        }
        Ok(PoolsDocument(pools))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        const KEYS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "items", "status"];
        let mut api_version = String::new();
        let mut kind = String::new();
        let mut metadata: Option<BTreeMap<String, serde_json::Value>> = None;
        let mut spec: Option<VfPoolSpec> = None;
        let mut items: Option<Vec<VfPool>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "apiVersion" => api_version = map.next_value()?,
                "kind" => kind = map.next_value()?,
                "metadata" => metadata = Some(map.next_value()?),
                "spec" => spec = Some(map.next_value()?),
                "items" => items = Some(map.next_value()?),
                "status" => {
                    map.next_value::<IgnoredAny>()?;
                }
                other => return Err(de::Error::unknown_field(other, KEYS)),
            }
        }
        match (items, spec) {
            (Some(items), None) => Ok(PoolsDocument(items)),
            (None, Some(spec)) => {
                let metadata = metadata.ok_or_else(|| de::Error::missing_field("metadata"))?;
                let metadata: PoolMeta = serde_json::to_value(metadata)
                    .and_then(serde_json::from_value)
                    .map_err(|e| de::Error::custom(format!("metadata: {e}")))?;
                Ok(PoolsDocument(vec![VfPool { api_version, kind, metadata, spec, status: None }]))
            }
            (Some(_), Some(_)) => Err(de::Error::custom("both `items` and `spec`: a List or a VfPool, not both")),
            (None, None) => Err(de::Error::custom("neither `items` (a List of VfPool) nor `spec` (a VfPool)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
- metadata: {name: tenant-a}
  spec:
    resourceName: tenant_a
    physicalNetwork: physnet1
    selector:
      pfNames: ['eth0#0-3,6']
- apiVersion: vfnet.dev/v1alpha1
  kind: VfPool
  metadata: {name: dpdk}
  spec:
    resourceName: dpdk
    deviceType: vfio-pci
    allocationPolicy: pack
    selector: {drivers: [vfio-pci]}
";

    fn p(text: &str) -> Result<Vec<Arc<Pool>>, PoolsError> {
        parse(text, Path::new("/etc/pools.yaml"), "vfnet.dev")
    }

    #[test]
    fn reads_a_yaml_list() {
        let pools = p(YAML).unwrap();
        assert_eq!(pools.len(), 2);
        assert_eq!(pools[0].resource, "vfnet.dev/tenant_a");
        assert_eq!(pools[0].socket_name(), "vfnet-tenant_a.sock");
        assert_eq!(pools[1].spec.device_type, vfnet_types::DeviceType::VfioPci);
        assert_eq!(pools[1].index, 1);
    }

    #[test]
    fn reads_json_a_list_object_and_a_single_object() {
        let json = r#"{"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
            "items": [{"metadata": {"name": "a"}, "spec": {"resourceName": "a"}}]}"#;
        assert_eq!(p(json).unwrap()[0].name, "a");
        let single =
            "apiVersion: vfnet.dev/v1alpha1\nkind: VfPool\nmetadata:\n  name: b\n  uid: x\nspec:\n  resourceName: b\n";
        assert_eq!(p(single).unwrap()[0].name, "b");
        assert!(p("").unwrap().is_empty());
        assert!(p("[]").unwrap().is_empty());
    }

    #[test]
    fn errors_name_file_and_place() {
        let err = |text: &str| p(text).unwrap_err().to_string();
        let e = err("- metadata: {name: a}\n  spec:\n    resourceName: a\n    selector: {pfName: [eth0]}\n");
        assert!(e.starts_with("pools file /etc/pools.yaml:") && e.contains("pfName") && e.contains('4'), "{e}");
        let e = err("- metadata: {name: a}\n  spec: {resourceName: 'a/b'}\n");
        assert!(e.contains("pools[0] (a): spec.resourceName: \"a/b\""), "{e}");
        let e =
            err("- metadata: {name: a}\n  spec: {resourceName: a}\n- metadata: {name: a}\n  spec: {resourceName: b}\n");
        assert!(e.contains("pools[1] has metadata.name \"a\", as pools[0] has"), "{e}");
        let e =
            err("- metadata: {name: a}\n  spec: {resourceName: a}\n- metadata: {name: b}\n  spec: {resourceName: a}\n");
        assert!(e.contains("spec.resourceName"), "{e}");
        let e = err("- metadata: {name: a\n");
        assert!(e.starts_with("pools file /etc/pools.yaml:"), "{e}");
        let e = err(r#"[{"metadata": {"name": "a"}, "spec": {"resourceName": "a", "bogus": 1}}]"#);
        assert!(e.contains("unknown field `bogus`") && e.contains("line 1"), "{e}");
        let e =
            err("- metadata: {name: a}\n  spec: {resourceName: a, selector: {rootDevices: ['0000:01:00.0#9-2']}}\n");
        assert!(e.contains("spec.selector.rootDevices[0]") && e.contains("backwards"), "{e}");
        let e = err("foo: 1\n");
        assert!(e.contains("foo"), "{e}");
    }

    #[test]
    fn cluster_pools_are_checked_one_by_one() {
        let obj = |json: serde_json::Value| serde_json::from_value::<VfPool>(json).map_err(|e| e.to_string());
        let cp = |name: &str, object| ClusterPool { name: name.to_owned(), object };
        let pools = [
            cp("a", obj(serde_json::json!({"metadata": {"name": "a"}, "spec": {"resourceName": "net"}}))),
            cp("b", obj(serde_json::json!({"metadata": {"name": "b"}, "spec": {"resourceName": "a/b"}}))),
            cp("c", obj(serde_json::json!({"metadata": {"name": "c"}, "spec": {"resourceName": "net"}}))),
            cp("d", Err("unknown field `bogus`".to_owned())),
            cp("e", obj(serde_json::json!({"metadata": {"name": "e"}, "spec": {"resourceName": "e"}}))),
        ];
        let (usable, refused) = from_cluster(&pools, "vfnet.dev");
        let names: Vec<&str> = usable.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "e"]);
        assert_eq!(usable[0].resource, "vfnet.dev/net");
        let refused: Vec<(&str, &str)> = refused.iter().map(|r| (r.name.as_str(), r.reason.as_str())).collect();
        assert_eq!(refused.len(), 3);
        assert!(refused[0].0 == "b" && refused[0].1.starts_with("spec.resourceName: \"a/b\""), "{refused:?}");
        assert_eq!(refused[1], ("c", "spec.resourceName: \"net\" is also the resource of pool a on this node"));
        assert_eq!(refused[2], ("d", "unknown field `bogus`"));
        // The cache form reads back as a pools file.
        let text = serde_json::to_string(&to_objects(&usable)).unwrap();
        assert_eq!(
            p(&text).unwrap().iter().map(|p| (p.name.clone(), p.spec.clone())).collect::<Vec<_>>(),
            usable.iter().map(|p| (p.name.clone(), p.spec.clone())).collect::<Vec<_>>()
        );
    }

    #[test]
    fn ranges_are_checked_against_the_node() {
        let fixture = sriov::fixture::FixtureBuilder::new()
            .pf(sriov::fixture::PfSpec::igb("0000:00:09.0".parse().unwrap(), "eth0").vfs(7, 2))
            .build()
            .unwrap();
        let node = fixture.sysfs().discover().unwrap();
        let ok =
            p("- metadata: {name: a}\n  spec: {resourceName: a, selector: {pfNames: ['eth0#0-6', 'eth9#0-100']}}\n")
                .unwrap();
        check_against_node(&ok, &node, Path::new("/p")).unwrap();
        let bad = p("- metadata: {name: a}\n  spec: {resourceName: a, selector: {pfNames: ['eth0#0-7']}}\n").unwrap();
        let e = check_against_node(&bad, &node, Path::new("/p")).unwrap_err().to_string();
        assert!(e.contains("pools[0] (a): spec.selector.pfNames[0]: VF range 0-7 names VF 7"), "{e}");
    }
}
