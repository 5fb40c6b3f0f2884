//! A recording fake of the node, for testing code built on [`LinkOps`] without root
//! ([`FakeNode`]). It sits next to the trait it fakes; the CNI plugin's tests wrap it in their
//! own `Host`.
//!
//! - **Sysfs** is a [`crate::fixture`] tree: PFs with netdevs, VFs on igbvf (or vfio-pci).
//! - **The kernel** is an in-memory model: network namespaces (the host's, pod namespaces the
//!   test registers at paths of its choosing, anonymous ones made by [`FakeNode::temp_ns`] that
//!   die with their last handle), links per namespace (index, name, altnames, MAC, MTU, state,
//!   the PCI parent of physical netdevs, the kind and lower device of macvtaps), each PF's VF
//!   table, addresses, routes, and the sysctls written. It follows the kernel's rules where the
//!   CNI plugin depends on them: a link that changes namespace goes down, loses its addresses
//!   and routes and gets a new index; a name (or altname) already used in the target namespace
//!   refuses the move or the rename with `EEXIST`; an up link cannot be renamed (`EBUSY`); only
//!   virtual links can be deleted; a route needs its link up and its gateway on a local subnet;
//!   when a namespace dies, its physical netdevs return to the host namespace (renamed
//!   `dev<index>` if their name is taken there) and its virtual ones vanish. The kernel empties a
//!   dead namespace asynchronously: [`FakeNode::defer_netns_cleanup`] models that (devices stay
//!   invisible until [`FakeNode::settle`]).
//! - **Every call is recorded** as a readable line (`host: set_vf pf0 vf=1 vlan 100 qos 3 proto
//!   802.1Q`, `host: set_netns pf0v1 -> tmp2`, `tmp2: rename pf0v1 -> net1`);
//!   [`FakeNode::changes`] keeps the ones that change something, [`FakeNode::calls`] everything.
//! - **Failures can be injected**: a driver that refuses a VF setting ([`FakeNode::refuse`], as
//!   igb refuses a VF link state with `EOPNOTSUPP`), the Nth call of an operation
//!   ([`FakeNode::fail_nth`]), or every call of it ([`FakeNode::fail_always`]).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;

use crate::fixture::{Fixture, FixtureBuilder, PfSpec};
use crate::netlink::{IpPrefix, Link, LinkOps, MacvtapMode, NetlinkError, Route, VfLinkState, VfSetting, VfState};
use crate::netns::NetnsError;
use crate::sysfs::Sysfs;
use crate::{MacAddr, PciAddress};

const HOST: u32 = 0;
const LO: u32 = 1;
/// The largest MTU the fake's physical netdevs accept (igb's).
pub const MAX_MTU: u32 = 9216;

/// A network device.
#[derive(Debug, Clone)]
struct Dev {
    /// Identity, stable across moves (indexes are not).
    id: u64,
    index: u32,
    name: String,
    altnames: Vec<String>,
    mac: Option<MacAddr>,
    mtu: u32,
    max_mtu: u32,
    up: bool,
    pci: Option<PciAddress>,
    kind: Option<String>,
    /// A macvtap's lower device and mode.
    lower: Option<(u64, MacvtapMode)>,
    /// A PF's VF table.
    vfs: Vec<VfState>,
    addresses: Vec<IpPrefix>,
}

impl Dev {
    fn link(&self) -> Link {
        Link {
            index: self.index,
            name: self.name.clone(),
            altnames: self.altnames.clone(),
            mac: self.mac,
            mtu: self.mtu,
            up: self.up,
            operstate: if self.up { "up" } else { "down" }.to_owned(),
            kind: self.kind.clone(),
            parent_bus: self.pci.map(|_| "pci".to_owned()),
            parent_dev: self.pci.map(|p| p.to_string()),
            num_vfs: None,
            vfs: Vec::new(),
        }
    }

    fn has_name(&self, name: &str) -> bool {
        self.name == name || self.altnames.iter().any(|a| a == name)
    }

    /// Physical netdevs survive their namespace; virtual ones (macvtap, loopback) do not.
    fn physical(&self) -> bool {
        self.kind.is_none() && self.index != LO
    }
}

#[derive(Debug)]
struct Space {
    label: String,
    /// Handles, netlink sockets and the registered path keeping it alive.
    refs: usize,
    links: Vec<Dev>,
    routes: Vec<Route>,
}

#[derive(Debug)]
struct Failure {
    op: String,
    /// Calls still to let through before failing.
    skip: usize,
    errno: Errno,
    persistent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Change,
    Event,
}

#[derive(Debug)]
struct Entry {
    line: String,
    kind: Kind,
}

type HookFn = dyn Fn(&str) + Send + Sync;

#[derive(Clone)]
struct Hook(Arc<HookFn>);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hook")
    }
}

#[derive(Debug, Default)]
struct Kernel {
    spaces: BTreeMap<u32, Space>,
    paths: BTreeMap<PathBuf, u32>,
    next_ns: u32,
    next_index: u32,
    next_id: u64,
    defer_cleanup: bool,
    /// Physical devices of dead namespaces the kernel has not yet returned to the host.
    limbo: Vec<Dev>,
    log: Vec<Entry>,
    failures: Vec<Failure>,
    refusals: Vec<(String, Errno)>,
    sysctls: Vec<String>,
    hook: Option<Hook>,
}

impl Kernel {
    fn label(&self, ns: u32) -> String {
        self.spaces.get(&ns).map_or_else(|| format!("dead-ns{ns}"), |s| s.label.clone())
    }

    fn space(&self, ns: u32) -> Option<&Space> {
        self.spaces.get(&ns)
    }

    fn space_mut(&mut self, ns: u32) -> Option<&mut Space> {
        self.spaces.get_mut(&ns)
    }

    fn dev(&self, ns: u32, index: u32) -> Option<&Dev> {
        self.space(ns)?.links.iter().find(|d| d.index == index)
    }

    fn dev_mut(&mut self, ns: u32, index: u32) -> Option<&mut Dev> {
        self.space_mut(ns)?.links.iter_mut().find(|d| d.index == index)
    }

    fn name_of(&self, ns: u32, index: u32) -> String {
        self.dev(ns, index).map_or_else(|| format!("#{index}"), |d| d.name.clone())
    }

    fn name_taken(&self, ns: u32, name: &str, except: Option<u64>) -> bool {
        self.space(ns).is_some_and(|s| s.links.iter().any(|d| Some(d.id) != except && d.has_name(name)))
    }

    fn new_index(&mut self) -> u32 {
        self.next_index += 1;
        self.next_index
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn new_space(&mut self, prefix: &str, refs: usize) -> u32 {
        self.next_ns += 1;
        let id = self.next_ns;
        let lo = Dev {
            id: self.new_id(),
            index: LO,
            name: "lo".into(),
            altnames: Vec::new(),
            mac: Some(MacAddr::ZERO),
            mtu: 65536,
            max_mtu: 65536,
            up: false,
            pci: None,
            kind: None,
            lower: None,
            vfs: Vec::new(),
            addresses: Vec::new(),
        };
        self.spaces.insert(id, Space { label: format!("{prefix}{id}"), refs, links: vec![lo], routes: Vec::new() });
        id
    }

    /// Counts a call of `op` against the armed failures; returns the errno of the one that fires
    /// (a one-shot failure is disarmed by firing).
    fn injected(&mut self, op: &str) -> Option<Errno> {
        let mut hit = None;
        self.failures.retain_mut(|f| {
            if f.op != op {
                return true;
            }
            if f.skip > 0 {
                f.skip -= 1;
                return true;
            }
            if hit.is_some() {
                return true;
            }
            hit = Some(f.errno);
            f.persistent
        });
        hit
    }

    fn event(&mut self, line: String) {
        self.log.push(Entry { line, kind: Kind::Event });
    }

    /// Detaches link `index` from namespace `ns`, for a move or a deletion. Routes through it go,
    /// as the kernel flushes them when the device leaves.
    fn take(&mut self, ns: u32, index: u32) -> Option<Dev> {
        let space = self.space_mut(ns)?;
        let pos = space.links.iter().position(|d| d.index == index)?;
        let dev = space.links.remove(pos);
        space.routes.retain(|r| r.oif != Some(index));
        Some(dev)
    }

    /// Puts a device that changed namespace into `ns`: down, no addresses, a new index.
    fn arrive(&mut self, ns: u32, mut dev: Dev) {
        dev.up = false;
        dev.addresses.clear();
        dev.index = self.new_index();
        if let Some(space) = self.space_mut(ns) {
            space.links.push(dev);
        }
    }

    fn ref_ns(&mut self, ns: u32) {
        if let Some(s) = self.space_mut(ns) {
            s.refs += 1;
        }
    }

    fn unref_ns(&mut self, ns: u32) {
        if ns == HOST {
            return;
        }
        let Some(space) = self.space_mut(ns) else { return };
        space.refs = space.refs.saturating_sub(1);
        if space.refs == 0 {
            self.destroy(ns);
        }
    }

    /// The last reference went: physical devices go back to the host namespace (at once, or on
    /// [`FakeNode::settle`] when cleanup is deferred), virtual ones are deleted.
    fn destroy(&mut self, ns: u32) {
        let Some(space) = self.spaces.remove(&ns) else { return };
        self.paths.retain(|_, id| *id != ns);
        let mut what = Vec::new();
        for dev in space.links {
            if !dev.physical() {
                if dev.index != LO {
                    what.push(format!("{} deleted", dev.name));
                }
                continue;
            }
            if self.defer_cleanup {
                what.push(format!("{} pending return to host", dev.name));
                self.limbo.push(dev);
            } else {
                let name = self.return_to_host(dev);
                what.push(format!("{name} returned to host"));
            }
        }
        let summary = if what.is_empty() { String::new() } else { format!(": {}", what.join(", ")) };
        self.event(format!("kernel: {} destroyed{summary}", space.label));
    }

    fn return_to_host(&mut self, mut dev: Dev) -> String {
        dev.up = false;
        dev.addresses.clear();
        dev.index = self.new_index();
        if self.name_taken(HOST, &dev.name, Some(dev.id)) {
            dev.name = format!("dev{}", dev.index);
        }
        let name = dev.name.clone();
        if let Some(host) = self.space_mut(HOST) {
            host.links.push(dev);
        }
        name
    }

    fn snapshot(&self, only: Option<&str>) -> String {
        let mut out = String::new();
        for space in self.spaces.values().filter(|s| only.is_none_or(|l| s.label == l)) {
            let _ = writeln!(out, "[{}]", space.label);
            let mut links: Vec<&Dev> = space.links.iter().collect();
            links.sort_by(|a, b| a.name.cmp(&b.name));
            for d in links {
                let mut alt = d.altnames.clone();
                alt.sort();
                let _ = writeln!(
                    out,
                    "  {} mac={} mtu={} {}{}{}{}{}",
                    d.name,
                    d.mac.map(|m| m.to_string()).unwrap_or_default(),
                    d.mtu,
                    if d.up { "up" } else { "down" },
                    d.pci.map(|p| format!(" pci={p}")).unwrap_or_default(),
                    d.kind.as_ref().map(|k| format!(" kind={k}")).unwrap_or_default(),
                    if alt.is_empty() { String::new() } else { format!(" altnames={}", alt.join(",")) },
                    if d.addresses.is_empty() {
                        String::new()
                    } else {
                        format!(" addrs={}", d.addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
                    },
                );
                for vf in &d.vfs {
                    let _ = writeln!(
                        out,
                        "    vf {} mac={} vlan={} qos={} proto={} spoofchk={} trust={} rate={}-{} link={}",
                        vf.index,
                        vf.mac,
                        vf.vlan,
                        vf.qos,
                        vf.proto,
                        vf.spoofchk,
                        vf.trust,
                        vf.min_tx_rate,
                        vf.max_tx_rate,
                        vf.link_state.map(|l| l.to_string()).unwrap_or_default()
                    );
                }
            }
            for r in &space.routes {
                let _ = writeln!(out, "  route {} via {:?} oif {:?}", r.dst, r.gateway, r.oif);
            }
        }
        if only.is_none() && !self.limbo.is_empty() {
            let _ =
                writeln!(out, "[limbo] {}", self.limbo.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(" "));
        }
        out
    }
}

fn lock(kernel: &Mutex<Kernel>) -> MutexGuard<'_, Kernel> {
    kernel.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How an error shows in the call log.
trait Brief {
    fn brief(&self) -> String;
}

impl Brief for NetlinkError {
    fn brief(&self) -> String {
        match self.errno() {
            Some(e) => format!("{e:?}"),
            None => self.to_string(),
        }
    }
}

impl Brief for NetnsError {
    fn brief(&self) -> String {
        self.to_string()
    }
}

impl Brief for SysctlError {
    fn brief(&self) -> String {
        self.to_string()
    }
}

/// A sysctl write that failed (an injected failure of `sysctl`), worded as a failed write of
/// `/proc/sys/<key>` from inside the namespace.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {value} to /proc/sys/{key}: {}", errno.desc())]
pub struct SysctlError {
    /// The key, below `/proc/sys` (`net/ipv4/conf/net1/arp_notify`).
    pub key: String,
    /// The value written.
    pub value: String,
    /// The kernel's answer.
    pub errno: Errno,
}

/// Runs one recorded call: describes it, counts it against injected failures, lets the change
/// hook see it, runs `body` (or fails with the injected errno through `inject`) and logs it with
/// its outcome.
fn traced<T, E: Brief>(
    kernel: &Mutex<Kernel>,
    op: &str,
    kind: Kind,
    describe: impl FnOnce(&Kernel) -> String,
    inject: impl FnOnce(Errno, &Kernel) -> E,
    body: impl FnOnce(&mut Kernel) -> Result<T, E>,
) -> Result<T, E> {
    let (line, injected, hook) = {
        let mut k = lock(kernel);
        let line = describe(&k);
        let injected = k.injected(op);
        let hook = if kind == Kind::Change { k.hook.clone() } else { None };
        (line, injected, hook)
    };
    if let Some(Hook(f)) = hook {
        f(&line);
    }
    let mut k = lock(kernel);
    let result = match injected {
        Some(errno) => Err(inject(errno, &k)),
        None => body(&mut k),
    };
    let line = match &result {
        Ok(_) => line,
        Err(e) => format!("{line} (failed: {})", e.brief()),
    };
    k.log.push(Entry { line, kind });
    result
}

/// What a PF's VF table shows for `st` once its driver accepted `setting` (for fakes of the PF:
/// this one, and the veth stand-ins of the CNI's privileged tests).
pub fn apply_setting(st: &mut VfState, setting: &VfSetting) {
    match setting {
        VfSetting::Mac(m) => st.mac = *m,
        VfSetting::Vlan { vlan, qos, proto } => (st.vlan, st.qos, st.proto) = (*vlan, *qos, *proto),
        VfSetting::SpoofChk(b) => st.spoofchk = *b,
        VfSetting::Trust(b) => st.trust = *b,
        VfSetting::Rate { min_mbps, max_mbps } => (st.min_tx_rate, st.max_tx_rate) = (*min_mbps, *max_mbps),
        VfSetting::LinkState(l) => st.link_state = Some(*l),
    }
}

fn kernel_err(op: &'static str, target: String, errno: Errno) -> NetlinkError {
    NetlinkError::Kernel { op, target, errno }
}

/// A namespace handle of the fake. The namespace lives while a handle, a [`FakeLinks`] bound to
/// it or (for pod namespaces) its registered path does.
pub struct FakeNs {
    id: u32,
    label: String,
    kernel: Arc<Mutex<Kernel>>,
}

impl FakeNs {
    fn new(kernel: &Arc<Mutex<Kernel>>, k: &mut Kernel, id: u32) -> Self {
        k.ref_ns(id);
        Self { id, label: k.label(id), kernel: Arc::clone(kernel) }
    }

    /// The namespace's label in the call log (`host`, `ns1`, `tmp3`).
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl fmt::Debug for FakeNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FakeNs").field(&self.label).finish()
    }
}

impl Drop for FakeNs {
    fn drop(&mut self) {
        lock(&self.kernel).unref_ns(self.id);
    }
}

/// Netlink bound to one namespace of the fake (like a real netlink socket, it keeps the
/// namespace alive).
#[derive(Debug)]
pub struct FakeLinks {
    ns: FakeNs,
}

impl FakeLinks {
    fn call<T>(
        &self,
        op: &'static str,
        kind: Kind,
        args: impl FnOnce(&Kernel, u32) -> String,
        inject: impl FnOnce(Errno, &Kernel, u32) -> NetlinkError,
        body: impl FnOnce(&mut Kernel, u32) -> Result<T, NetlinkError>,
    ) -> Result<T, NetlinkError> {
        let ns = self.ns.id;
        traced(
            &self.ns.kernel,
            op,
            kind,
            |k| format!("{}: {op} {}", k.label(ns), args(k, ns)).trim_end().to_owned(),
            |errno, k| inject(errno, k, ns),
            |k| {
                if k.space(ns).is_none() {
                    return Err(NetlinkError::Netns(NetnsError::Gone { path: PathBuf::from(k.label(ns)) }));
                }
                body(k, ns)
            },
        )
    }

    /// A change to one link, failing with the kernel's `ENODEV` if the index is unknown.
    fn change(
        &self,
        op: &'static str,
        real_op: &'static str,
        index: u32,
        args: impl FnOnce(&Kernel, u32) -> String,
        body: impl FnOnce(&mut Kernel, u32) -> Result<(), Errno>,
    ) -> Result<(), NetlinkError> {
        self.call(
            op,
            Kind::Change,
            args,
            |errno, _, _| kernel_err(real_op, format!("link {index}"), errno),
            |k, ns| {
                if k.dev(ns, index).is_none() {
                    return Err(kernel_err(real_op, format!("link {index}"), Errno::ENODEV));
                }
                body(k, ns).map_err(|errno| kernel_err(real_op, format!("link {index}"), errno))
            },
        )
    }

    fn read<T>(
        &self,
        op: &'static str,
        args: impl FnOnce(&Kernel, u32) -> String,
        body: impl FnOnce(&mut Kernel, u32) -> Result<T, NetlinkError>,
    ) -> Result<T, NetlinkError> {
        self.call(op, Kind::Read, args, |errno, _, _| kernel_err("get link", op.to_owned(), errno), body)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 15 && !name.contains(['/', ':']) && !name.chars().any(char::is_whitespace)
}

fn same_subnet(a: &IpPrefix, gw: &IpAddr) -> bool {
    match (a.addr, gw) {
        (IpAddr::V4(x), IpAddr::V4(y)) => {
            let mask = if a.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(a.prefix)) };
            u32::from(x) & mask == u32::from(*y) & mask
        }
        (IpAddr::V6(x), IpAddr::V6(y)) => {
            let mask = if a.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(a.prefix)) };
            u128::from(x) & mask == u128::from(*y) & mask
        }
        _ => false,
    }
}

impl LinkOps for FakeLinks {
    type Ns = FakeNs;

    fn link_by_name(&self, name: &str) -> Result<Link, NetlinkError> {
        self.read(
            "link_by_name",
            |_, _| name.to_owned(),
            |k, ns| {
                k.space(ns)
                    .and_then(|s| s.links.iter().find(|d| d.name == name))
                    .map(Dev::link)
                    .ok_or_else(|| NetlinkError::LinkNotFound(name.to_owned()))
            },
        )
    }

    fn link_by_index(&self, index: u32) -> Result<Link, NetlinkError> {
        self.read(
            "link_by_index",
            |_, _| index.to_string(),
            |k, ns| k.dev(ns, index).map(Dev::link).ok_or_else(|| NetlinkError::LinkNotFound(format!("index {index}"))),
        )
    }

    fn link_by_pci(&self, pci: &PciAddress) -> Result<Link, NetlinkError> {
        self.read(
            "link_by_pci",
            |_, _| pci.to_string(),
            |k, ns| {
                k.space(ns)
                    .and_then(|s| s.links.iter().find(|d| d.pci == Some(*pci) && d.kind.is_none()))
                    .map(Dev::link)
                    .ok_or_else(|| NetlinkError::LinkNotFound(format!("with PCI address {pci}")))
            },
        )
    }

    fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        self.read(
            "links",
            |_, _| String::new(),
            |k, ns| Ok(k.space(ns).map(|s| s.links.iter().map(Dev::link).collect()).unwrap_or_default()),
        )
    }

    fn vf_states(&self, pf_index: u32) -> Result<Vec<VfState>, NetlinkError> {
        self.read(
            "vf_states",
            |k, ns| k.name_of(ns, pf_index),
            |k, ns| {
                k.dev(ns, pf_index)
                    .map(|d| d.vfs.clone())
                    .ok_or_else(|| NetlinkError::LinkNotFound(format!("index {pf_index}")))
            },
        )
    }

    fn set_vf(&self, pf_index: u32, vf: u32, setting: &VfSetting) -> Result<(), NetlinkError> {
        let refused = |errno: Errno, k: &Kernel, ns: u32| NetlinkError::VfSettingRefused {
            pf: k.name_of(ns, pf_index),
            vf,
            setting: setting.name(),
            value: setting.value(),
            errno,
        };
        self.call(
            "set_vf",
            Kind::Change,
            |k, ns| format!("{} vf={vf} {} {}", k.name_of(ns, pf_index), setting.name(), setting.value()),
            refused,
            |k, ns| {
                if let Some((_, errno)) = k.refusals.iter().find(|(s, _)| s == setting.name()) {
                    return Err(refused(*errno, k, ns));
                }
                let Some(pf) = k.dev_mut(ns, pf_index) else {
                    return Err(kernel_err("set VF", format!("VF {vf} of link {pf_index}"), Errno::ENODEV));
                };
                let Some(st) = pf.vfs.iter_mut().find(|s| s.index == vf) else {
                    return Err(refused(Errno::EINVAL, k, ns));
                };
                apply_setting(st, setting);
                Ok(())
            },
        )
    }

    fn set_netns(&self, index: u32, target: &FakeNs) -> Result<(), NetlinkError> {
        let to = target.id;
        self.change(
            "set_netns",
            "move to namespace",
            index,
            |k, ns| format!("{} -> {}", k.name_of(ns, index), k.label(to)),
            |k, ns| {
                if k.space(to).is_none() {
                    return Err(Errno::EINVAL);
                }
                if ns == to {
                    return Ok(());
                }
                let dev = k.dev(ns, index).cloned().ok_or(Errno::ENODEV)?;
                if dev.index == LO {
                    return Err(Errno::EINVAL);
                }
                if k.name_taken(to, &dev.name, None) || dev.altnames.iter().any(|a| k.name_taken(to, a, None)) {
                    return Err(Errno::EEXIST);
                }
                let dev = k.take(ns, index).ok_or(Errno::ENODEV)?;
                k.arrive(to, dev);
                Ok(())
            },
        )
    }

    fn rename(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.change(
            "rename",
            "rename",
            index,
            |k, ns| format!("{} -> {name}", k.name_of(ns, index)),
            |k, ns| {
                if !valid_name(name) {
                    return Err(Errno::EINVAL);
                }
                let dev = k.dev(ns, index).ok_or(Errno::ENODEV)?;
                if dev.name == name {
                    return Ok(());
                }
                if k.name_taken(ns, name, None) {
                    return Err(Errno::EEXIST);
                }
                let dev = k.dev_mut(ns, index).ok_or(Errno::ENODEV)?;
                if dev.up {
                    return Err(Errno::EBUSY);
                }
                dev.name = name.to_owned();
                Ok(())
            },
        )
    }

    fn set_mac(&self, index: u32, mac: MacAddr) -> Result<(), NetlinkError> {
        self.change(
            "set_mac",
            "set MAC",
            index,
            |k, ns| format!("{} {mac}", k.name_of(ns, index)),
            |k, ns| {
                if mac.is_zero() || mac.is_multicast() {
                    return Err(Errno::EADDRNOTAVAIL);
                }
                k.dev_mut(ns, index).ok_or(Errno::ENODEV)?.mac = Some(mac);
                Ok(())
            },
        )
    }

    fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        self.change(
            "set_mtu",
            "set MTU",
            index,
            |k, ns| format!("{} {mtu}", k.name_of(ns, index)),
            |k, ns| {
                let dev = k.dev(ns, index).ok_or(Errno::ENODEV)?;
                // A macvtap's MTU cannot exceed its lower device's.
                let lower_mtu = dev
                    .lower
                    .and_then(|(id, _)| k.spaces.values().flat_map(|s| &s.links).find(|d| d.id == id).map(|d| d.mtu));
                if !(68..=dev.max_mtu).contains(&mtu) || lower_mtu.is_some_and(|m| mtu > m) {
                    return Err(Errno::EINVAL);
                }
                k.dev_mut(ns, index).ok_or(Errno::ENODEV)?.mtu = mtu;
                Ok(())
            },
        )
    }

    fn set_up(&self, index: u32, up: bool) -> Result<(), NetlinkError> {
        self.change(
            "set_up",
            if up { "set up" } else { "set down" },
            index,
            |k, ns| format!("{} {}", k.name_of(ns, index), if up { "up" } else { "down" }),
            |k, ns| {
                k.dev_mut(ns, index).ok_or(Errno::ENODEV)?.up = up;
                if !up && let Some(space) = k.space_mut(ns) {
                    // The kernel flushes the routes through a link that goes down.
                    space.routes.retain(|r| r.oif != Some(index));
                }
                Ok(())
            },
        )
    }

    fn add_altname(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.change(
            "add_altname",
            "add altname",
            index,
            |k, ns| format!("{} {name}", k.name_of(ns, index)),
            |k, ns| {
                if name.is_empty() || name.len() > 127 {
                    return Err(Errno::EINVAL);
                }
                if k.name_taken(ns, name, None) {
                    return Err(Errno::EEXIST);
                }
                k.dev_mut(ns, index).ok_or(Errno::ENODEV)?.altnames.push(name.to_owned());
                Ok(())
            },
        )
    }

    fn del_altname(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.change(
            "del_altname",
            "delete altname",
            index,
            |k, ns| format!("{} {name}", k.name_of(ns, index)),
            |k, ns| {
                let dev = k.dev_mut(ns, index).ok_or(Errno::ENODEV)?;
                let pos = dev.altnames.iter().position(|a| a == name).ok_or(Errno::ENOENT)?;
                dev.altnames.remove(pos);
                Ok(())
            },
        )
    }

    fn add_macvtap(&self, name: &str, parent: u32, mode: MacvtapMode) -> Result<(), NetlinkError> {
        let mode_name = format!("{mode:?}").to_lowercase();
        self.call(
            "add_macvtap",
            Kind::Change,
            |k, ns| format!("{name} on {} mode {mode_name}", k.name_of(ns, parent)),
            |errno, _, _| kernel_err("add macvtap", name.to_owned(), errno),
            |k, ns| {
                let err = |errno| kernel_err("add macvtap", name.to_owned(), errno);
                let lower = k.dev(ns, parent).cloned().ok_or_else(|| err(Errno::ENODEV))?;
                if !valid_name(name) {
                    return Err(err(Errno::EINVAL));
                }
                if k.name_taken(ns, name, None) {
                    return Err(err(Errno::EEXIST));
                }
                // Passthru owns its lower device: no second macvtap on it, in any mode.
                let siblings: Vec<MacvtapMode> = k
                    .spaces
                    .values()
                    .flat_map(|s| &s.links)
                    .filter_map(|d| d.lower.filter(|(id, _)| *id == lower.id).map(|(_, m)| m))
                    .collect();
                if !siblings.is_empty() && (mode == MacvtapMode::Passthru || siblings.contains(&MacvtapMode::Passthru))
                {
                    return Err(err(Errno::EBUSY));
                }
                let id = k.new_id();
                let index = k.new_index();
                let b = id.to_be_bytes();
                let dev = Dev {
                    id,
                    index,
                    name: name.to_owned(),
                    altnames: Vec::new(),
                    mac: Some(MacAddr([0x02, 0xfa, b[4], b[5], b[6], b[7]])),
                    mtu: lower.mtu,
                    max_mtu: lower.max_mtu,
                    up: false,
                    pci: None,
                    kind: Some("macvtap".into()),
                    lower: Some((lower.id, mode)),
                    vfs: Vec::new(),
                    addresses: Vec::new(),
                };
                k.space_mut(ns).ok_or_else(|| err(Errno::ENODEV))?.links.push(dev);
                Ok(())
            },
        )
    }

    fn del_link(&self, index: u32) -> Result<(), NetlinkError> {
        self.change(
            "del_link",
            "delete link",
            index,
            |k, ns| k.name_of(ns, index),
            |k, ns| {
                let dev = k.dev(ns, index).ok_or(Errno::ENODEV)?;
                if dev.kind.is_none() {
                    return Err(Errno::EOPNOTSUPP);
                }
                k.take(ns, index);
                Ok(())
            },
        )
    }

    fn add_address(&self, index: u32, addr: IpPrefix) -> Result<(), NetlinkError> {
        self.call(
            "add_address",
            Kind::Change,
            |k, ns| format!("{} {addr}", k.name_of(ns, index)),
            |errno, _, _| kernel_err("add address", format!("{addr} on link {index}"), errno),
            |k, ns| {
                let err = |errno| kernel_err("add address", format!("{addr} on link {index}"), errno);
                let dev = k.dev_mut(ns, index).ok_or_else(|| err(Errno::ENODEV))?;
                if dev.addresses.contains(&addr) {
                    return Err(err(Errno::EEXIST));
                }
                dev.addresses.push(addr);
                Ok(())
            },
        )
    }

    fn del_address(&self, index: u32, addr: IpPrefix) -> Result<(), NetlinkError> {
        self.call(
            "del_address",
            Kind::Change,
            |k, ns| format!("{} {addr}", k.name_of(ns, index)),
            |errno, _, _| kernel_err("delete address", format!("{addr} on link {index}"), errno),
            |k, ns| {
                let dev = k
                    .dev_mut(ns, index)
                    .ok_or_else(|| kernel_err("dump addresses", format!("link {index}"), Errno::ENODEV))?;
                let pos = dev.addresses.iter().position(|a| *a == addr).ok_or_else(|| NetlinkError::Protocol {
                    op: "delete address",
                    target: format!("link {index}"),
                    message: format!("{addr} not present"),
                })?;
                dev.addresses.remove(pos);
                Ok(())
            },
        )
    }

    fn addresses(&self, index: u32) -> Result<Vec<IpPrefix>, NetlinkError> {
        self.read(
            "addresses",
            |k, ns| k.name_of(ns, index),
            |k, ns| {
                k.dev(ns, index)
                    .map(|d| d.addresses.clone())
                    .ok_or_else(|| kernel_err("dump addresses", format!("link {index}"), Errno::ENODEV))
            },
        )
    }

    fn add_route(&self, route: &Route) -> Result<(), NetlinkError> {
        let target = format!("route {}", route.dst);
        self.call(
            "add_route",
            Kind::Change,
            |k, ns| {
                format!(
                    "{}{}{}",
                    route.dst,
                    route.gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
                    route.oif.map(|i| format!(" dev {}", k.name_of(ns, i))).unwrap_or_default()
                )
            },
            |errno, _, _| kernel_err("add route", target.clone(), errno),
            |k, ns| {
                let err = |errno| kernel_err("add route", target.clone(), errno);
                let oif = route.oif.ok_or_else(|| err(Errno::ENODEV))?;
                let dev = k.dev(ns, oif).ok_or_else(|| err(Errno::ENODEV))?;
                if !dev.up {
                    return Err(err(Errno::ENETDOWN));
                }
                if let Some(gw) = &route.gateway
                    && !dev.addresses.iter().any(|a| same_subnet(a, gw))
                {
                    return Err(err(Errno::ENETUNREACH));
                }
                let space = k.space_mut(ns).ok_or_else(|| err(Errno::ENODEV))?;
                if space.routes.iter().any(|r| r.dst == route.dst && r.metric == route.metric) {
                    return Err(err(Errno::EEXIST));
                }
                space.routes.push(route.clone());
                Ok(())
            },
        )
    }

    fn routes(&self, oif: u32) -> Result<Vec<Route>, NetlinkError> {
        self.read(
            "routes",
            |k, ns| k.name_of(ns, oif),
            |k, ns| {
                Ok(k.space(ns)
                    .map(|s| s.routes.iter().filter(|r| r.oif == Some(oif)).cloned().collect())
                    .unwrap_or_default())
            },
        )
    }
}

/// The fake node: a fixture sysfs and an in-memory kernel. See the module documentation.
#[derive(Debug)]
pub struct FakeNode {
    fixture: Fixture,
    sysfs: Sysfs,
    kernel: Arc<Mutex<Kernel>>,
}

/// The PCI address of the first PF of [`FakeNode::igb`].
pub const IGB_PF: PciAddress = PciAddress { domain: 0, bus: 1, device: 0, function: 0 };

impl FakeNode {
    /// A node with one igb PF `pf0` at 0000:01:00.0 and `num_vfs` VFs on igbvf (0000:02:00.N,
    /// netdevs `pf0vN` with altname `enp2s0fN`).
    pub fn igb(num_vfs: u32) -> Self {
        Self::new(FixtureBuilder::new().pf(PfSpec::igb(IGB_PF, "pf0").vfs(7, num_vfs)))
            .expect("lay out the fixture sysfs tree")
    }

    /// A node laid out by `builder`. Every PF with a netdev gets a link with a VF table (spoof
    /// checking on, link state auto, as igb reports them); every VF on a netdev driver gets a
    /// netdev (up, MTU 1500, MAC `02:00:00:<pf>:00:<vf>`, altname `enp<bus>s<dev>f<fn>`).
    pub fn new(builder: FixtureBuilder) -> io::Result<Self> {
        let fixture = builder.build()?;
        let sysfs = fixture.sysfs();
        let mut k = Kernel::default();
        k.spaces.insert(HOST, Space { label: "host".into(), refs: 1, links: Vec::new(), routes: Vec::new() });
        let lo = Dev {
            id: k.new_id(),
            index: LO,
            name: "lo".into(),
            altnames: Vec::new(),
            mac: Some(MacAddr::ZERO),
            mtu: 65536,
            max_mtu: 65536,
            up: true,
            pci: None,
            kind: None,
            lower: None,
            vfs: Vec::new(),
            addresses: Vec::new(),
        };
        k.next_index = LO;
        let mut devs = vec![lo];
        for (p, spec) in fixture.pfs().iter().enumerate() {
            let p = p as u8;
            if let Some(name) = &spec.netdev {
                let vfs = (0..spec.num_vfs)
                    .map(|index| VfState {
                        index,
                        spoofchk: true,
                        link_state: Some(VfLinkState::Auto),
                        ..Default::default()
                    })
                    .collect();
                devs.push(Dev {
                    id: k.new_id(),
                    index: k.new_index(),
                    name: name.clone(),
                    altnames: Vec::new(),
                    mac: Some(MacAddr([0x02, 0, 0, p, 0xff, 0xff])),
                    mtu: spec.mtu,
                    max_mtu: MAX_MTU,
                    up: true,
                    pci: Some(spec.pci),
                    kind: None,
                    lower: None,
                    vfs,
                    addresses: Vec::new(),
                });
            }
            for index in 0..spec.num_vfs {
                if let Some(name) = spec.vf_netdev(index) {
                    let dev = vf_dev(&mut k, spec, p, index, name);
                    devs.push(dev);
                }
            }
        }
        if let Some(host) = k.space_mut(HOST) {
            host.links = devs;
        }
        Ok(Self { fixture, sysfs, kernel: Arc::new(Mutex::new(k)) })
    }

    fn k(&self) -> MutexGuard<'_, Kernel> {
        lock(&self.kernel)
    }

    /// The fixture (to rebind drivers, read paths).
    pub fn fixture(&self) -> &Fixture {
        &self.fixture
    }

    /// The PCI address of VF `index` of the first PF.
    pub fn vf_pci(&self, index: u32) -> PciAddress {
        self.fixture.pfs()[0].vf_pci(index)
    }

    /// Rebinds VF `index` of the first PF to `driver` (`None`: unbound), in sysfs and in the
    /// kernel model: a netdev driver gives it a host netdev, vfio-pci or no driver takes it away.
    pub fn rebind_vf(&self, index: u32, driver: Option<&str>) -> io::Result<()> {
        let spec = self.fixture.pfs()[0].clone();
        self.fixture.rebind_vf(&spec.pci, index, driver)?;
        let pci = spec.vf_pci(index);
        let mut k = self.k();
        for space in k.spaces.values_mut() {
            space.links.retain(|d| d.pci != Some(pci));
        }
        let netdev = !matches!(driver, None | Some("vfio-pci" | "uio_pci_generic" | "igb_uio"));
        if netdev {
            let dev = vf_dev(&mut k, &spec, 0, index, format!("{}v{index}", spec.netdev.as_deref().unwrap_or("pf")));
            if let Some(host) = k.space_mut(HOST) {
                host.links.push(dev);
            }
        }
        Ok(())
    }

    // ----- namespaces -----

    /// Registers a pod namespace at `path` (what `CNI_NETNS` names); returns its label.
    pub fn add_netns(&self, path: impl AsRef<Path>) -> String {
        let mut k = self.k();
        let id = k.new_space("ns", 1);
        k.paths.insert(path.as_ref().to_owned(), id);
        let label = k.label(id);
        k.event(format!("kernel: {label} created at {}", path.as_ref().display()));
        label
    }

    /// Deletes the pod namespace at `path`, as the runtime does when a pod dies: it is destroyed
    /// once no handle holds it (its physical netdevs then return to the host namespace).
    pub fn delete_netns(&self, path: impl AsRef<Path>) {
        let mut k = self.k();
        if let Some(id) = k.paths.remove(path.as_ref()) {
            k.unref_ns(id);
        }
    }

    /// The labels of the live namespaces (`host`, `ns1`, ...): temporary ones must not outlive a
    /// command.
    pub fn namespaces(&self) -> Vec<String> {
        self.k().spaces.values().map(|s| s.label.clone()).collect()
    }

    /// Makes dead namespaces keep their physical netdevs until [`FakeNode::settle`], as the
    /// kernel's asynchronous namespace cleanup does.
    pub fn defer_netns_cleanup(&self, on: bool) {
        self.k().defer_cleanup = on;
    }

    /// Finishes deferred namespace cleanup: pending physical netdevs return to the host.
    pub fn settle(&self) {
        let mut k = self.k();
        let pending = std::mem::take(&mut k.limbo);
        for dev in pending {
            let name = k.return_to_host(dev);
            k.event(format!("kernel: {name} returned to host (deferred)"));
        }
    }

    // ----- inspection -----

    /// Link `name` in namespace `ns` (a label).
    pub fn link(&self, ns: &str, name: &str) -> Option<Link> {
        let k = self.k();
        k.spaces.values().find(|s| s.label == ns)?.links.iter().find(|d| d.name == name).map(Dev::link)
    }

    /// The names of the links in namespace `ns`.
    pub fn link_names(&self, ns: &str) -> Vec<String> {
        let k = self.k();
        let mut names: Vec<String> = k
            .spaces
            .values()
            .find(|s| s.label == ns)
            .map(|s| s.links.iter().map(|d| d.name.clone()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Where the netdev of PCI function `pci` is: namespace label (`limbo` while a dead
    /// namespace's cleanup is pending) and link.
    pub fn locate(&self, pci: &PciAddress) -> Option<(String, Link)> {
        let k = self.k();
        for s in k.spaces.values() {
            if let Some(d) = s.links.iter().find(|d| d.pci == Some(*pci)) {
                return Some((s.label.clone(), d.link()));
            }
        }
        k.limbo.iter().find(|d| d.pci == Some(*pci)).map(|d| ("limbo".to_owned(), d.link()))
    }

    /// The addresses of link `name` in namespace `ns`.
    pub fn addresses(&self, ns: &str, name: &str) -> Vec<IpPrefix> {
        let k = self.k();
        k.spaces
            .values()
            .find(|s| s.label == ns)
            .and_then(|s| s.links.iter().find(|d| d.name == name))
            .map(|d| d.addresses.clone())
            .unwrap_or_default()
    }

    /// The routes of namespace `ns`.
    pub fn routes(&self, ns: &str) -> Vec<Route> {
        self.k().spaces.values().find(|s| s.label == ns).map(|s| s.routes.clone()).unwrap_or_default()
    }

    /// VF `vf` in the VF table of PF netdev `pf` (in the host namespace).
    pub fn vf_state(&self, pf: &str, vf: u32) -> Option<VfState> {
        let k = self.k();
        k.space(HOST)?.links.iter().find(|d| d.name == pf)?.vfs.iter().find(|s| s.index == vf).cloned()
    }

    /// The sysctls written, as `<ns> <key>=<value>`.
    pub fn sysctls(&self) -> Vec<String> {
        self.k().sysctls.clone()
    }

    /// A stable text dump of every namespace (links without their indexes, VF tables, routes):
    /// compare dumps to prove the node is exactly as it was.
    pub fn snapshot(&self) -> String {
        self.k().snapshot(None)
    }

    /// [`FakeNode::snapshot`] of one namespace.
    pub fn snapshot_of(&self, ns: &str) -> String {
        self.k().snapshot(Some(ns))
    }

    /// Every recorded line: reads, changes (failed ones end in `(failed: ERRNO)`) and kernel
    /// events (`kernel: ...`).
    pub fn calls(&self) -> Vec<String> {
        self.k().log.iter().map(|e| e.line.clone()).collect()
    }

    /// The recorded calls that change something (attempts included, failed ones marked).
    pub fn changes(&self) -> Vec<String> {
        self.k().log.iter().filter(|e| e.kind == Kind::Change).map(|e| e.line.clone()).collect()
    }

    /// The kernel events (namespaces destroyed, devices returned).
    pub fn events(&self) -> Vec<String> {
        self.k().log.iter().filter(|e| e.kind == Kind::Event).map(|e| e.line.clone()).collect()
    }

    /// Forgets the recorded calls.
    pub fn clear_log(&self) {
        self.k().log.clear();
    }

    /// Calls `f` with the line of every change, before the change is made.
    pub fn on_change(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        self.k().hook = Some(Hook(Arc::new(f)));
    }

    // ----- failures -----

    /// The PF driver refuses VF setting `setting` (`vlan`, `mac`, `spoofchk`, `trust`, `tx rate`,
    /// `link state`) with `errno`, every time.
    pub fn refuse(&self, setting: &str, errno: Errno) {
        self.k().refusals.push((setting.to_owned(), errno));
    }

    /// The `n`th call (1-based, counted from now) of `op` fails with `errno`. `op` is a
    /// [`LinkOps`] method name (`set_vf`, `set_netns`, `rename`, ...) or a namespace-level one
    /// of [`FakeNode`] (`open_ns`, `temp_ns`, `sysctl`, `links_in` for [`FakeNode::links`]).
    pub fn fail_nth(&self, op: &str, n: usize, errno: Errno) {
        self.k().failures.push(Failure { op: op.to_owned(), skip: n.saturating_sub(1), errno, persistent: false });
    }

    /// Every call of `op` from now fails with `errno`.
    pub fn fail_always(&self, op: &str, errno: Errno) {
        self.k().failures.push(Failure { op: op.to_owned(), skip: 0, errno, persistent: true });
    }

    /// Disarms every injected failure and refusal.
    pub fn clear_failures(&self) {
        let mut k = self.k();
        k.failures.clear();
        k.refusals.clear();
    }

    // ----- changes behind the plugin's back (not recorded) -----

    /// Applies a VF setting directly (an administrator's `ip link set ... vf`).
    pub fn tamper_vf(&self, pf: &str, vf: u32, setting: &VfSetting) {
        let mut k = self.k();
        let Some(st) = k
            .space_mut(HOST)
            .and_then(|s| s.links.iter_mut().find(|d| d.name == pf))
            .and_then(|d| d.vfs.iter_mut().find(|s| s.index == vf))
        else {
            return;
        };
        apply_setting(st, setting);
    }

    /// Edits link `name` in namespace `ns` directly.
    pub fn tamper_link(&self, ns: &str, name: &str, edit: impl FnOnce(&mut TamperLink)) {
        let mut k = self.k();
        let Some(dev) =
            k.spaces.values_mut().find(|s| s.label == ns).and_then(|s| s.links.iter_mut().find(|d| d.name == name))
        else {
            return;
        };
        let mut t = TamperLink {
            name: dev.name.clone(),
            mac: dev.mac,
            mtu: dev.mtu,
            up: dev.up,
            altnames: dev.altnames.clone(),
            addresses: dev.addresses.clone(),
        };
        edit(&mut t);
        dev.name = t.name;
        dev.mac = t.mac;
        dev.mtu = t.mtu;
        dev.up = t.up;
        dev.altnames = t.altnames;
        dev.addresses = t.addresses;
    }

    /// Deletes link `name` in namespace `ns` outright (whatever it is).
    pub fn remove_link(&self, ns: &str, name: &str) {
        let mut k = self.k();
        if let Some(s) = k.spaces.values_mut().find(|s| s.label == ns) {
            s.links.retain(|d| d.name != name);
        }
    }

    /// Adds a virtual link `name` (kind `dummy`) to namespace `ns`.
    pub fn add_dummy(&self, ns: &str, name: &str) {
        let mut k = self.k();
        let id = k.new_id();
        let index = k.new_index();
        if let Some(s) = k.spaces.values_mut().find(|s| s.label == ns) {
            s.links.push(Dev {
                id,
                index,
                name: name.to_owned(),
                altnames: Vec::new(),
                mac: Some(MacAddr([0x02, 0xdd, 0, 0, 0, index as u8])),
                mtu: 1500,
                max_mtu: 65535,
                up: false,
                pci: None,
                kind: Some("dummy".into()),
                lower: None,
                vfs: Vec::new(),
                addresses: Vec::new(),
            });
        }
    }
}

/// The editable fields of a link, for [`FakeNode::tamper_link`].
#[derive(Debug, Clone)]
pub struct TamperLink {
    /// Name.
    pub name: String,
    /// MAC.
    pub mac: Option<MacAddr>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Altnames.
    pub altnames: Vec<String>,
    /// Addresses.
    pub addresses: Vec<IpPrefix>,
}

fn vf_dev(k: &mut Kernel, spec: &PfSpec, p: u8, index: u32, name: String) -> Dev {
    let pci = spec.vf_pci(index);
    Dev {
        id: k.new_id(),
        index: k.new_index(),
        name,
        altnames: vec![format!("enp{}s{}f{}", pci.bus, pci.device, pci.function)],
        mac: Some(MacAddr([0x02, 0, 0, p, 0, index as u8])),
        mtu: 1500,
        max_mtu: MAX_MTU,
        up: true,
        pci: Some(pci),
        kind: None,
        lower: None,
        vfs: Vec::new(),
        addresses: Vec::new(),
    }
}

/// The namespace-level operations, as a real node offers them (sysfs, `setns`-able handles,
/// netlink sockets, `/proc/sys`), recorded and failure-injectable like every [`FakeLinks`] call.
impl FakeNode {
    /// Sysfs: the fixture tree.
    pub fn sysfs(&self) -> &Sysfs {
        &self.sysfs
    }

    /// A handle on the host namespace (the one the code under test runs in). Not recorded.
    pub fn host_ns(&self) -> FakeNs {
        let mut k = self.k();
        FakeNs::new(&self.kernel, &mut k, HOST)
    }

    /// Opens the namespace registered at `path` ([`FakeNode::add_netns`]), as
    /// [`Netns::open`](crate::netns::Netns::open) does: [`NetnsError::Gone`] once the path is
    /// deleted. An injected failure is [`NetnsError::Open`] with that errno.
    pub fn open_ns(&self, path: &Path) -> Result<FakeNs, NetnsError> {
        let kernel = &self.kernel;
        traced(
            kernel,
            "open_ns",
            Kind::Read,
            |k| {
                let found = k.paths.get(path).map_or_else(|| "(gone)".to_owned(), |id| format!("-> {}", k.label(*id)));
                format!("open_ns {} {found}", path.display())
            },
            |errno, _| NetnsError::Open { path: path.to_owned(), source: io::Error::from_raw_os_error(errno as i32) },
            |k| match k.paths.get(path).copied() {
                Some(id) => Ok(FakeNs::new(kernel, k, id)),
                None => Err(NetnsError::Gone { path: path.to_owned() }),
            },
        )
    }

    /// Creates a private, unnamed namespace (`tmpN`), as
    /// [`Netns::create_anonymous`](crate::netns::Netns::create_anonymous) does: it dies with its
    /// last handle or netlink socket, and its physical netdevs then return to the host namespace.
    /// An injected failure is [`NetnsError::Create`] (what a failed `unshare` gives).
    pub fn temp_ns(&self) -> Result<FakeNs, NetnsError> {
        let kernel = &self.kernel;
        traced(
            kernel,
            "temp_ns",
            Kind::Change,
            |k| format!("temp_ns -> tmp{}", k.next_ns + 1),
            |errno, _| NetnsError::Create(errno),
            |k| {
                let id = k.new_space("tmp", 0);
                Ok(FakeNs::new(kernel, k, id))
            },
        )
    }

    /// Netlink bound to `ns` (recorded as `links_in`). Like a real socket, it keeps the
    /// namespace alive. An injected failure is [`NetlinkError::Socket`] with that errno.
    pub fn links(&self, ns: &FakeNs) -> Result<FakeLinks, NetlinkError> {
        let kernel = &self.kernel;
        traced(
            kernel,
            "links_in",
            Kind::Read,
            |k| format!("links_in {}", k.label(ns.id)),
            |errno, _| NetlinkError::Socket(io::Error::from_raw_os_error(errno as i32)),
            |k| Ok(FakeLinks { ns: FakeNs::new(kernel, k, ns.id) }),
        )
    }

    /// Writes `/proc/sys/<key>` as seen from inside `ns`: the write is kept, as
    /// `<ns> <key>=<value>`, for [`FakeNode::sysctls`].
    pub fn sysctl(&self, ns: &FakeNs, key: &str, value: &str) -> Result<(), SysctlError> {
        traced(
            &self.kernel,
            "sysctl",
            Kind::Change,
            |k| format!("{}: sysctl {key}={value}", k.label(ns.id)),
            |errno, _| SysctlError { key: key.to_owned(), value: value.to_owned(), errno },
            |k| {
                let line = format!("{} {key}={value}", k.label(ns.id));
                k.sysctls.push(line);
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_record_and_follow_the_kernel_rules() {
        let fake = FakeNode::igb(2);
        let pod = fake.add_netns("/run/netns/pod");
        let host = fake.host_ns();
        let links = fake.links(&host).unwrap();
        let vf = links.link_by_pci(&fake.vf_pci(1)).unwrap();
        assert_eq!((vf.name.as_str(), vf.altnames.as_slice()), ("pf0v1", &["enp2s0f1".to_owned()][..]));
        // An up link cannot be renamed; a taken name cannot be used.
        assert_eq!(links.rename(vf.index, "x").unwrap_err().errno(), Some(Errno::EBUSY));
        links.set_up(vf.index, false).unwrap();
        assert_eq!(links.rename(vf.index, "pf0v0").unwrap_err().errno(), Some(Errno::EEXIST));
        let ns = fake.open_ns(Path::new("/run/netns/pod")).unwrap();
        links.set_netns(vf.index, &ns).unwrap();
        let moved = fake.link(&pod, "pf0v1").unwrap();
        assert_ne!(moved.index, vf.index, "a move gives a new index");
        assert_eq!(
            fake.changes(),
            [
                "host: rename pf0v1 -> x (failed: EBUSY)",
                "host: set_up pf0v1 down",
                "host: rename pf0v1 -> pf0v0 (failed: EEXIST)",
                "host: set_netns pf0v1 -> ns1"
            ]
        );
        // The pod dies: the VF comes back to the host.
        drop(ns);
        fake.delete_netns("/run/netns/pod");
        assert_eq!(fake.locate(&fake.vf_pci(1)).unwrap().0, "host");
        assert_eq!(fake.namespaces(), ["host"]);
    }

    #[test]
    fn temp_namespaces_die_with_their_last_handle_and_cleanup_can_lag() {
        let fake = FakeNode::igb(1);
        fake.defer_netns_cleanup(true);
        let host = fake.host_ns();
        let links = fake.links(&host).unwrap();
        let vf = links.link_by_name("pf0v0").unwrap();
        links.set_up(vf.index, false).unwrap();
        let temp = fake.temp_ns().unwrap();
        let temp_links = fake.links(&temp).unwrap();
        links.set_netns(vf.index, &temp).unwrap();
        drop(temp);
        assert_eq!(fake.namespaces(), ["host", "tmp1"], "a netlink socket keeps it alive");
        drop(temp_links);
        assert_eq!(fake.locate(&fake.vf_pci(0)).unwrap().0, "limbo");
        fake.settle();
        assert_eq!(fake.locate(&fake.vf_pci(0)).unwrap().0, "host");
    }

    #[test]
    fn injected_failures_fire_once_at_the_nth_call() {
        let fake = FakeNode::igb(1);
        fake.fail_nth("set_mtu", 2, Errno::EIO);
        fake.refuse("link state", Errno::EOPNOTSUPP);
        let host = fake.host_ns();
        let links = fake.links(&host).unwrap();
        let vf = links.link_by_name("pf0v0").unwrap().index;
        links.set_mtu(vf, 1400).unwrap();
        assert_eq!(links.set_mtu(vf, 1300).unwrap_err().errno(), Some(Errno::EIO));
        links.set_mtu(vf, 1200).unwrap();
        let pf = links.link_by_name("pf0").unwrap().index;
        let e = links.set_vf(pf, 0, &VfSetting::LinkState(VfLinkState::Enable)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the driver of PF pf0 refused to set link state to enable on VF 0: EOPNOTSUPP: Operation not supported on transport endpoint"
        );
        assert_eq!(
            fake.changes(),
            [
                "host: set_mtu pf0v0 1400",
                "host: set_mtu pf0v0 1300 (failed: EIO)",
                "host: set_mtu pf0v0 1200",
                "host: set_vf pf0 vf=0 link state enable (failed: EOPNOTSUPP)"
            ]
        );
    }
}
