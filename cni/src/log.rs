//! Logging: stderr (which the runtime keeps) or `logFile`, never stdout (the result channel).
//! `logLevel` takes sriov-cni's names (panic, error, warning, info, debug); `logFormat` text or
//! json.

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::config::NetConf;

/// Installs the subscriber. Failing to open `logFile` falls back to stderr with a warning.
pub fn init(conf: &NetConf) {
    let level = match conf.log_level.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("panic" | "error") => "error",
        Some("warning" | "warn") => "warn",
        Some("debug") => "debug",
        Some("trace") => "trace",
        _ => "info",
    };
    let filter = EnvFilter::new(format!("{level},netlink_proto=warn,netlink_sys=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_target(false);
    let file = conf.log_file.as_ref().map(|p| (p, OpenOptions::new().create(true).append(true).open(p)));
    let _ = match (file, conf.log_json) {
        (Some((_, Ok(f))), true) => builder.json().with_writer(Mutex::new(f)).try_init(),
        (Some((_, Ok(f))), false) => builder.with_writer(Mutex::new(f)).try_init(),
        (Some((p, Err(e))), json) => {
            eprintln!("vfnet: cannot open logFile {}: {e}; logging to stderr", p.display());
            if json {
                builder.json().with_writer(std::io::stderr).try_init()
            } else {
                builder.with_writer(std::io::stderr).try_init()
            }
        }
        (None, true) => builder.json().with_writer(std::io::stderr).try_init(),
        (None, false) => builder.with_writer(std::io::stderr).try_init(),
    };
}
