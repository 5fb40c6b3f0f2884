//! The test cluster's addresses. Traffic stays on this machine: the control plane listens on the
//! host's loopback, and the guest reaches it through the uplink's QEMU user networking, whose host
//! address ([`HOST_ALIAS`]) QEMU maps to the host's loopback. No other address is ever dialled.
//!
//! There is no kube-proxy: the service range's first address, which the API server gives the
//! `kubernetes` Service, is the host address itself, and the API server listens on the Service's
//! port (443). So a pod's in-cluster configuration (`KUBERNETES_SERVICE_HOST:PORT`, which kubelet
//! sets from that Service) reaches the API server with nothing translating it.

/// QEMU's host address on the uplink network: the guest's connections to it reach the host's
/// loopback.
pub(crate) const HOST_ALIAS: &str = "10.0.2.1";
/// The uplink network and the guest's address on it (QEMU's DHCP start, set statically).
pub(crate) const UPLINK_NET: &str = "10.0.2.0/24";
pub(crate) const NODE_IP: &str = "10.0.2.15";
/// The Service range: `10.0.2.1` (the `kubernetes` Service) up to `.14`, below the node's `.15`.
pub(crate) const SERVICE_CIDR: &str = "10.0.2.0/28";
/// Where the API server listens on the host (the `kubernetes` Service's port).
pub(crate) const APISERVER_BIND: &str = "127.0.0.1";
pub(crate) const APISERVER_PORT: u16 = 443;
/// etcd and the health ports, away from the defaults so a host's own Kubernetes cannot clash.
pub(crate) const ETCD_CLIENT_PORT: u16 = 23790;
pub(crate) const ETCD_PEER_PORT: u16 = 23800;
pub(crate) const CONTROLLER_MANAGER_PORT: u16 = 20257;
pub(crate) const SCHEDULER_PORT: u16 = 20259;
/// kubelet's port in the guest, and QEMU's forward of it on the host's loopback (which only the
/// API server's egress proxy dials, see [`super::egress`]).
pub(crate) const KUBELET_PORT: u16 = 10250;
pub(crate) const KUBELET_FORWARD_PORT: u16 = 20250;
/// The pods' default network (Multus's cluster network: a bridge with host-local addresses).
pub(crate) const POD_CIDR: &str = "10.244.0.0/24";

/// The API server as the host's clients reach it.
pub(crate) fn host_server() -> String {
    format!("https://{APISERVER_BIND}:{APISERVER_PORT}")
}

/// The API server as the guest's clients reach it.
pub(crate) fn guest_server() -> String {
    format!("https://{HOST_ALIAS}:{APISERVER_PORT}")
}

/// The names the API server's certificate is valid for, from the host and from the guest (and
/// as the `kubernetes` Service).
pub(crate) fn server_sans() -> Vec<String> {
    [
        format!("IP:{APISERVER_BIND}"),
        format!("IP:{HOST_ALIAS}"),
        "DNS:localhost".into(),
        "DNS:kubernetes".into(),
        "DNS:kubernetes.default".into(),
        "DNS:kubernetes.default.svc".into(),
        "DNS:kubernetes.default.svc.cluster.local".into(),
    ]
    .into()
}

/// The QEMU options adding the node's uplink: a virtio NIC on its own user network. The igb PF
/// keeps its own (the tests take it down and reconfigure it; the node must stay reachable).
pub(crate) fn qemu_uplink() -> String {
    format!(
        "-device virtio-net-pci,netdev=up0 -netdev user,id=up0,net={UPLINK_NET},host={HOST_ALIAS},\
         hostfwd=tcp:{APISERVER_BIND}:{KUBELET_FORWARD_PORT}-{NODE_IP}:{KUBELET_PORT}"
    )
}
