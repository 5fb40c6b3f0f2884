//! STATUS (spec 1.1.0): ready unless the state directory is unusable (code 50) or the IPAM
//! plugin says otherwise.

use crate::cmd::Ctx;
use crate::env::Command;
use crate::error::{CniError, Code, Result};
use crate::ipam::Ipam;

/// Runs STATUS.
pub fn status(ctx: &Ctx<'_>) -> Result<()> {
    let probe = ctx.conf.state_dir.path().join(".status-probe");
    sriov::persist::write_atomic(&probe, b"ok").and_then(|()| sriov::persist::remove(&probe)).map_err(|e| {
        CniError::new(Code::NotAvailable, format!("state directory {} is unusable", ctx.conf.state_dir)).caused_by(e)
    })?;
    if let Some(t) = &ctx.conf.ipam_type {
        let ipam = Ipam::new(t, &ctx.env.path, &ctx.conf.raw, ctx.conf.ipam_timeout)
            .map_err(|e| e.with_code(Code::NotAvailable))?;
        if ipam.speaks_1_1(ctx.env) {
            // STATUS answers 50 or 51 (spec): keep the IPAM plugin's 51, anything else is 50.
            ipam.exec(Command::Status, ctx.env).map_err(|e| {
                let limited = crate::ipam::plugin_code(&e) == Some(51);
                e.with_code(if limited { Code::NotAvailableLimited } else { Code::NotAvailable })
            })?;
        }
    }
    Ok(())
}
