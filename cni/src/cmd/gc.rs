//! GC (spec 1.1.0): every journaled attachment of this network that is not in
//! `cni.dev/valid-attachments` is restored and released; errors are collected and all
//! reported; GC is forwarded to IPAM when it speaks 1.1.0.

use crate::cmd::{Ctx, release_and_forget};
use crate::env::Command;
use crate::error::{CniError, Code, Result, bad_config};
use crate::host::Host;
use crate::ipam::Ipam;
use crate::journal::Journal;

/// Runs GC.
pub fn gc<H: Host>(host: &H, ctx: &Ctx<'_>) -> Result<()> {
    let valid = ctx
        .conf
        .valid_attachments
        .as_ref()
        .ok_or_else(|| bad_config("cni.dev/valid-attachments", "missing from the GC configuration"))?;
    let mut errors = Vec::new();
    for j in Journal::scan(&ctx.conf.state_dir)? {
        let j = match j {
            Ok(j) => j,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if j.network != ctx.conf.name || valid.iter().any(|(c, i)| j.is(c, i)) {
            continue;
        }
        tracing::info!(vf = %j.vf, container = %j.container_id, ifname = %j.ifname, "GC: releasing a stale attachment");
        if let Err(e) = release_and_forget(host, ctx, &j) {
            errors.push(e);
        }
    }
    if let Some(t) = &ctx.conf.ipam_type {
        let ipam = Ipam::new(t, &ctx.env.path, &ctx.conf.raw, ctx.conf.ipam_timeout)?;
        if ipam.speaks_1_1(ctx.env) {
            if let Err(e) = ipam.exec(Command::Gc, ctx.env) {
                errors.push(e);
            }
        } else {
            tracing::info!(plugin = %t, "IPAM plugin does not speak CNI 1.1.0; GC not forwarded");
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(CniError::new(Code::RestoreFailed, format!("GC could not release {} attachment(s)", errors.len()))
        .details(list.join("; ")))
}
