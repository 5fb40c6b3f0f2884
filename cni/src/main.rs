//! `vfnet`, the CNI plugin binary: environment and stdin in, result or error JSON on stdout.

use std::io::{Read, Write};

fn main() {
    // `vfnet install <dir>`: the DaemonSet's init container installs the plugin on the node.
    // (Runtimes never pass arguments to a CNI plugin.)
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "install") {
        let Some(dir) = args.get(2) else {
            eprintln!("usage: vfnet install <cni-bin-dir>");
            std::process::exit(2);
        };
        let installed =
            std::env::current_exe().and_then(|exe| vfnet_cni::install::install(&exe, std::path::Path::new(dir)));
        match installed {
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
    let mut stdin = Vec::new();
    // VERSION may come without stdin; an unreadable stdin is then simply empty.
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let host = vfnet_cni::RealHost::new();
    let outcome = vfnet_cni::run(&host, |k| std::env::var(k).ok(), &stdin);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(outcome.stdout.as_bytes());
    let _ = out.flush();
    std::process::exit(outcome.status);
}
