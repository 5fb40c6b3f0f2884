//! `vfnet`, the CNI plugin binary: environment and stdin in, result or error JSON on stdout.

use std::io::{Read, Write};

fn main() {
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
