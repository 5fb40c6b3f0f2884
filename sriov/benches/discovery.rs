//! Discovery of a fixture node with 1024 VFs (4 PFs × 256), and a VF lookup by PCI address.
//!
//! A plain bench (no criterion, to keep the build lean): warm up, then time N iterations one
//! by one and print the median and p90. Run with `cargo bench -p vfnet-sriov` (or
//! `cargo xtask bench`).
//!
//! Discovery reads each PF's VFs on up to 4 threads, one per core (`sysfs::par_map`), so the
//! discover figure depends on free cores; `taskset -c 0` gives the one-core figure.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use sriov::fixture::FixtureBuilder;

fn measure(name: &str, iters: usize, mut f: impl FnMut()) {
    for _ in 0..iters.min(10) {
        f();
    }
    let mut samples: Vec<Duration> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    let median = samples[samples.len() / 2];
    let p90 = samples[samples.len() * 9 / 10];
    println!("bench {name}: median {median:?}, p90 {p90:?} over {iters} runs");
}

fn main() {
    // `cargo test --benches` passes --bench-less flags; run fewer iterations then.
    let quick = std::env::args().any(|a| a == "--test");
    let iters = if quick { 3 } else { 200 };
    let fx = FixtureBuilder::many(4, 1024).build().unwrap();
    let sysfs = fx.sysfs();
    assert_eq!(sysfs.discover().unwrap().vfs().count(), 1024);
    measure("discover 4 PFs / 1024 VFs", iters, || {
        black_box(sysfs.discover().unwrap());
    });
    let last = fx.pfs()[3].vf_pci(255);
    measure("locate_vf (index 255 of 256)", iters * 10, || {
        black_box(sysfs.locate_vf(&last).unwrap());
    });
    measure("vf (one VF with all attributes)", iters * 10, || {
        black_box(sysfs.vf(&last).unwrap());
    });
}
