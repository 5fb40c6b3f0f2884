//! The DRA plugin API, `v1` (kubelet 1.34+) and `v1beta1` (kubelet 1.32+): `DRAPlugin`, served by
//! a DRA driver on the socket it names in [`crate::pluginregistration::PluginInfo::endpoint`],
//! usually `<PLUGINS_DIR>/<driver>/dra.sock`. kubelet picks the first entry of the driver's
//! `supported_versions` that it knows, so a driver serving both lists [`v1::SERVICE`] first.
//!
//! `SERVICE` is the short name a driver advertises, not the gRPC service path: the packages are
//! `k8s.io.kubelet.pkg.apis.dra.<version>`.

/// Where DRA drivers keep their sockets and data, one directory per driver (kubelet's plugin
/// directory, shared with CSI drivers).
pub const PLUGINS_DIR: &str = concat!(kubelet_root!(), "/plugins");

/// Package `k8s.io.kubelet.pkg.apis.dra.v1`.
pub mod v1 {
    use std::path::Path;

    use tonic::transport::Channel;

    use crate::uds::{self, UdsError};

    /// Generated code, re-exported below.
    #[allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]
    mod generated {
        include!(concat!(env!("OUT_DIR"), "/dra/v1/k8s.io.kubelet.pkg.apis.dra.v1.rs"));
    }

    /// Generated messages, client (`dra_plugin_client`) and server (`dra_plugin_server`).
    pub use generated::*;

    use dra_plugin_client::DraPluginClient;

    /// What a driver serving this version lists in `PluginInfo.supported_versions`.
    pub const SERVICE: &str = "v1.DRAPlugin";

    /// A client of the driver serving `socket`, connected as kubelet connects (for tests).
    pub async fn client(socket: &Path) -> Result<DraPluginClient<Channel>, UdsError> {
        Ok(DraPluginClient::new(uds::connect(socket).await?))
    }
}

/// Package `k8s.io.kubelet.pkg.apis.dra.v1beta1`: [`v1`] without `Device.share_id`.
pub mod v1beta1 {
    use std::path::Path;

    use tonic::transport::Channel;

    use crate::uds::{self, UdsError};

    /// Generated code, re-exported below.
    #[allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]
    mod generated {
        include!(concat!(env!("OUT_DIR"), "/dra/v1beta1/k8s.io.kubelet.pkg.apis.dra.v1beta1.rs"));
    }

    /// Generated messages, client (`dra_plugin_client`) and server (`dra_plugin_server`).
    pub use generated::*;

    use dra_plugin_client::DraPluginClient;

    /// What a driver serving this version lists in `PluginInfo.supported_versions`.
    pub const SERVICE: &str = "v1beta1.DRAPlugin";

    /// A client of the driver serving `socket`, connected as kubelet connects (for tests).
    pub async fn client(socket: &Path) -> Result<DraPluginClient<Channel>, UdsError> {
        Ok(DraPluginClient::new(uds::connect(socket).await?))
    }
}
