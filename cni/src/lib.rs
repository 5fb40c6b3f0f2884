//! The vfnet CNI plugin: attaches SR-IOV VFs to pods.
//!
//! - [`node_config`]: the admin's node configuration (`/etc/vfnet/node.json`): the plugin's
//!   directories and policy, which network definitions (written by tenants) cannot change;
//! - [`config`]: the network configuration (every sriov-cni key, plus vfnet's);
//! - [`policy`]: VfProfile and pool governance; [`node_socket`]: asking the node daemon for a
//!   profile missing from `profileDir`; [`dra`]: the pod's VF from a DRA claim the node daemon
//!   prepared;
//! - [`journal`]: write-ahead restore state, one file per VF;
//! - [`cmd`]: ADD, DEL, CHECK, GC, STATUS; [`attach`] and [`vf`] do the netdev and PF-side work
//!   through the [`host::Host`] seam;
//! - [`result`], [`error`], [`version`]: the spec's wire formats.
//! - [`timing`]: where an invocation's time goes, step by step, in its `done` log line.
//!
//! [`run`] is the whole plugin: environment and stdin in, stdout text and exit status out.

// A library crate: every public item says why it is there (`cargo xtask test` denies warnings).
#![warn(missing_docs)]

pub mod attach;
pub mod cmd;
pub mod config;
pub mod dra;
pub mod env;
pub mod error;
pub mod fault;
pub mod host;
pub mod install;
pub mod ipam;
pub mod journal;
pub mod lock;
pub mod log;
pub mod node_config;
pub mod node_socket;
pub mod podresources;
pub mod policy;
pub mod result;
pub mod timing;
pub mod version;
pub mod vf;

use crate::cmd::Ctx;
use crate::config::NetConf;
use crate::env::{Command, Env};
use crate::error::{CniError, Code};
use crate::host::Host;
use crate::version::Version;

/// What to print on stdout, and the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// stdout.
    pub stdout: String,
    /// Exit status.
    pub status: i32,
}

/// Runs one plugin invocation against `host`. `var` reads the environment.
pub fn run<H: Host>(host: &H, var: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    timing::begin();
    // The version to answer errors in: the config's if it has a readable one.
    let version_hint = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion").and_then(|c| c.as_str()).map(str::to_owned))
        .filter(|v| Version::parse(v).is_ok())
        .unwrap_or_else(|| Version::LATEST.as_str().to_owned());
    let fail = |e: CniError| {
        tracing::error!(code = e.code(), %e, steps = %timing::summary(), "failed");
        Outcome { stdout: e.to_json(&version_hint).to_string(), status: 1 }
    };
    let command = match var("CNI_COMMAND").as_deref().map(Command::parse) {
        Some(Ok(c)) => c,
        Some(Err(e)) => return fail(e),
        None => return fail(CniError::new(Code::InvalidEnvironment, "CNI_COMMAND is not set")),
    };
    if command == Command::Version {
        let requested = serde_json::from_slice::<serde_json::Value>(stdin)
            .ok()
            .and_then(|v| v.get("cniVersion").and_then(|c| c.as_str()).map(str::to_owned));
        return Outcome { stdout: version::version_info(requested.as_deref()).to_string(), status: 0 };
    }
    let env = match Env::from_vars(&var) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    let node = match host.node_config() {
        Ok(n) => n,
        Err(e) => return fail(CniError::new(Code::NodeConfig, e.to_string()).caused_by(e)),
    };
    let mut conf = match NetConf::parse(stdin, &env.args, &node) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    log::init(&conf);
    timing::mark("config");
    if let Err(e) = env.require_for(command) {
        return fail(e);
    }
    if matches!(command, Command::Status | Command::Gc) && conf.cni_version < Version::V1_1_0 {
        return fail(CniError::new(
            Code::IncompatibleVersion,
            format!("{} needs cniVersion 1.1.0, the config has {}", command.as_str(), conf.cni_version),
        ));
    }
    // ADD with neither deviceID nor resourceName: a VF the DRA driver prepared for the pod.
    let claimed = if command == Command::Add {
        match dra::claim_for_add(&mut conf, &env) {
            Ok(c) => c,
            Err(e) => return fail(e),
        }
    } else {
        None
    };
    let ctx = Ctx { env: &env, conf: &conf };
    let span = tracing::info_span!(
        "vfnet",
        cmd = command.as_str(),
        container = env.container_id.as_deref().unwrap_or("-"),
        ifname = env.ifname.as_deref().unwrap_or("-")
    );
    let _enter = span.enter();
    let outcome = match command {
        Command::Add => cmd::add::add(host, &ctx).map(|r| {
            if let Some(device) = &claimed {
                dra::report(&conf, &env, device, &r);
            }
            r.to_string()
        }),
        Command::Del => cmd::del::del(host, &ctx).map(|()| String::new()),
        Command::Check => cmd::check::check(host, &ctx).map(|()| String::new()),
        Command::Gc => cmd::gc::gc(host, &ctx).map(|()| String::new()),
        Command::Status => cmd::status::status(&ctx).map(|()| String::new()),
        Command::Version => Ok(String::new()),
    };
    match outcome {
        Ok(stdout) => {
            let spent = timing::summary();
            tracing::info!(total_ms = spent.total.as_secs_f64() * 1e3, steps = %spent, "done");
            Outcome { stdout, status: 0 }
        }
        Err(e) => fail(e),
    }
}

/// Re-exported for the binary.
pub use host::RealHost;
