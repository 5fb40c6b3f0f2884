//! The VfPool and VfProfile objects of `manifests/examples/`: each parses as its type (as the
//! device plugin and the CNI plugin read them), passes the node-side `validate()`, and passes the
//! CRD's CEL rules as the API server would evaluate them (kube-cel). Their OpenAPI schema side is
//! checked by `cargo xtask test` (the manifests phase, with jsonschema).

use std::path::{Path, PathBuf};

use crds::pool::PoolObject;
use crds::{VfPool, VfProfile};
use serde_json::Value;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples")
}

/// Every document of every example file, with the file's name.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("manifests/examples exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let name = file.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()).map(|d| (name.clone(), d)));
    }
    docs
}

fn of_kind(kind: &str) -> Vec<(String, Value)> {
    documents().into_iter().filter(|(_, d)| d["kind"] == kind).collect()
}

fn schema(kind: &str) -> Value {
    let crd = crds::crd::definitions().into_iter().find(|c| c.spec.names.kind == kind).expect("the CRD");
    serde_json::to_value(crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()))
        .expect("the schema serializes")
}

fn cel(kind: &str, object: &Value) -> Result<(), String> {
    kube::core::cel::Validator::new().validate(&schema(kind), object, None).map_err(|e| e.to_string())
}

#[test]
fn example_profiles_are_valid() {
    let profiles = of_kind("VfProfile");
    let names: Vec<&str> = profiles.iter().map(|(_, d)| d["metadata"]["name"].as_str().unwrap_or_default()).collect();
    assert_eq!(names, ["tenant-a-dra", "tenant-a", "tenant-b"], "dra.yaml's, then profiles.yaml's");
    for (file, doc) in &profiles {
        assert_eq!(doc["apiVersion"], "vfnet.dev/v1alpha1", "{file}");
        let profile: VfProfile =
            serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{file}: {}: {e}", names.join(",")));
        profile.spec.validate().unwrap_or_else(|e| panic!("{file}: {}: {e}", profile.name()));
        cel("VfProfile", doc).unwrap_or_else(|e| panic!("{file}: {}: {e}", profile.name()));
        // What the CNI plugin loads: the object as a profile file.
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join(format!("{}.json", profile.name())), doc.to_string()).expect("written");
        let loaded = VfProfile::load(&vfnet_types::ProfileDir::new(dir.path()), profile.name())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(loaded, profile);
    }
    let vlans: Vec<Option<u16>> = profiles
        .iter()
        .map(|(_, d)| serde_json::from_value::<VfProfile>(d.clone()).map(|p| p.spec.vlan).unwrap_or_default())
        .collect();
    assert_eq!(vlans, [Some(110), Some(100), Some(200)]);
}

#[test]
fn example_pools_are_valid() {
    let pools = of_kind("VfPool");
    assert!(!pools.is_empty());
    for (file, doc) in &pools {
        let pool: VfPool = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
        // The device plugin's strict reading (unknown keys refused) and its checks.
        let strict: PoolObject = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
        strict.validate().unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(PoolObject::from(&pool), PoolObject { status: None, ..strict });
        cel("VfPool", doc).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

/// Example-shaped profiles that break a cross-field rule: the CRD's CEL rules refuse each, as
/// the node-side check does.
#[test]
fn broken_example_profiles_are_refused() {
    let (_, base) = of_kind("VfProfile").into_iter().next().expect("a profile");
    let cases: [(&str, Value, &str); 4] = [
        ("vlanQoS without vlan", serde_json::json!({"vlan": null, "vlanQoS": 5}), "vlanQoS needs a non-zero vlan"),
        ("802.1ad on vlan 0", serde_json::json!({"vlan": 0, "vlanProto": "802.1ad"}), "802.1ad needs a non-zero vlan"),
        (
            "min rate above max",
            serde_json::json!({"minTxRateMbps": 2000, "maxTxRateMbps": 1000}),
            "minTxRateMbps must not be above maxTxRateMbps",
        ),
        ("backwards range", serde_json::json!({"podVlanRange": {"min": 120, "max": 110}}), "podVlanRange.min"),
    ];
    for (name, patch, needle) in cases {
        let mut doc = base.clone();
        for (key, value) in patch.as_object().into_iter().flatten() {
            match value {
                // null: remove the key (what the API server does with a null it may not keep).
                Value::Null => drop(doc["spec"].as_object_mut().and_then(|s| s.remove(key))),
                v => doc["spec"][key] = v.clone(),
            }
        }
        let e = cel("VfProfile", &doc).expect_err(name);
        assert!(e.contains(needle), "{name}: {e}");
        let profile: VfProfile = serde_json::from_value(doc).expect("still a VfProfile");
        assert!(profile.spec.validate().is_err(), "{name}: validate() accepts it");
    }
}

/// `allowedProfiles` without `requireProfile` would let a definition skip the profile the list is
/// meant to govern: the CRD's CEL rule refuses it, as the node-side check does.
#[test]
fn allowed_profiles_need_require_profile() {
    let (_, base) = of_kind("VfPool").into_iter().next().expect("a pool");
    cel("VfPool", &base).expect("the example requires profiles");
    for require in [Value::Null, Value::Bool(false)] {
        let mut doc = base.clone();
        match &require {
            Value::Null => drop(doc["spec"].as_object_mut().and_then(|s| s.remove("requireProfile"))),
            v => doc["spec"]["requireProfile"] = v.clone(),
        }
        let e = cel("VfPool", &doc).expect_err("allowedProfiles without requireProfile");
        assert!(e.contains("allowedProfiles needs requireProfile: true"), "{require}: {e}");
        let pool: PoolObject = serde_json::from_value(doc).expect("still a pool");
        let e = pool.validate().expect_err("validate() accepts it").to_string();
        assert!(e.contains("spec.allowedProfiles: needs requireProfile: true"), "{e}");
    }
    let mut open = base.clone();
    let spec = open["spec"].as_object_mut().expect("a spec");
    spec.remove("requireProfile");
    spec.remove("allowedProfiles");
    cel("VfPool", &open).expect("a pool without either is the single-tenant drop-in");
}
