//! vfnet's automation, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! Plain Rust rather than shell scripts so the whole test flow — host checks, then the
//! emulated-igb VM — is one typed program that fails loudly. Arguments are parsed by hand to keep
//! the crate's dependencies to anyhow and serde_json.
// Printing progress and results is this program's whole job.
#![allow(clippy::print_stdout)]

mod bench;
mod cargo;
mod cluster;
mod cmd;
mod demo;
mod image;
mod images;
mod k8s;
mod manifests;
mod oci;
mod setup;
mod test;
mod vm;

use std::process::ExitCode;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  vm-setup             install what the emulated-igb VM needs, and the manifest validation tools
                       (idempotent; Debian bookworm, root)
  test [--vm-only|--host-only]
                       the whole suite: vm-setup, fmt, CRD freshness, manifest validation,
                       clippy, host tests, the VM tests, then the real-cluster tests
  crdgen               regenerate the CRD YAML (crds/ and manifests/crds/)
  manifests            check the CRD YAML is current and validate manifests/ offline
  demo                 the real cluster: the node model vfnet discovers, then the whole flow
                       narrated with real kubectl output
  static-binaries      build the image's static (musl) binaries, check and run them
  images               write the real-node test bed's images (vfnet:dev, vfnet-pause:1,
                       vfnet-workload:1) as OCI archives for `ctr images import`, in
                       target/vfnet-images/
  bench [--host-only|--vm-only|--cluster]
                       benchmarks: discovery over 1024 fixture VFs, the device plugin, and
                       vfnet vs host-device CNI ADD/DEL/VERSION in the VM; --cluster: vfnet vs
                       the reference SR-IOV stack on the real cluster
  cluster up|down|control-plane
                       start the real Kubernetes test cluster (control plane on the host, the
                       emulated-igb guest as its node) with vfnet installed, and leave it
                       running for kubectl; or stop it; or check the control plane alone
  k8s-components       build the real-node test bed's Kubernetes, etcd, containerd, Multus and
                       the reference SR-IOV peers from their Go modules (pinned under k8s/),
                       cached by version in target/vfnet-k8s/
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        print!("{USAGE}");
        bail!("no command given");
    };
    match command.as_str() {
        "vm-setup" => setup::cli(rest),
        "test" => test::cli(rest),
        "demo" => demo::cli(rest),
        "bench" => bench::cli(rest),
        "crdgen" => manifests::crdgen_cli(rest),
        "manifests" => manifests::cli(rest),
        "static-binaries" => image::check_static_binaries(),
        "images" => images::cli(rest),
        "cluster" => cluster::cli(rest),
        "k8s-components" => k8s::cli(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            print!("{USAGE}");
            bail!("unknown command `{other}`")
        }
    }
}
