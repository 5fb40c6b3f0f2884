//! The generated clients and servers over unix sockets, through the fakes: registration, and
//! the blocking pod resources helper the CNI plugin uses.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use kubelet_api::deviceplugin::v1beta1::registration_client::RegistrationClient;
use kubelet_api::deviceplugin::v1beta1::{DevicePluginOptions, RegisterRequest};
use kubelet_api::podresources::{self, v1};
use kubelet_api::uds;
use vfnet_testkit::kubelet::{FakeKubelet, FakePodResources};

fn request(resource: &str) -> RegisterRequest {
    RegisterRequest {
        version: kubelet_api::deviceplugin::VERSION.into(),
        endpoint: "p.sock".into(),
        resource_name: resource.into(),
        options: Some(DevicePluginOptions { pre_start_required: false, get_preferred_allocation_available: true }),
    }
}

#[tokio::test]
async fn registration_round_trip_and_kubelet_checks() {
    let dir = tempfile::tempdir().unwrap();
    let mut kubelet = FakeKubelet::start(dir.path()).unwrap();
    let mode = std::fs::metadata(kubelet.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut client = RegistrationClient::new(uds::connect(kubelet.socket()).await.unwrap());
    client.register(request("vfnet.dev/a")).await.unwrap();
    let bad = client.register(request("no-domain")).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let regs = kubelet.wait_for_registrations(1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(regs[0].resource_name, "vfnet.dev/a");
    assert!(regs[0].options.as_ref().unwrap().get_preferred_allocation_available);

    std::fs::write(dir.path().join("other.sock"), "").unwrap();
    kubelet.restart().await.unwrap();
    assert!(!dir.path().join("other.sock").exists(), "a restart empties the directory");
    let mut client = RegistrationClient::new(uds::connect(kubelet.socket()).await.unwrap());
    client.register(request("vfnet.dev/b")).await.unwrap();
    assert_eq!(kubelet.wait_for_registrations(2, Duration::from_secs(1)).await.unwrap().len(), 2);
    let socket = kubelet.socket();
    kubelet.stop().await;
    assert!(!socket.exists());
    assert!(uds::connect(&socket).await.unwrap_err().to_string().contains(&socket.display().to_string()));
}

fn pod(namespace: &str, name: &str, devices: &[(&str, &[&str])]) -> v1::PodResources {
    v1::PodResources {
        name: name.into(),
        namespace: namespace.into(),
        containers: vec![v1::ContainerResources {
            name: "c".into(),
            devices: devices
                .iter()
                .map(|(r, ids)| v1::ContainerDevices {
                    resource_name: (*r).into(),
                    device_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
                    topology: None,
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn allocated_devices_from_a_plain_caller() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let pods = vec![
        pod("ns", "web", &[("vfnet.dev/a", &["0000:01:00.3", "0000:01:00.1"]), ("vfnet.dev/b", &["0000:02:00.1"])]),
        pod("other", "web", &[("vfnet.dev/a", &["0000:01:00.2"])]),
    ];
    // The server runs on a runtime thread of its own; the caller is plain blocking code.
    let (ready, started) = std::sync::mpsc::channel();
    let at = socket.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let _server = FakePodResources::start(&at, pods).unwrap();
            ready.send(()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    started.recv().unwrap();
    let t = Duration::from_secs(2);
    let got = podresources::allocated_devices(&socket, "ns", "web", "vfnet.dev/a", t).unwrap();
    assert_eq!(got, ["0000:01:00.1", "0000:01:00.3"]);
    assert!(podresources::allocated_devices(&socket, "ns", "nope", "vfnet.dev/a", t).unwrap().is_empty());
    let missing = dir.path().join("missing.sock");
    let e = podresources::allocated_devices(&missing, "ns", "web", "vfnet.dev/a", t).unwrap_err();
    assert!(e.to_string().contains("missing.sock"), "{e}");
}
