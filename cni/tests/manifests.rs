//! The example network definitions in `manifests/examples/` work with this plugin: each
//! NetworkAttachmentDefinition's `spec.config` parses as a vfnet configuration, names an example
//! VfProfile that governs it without contradiction for the pods that use it, and asks (through
//! `k8s.v1.cni.cncf.io/resourceName`) for an example pool whose device type fits its vnicType;
//! every example pod requests the resource of each network it names. The DRA example
//! (`dra.yaml`) instead: its classes' and template's opaque VfConfigs parse, merge and are governed
//! by its profile and pools for the tenant's namespace, and refused for another.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crds::{VfPool, VfProfile};
use serde_json::Value;
use sriov::record::DeviceType;
use vfnet_cni::config::{NetConf, VnicType};
use vfnet_cni::policy;

const RESOURCE_ANNOTATION: &str = "k8s.v1.cni.cncf.io/resourceName";
const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";

/// The DRA example, apart: its network names no resource and its pods request claims.
const DRA_EXAMPLE: &str = "dra.yaml";

/// Every document of every example file but the DRA one.
fn documents() -> Vec<Value> {
    examples(|name| name != DRA_EXAMPLE)
}

/// Every document of the example files whose names `pick` takes.
fn examples(pick: impl Fn(&str) -> bool) -> Vec<Value> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("manifests/examples exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&pick))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).expect("readable");
            let docs: Vec<Value> =
                serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", file.display()));
            docs.into_iter().filter(|d| !d.is_null())
        })
        .collect()
}

fn str_at<'a>(doc: &'a Value, pointer: &str) -> &'a str {
    doc.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// A network definition, its parsed config and its resource.
struct Network {
    namespace: String,
    name: String,
    conf: NetConf,
    vnic: VnicType,
    resource: String,
}

fn networks(docs: &[Value]) -> Vec<Network> {
    docs.iter()
        .filter(|d| d["kind"] == "NetworkAttachmentDefinition")
        .map(|d| {
            assert_eq!(d["apiVersion"], "k8s.cni.cncf.io/v1");
            let (namespace, name) = (str_at(d, "/metadata/namespace"), str_at(d, "/metadata/name"));
            let config = str_at(d, "/spec/config");
            let raw: Value = serde_json::from_str(config).unwrap_or_else(|e| panic!("{name}: config is not JSON: {e}"));
            assert_eq!(raw["type"], "vfnet", "{name}");
            assert_eq!(raw["name"], name, "{name}: the config's name is the definition's");
            // As a node without overrides reads it: the examples are what tenants may write.
            let conf =
                NetConf::parse(config.as_bytes(), &BTreeMap::new(), &vfnet_cni::node_config::NodeConfig::default())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            let vnic = conf.vnic_type.unwrap_or_else(|| panic!("{name}: the examples say their vnicType"));
            let resource = d["metadata"]["annotations"][RESOURCE_ANNOTATION]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no {RESOURCE_ANNOTATION} annotation"))
                .to_owned();
            Network { namespace: namespace.to_owned(), name: name.to_owned(), conf, vnic, resource }
        })
        .collect()
}

#[test]
fn example_networks_parse_and_fit_their_profiles_and_pools() {
    let docs = documents();
    let profiles: BTreeMap<String, VfProfile> = docs
        .iter()
        .filter(|d| d["kind"] == "VfProfile")
        .map(|d| {
            let p: VfProfile = serde_json::from_value(d.clone()).expect("a VfProfile");
            (p.name().to_owned(), p)
        })
        .collect();
    let pools: BTreeMap<String, VfPool> = docs
        .iter()
        .filter(|d| d["kind"] == "VfPool")
        .map(|d| {
            let p: VfPool = serde_json::from_value(d.clone()).expect("a VfPool");
            (format!("vfnet.dev/{}", p.spec.resource_name), p)
        })
        .collect();
    let networks = networks(&docs);
    let vnics: BTreeSet<String> = networks.iter().map(|n| format!("{:?}", n.vnic)).collect();
    assert_eq!(vnics, ["Direct", "Macvtap", "Userspace"].map(str::to_owned).into(), "one network per vnic type");

    for net in &networks {
        let profile_name = net.conf.profile.as_deref().unwrap_or_else(|| panic!("{}: names no profile", net.name));
        let profile =
            profiles.get(profile_name).unwrap_or_else(|| panic!("{}: no example profile {profile_name}", net.name));
        policy::resolve(&net.conf, Some(profile), Some(&net.namespace))
            .unwrap_or_else(|e| panic!("{} under {profile_name}: {e}", net.name));
        let pool =
            pools.get(&net.resource).unwrap_or_else(|| panic!("{}: no example pool for {}", net.name, net.resource));
        let want = if net.vnic == VnicType::Userspace { DeviceType::VfioPci } else { DeviceType::Netdevice };
        assert_eq!(pool.spec.device_type, want, "{}: pool {} for vnicType {:?}", net.name, net.resource, net.vnic);
        assert_eq!(pool.spec.physical_network, profile.spec.physical_network, "{}", net.name);
    }
}

#[test]
fn example_pods_request_what_their_networks_need() {
    let docs = documents();
    let networks = networks(&docs);
    let pods: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Pod").collect();
    assert!(pods.len() >= 3);
    let mut used = BTreeSet::new();
    for pod in pods {
        let (namespace, name) = (str_at(pod, "/metadata/namespace"), str_at(pod, "/metadata/name"));
        let annotation = pod["metadata"]["annotations"][NETWORKS_ANNOTATION].as_str().unwrap_or_default();
        let selections: Vec<Value> =
            serde_json::from_str(annotation).unwrap_or_else(|e| panic!("{name}: {NETWORKS_ANNOTATION}: {e}"));
        let mut wanted: BTreeMap<String, u64> = BTreeMap::new();
        for sel in &selections {
            let net_ns = sel["namespace"].as_str().unwrap_or(namespace);
            let net_name = sel["name"].as_str().unwrap_or_default();
            let net = networks
                .iter()
                .find(|n| n.namespace == net_ns && n.name == net_name)
                .unwrap_or_else(|| panic!("{name}: no network {net_ns}/{net_name}"));
            *wanted.entry(net.resource.clone()).or_default() += 1;
            used.insert(net_name.to_owned());
        }
        let container = &pod["spec"]["containers"][0]["resources"];
        for (resource, count) in wanted {
            for part in ["requests", "limits"] {
                let got = container[part][&resource].as_str().and_then(|s| s.parse::<u64>().ok());
                assert_eq!(got, Some(count), "{name}: {part}.{resource}");
            }
        }
    }
    assert_eq!(used.len(), networks.len(), "every example network is used by a pod");
}

#[test]
fn the_dra_example_is_governed_for_its_tenant_and_refused_for_another() {
    use crds::vfconfig::{self, ConfigSource};
    let docs = examples(|name| name == DRA_EXAMPLE);
    let of_kind = |kind: &'static str| docs.iter().filter(move |d| d["kind"] == kind);
    let profile: VfProfile = serde_json::from_value(of_kind("VfProfile").next().expect("a profile").clone()).unwrap();
    let pools: BTreeMap<String, VfPool> = of_kind("VfPool")
        .map(|d| {
            let p: VfPool = serde_json::from_value(d.clone()).unwrap();
            (p.spec.physical_network.clone().unwrap_or_default(), p)
        })
        .collect();
    let template = of_kind("ResourceClaimTemplate").next().expect("a template");
    let claim_config = &template["spec"]["spec"]["devices"]["config"][0]["opaque"]["parameters"];
    let subrequests = template["spec"]["spec"]["devices"]["requests"][0]["firstAvailable"].as_array().unwrap();
    assert_eq!(subrequests.len(), 2, "physnet1 first, physnet2 as the fallback");
    for sub in subrequests {
        let class_name = sub["deviceClassName"].as_str().unwrap();
        let class = of_kind("DeviceClass").find(|c| c["metadata"]["name"] == class_name).expect("the class");
        let physnet = class_name.trim_start_matches("vfnet-");
        let cel = class["spec"]["selectors"][0]["cel"]["expression"].as_str().unwrap();
        assert!(cel.contains(&format!("physicalNetwork == \"{physnet}\"")) && cel.contains("healthy == true"), "{cel}");
        let source = ConfigSource::Class(class_name.to_owned());
        let class_config =
            vfconfig::parse(&class["spec"]["config"][0]["opaque"]["parameters"], source.clone()).unwrap();
        let merged = vfconfig::merge(&[
            (source, class_config),
            (ConfigSource::Claim, vfconfig::parse(claim_config, ConfigSource::Claim).unwrap()),
        ])
        .unwrap();
        let pool = &pools[physnet];
        let governed =
            vfconfig::govern(&merged, pool.metadata.name.as_deref().unwrap(), &pool.spec, Some(&profile), "tenant-a")
                .unwrap_or_else(|e| panic!("{class_name}: {e}"));
        assert_eq!((governed.profile.as_deref(), governed.vlan), (Some("tenant-a-dra"), Some(112)));
        let refused = vfconfig::govern(&merged, "p", &pool.spec, Some(&profile), "tenant-b").unwrap_err();
        assert_eq!(refused.code(), 102, "{refused}");
        assert!(refused.to_string().contains("may not use VfProfile tenant-a-dra"), "{refused}");
    }
    // The network definition names no resource: the VF comes from the pod's claim.
    let nad = of_kind("NetworkAttachmentDefinition").next().expect("a network");
    assert!(nad["metadata"]["annotations"][RESOURCE_ANNOTATION].is_null());
    let conf = NetConf::parse(
        str_at(nad, "/spec/config").as_bytes(),
        &BTreeMap::new(),
        &vfnet_cni::node_config::NodeConfig::default(),
    )
    .unwrap();
    assert!(conf.device_id.is_none() && conf.resource_name.is_none() && conf.profile.is_none());
}
