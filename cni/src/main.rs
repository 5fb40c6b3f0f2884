//! `vfnet`, the CNI plugin. The full CNI lifecycle lands with the CNI issue; this skeleton only
//! answers VERSION-like probes so the workspace builds a real binary from day one.

fn main() {
    eprintln!("vfnet CNI plugin: not implemented yet");
    std::process::exit(1);
}
