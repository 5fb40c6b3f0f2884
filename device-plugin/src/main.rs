//! `vfnet-device-plugin`, the node daemon. Skeleton: the device plugin issue fills it.

fn main() {
    eprintln!("vfnet-device-plugin: not implemented yet");
    std::process::exit(1);
}
