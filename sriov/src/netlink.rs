//! Kernel network changes over rtnetlink: links, VF settings through the PF, addresses, routes.
//!
//! [`Netlink`] is a small synchronous facade over `rtnetlink` with its own current-thread tokio
//! runtime, so the short-lived CNI plugin needs no async code and a handle can be bound to any
//! namespace ([`Netlink::in_netns`]). Callers program against [`LinkOps`], which tests replace with
//! a recording fake.
//!
//! Kernel rules followed here:
//! - VF settings are `IFLA_VFINFO_LIST` attributes of an `RTM_SETLINK` on the **PF**; each is sent
//!   on its own so a driver's refusal (`ndo_set_vf_*` returning EOPNOTSUPP or EINVAL) names the
//!   setting that failed ([`NetlinkError::VfSettingRefused`]).
//! - VF state is only in a PF dump that asks for it with `IFLA_EXT_MASK = RTEXT_FILTER_VF`.
//! - 802.1Q VLANs go in `IFLA_VF_VLAN`; 802.1ad needs `IFLA_VF_VLAN_LIST` with the protocol.
//! - Renames go by index: a rename addressed by name carries `IFLA_IFNAME` twice and fails.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use futures_util::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage, LinkVfInfo, Prop, State, VfInfo,
    VfInfoLinkState, VfInfoMac, VfInfoRate, VfInfoSpoofCheck, VfInfoTrust, VfInfoVlan, VfLinkState as NlVfLinkState,
    VfVlan, VfVlanInfo, VlanProtocol,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use nix::errno::Errno;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use serde::{Deserialize, Serialize};

use crate::netns::{Netns, NetnsError};
use crate::{MacAddr, PciAddress};

/// What a netlink operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The netlink socket or its runtime could not be set up.
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// No such link.
    #[error("network device {0} not found")]
    LinkNotFound(String),
    /// The PF's driver refused a VF setting.
    #[error("the driver of PF {pf} refused to set {setting} to {value} on VF {vf}: {errno}")]
    VfSettingRefused {
        /// The PF netdev.
        pf: String,
        /// VF index.
        vf: u32,
        /// The setting (`vlan`, `mac`, `spoofchk`, `trust`, `tx rate`, `link state`).
        setting: &'static str,
        /// The value asked for.
        value: String,
        /// The kernel's answer.
        errno: Errno,
    },
    /// Any other kernel refusal.
    #[error("{op} on {target} failed: {errno}")]
    Kernel {
        /// The operation.
        op: &'static str,
        /// What it was applied to.
        target: String,
        /// The kernel's answer.
        errno: Errno,
    },
    /// A reply that could not be understood, or a request that could not be built.
    #[error("{op} on {target} failed: {message}")]
    Protocol {
        /// The operation.
        op: &'static str,
        /// What it was applied to.
        target: String,
        /// Details.
        message: String,
    },
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

impl NetlinkError {
    /// The kernel's errno, if the kernel answered with one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Self::VfSettingRefused { errno, .. } | Self::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// Result alias for this module.
pub type Result<T, E = NetlinkError> = std::result::Result<T, E>;

pub use vfnet_types::{VfLinkState, VlanProto};

/// One VF setting made through the PF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VfSetting {
    /// Administrative MAC (`IFLA_VF_MAC`); zero clears it.
    Mac(MacAddr),
    /// VLAN, priority and tag protocol; VLAN 0 with QoS 0 clears tagging.
    Vlan {
        /// 0-4094.
        vlan: u16,
        /// 802.1p priority, 0-7.
        qos: u8,
        /// Tag protocol.
        proto: VlanProto,
    },
    /// MAC anti-spoofing.
    SpoofChk(bool),
    /// Trusted mode (promiscuous, MAC changes from inside the VF).
    Trust(bool),
    /// TX rate limits in Mbps (0 = unlimited).
    Rate {
        /// Guaranteed minimum.
        min_mbps: u32,
        /// Maximum.
        max_mbps: u32,
    },
    /// Administrative link state.
    LinkState(VfLinkState),
}

impl VfSetting {
    /// The setting's name as errors and logs show it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Mac(_) => "mac",
            Self::Vlan { .. } => "vlan",
            Self::SpoofChk(_) => "spoofchk",
            Self::Trust(_) => "trust",
            Self::Rate { .. } => "tx rate",
            Self::LinkState(_) => "link state",
        }
    }

    /// The value as errors and logs show it.
    pub fn value(&self) -> String {
        let on_off = |b: &bool| if *b { "on" } else { "off" }.to_owned();
        match self {
            Self::Mac(m) => m.to_string(),
            Self::Vlan { vlan, qos, proto } => format!("{vlan} qos {qos} proto {proto}"),
            Self::SpoofChk(b) | Self::Trust(b) => on_off(b),
            Self::Rate { min_mbps, max_mbps } => format!("min {min_mbps} max {max_mbps} Mbps"),
            Self::LinkState(s) => s.to_string(),
        }
    }

    /// The `IFLA_VF_*` attribute that carries this setting for VF `vf`.
    pub fn to_vf_info(&self, vf: u32) -> VfInfo {
        match self {
            Self::Mac(mac) => VfInfo::Mac(VfInfoMac::new(vf, &mac.octets())),
            Self::Vlan { vlan, qos, proto: VlanProto::Dot1Q } => {
                VfInfo::Vlan(VfInfoVlan::new(vf, u32::from(*vlan), u32::from(*qos)))
            }
            Self::Vlan { vlan, qos, proto: VlanProto::Dot1Ad } => VfInfo::VlanList(vec![VfVlan::Info(
                VfVlanInfo::new(vf, u32::from(*vlan), u32::from(*qos), VlanProtocol::Ieee8021Ad),
            )]),
            Self::SpoofChk(on) => VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, *on)),
            Self::Trust(on) => VfInfo::Trust(VfInfoTrust::new(vf, *on)),
            Self::Rate { min_mbps, max_mbps } => VfInfo::Rate(VfInfoRate::new(vf, *min_mbps, *max_mbps)),
            Self::LinkState(state) => VfInfo::LinkState(VfInfoLinkState::new(
                vf,
                match state {
                    VfLinkState::Auto => NlVfLinkState::Auto,
                    VfLinkState::Enable => NlVfLinkState::Enable,
                    VfLinkState::Disable => NlVfLinkState::Disable,
                },
            )),
        }
    }
}

/// A VF's PF-side state, from the PF's VF info dump.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VfState {
    /// VF index.
    pub index: u32,
    /// Administrative MAC (zero when unset).
    pub mac: MacAddr,
    /// VLAN (0 = none).
    pub vlan: u16,
    /// 802.1p priority.
    pub qos: u8,
    /// Tag protocol.
    pub proto: VlanProto,
    /// Spoof checking. Drivers that do not report it read as off.
    pub spoofchk: bool,
    /// Trusted mode. Drivers that do not report it read as off.
    pub trust: bool,
    /// Minimum TX rate, Mbps.
    pub min_tx_rate: u32,
    /// Maximum TX rate, Mbps.
    pub max_tx_rate: u32,
    /// Administrative link state, if reported.
    pub link_state: Option<VfLinkState>,
}

impl VfState {
    fn from_nl(info: &LinkVfInfo) -> Option<Self> {
        let mut st = Self::default();
        let mut index = None;
        for item in &info.0 {
            match item {
                VfInfo::Mac(m) => {
                    index = Some(m.vf_id);
                    st.mac = MacAddr::from_slice(&m.mac).unwrap_or_default();
                }
                VfInfo::Vlan(v) => {
                    index = Some(v.vf_id);
                    st.vlan = v.vlan_id as u16;
                    st.qos = v.qos as u8;
                }
                VfInfo::VlanList(list) => {
                    if let Some(VfVlan::Info(v)) = list.first() {
                        st.vlan = v.vlan_id as u16;
                        st.qos = v.qos as u8;
                        st.proto = match v.protocol {
                            VlanProtocol::Ieee8021Ad => VlanProto::Dot1Ad,
                            _ => VlanProto::Dot1Q,
                        };
                    }
                }
                VfInfo::SpoofCheck(s) => st.spoofchk = s.enabled,
                VfInfo::Trust(t) => st.trust = t.enabled,
                VfInfo::Rate(r) => {
                    st.min_tx_rate = r.min_tx_rate;
                    st.max_tx_rate = r.max_tx_rate;
                }
                VfInfo::LinkState(l) => {
                    st.link_state = match l.state {
                        NlVfLinkState::Auto => Some(VfLinkState::Auto),
                        NlVfLinkState::Enable => Some(VfLinkState::Enable),
                        NlVfLinkState::Disable => Some(VfLinkState::Disable),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        st.index = index?;
        Some(st)
    }

    /// The settings that would bring a VF to this state, in the order they are applied.
    pub fn settings(&self) -> Vec<VfSetting> {
        let mut out = vec![
            VfSetting::Vlan { vlan: self.vlan, qos: self.qos, proto: self.proto },
            VfSetting::Mac(self.mac),
            VfSetting::Rate { min_mbps: self.min_tx_rate, max_mbps: self.max_tx_rate },
            VfSetting::SpoofChk(self.spoofchk),
            VfSetting::Trust(self.trust),
        ];
        out.extend(self.link_state.map(VfSetting::LinkState));
        out
    }
}

/// A network link as netlink reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    /// Interface index in its namespace.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Alternative names.
    pub altnames: Vec<String>,
    /// Hardware address (Ethernet links).
    pub mac: Option<MacAddr>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Operational state (`up`, `down`, `lowerlayerdown`, ...).
    pub operstate: String,
    /// Link kind for virtual links (`veth`, `macvtap`, ...).
    pub kind: Option<String>,
    /// Parent device bus (`pci`), kernel 5.14+.
    pub parent_bus: Option<String>,
    /// Parent device name (the PCI address for PCI netdevs).
    pub parent_dev: Option<String>,
    /// Number of VFs (PFs only, when asked with the VF mask).
    pub num_vfs: Option<u32>,
    /// VF states (PFs only, when asked with the VF mask).
    pub vfs: Vec<VfState>,
}

impl Link {
    fn from_nl(msg: LinkMessage) -> Self {
        let mut link =
            Link { index: msg.header.index, up: msg.header.flags.contains(LinkFlags::Up), ..Default::default() };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n,
                LinkAttribute::Address(a) => link.mac = MacAddr::from_slice(&a).filter(|_| a.len() == 6),
                LinkAttribute::Mtu(m) => link.mtu = m,
                LinkAttribute::OperState(s) => link.operstate = operstate_name(s).to_owned(),
                LinkAttribute::PropList(props) => {
                    link.altnames.extend(props.into_iter().filter_map(|p| match p {
                        Prop::AltIfName(n) => Some(n),
                        _ => None,
                    }));
                }
                LinkAttribute::ParentDevBusName(b) => link.parent_bus = Some(b),
                LinkAttribute::ParentDevName(d) => link.parent_dev = Some(d),
                LinkAttribute::NumVf(n) => link.num_vfs = Some(n),
                LinkAttribute::VfInfoList(list) => link.vfs = list.iter().filter_map(VfState::from_nl).collect(),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(match kind {
                                InfoKind::Other(s) => s,
                                k => k.to_string(),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    /// The PCI address of the device behind this link, if the kernel reports one.
    pub fn pci(&self) -> Option<PciAddress> {
        match (&self.parent_bus, &self.parent_dev) {
            (Some(bus), Some(dev)) if bus == "pci" => dev.parse().ok(),
            _ => None,
        }
    }
}

fn operstate_name(s: State) -> &'static str {
    match s {
        State::Up => "up",
        State::Down => "down",
        State::LowerLayerDown => "lowerlayerdown",
        State::Dormant => "dormant",
        State::Testing => "testing",
        State::NotPresent => "notpresent",
        _ => "unknown",
    }
}

/// An IP address with its prefix length, written `10.1.2.3/24` (as CNI results do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    /// Address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for IpPrefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| format!("{s:?} is not an address/prefix"))?;
        let addr: IpAddr = addr.parse().map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match prefix.parse::<u8>() {
            Ok(p) if p <= max => Ok(Self { addr, prefix: p }),
            _ => Err(format!("{s:?}: prefix {prefix:?} is not 0-{max}")),
        }
    }
}

vfnet_types::serde_as_string!(IpPrefix);

/// macvtap modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacvtapMode {
    /// One macvtap owns the lower device.
    Passthru,
    /// Hairpin through the adjacent switch.
    Vepa,
    /// Local bridging between macvtaps.
    Bridge,
    /// Isolated.
    Private,
}

/// A route in the main table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub dst: IpPrefix,
    /// Next hop, if not on-link.
    pub gateway: Option<IpAddr>,
    /// Output interface.
    pub oif: Option<u32>,
    /// Metric.
    pub metric: Option<u32>,
}

/// The kernel network operations vfnet makes. [`Netlink`] is the real one; tests substitute a
/// recording fake.
pub trait LinkOps {
    /// The namespace handle links move into ([`Netns`] for the real kernel).
    type Ns;
    /// Looks a link up by name.
    fn link_by_name(&self, name: &str) -> Result<Link>;
    /// Looks a link up by index.
    fn link_by_index(&self, index: u32) -> Result<Link>;
    /// Finds the link whose parent device is PCI function `pci`.
    fn link_by_pci(&self, pci: &PciAddress) -> Result<Link>;
    /// All links.
    fn links(&self) -> Result<Vec<Link>>;
    /// The PF's VF table (`IFLA_VFINFO_LIST`, asked for with `RTEXT_FILTER_VF`).
    fn vf_states(&self, pf_index: u32) -> Result<Vec<VfState>>;
    /// The PF named `pf`, with its VF table in [`Link::vfs`]. The real kernel answers both in one
    /// request (by name, with `RTEXT_FILTER_VF`); the default asks twice.
    fn pf_with_vfs(&self, pf: &str) -> Result<Link> {
        let mut link = self.link_by_name(pf)?;
        link.vfs = self.vf_states(link.index)?;
        Ok(link)
    }
    /// Applies one VF setting through the PF.
    fn set_vf(&self, pf_index: u32, vf: u32, setting: &VfSetting) -> Result<()>;
    /// Moves a link into the namespace `ns`.
    fn set_netns(&self, index: u32, ns: &Self::Ns) -> Result<()>;
    /// Renames a link (it must be down for most drivers).
    fn rename(&self, index: u32, name: &str) -> Result<()>;
    /// Sets the hardware address.
    fn set_mac(&self, index: u32, mac: MacAddr) -> Result<()>;
    /// Sets the MTU.
    fn set_mtu(&self, index: u32, mtu: u32) -> Result<()>;
    /// Sets the link administratively up or down.
    fn set_up(&self, index: u32, up: bool) -> Result<()>;
    /// Adds an alternative name.
    fn add_altname(&self, index: u32, name: &str) -> Result<()>;
    /// Removes an alternative name.
    fn del_altname(&self, index: u32, name: &str) -> Result<()>;
    /// Creates a macvtap named `name` on link `parent`.
    fn add_macvtap(&self, name: &str, parent: u32, mode: MacvtapMode) -> Result<()>;
    /// Deletes a (virtual) link.
    fn del_link(&self, index: u32) -> Result<()>;
    /// Adds an address.
    fn add_address(&self, index: u32, addr: IpPrefix) -> Result<()>;
    /// Removes an address.
    fn del_address(&self, index: u32, addr: IpPrefix) -> Result<()>;
    /// The addresses of a link (IPv6 link-local ones included).
    fn addresses(&self, index: u32) -> Result<Vec<IpPrefix>>;
    /// Adds a route to the main table.
    fn add_route(&self, route: &Route) -> Result<()>;
    /// Routes of the main table through `oif`.
    fn routes(&self, oif: u32) -> Result<Vec<Route>>;
}

/// A netlink route socket bound to one network namespace, with its own runtime. Clones share
/// the socket.
///
/// Use it from plain threads; it must not be called from inside another tokio runtime.
#[derive(Clone)]
pub struct Netlink {
    rt: std::sync::Arc<OwnedRuntime>,
    handle: Handle,
}

/// The socket's runtime. Dropped without waiting (a runtime that waits on drop panics inside
/// another runtime, and nothing blocking ever runs on this one).
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl OwnedRuntime {
    fn get(&self) -> &tokio::runtime::Runtime {
        // Only `drop` takes it out.
        self.0.as_ref().unwrap_or_else(|| unreachable!("runtime used after drop"))
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink").finish_non_exhaustive()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(NetlinkError::Socket)
}

impl Netlink {
    /// Runs a request to completion. From plain threads it drives the socket's own runtime; from
    /// inside some other tokio runtime (where blocking it would panic) it does so on a scoped
    /// helper thread.
    fn block<F>(&self, fut: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        let rt = self.rt.get();
        if tokio::runtime::Handle::try_current().is_err() {
            return rt.block_on(fut);
        }
        std::thread::scope(|s| match s.spawn(|| rt.block_on(fut)).join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    }

    /// A socket in the calling thread's namespace.
    pub fn new() -> Result<Self> {
        let rt = runtime()?;
        let (conn, handle, _) = {
            let _guard = rt.enter();
            rtnetlink::new_connection().map_err(NetlinkError::Socket)?
        };
        rt.spawn(conn);
        Ok(Self { rt: std::sync::Arc::new(OwnedRuntime(Some(rt))), handle })
    }

    /// A socket in namespace `ns`: created on a thread inside it, then used from anywhere (a
    /// netlink socket stays in the namespace it was created in).
    pub fn in_netns(ns: &Netns) -> Result<Self> {
        let rt = runtime()?;
        let rt_handle = rt.handle().clone();
        let (conn, handle, _) = ns
            .run(move || {
                let _guard = rt_handle.enter();
                rtnetlink::new_connection()
            })?
            .map_err(NetlinkError::Socket)?;
        rt.spawn(conn);
        Ok(Self { rt: std::sync::Arc::new(OwnedRuntime(Some(rt))), handle })
    }

    fn get_link(&self, op: &'static str, target: String, req: rtnetlink::LinkGetRequest) -> Result<Link> {
        let msg = self.block(async { req.execute().try_next().await });
        match msg {
            Ok(Some(m)) => Ok(Link::from_nl(m)),
            Ok(None) => Err(NetlinkError::LinkNotFound(target)),
            Err(e) if errno_of(&e) == Some(Errno::ENODEV) => Err(NetlinkError::LinkNotFound(target)),
            Err(e) => Err(kernel(op, &target, e)),
        }
    }

    fn set_link(&self, op: &'static str, index: u32, msg: LinkMessage) -> Result<()> {
        self.block(self.handle.link().set(msg).execute()).map_err(|e| kernel(op, &format!("link {index}"), e))
    }
}

fn errno_of(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| Errno::from_raw(-c.get())),
        _ => None,
    }
}

fn kernel(op: &'static str, target: &str, e: rtnetlink::Error) -> NetlinkError {
    match errno_of(&e) {
        Some(errno) => NetlinkError::Kernel { op, target: target.to_owned(), errno },
        None => NetlinkError::Protocol { op, target: target.to_owned(), message: e.to_string() },
    }
}

impl LinkOps for Netlink {
    type Ns = Netns;

    fn link_by_name(&self, name: &str) -> Result<Link> {
        self.get_link("get link", name.to_owned(), self.handle.link().get().match_name(name.to_owned()))
    }

    fn link_by_index(&self, index: u32) -> Result<Link> {
        self.get_link("get link", format!("index {index}"), self.handle.link().get().match_index(index))
    }

    fn link_by_pci(&self, pci: &PciAddress) -> Result<Link> {
        self.links()?
            .into_iter()
            .find(|l| l.pci() == Some(*pci))
            .ok_or_else(|| NetlinkError::LinkNotFound(format!("with PCI address {pci}")))
    }

    fn links(&self) -> Result<Vec<Link>> {
        let msgs: Vec<LinkMessage> = self
            .block(self.handle.link().get().execute().try_collect())
            .map_err(|e| kernel("dump links", "all links", e))?;
        Ok(msgs.into_iter().map(Link::from_nl).collect())
    }

    fn pf_with_vfs(&self, pf: &str) -> Result<Link> {
        let req = self
            .handle
            .link()
            .get()
            .match_name(pf.to_owned())
            .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::Vf]);
        self.get_link("get VF info", pf.to_owned(), req)
    }

    fn vf_states(&self, pf_index: u32) -> Result<Vec<VfState>> {
        let req = self
            .handle
            .link()
            .get()
            .match_index(pf_index)
            .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::Vf]);
        Ok(self.get_link("get VF info", format!("index {pf_index}"), req)?.vfs)
    }

    fn set_vf(&self, pf_index: u32, vf: u32, setting: &VfSetting) -> Result<()> {
        let msg = LinkUnspec::new_with_index(pf_index)
            .append_extra_attribute(LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![setting.to_vf_info(vf)])]))
            .build();
        tracing::debug!(pf_index, vf, setting = setting.name(), value = %setting.value(), "setting VF");
        match self.block(self.handle.link().set(msg).execute()) {
            Ok(()) => Ok(()),
            Err(e) => match errno_of(&e) {
                Some(errno) => {
                    let pf =
                        self.link_by_index(pf_index).map(|l| l.name).unwrap_or_else(|_| format!("index {pf_index}"));
                    Err(NetlinkError::VfSettingRefused {
                        pf,
                        vf,
                        setting: setting.name(),
                        value: setting.value(),
                        errno,
                    })
                }
                None => Err(kernel("set VF", &format!("VF {vf} of link {pf_index}"), e)),
            },
        }
    }

    fn set_netns(&self, index: u32, ns: &Netns) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).setns_by_fd(ns.as_fd().as_raw_fd()).build();
        self.set_link("move to namespace", index, msg)
    }

    fn rename(&self, index: u32, name: &str) -> Result<()> {
        self.set_link("rename", index, LinkUnspec::new_with_index(index).name(name.to_owned()).build())
    }

    fn set_mac(&self, index: u32, mac: MacAddr) -> Result<()> {
        self.set_link("set MAC", index, LinkUnspec::new_with_index(index).address(mac.octets().to_vec()).build())
    }

    fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        self.set_link("set MTU", index, LinkUnspec::new_with_index(index).mtu(mtu).build())
    }

    fn set_up(&self, index: u32, up: bool) -> Result<()> {
        let b = LinkUnspec::new_with_index(index);
        let msg = if up { b.up() } else { b.down() }.build();
        self.set_link(if up { "set up" } else { "set down" }, index, msg)
    }

    fn add_altname(&self, index: u32, name: &str) -> Result<()> {
        self.block(self.handle.link().property_add(index).alt_ifname(&[name]).execute())
            .map_err(|e| kernel("add altname", &format!("{name} of link {index}"), e))
    }

    fn add_macvtap(&self, name: &str, parent: u32, mode: MacvtapMode) -> Result<()> {
        use netlink_packet_route::link::MacVtapMode as M;
        let mode = match mode {
            MacvtapMode::Passthru => M::Passthrough,
            MacvtapMode::Vepa => M::Vepa,
            MacvtapMode::Bridge => M::Bridge,
            MacvtapMode::Private => M::Private,
        };
        let msg = rtnetlink::LinkMacVtap::new(name, parent, mode).build();
        self.block(self.handle.link().add(msg).execute()).map_err(|e| kernel("add macvtap", name, e))
    }

    fn del_link(&self, index: u32) -> Result<()> {
        self.block(self.handle.link().del(index).execute())
            .map_err(|e| kernel("delete link", &format!("link {index}"), e))
    }

    fn del_altname(&self, index: u32, name: &str) -> Result<()> {
        self.block(self.handle.link().property_del(index).alt_ifname(&[name]).execute())
            .map_err(|e| kernel("delete altname", &format!("{name} of link {index}"), e))
    }

    fn add_address(&self, index: u32, addr: IpPrefix) -> Result<()> {
        self.block(self.handle.address().add(index, addr.addr, addr.prefix).execute())
            .map_err(|e| kernel("add address", &format!("{addr} on link {index}"), e))
    }

    fn del_address(&self, index: u32, addr: IpPrefix) -> Result<()> {
        let msgs = self.address_messages(index)?;
        let msg = msgs.into_iter().find(|m| address_of(m) == Some(addr)).ok_or_else(|| NetlinkError::Protocol {
            op: "delete address",
            target: format!("link {index}"),
            message: format!("{addr} not present"),
        })?;
        self.block(self.handle.address().del(msg).execute())
            .map_err(|e| kernel("delete address", &format!("{addr} on link {index}"), e))
    }

    fn addresses(&self, index: u32) -> Result<Vec<IpPrefix>> {
        Ok(self.address_messages(index)?.iter().filter_map(address_of).collect())
    }

    fn add_route(&self, route: &Route) -> Result<()> {
        let target = format!("route {}", route.dst);
        let bad = |message: String| NetlinkError::Protocol { op: "add route", target: target.clone(), message };
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(route.dst.addr, route.dst.prefix)
            .map_err(|e| bad(e.to_string()))?;
        if let Some(gw) = route.gateway {
            b = b.gateway(gw).map_err(|e| bad(e.to_string()))?;
        }
        if let Some(oif) = route.oif {
            b = b.output_interface(oif);
        }
        if let Some(metric) = route.metric {
            b = b.priority(metric);
        }
        self.block(self.handle.route().add(b.build()).execute()).map_err(|e| kernel("add route", &target, e))
    }

    fn routes(&self, oif: u32) -> Result<Vec<Route>> {
        let mut out = Vec::new();
        for family in [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            let msgs: Vec<RouteMessage> = self
                .block(self.handle.route().get(family).execute().try_collect())
                .map_err(|e| kernel("dump routes", &format!("link {oif}"), e))?;
            out.extend(msgs.into_iter().filter_map(route_of).filter(|r| r.oif == Some(oif)));
        }
        Ok(out)
    }
}

impl Netlink {
    /// Creates a veth pair (the host-side stand-in for a VF netdev in privileged tests).
    pub fn add_veth(&self, name: &str, peer: &str) -> Result<()> {
        let msg = rtnetlink::LinkVeth::new(name, peer).build();
        self.block(self.handle.link().add(msg).execute()).map_err(|e| kernel("add veth", name, e))
    }

    /// Deletes a link.
    pub fn del_link(&self, index: u32) -> Result<()> {
        self.block(self.handle.link().del(index).execute())
            .map_err(|e| kernel("delete link", &format!("link {index}"), e))
    }

    /// Adds an alternative name.
    pub fn add_altname(&self, index: u32, name: &str) -> Result<()> {
        self.block(self.handle.link().property_add(index).alt_ifname(&[name]).execute())
            .map_err(|e| kernel("add altname", &format!("{name} of link {index}"), e))
    }

    fn address_messages(&self, index: u32) -> Result<Vec<AddressMessage>> {
        self.block(self.handle.address().get().set_link_index_filter(index).execute().try_collect())
            .map_err(|e| kernel("dump addresses", &format!("link {index}"), e))
    }
}

fn address_of(m: &AddressMessage) -> Option<IpPrefix> {
    // For point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours when present.
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    local.or(address).map(|addr| IpPrefix { addr, prefix: m.header.prefix_len })
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn route_of(m: RouteMessage) -> Option<Route> {
    if m.header.table != 254 {
        return None;
    }
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = None;
    for attr in &m.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = route_addr(a),
            RouteAttribute::Gateway(a) => gateway = route_addr(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = Some(*p),
            _ => {}
        }
    }
    let unspecified = match m.header.address_family {
        AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    };
    Some(Route {
        dst: IpPrefix { addr: dst.unwrap_or(unspecified), prefix: m.header.destination_prefix_length },
        gateway,
        oif,
        metric,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vf_settings_encode_the_kernel_attributes() {
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        match VfSetting::Mac(mac).to_vf_info(3) {
            VfInfo::Mac(m) => {
                assert_eq!(m.vf_id, 3);
                assert_eq!(&m.mac[..6], &mac.octets());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            VfSetting::Vlan { vlan: 100, qos: 3, proto: VlanProto::Dot1Q }.to_vf_info(1),
            VfInfo::Vlan(VfInfoVlan::new(1, 100, 3))
        );
        match (VfSetting::Vlan { vlan: 100, qos: 0, proto: VlanProto::Dot1Ad }).to_vf_info(2) {
            VfInfo::VlanList(l) => {
                assert_eq!(l, vec![VfVlan::Info(VfVlanInfo::new(2, 100, 0, VlanProtocol::Ieee8021Ad))])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            VfSetting::Rate { min_mbps: 10, max_mbps: 100 }.to_vf_info(0),
            VfInfo::Rate(VfInfoRate::new(0, 10, 100))
        );
    }

    #[test]
    fn vf_state_reads_back_from_a_vf_info_entry() {
        let info = LinkVfInfo(vec![
            VfInfo::Mac(VfInfoMac::new(4, &[2, 0, 0, 0, 0, 9])),
            VfInfo::Vlan(VfInfoVlan::new(4, 200, 5)),
            VfInfo::SpoofCheck(VfInfoSpoofCheck::new(4, true)),
            VfInfo::Trust(VfInfoTrust::new(4, false)),
            VfInfo::Rate(VfInfoRate::new(4, 0, 500)),
        ]);
        let st = VfState::from_nl(&info).unwrap();
        assert_eq!(st.index, 4);
        assert_eq!(st.vlan, 200);
        assert_eq!(st.qos, 5);
        assert_eq!(st.mac.to_string(), "02:00:00:00:00:09");
        assert!(st.spoofchk && !st.trust);
        assert_eq!(st.max_tx_rate, 500);
        assert_eq!(st.link_state, None);
        assert_eq!(st.settings()[0], VfSetting::Vlan { vlan: 200, qos: 5, proto: VlanProto::Dot1Q });
    }

    #[test]
    fn setting_names_and_values_for_errors() {
        let s = VfSetting::LinkState(VfLinkState::Enable);
        assert_eq!((s.name(), s.value().as_str()), ("link state", "enable"));
        let e = NetlinkError::VfSettingRefused {
            pf: "eth0".into(),
            vf: 2,
            setting: s.name(),
            value: s.value(),
            errno: Errno::EOPNOTSUPP,
        };
        assert_eq!(
            e.to_string(),
            "the driver of PF eth0 refused to set link state to enable on VF 2: EOPNOTSUPP: Operation not supported on transport endpoint"
        );
        assert_eq!(e.errno(), Some(Errno::EOPNOTSUPP));
    }
}
