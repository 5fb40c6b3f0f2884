//! `vfnet`, the CNI plugin binary: environment and stdin in, result or error JSON on stdout.

use std::io::{Read, Write};
use std::path::Path;

const USAGE: &str = "usage: vfnet install <cni-bin-dir> [--node-config <source.json> <destination.json>]";

/// `vfnet install <dir> [--node-config SRC DEST]`: the DaemonSet's init container installs the
/// plugin on the node and, from its ConfigMap, the node configuration (checked first, so a bad
/// one fails the init container rather than every pod's ADD). Runtimes never pass arguments to a
/// CNI plugin.
fn install(args: &[std::ffi::OsString]) -> ! {
    let (dir, node_config) = match args {
        [dir] => (dir, None),
        [dir, flag, src, dest] if flag == "--node-config" => (dir, Some((Path::new(src), Path::new(dest)))),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Some((src, dest)) = node_config {
        match vfnet_cni::install::install_node_config(src, dest) {
            Ok(()) => eprintln!("vfnet: node configuration {} installed as {}", src.display(), dest.display()),
            Err(e) => {
                eprintln!("vfnet: install failed: {e}");
                std::process::exit(1);
            }
        }
    }
    match std::env::current_exe().and_then(|exe| vfnet_cni::install::install(&exe, Path::new(dir))) {
        Ok(path) => {
            eprintln!("vfnet: installed {}", path.display());
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("vfnet: install failed: {e}");
            std::process::exit(1);
        }
    }
}

/// The node: the fixed node configuration path, or (test builds only) `VFNET_NODE_CONFIG`.
fn host() -> vfnet_cni::RealHost {
    #[cfg(feature = "test-hooks")]
    if let Some(path) = std::env::var_os("VFNET_NODE_CONFIG") {
        return vfnet_cni::RealHost::with_node_config(path);
    }
    vfnet_cni::RealHost::new()
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "install") {
        install(&args[2..]);
    }
    let mut stdin = Vec::new();
    // VERSION may come without stdin; an unreadable stdin is then simply empty.
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let host = host();
    let outcome = vfnet_cni::run(&host, |k| std::env::var(k).ok(), &stdin);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(outcome.stdout.as_bytes());
    let _ = out.flush();
    // The answer is out: exit without tearing down the netlink sockets' runtimes one by one (the
    // kernel closes them), so the runtime waiting on the plugin gets its answer sooner.
    std::process::exit(outcome.status);
}
