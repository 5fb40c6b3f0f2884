//! DEL: idempotent and best-effort. Restores the VF from the journal wherever it is now; IPAM DEL
//! always runs. A DEL without journal (repeated, or after a failed ADD) succeeds. If a restore step
//! fails, DEL reports it and keeps the journal, so the runtime's retry can finish the job (where
//! sriov-cni deletes its cache and loses the restore state for good).

use crate::cmd::{Ctx, ipam_without_journal, release_and_forget};
use crate::env::Command;
use crate::error::Result;
use crate::host::Host;
use crate::journal::Journal;

/// Runs DEL.
pub fn del<H: Host>(host: &H, ctx: &Ctx<'_>) -> Result<()> {
    let container_id = ctx.env.container_id.as_deref().unwrap_or_default();
    let ifname = ctx.env.ifname.as_deref().unwrap_or_default();
    match Journal::find(&ctx.conf.state_dir, ctx.conf.device_id.as_ref(), container_id, ifname)? {
        Some(j) => release_and_forget(host, ctx, &j),
        None => {
            tracing::info!(container_id, ifname, "no journal: nothing of vfnet's to restore");
            ipam_without_journal(ctx, Command::Del)
        }
    }
}
