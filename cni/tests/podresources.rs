//! `resourceName` without `deviceID`: the VF comes from kubelet's PodResources API (here an
//! in-repo fake kubelet speaking the real gRPC protocol on a unix socket), so Multus is not
//! required.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::Rig;
use kubelet_api::podresources::v1::{ContainerDevices, ContainerResources, PodResources};
use serde_json::json;
use vfnet_testkit::kubelet::FakePodResources;

/// Serves `pods` on `socket` from a thread of its own until the test process ends.
fn serve(socket: &Path, pods: Vec<PodResources>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let socket = socket.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let _server = FakePodResources::start(&socket, pods).unwrap();
            tx.send(()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap();
}

fn pod(namespace: &str, name: &str, resource: &str, devices: &[String]) -> PodResources {
    PodResources {
        name: name.into(),
        namespace: namespace.into(),
        containers: vec![ContainerResources {
            name: "app".into(),
            devices: vec![ContainerDevices {
                resource_name: resource.into(),
                device_ids: devices.to_vec(),
                topology: None,
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn resource_name_finds_the_pods_allocated_vf_through_kubelet() {
    let rig = Rig::new();
    let socket = rig.dir.path().join("pod-resources.sock");
    let (vf1, vf2) = (rig.vf(1).to_string(), rig.vf(2).to_string());
    serve(
        &socket,
        vec![
            pod("tenant-a", "web-0", "vfnet.dev/pool-a", &[vf2.clone(), vf1.clone()]),
            pod("tenant-b", "db-0", "vfnet.dev/pool-a", &[rig.vf(0).to_string()]),
        ],
    );
    let mut conf = rig.conf_for(rig.vf(1), json!({"resourceName": "vfnet.dev/pool-a", "podResourcesSocket": socket}));
    conf.as_object_mut().unwrap().remove("deviceID");
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=tenant-a;K8S_POD_NAME=web-0";

    // The pod's first VF in PCI order.
    let first = rig.exec("ADD", &conf, &[("CNI_ARGS", args)]).ok().clone();
    assert_eq!(first["interfaces"][0]["pciID"], vf1.as_str());
    // A second attachment of the same pod gets the other one.
    let netns = rig.netns.display().to_string();
    let second =
        rig.exec("ADD", &conf, &[("CNI_ARGS", args), ("CNI_IFNAME", "net2"), ("CNI_NETNS", &netns)]).ok().clone();
    assert_eq!(second["interfaces"][0]["pciID"], vf2.as_str());
    // DEL finds each attachment's VF from its journal, with kubelet no longer asked.
    rig.exec("DEL", &conf, &[("CNI_ARGS", args), ("CNI_IFNAME", "net2")]).ok();
    rig.exec("DEL", &conf, &[("CNI_ARGS", args)]).ok();
    assert!(rig.journal(rig.vf(1)).is_none() && rig.journal(rig.vf(2)).is_none());

    // A pod with no VF of that resource left, an unknown pod, a missing pod identity.
    let r = rig.exec("ADD", &conf, &[("CNI_ARGS", "K8S_POD_NAMESPACE=tenant-c;K8S_POD_NAME=x")]);
    r.fails(105, &["tenant-c/x", "vfnet.dev/pool-a"]);
    rig.exec("ADD", &conf, &[("CNI_ARGS", "")]).fails(4, &["K8S_POD_NAMESPACE", "resourceName"]);
    // kubelet not reachable: try again later.
    let mut gone = conf.clone();
    gone["podResourcesSocket"] = json!(rig.dir.path().join("nope.sock"));
    rig.exec("ADD", &gone, &[("CNI_ARGS", args)]).fails(11, &["nope.sock"]);
}
