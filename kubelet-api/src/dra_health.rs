//! The DRA resource health API, `v1` and `v1alpha1`: `DRAResourceHealth`, optional, served by a
//! DRA driver on the same socket as `DRAPlugin` (see [`crate::dra`]). kubelet shows the devices'
//! health in the status of the pods using them.
//!
//! Which version kubelet calls: 1.37+ picks the newest it knows among the driver's
//! `supported_versions` ([`v1::SERVICE`], then [`v1alpha1::SERVICE`]) and calls none if neither is
//! listed; 1.36 and older always call `v1alpha1`. A driver for both serves and lists both. Here the
//! packages are the bare `v1`/`v1alpha1`, so `SERVICE` is also the gRPC service path.

/// Package `v1`.
pub mod v1 {
    use std::path::Path;

    use tonic::transport::Channel;

    use crate::uds::{self, UdsError};

    /// Generated code, re-exported below.
    #[allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]
    mod generated {
        include!(concat!(env!("OUT_DIR"), "/dra-health/v1/v1.rs"));
    }

    /// Generated messages, client (`dra_resource_health_client`) and server
    /// (`dra_resource_health_server`).
    pub use generated::*;

    use dra_resource_health_client::DraResourceHealthClient;

    /// What a driver serving this version lists in `PluginInfo.supported_versions`.
    pub const SERVICE: &str = "v1.DRAResourceHealth";

    /// A client of the driver serving `socket`, connected as kubelet connects (for tests).
    pub async fn client(socket: &Path) -> Result<DraResourceHealthClient<Channel>, UdsError> {
        Ok(DraResourceHealthClient::new(uds::connect(socket).await?))
    }
}

/// Package `v1alpha1`: the same messages as [`v1`].
pub mod v1alpha1 {
    use std::path::Path;

    use tonic::transport::Channel;

    use crate::uds::{self, UdsError};

    /// Generated code, re-exported below.
    #[allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]
    mod generated {
        include!(concat!(env!("OUT_DIR"), "/dra-health/v1alpha1/v1alpha1.rs"));
    }

    /// Generated messages, client (`dra_resource_health_client`) and server
    /// (`dra_resource_health_server`).
    pub use generated::*;

    use dra_resource_health_client::DraResourceHealthClient;

    /// What a driver serving this version lists in `PluginInfo.supported_versions`.
    pub const SERVICE: &str = "v1alpha1.DRAResourceHealth";

    /// A client of the driver serving `socket`, connected as kubelet connects (for tests).
    pub async fn client(socket: &Path) -> Result<DraResourceHealthClient<Channel>, UdsError> {
        Ok(DraResourceHealthClient::new(uds::connect(socket).await?))
    }
}
