//! Tenants write network definitions; the plugin runs as root. On a node with an admin's node
//! configuration, nothing in a definition picks a host path the plugin reads or writes, and a VF
//! of a pool that requires profiles is configured by profiles only. Each forged file below would
//! change the outcome if it were read: with overrides allowed, it does.

#![allow(clippy::unwrap_used)] // test helpers panic on broken fixtures by design

mod common;

use std::path::{Path, PathBuf};

use common::{Rig, merge};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A directory outside everything the node configuration names, where a tenant would point.
fn outside(rig: &Rig) -> PathBuf {
    let dir = rig.dir.path().join("elsewhere");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn forged_profile(dir: &Path, name: &str, vlan: u16) {
    std::fs::create_dir_all(dir).unwrap();
    let obj = json!({"apiVersion": "vfnet.dev/v1alpha1", "kind": "VfProfile", "metadata": {"name": name},
        "spec": {"vlan": vlan}});
    std::fs::write(dir.join(format!("{name}.json")), obj.to_string()).unwrap();
}

#[test]
fn a_forged_profile_directory_is_never_read() {
    let rig = Rig::new();
    rig.admin_node(false);
    let vf = rig.vf(1);
    // The admin's profile allows only tenant-a; the forged one would let anyone have VLAN 999.
    rig.profile("tenant-a", json!({"vlan": 100, "allowedNamespaces": ["tenant-a"]}));
    let forged = outside(&rig).join("profiles");
    forged_profile(&forged, "tenant-a", 999);
    let conf = rig.tenant_conf(vf, json!({"profile": "tenant-a", "profileDir": forged}));
    let pod = [("CNI_ARGS", "K8S_POD_NAMESPACE=tenant-b;K8S_POD_NAME=p")];
    let before = rig.host.snapshot();
    rig.exec("ADD", &conf, &pod).fails(7, &["invalid profileDir: set by the node configuration", "key profileDir"]);
    assert_eq!(rig.host.snapshot(), before, "the refused ADD touched the node");
    // Without the key, the admin's profile governs: tenant-b may not use it.
    let conf = rig.tenant_conf(vf, json!({"profile": "tenant-a"}));
    rig.exec("ADD", &conf, &pod).fails(102, &["namespace tenant-b may not use VfProfile tenant-a"]);
    // Where overrides are allowed the forged file is read: it would have changed the outcome.
    let mut open = rig.admin_node(false);
    open.allow_network_overrides = true;
    rig.host.set_node_config(open);
    let conf = rig.tenant_conf(vf, json!({"profile": "tenant-a", "profileDir": forged}));
    rig.exec("ADD", &conf, &pod).ok();
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().vlan, 999);
    rig.exec("DEL", &conf, &pod).ok();
}

#[test]
fn a_forged_device_record_directory_is_never_read() {
    let rig = Rig::new();
    rig.admin_node(false);
    let vf = rig.vf(1);
    rig.profile("tenant-a", json!({"vlan": 100, "physicalNetwork": "physnet1"}));
    // The VF's real record says physnet2; the forged run directory says physnet1.
    rig.pool_record(vf, Some("physnet2"), false, None);
    let forged = outside(&rig).join("run");
    let real_run = rig.run_dir();
    std::fs::create_dir_all(forged.join("devices")).unwrap();
    std::fs::copy(real_run.device_record(&vf), forged.join("devices").join(format!("{vf}.json"))).unwrap();
    let text = std::fs::read_to_string(forged.join("devices").join(format!("{vf}.json"))).unwrap();
    std::fs::write(forged.join("devices").join(format!("{vf}.json")), text.replace("physnet2", "physnet1")).unwrap();
    let conf = rig.tenant_conf(vf, json!({"profile": "tenant-a", "runDir": forged}));
    rig.exec("ADD", &conf, &[]).fails(7, &["invalid runDir: set by the node configuration"]);
    let conf = rig.tenant_conf(vf, json!({"profile": "tenant-a"}));
    rig.exec("ADD", &conf, &[]).fails(103, &["is on physical network physnet2"]);
    assert!(rig.journal(vf).is_none());
}

#[test]
fn every_node_key_and_kubeconfig_are_refused_naming_the_key() {
    let rig = Rig::new();
    let node = rig.admin_node(false);
    let vf = rig.vf(0);
    let there = outside(&rig);
    for key in ["stateDir", "runDir", "profileDir", "logFile", "podResourcesSocket"] {
        let conf = rig.tenant_conf(vf, json!({key: there.join(key)}));
        rig.exec("ADD", &conf, &[])
            .fails(7, &[&format!("invalid {key}: set by the node configuration ({}, key {key})", node.path.display())]);
    }
    let conf = rig.tenant_conf(vf, json!({"kubeconfig": there.join("kubeconfig")}));
    rig.exec("ADD", &conf, &[]).fails(7, &["invalid kubeconfig"]);
    assert_eq!(std::fs::read_dir(&there).unwrap().count(), 0, "nothing was created where the definition pointed");
}

#[test]
fn a_pool_that_requires_profiles_refuses_raw_settings_and_other_profiles() {
    let rig = Rig::new();
    rig.admin_node(true);
    let vf = rig.vf(1);
    rig.profile("tenant-a", json!({"vlan": 100}));
    rig.profile("tenant-b", json!({"vlan": 200}));
    let before = rig.host.snapshot();
    // requireDeviceRecords: a VF without a record is refused.
    rig.exec("ADD", &rig.tenant_conf(vf, json!({"profile": "tenant-a"})), &[])
        .fails(103, &["has no device record", "requireDeviceRecords"]);
    rig.pool_record(vf, None, true, Some(&["tenant-a"]));
    rig.exec("ADD", &rig.tenant_conf(vf, json!({"vlan": 200})), &[])
        .fails(7, &["network definition key vlan is refused", "pool vfnet.dev/pool-a", "requireProfile"]);
    rig.exec("ADD", &rig.tenant_conf(vf, json!({"profile": "tenant-a", "trust": "on"})), &[])
        .fails(7, &["network definition key trust is refused"]);
    rig.exec("ADD", &rig.tenant_conf(vf, json!({})), &[]).fails(7, &["invalid profile: missing"]);
    rig.exec("ADD", &rig.tenant_conf(vf, json!({"profile": "tenant-b"})), &[])
        .fails(114, &["VfProfile tenant-b is not allowed on pool vfnet.dev/pool-a"]);
    assert_eq!(rig.host.snapshot(), before, "refused ADDs touched the node");
    let own = rig.tenant_conf(vf, json!({"profile": "tenant-a"}));
    rig.exec("ADD", &own, &[]).ok();
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().vlan, 100);
    rig.exec("DEL", &own, &[]).ok();
    // A pool without the rule: the same raw definition works (sriov-cni's drop-in).
    rig.pool_record(vf, None, false, None);
    let raw = rig.tenant_conf(vf, json!({"vlan": 200}));
    rig.exec("ADD", &raw, &[]).ok();
    assert_eq!(rig.host.vf_state("pf0", 1).unwrap().vlan, 200);
    rig.exec("DEL", &raw, &[]).ok();
    assert_eq!(rig.host.snapshot(), before);
}

/// Keys a tenant might try, each with values of every shape.
const KEYS: &[&str] = &[
    "stateDir",
    "runDir",
    "profileDir",
    "logFile",
    "podResourcesSocket",
    "kubeconfig",
    "profile",
    "deviceID",
    "pciBusID",
    "vlan",
    "vlanQoS",
    "vlanProto",
    "mac",
    "spoofchk",
    "trust",
    "link_state",
    "min_tx_rate",
    "max_tx_rate",
    "mtu",
    "vnicType",
    "macvtapMode",
    "resourceName",
    "logLevel",
    "logFormat",
    "ipamTimeout",
    "ipam",
    "runtimeConfig",
    "args",
    "prevResult",
    "cni.dev/valid-attachments",
    "cniVersion",
    "name",
];

fn value(there: String) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0i64..5000).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "1.1.0",
            "1.0.0",
            "0.3.1",
            "on",
            "off",
            "direct",
            "macvtap",
            "userspace",
            "802.1ad",
            "host-local",
            "0000:02:00.1",
            "02:00:00:00:00:01",
            "tenant-a",
            "../../etc",
            "json",
            "debug",
        ])
        .prop_map(Value::from),
        "[a-z./]{0,10}".prop_map(move |tail| Value::from(format!("{there}/{tail}"))),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// Keys and values to merge, CNI_COMMAND, CNI_ARGS, and garbage stdin instead of the config.
type Case = (Vec<(&'static str, Value)>, &'static str, String, Option<Vec<u8>>);

fn case() -> impl Strategy<Value = Case> {
    let there = "/THERE".to_owned();
    (
        prop::collection::vec((prop::sample::select(KEYS), value(there)), 0..8),
        prop::sample::select(vec!["ADD", "ADD", "ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", "add", ""]),
        prop_oneof![
            3 => Just("IgnoreUnknown=1;K8S_POD_NAMESPACE=tenant-a;K8S_POD_NAME=p".to_owned()),
            1 => Just(String::new()),
            1 => "[A-Za-z0-9=;_/.-]{0,30}",
        ],
        prop::option::weighted(0.1, prop::collection::vec(any::<u8>(), 0..40)),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Mutated network configurations, environments and stdin: no panic (proptest reports one as
    /// a failure), and nothing created outside the node configuration's directories.
    #[test]
    fn mutated_inputs_never_panic_nor_escape_the_node_directories(
        (keys, command, args, garbage) in case()
    ) {
        let rig = Rig::new();
        rig.admin_node(false);
        rig.profile("tenant-a", json!({"vlan": 100}));
        let there = outside(&rig);
        let mut conf = rig.tenant_conf(rig.vf(1), json!({"profile": "tenant-a"}));
        for (key, v) in keys {
            // Values pointing at the placeholder point into the watched directory.
            let v: Value = serde_json::from_str(&v.to_string().replace("/THERE", &there.display().to_string())).unwrap();
            merge(&mut conf, json!({key: v}));
        }
        let stdin = garbage.unwrap_or_else(|| serde_json::to_vec(&conf).unwrap());
        let stdin_text = String::from_utf8_lossy(&stdin).into_owned();
        let env = [("CNI_COMMAND", command), ("CNI_ARGS", args.as_str())];
        let mut vars: std::collections::BTreeMap<&str, String> = [
            ("CNI_CONTAINERID", "ctr-fuzz".to_owned()),
            ("CNI_NETNS", rig.netns.display().to_string()),
            ("CNI_IFNAME", "net1".to_owned()),
            ("CNI_PATH", rig.bin_dir().display().to_string()),
        ]
        .into_iter()
        .collect();
        for (k, v) in env {
            vars.insert(k, v.to_owned());
        }
        let out = vfnet_cni::run(&rig.host, |k| vars.get(k).cloned(), &stdin);
        // Whatever happened, stdout is one JSON object or nothing.
        prop_assert!(out.stdout.is_empty() || serde_json::from_str::<Value>(&out.stdout).is_ok(), "{}", out.stdout);
        let created: Vec<_> = walk(&there);
        prop_assert!(created.is_empty(), "created {created:?} for {stdin_text}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path());
    }
    out
}
