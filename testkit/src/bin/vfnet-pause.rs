//! `vfnet-pause`: PID 1 of a pod sandbox in the real-Kubernetes test bed, in place of
//! registry.k8s.io/pause, which the test bed (no registry) cannot pull.
//!
//! It holds the pod's namespaces open by existing, reaps the orphans that a shared PID namespace
//! reparents to it, and exits 0 on SIGINT or SIGTERM, as the upstream pause does. The signals are
//! blocked and taken with sigwait rather than handled: no async-signal-safety to get right, and a
//! blocked signal still reaches a namespace's PID 1 (the kernel only drops signals that PID 1
//! would take the default action for). SIGCHLDs coalesce, so each one reaps every exited child.

use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(errno) => {
            eprintln!("vfnet-pause: {errno}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> nix::Result<()> {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGCHLD] {
        signals.add(signal);
    }
    signals.thread_block()?;
    loop {
        match signals.wait()? {
            Signal::SIGCHLD => reap()?,
            _ => return Ok(()),
        }
    }
}

/// Waits for every child that has exited, without blocking on those still running.
fn reap() -> nix::Result<()> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno),
        }
    }
}
