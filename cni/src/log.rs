//! Logging: stderr (which the runtime keeps) or `logFile`, never stdout (the result channel).
//! `logLevel` takes sriov-cni's names (panic, error, warning, info, debug); `logFormat` text or
//! json.

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::NetConf;

/// Installs the subscriber. Failing to open `logFile` falls back to stderr with a warning.
pub fn init(conf: &NetConf) {
    let level = match conf.log_level.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("panic" | "error") => LevelFilter::ERROR,
        Some("warning" | "warn") => LevelFilter::WARN,
        Some("debug") => LevelFilter::DEBUG,
        Some("trace") => LevelFilter::TRACE,
        _ => LevelFilter::INFO,
    };
    // A plain target filter: no regex engine to build at every exec.
    let filter = Targets::new()
        .with_default(level)
        .with_target("netlink_proto", LevelFilter::WARN)
        .with_target("netlink_sys", LevelFilter::WARN);
    let writer: Box<dyn Fn() -> Box<dyn std::io::Write> + Send + Sync> = match conf.log_file.as_ref() {
        Some(path) => match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => {
                let f = std::sync::Arc::new(Mutex::new(f));
                Box::new(move || Box::new(SharedFile(f.clone())) as Box<dyn std::io::Write>)
            }
            Err(e) => {
                eprintln!("vfnet: cannot open logFile {}: {e}; logging to stderr", path.display());
                Box::new(|| Box::new(std::io::stderr()) as Box<dyn std::io::Write>)
            }
        },
        None => Box::new(|| Box::new(std::io::stderr()) as Box<dyn std::io::Write>),
    };
    let fmt = tracing_subscriber::fmt::layer().with_ansi(false).with_target(false).with_writer(writer);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if conf.log_json { registry.with(fmt.json()).try_init() } else { registry.with(fmt).try_init() };
}

/// A log file shared by the writers the subscriber makes.
struct SharedFile(std::sync::Arc<Mutex<std::fs::File>>);

impl std::io::Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("log file lock poisoned"))?.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().map_err(|_| std::io::Error::other("log file lock poisoned"))?.flush()
    }
}
