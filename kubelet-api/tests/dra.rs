//! The DRA APIs over unix sockets: a trivial driver (registration on one socket, `DRAPlugin` v1
//! and `DRAResourceHealth` v1 on another, as real drivers lay them out) called through the
//! kubelet-side helpers.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kubelet_api::dra::v1 as dra;
use kubelet_api::dra_health::v1 as health;
use kubelet_api::pluginregistration::{self as reg, registration_server};
use kubelet_api::uds;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

const DRIVER: &str = "vf.vfnet.dev";

/// Answers `GetInfo` with a fixed `PluginInfo` and records each `NotifyRegistrationStatus`.
struct Registrar {
    dra_socket: PathBuf,
    statuses: Arc<Mutex<Vec<reg::RegistrationStatus>>>,
}

#[tonic::async_trait]
impl registration_server::Registration for Registrar {
    async fn get_info(&self, _: Request<reg::InfoRequest>) -> Result<Response<reg::PluginInfo>, Status> {
        Ok(Response::new(reg::PluginInfo {
            r#type: reg::DRA_PLUGIN_TYPE.into(),
            name: DRIVER.into(),
            endpoint: self.dra_socket.display().to_string(),
            supported_versions: vec![dra::SERVICE.into(), health::SERVICE.into()],
        }))
    }

    async fn notify_registration_status(
        &self,
        request: Request<reg::RegistrationStatus>,
    ) -> Result<Response<reg::RegistrationStatusResponse>, Status> {
        self.statuses.lock().unwrap().push(request.into_inner());
        Ok(Response::new(reg::RegistrationStatusResponse {}))
    }
}

/// Prepares every claim as one device named after the claim; a claim named "bad" fails.
struct Driver;

#[tonic::async_trait]
impl dra::dra_plugin_server::DraPlugin for Driver {
    async fn node_prepare_resources(
        &self,
        request: Request<dra::NodePrepareResourcesRequest>,
    ) -> Result<Response<dra::NodePrepareResourcesResponse>, Status> {
        let claims = request
            .into_inner()
            .claims
            .into_iter()
            .map(|c| {
                let reply = if c.name == "bad" {
                    dra::NodePrepareResourceResponse { devices: vec![], error: "no such device".into() }
                } else {
                    dra::NodePrepareResourceResponse {
                        devices: vec![dra::Device {
                            request_names: vec!["vf".into()],
                            pool_name: "node-a".into(),
                            device_name: format!("{}-{}", c.namespace, c.name),
                            cdi_device_ids: vec![format!("vfnet.dev/vf={}", c.name)],
                            share_id: None,
                        }],
                        error: String::new(),
                    }
                };
                (c.uid, reply)
            })
            .collect();
        Ok(Response::new(dra::NodePrepareResourcesResponse { claims }))
    }

    async fn node_unprepare_resources(
        &self,
        request: Request<dra::NodeUnprepareResourcesRequest>,
    ) -> Result<Response<dra::NodeUnprepareResourcesResponse>, Status> {
        let claims = request
            .into_inner()
            .claims
            .into_iter()
            .map(|c| (c.uid, dra::NodeUnprepareResourceResponse { error: String::new() }))
            .collect();
        Ok(Response::new(dra::NodeUnprepareResourcesResponse { claims }))
    }
}

/// Sends one health report, then ends the stream.
struct Health;

#[tonic::async_trait]
impl health::dra_resource_health_server::DraResourceHealth for Health {
    type NodeWatchResourcesStream = tokio_stream::Once<Result<health::NodeWatchResourcesResponse, Status>>;

    async fn node_watch_resources(
        &self,
        _: Request<health::NodeWatchResourcesRequest>,
    ) -> Result<Response<Self::NodeWatchResourcesStream>, Status> {
        let report = health::NodeWatchResourcesResponse {
            devices: vec![health::DeviceHealth {
                device: Some(health::DeviceIdentifier { pool_name: "node-a".into(), device_name: "vf0".into() }),
                health: health::HealthStatus::Unhealthy.into(),
                last_updated_time: 1_700_000_000,
                health_check_timeout_seconds: 30,
                message: "link down".into(),
            }],
        };
        Ok(Response::new(tokio_stream::once(Ok(report))))
    }
}

/// Serves the registrar on `reg_socket` and the driver on `dra_socket`, until the test ends.
fn serve(reg_socket: &Path, dra_socket: &Path) -> Arc<Mutex<Vec<reg::RegistrationStatus>>> {
    let statuses = Arc::default();
    let registrar = Registrar { dra_socket: dra_socket.to_owned(), statuses: Arc::clone(&statuses) };
    let incoming = uds::bind_private(reg_socket).unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(registration_server::RegistrationServer::new(registrar))
            .serve_with_incoming(incoming),
    );
    let incoming = uds::bind_private(dra_socket).unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(dra::dra_plugin_server::DraPluginServer::new(Driver))
            .add_service(health::dra_resource_health_server::DraResourceHealthServer::new(Health))
            .serve_with_incoming(incoming),
    );
    statuses
}

fn claim(uid: &str, name: &str) -> dra::Claim {
    dra::Claim { namespace: "ns".into(), uid: uid.into(), name: name.into() }
}

#[tokio::test]
async fn registration_prepare_and_health_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let reg_socket = dir.path().join(format!("{DRIVER}-reg.sock"));
    let dra_socket = dir.path().join("dra.sock");
    let statuses = serve(&reg_socket, &dra_socket);

    // kubelet's plugin watcher: who are you, then accepted.
    let info = reg::get_info(&reg_socket).await.unwrap();
    assert_eq!(info.r#type, "DRAPlugin");
    assert_eq!(info.name, DRIVER);
    assert_eq!(Path::new(&info.endpoint), dra_socket);
    assert_eq!(info.supported_versions, ["v1.DRAPlugin", "v1.DRAResourceHealth"]);
    reg::notify(&reg_socket, true, String::new()).await.unwrap();
    let got = statuses.lock().unwrap().clone();
    assert_eq!(got, [reg::RegistrationStatus { plugin_registered: true, error: String::new() }]);

    // kubelet's DRA manager, on the endpoint it was given.
    let mut client = dra::client(Path::new(&info.endpoint)).await.unwrap();
    let request = dra::NodePrepareResourcesRequest { claims: vec![claim("uid-1", "web"), claim("uid-2", "bad")] };
    let reply = client.node_prepare_resources(request).await.unwrap().into_inner();
    assert_eq!(reply.claims.len(), 2);
    let web = &reply.claims["uid-1"];
    assert!(web.error.is_empty());
    assert_eq!(web.devices.len(), 1);
    assert_eq!(web.devices[0].device_name, "ns-web");
    assert_eq!(web.devices[0].cdi_device_ids, ["vfnet.dev/vf=web"]);
    assert_eq!(web.devices[0].share_id, None);
    assert_eq!(reply.claims["uid-2"].error, "no such device");
    let request = dra::NodeUnprepareResourcesRequest { claims: vec![claim("uid-1", "web")] };
    let reply = client.node_unprepare_resources(request).await.unwrap().into_inner();
    assert!(reply.claims["uid-1"].error.is_empty());

    let mut health_client = health::client(&dra_socket).await.unwrap();
    let mut stream =
        health_client.node_watch_resources(health::NodeWatchResourcesRequest {}).await.unwrap().into_inner();
    let report = stream.message().await.unwrap().unwrap();
    assert_eq!(report.devices.len(), 1);
    let device = &report.devices[0];
    assert_eq!(device.device.as_ref().unwrap().device_name, "vf0");
    assert_eq!(device.health(), health::HealthStatus::Unhealthy);
    assert_eq!(device.message, "link down");
    assert!(stream.message().await.unwrap().is_none(), "one report, then the end");

    // A missing socket names itself in the error.
    let missing = dir.path().join("missing.sock");
    let e = reg::get_info(&missing).await.unwrap_err();
    assert!(e.to_string().contains("missing.sock"), "{e}");
}

/// The advertised names are what kubelet compares `supported_versions` against; for the health
/// API they are also the gRPC service names, for `DRAPlugin` only the last two segments are.
#[test]
fn service_names_match_the_generated_services() {
    use kubelet_api::dra::v1beta1;
    use kubelet_api::dra_health::v1alpha1;
    assert_eq!(health::SERVICE, health::dra_resource_health_server::SERVICE_NAME);
    assert_eq!(v1alpha1::SERVICE, v1alpha1::dra_resource_health_server::SERVICE_NAME);
    assert_eq!(dra::dra_plugin_server::SERVICE_NAME, format!("k8s.io.kubelet.pkg.apis.dra.{}", dra::SERVICE));
    assert_eq!(v1beta1::dra_plugin_server::SERVICE_NAME, format!("k8s.io.kubelet.pkg.apis.dra.{}", v1beta1::SERVICE));
    assert_eq!(registration_server::SERVICE_NAME, "pluginregistration.Registration");
    assert_eq!(reg::REGISTRY_DIR, "/var/lib/kubelet/plugins_registry");
    assert_eq!(kubelet_api::dra::PLUGINS_DIR, "/var/lib/kubelet/plugins");
}
