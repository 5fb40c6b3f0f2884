//! What makes the daemon look at the node again:
//!
//! - rtnetlink link events (`RTMGRP_LINK`): a PF going down or up, losing or regaining carrier, a
//!   VF netdev appearing or vanishing;
//! - kernel uevents (`NETLINK_KOBJECT_UEVENT`) of the `pci` and `net` subsystems: VFs created or
//!   removed through `sriov_numvfs`, drivers bound or unbound;
//! - a periodic rescan, the safety net for anything the events miss (and the only trigger on a
//!   fixture tree);
//! - the pools file changing (checked every second), the cluster's pools for this node changing
//!   (cluster mode, see [`crate::cluster`]), or SIGHUP: a reload.
//!
//! Events only say "something changed": the scan that follows reads the truth from sysfs. A burst
//! of events becomes one scan (the daemon debounces).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use netlink_sys::protocols::{NETLINK_KOBJECT_UEVENT, NETLINK_ROUTE};
use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A reason to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Scan the node; the source names what prompted it (`link`, `uevent`, `periodic`, ...).
    Rescan(&'static str),
    /// Reload the pools (the file, or the cluster's in cluster mode), then scan.
    Reload(&'static str),
}

impl Trigger {
    /// The source.
    pub fn source(self) -> &'static str {
        match self {
            Self::Rescan(s) | Self::Reload(s) => s,
        }
    }
}

/// `RTMGRP_LINK`.
const RTMGRP_LINK: u32 = 1;
/// The kernel's uevent multicast group (udev's is 2).
const UEVENT_KERNEL_GROUP: u32 = 1;

fn send(tx: &mpsc::Sender<Trigger>, t: Trigger) {
    // A full queue already holds a pending scan: dropping this one loses nothing.
    let _ = tx.try_send(t);
}

fn listen(
    protocol: isize,
    groups: u32,
    tx: mpsc::Sender<Trigger>,
    stop: CancellationToken,
    source: &'static str,
    relevant: fn(&[u8]) -> bool,
) -> std::io::Result<JoinHandle<()>> {
    let mut socket = TokioSocket::new(protocol)?;
    socket.socket_mut().bind(&SocketAddr::new(0, groups))?;
    // Bursts (creating 64 VFs) must not overflow the socket; an overflow still triggers a scan.
    let _ = socket.socket_ref().set_rx_buf_sz(1 << 20);
    Ok(tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                r = socket.recv_from_full() => r,
                () = stop.cancelled() => return,
            };
            match received {
                Ok((msg, _)) if relevant(&msg) => send(&tx, Trigger::Rescan(source)),
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    tracing::debug!(source, "netlink socket overflowed: scanning");
                    send(&tx, Trigger::Rescan(source));
                }
                Err(e) => {
                    tracing::warn!(source, error = %e, "netlink event socket failed; the periodic rescan remains");
                    return;
                }
            }
        }
    }))
}

/// Starts listening to rtnetlink link events.
pub fn link_events(tx: mpsc::Sender<Trigger>, stop: CancellationToken) -> std::io::Result<JoinHandle<()>> {
    listen(NETLINK_ROUTE, RTMGRP_LINK, tx, stop, "link", |_| true)
}

/// True for a uevent of the `pci` or `net` subsystem (`ACTION@DEVPATH\0KEY=VALUE\0...`).
pub fn uevent_is_relevant(msg: &[u8]) -> bool {
    msg.split(|&b| b == 0).any(|field| field == b"SUBSYSTEM=pci" || field == b"SUBSYSTEM=net")
}

/// Starts listening to kernel uevents.
pub fn uevents(tx: mpsc::Sender<Trigger>, stop: CancellationToken) -> std::io::Result<JoinHandle<()>> {
    listen(NETLINK_KOBJECT_UEVENT, UEVENT_KERNEL_GROUP, tx, stop, "uevent", uevent_is_relevant)
}

/// A rescan every `period`.
pub fn periodic(tx: mpsc::Sender<Trigger>, period: Duration, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => send(&tx, Trigger::Rescan("periodic")),
                () = stop.cancelled() => return,
            }
        }
    })
}

/// A reload whenever `path` changes (size, mtime, or a new file renamed over it, as ConfigMap
/// updates do), checked every `period`.
pub fn file_changes(
    tx: mpsc::Sender<Trigger>,
    path: PathBuf,
    period: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let stamp = move || std::fs::metadata(&path).ok().map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
    tokio::spawn(async move {
        let mut last = stamp();
        loop {
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = stop.cancelled() => return,
            }
            let now = stamp();
            if now != last {
                last = now;
                send(&tx, Trigger::Reload("pools-file"));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_pci_and_net_uevents() {
        assert!(uevent_is_relevant(b"add@/devices/pci0000:00/0000:00:19.0\0ACTION=add\0SUBSYSTEM=pci\0"));
        assert!(uevent_is_relevant(b"remove@/devices/x/net/eth1\0ACTION=remove\0SUBSYSTEM=net\0"));
        assert!(!uevent_is_relevant(b"change@/devices/virtual/tty\0SUBSYSTEM=tty\0"));
        assert!(!uevent_is_relevant(b"SUBSYSTEM=pcie_port"));
    }
}
