//! Per-VF locks: one `flock` per VF under `<runDir>/locks/`, so operations on different VFs run
//! in parallel and two on the same VF never interleave (sriov-cni #219: a late DEL resetting a
//! VF another pod had just been given). The lock is released when the process exits, whatever
//! way it exits.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use sriov::persist::create_private_dir;
use vfnet_types::{PciAddress, RunDir};

use crate::error::{CniError, Code, Result};

/// How long an operation waits for another one on the same VF before answering "try again
/// later" (code 11): kubelet retries pod sandbox creation anyway.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// A held VF lock.
#[derive(Debug)]
pub struct VfLock {
    _lock: Flock<File>,
}

/// Takes the lock of `vf`, waiting up to `wait`.
pub fn lock_vf(run_dir: &RunDir, vf: &PciAddress, wait: Duration) -> Result<VfLock> {
    create_private_dir(&run_dir.locks())?;
    let path = run_dir.lock(vf);
    let start = Instant::now();
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| CniError::new(Code::State, format!("cannot open lock file {}: {e}", path.display())))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(VfLock { _lock: lock }),
            Err((_, Errno::EWOULDBLOCK)) if start.elapsed() < wait => std::thread::sleep(Duration::from_millis(20)),
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(CniError::new(
                    Code::TryAgainLater,
                    format!("VF {vf} is locked by another vfnet operation ({}); try again later", path.display()),
                ));
            }
            Err((_, errno)) => {
                return Err(CniError::new(Code::State, format!("cannot lock {}: {errno}", path.display())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_makes_others_try_again_later() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::new(tmp.path());
        let vf: PciAddress = "0000:01:00.1".parse().unwrap();
        let other: PciAddress = "0000:01:00.2".parse().unwrap();
        let held = lock_vf(&dir, &vf, LOCK_WAIT).unwrap();
        // A different VF is independent.
        let _other = lock_vf(&dir, &other, Duration::ZERO).unwrap();
        let e = lock_vf(&dir, &vf, Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.code, Code::TryAgainLater);
        assert!(e.msg.contains("0000:01:00.1"), "{e}");
        drop(held);
        lock_vf(&dir, &vf, Duration::ZERO).unwrap();
    }
}
