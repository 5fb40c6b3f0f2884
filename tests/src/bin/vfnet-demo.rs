//! `cargo xtask demo`'s story, on the real Kubernetes node `cargo xtask demo` starts (kubelet and
//! containerd in the emulated-igb guest, the control plane on the host): vfnet installed with
//! `kubectl apply -k`, the example profiles and pools giving the Node its `vfnet.dev/*` capacity,
//! the example pods getting VFs through the scheduler, kubelet, Multus and vfnet on their tenants'
//! VLANs, a tenant trying another tenant's network refused with vfnet's error in its events, and
//! every VF back clean when the pods go. Every Kubernetes view shown is real `kubectl` output;
//! the PF's VF table is read over netlink. Any failure exits non-zero.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use anyhow::{Context, Result, bail};
use sriov::netlink::{LinkOps, Netlink};
use sriov::sysfs::Pf;
use vfnet_e2e::cluster::{ensure_installed, kubectl, wait_for};
use vfnet_e2e::examples::{
    apply_objects, assert_vfs_untagged, delete_pods, events, example, example_pods, network_status, setup, vf_pod,
    wait_running,
};
use vfnet_e2e::igb_pf;

fn step(n: u32, what: &str) {
    println!("\n[{n}] {what}");
}

fn show(line: impl std::fmt::Display) {
    println!("    {line}");
}

/// Runs kubectl and shows its output, indented.
fn kubectl_shown(args: &[&str]) -> Result<()> {
    show(format_args!("$ kubectl {}", args.join(" ")));
    for line in kubectl(args)?.lines() {
        show(format_args!("  {line}"));
    }
    Ok(())
}

/// The PF's VF table (the PF's view, as `ip link show <pf>` lists it).
fn vf_table(pf: &Pf) -> Result<()> {
    let nl = Netlink::new()?;
    let name = pf.netdev.as_deref().context("PF without netdev")?;
    let index = nl.link_by_name(name)?.index;
    show(format_args!("PF {} ({name}) VF table, over netlink:", pf.pci));
    for st in nl.vf_states(index)? {
        let vf = pf.vfs.iter().find(|v| v.index == st.index);
        show(format_args!(
            "  vf {}  {}  driver {:<8}  vlan {:<4} qos {}  spoofchk {}",
            st.index,
            vf.map_or_else(|| "?".to_owned(), |v| v.pci.to_string()),
            vf.and_then(|v| v.driver.as_deref()).unwrap_or("-"),
            st.vlan,
            st.qos,
            if st.spoofchk { "on" } else { "off" },
        ));
    }
    Ok(())
}

fn main() -> Result<()> {
    println!("Kubernetes {} on node {}", std::env::var("VFNET_K8S_VERSION")?, std::env::var("VFNET_NODE_NAME")?);
    step(1, "The node: a real kubelet and containerd on the emulated igb NIC, Multus as its CNI");
    kubectl_shown(&["get", "nodes", "-o", "wide"])?;

    step(2, "Install vfnet as an operator does: kubectl apply -k (an overlay setting only the image)");
    ensure_installed()?;
    kubectl_shown(&["-n", "vfnet-system", "get", "daemonset,pods", "-o", "wide"])?;

    step(3, "The admin's VfProfiles and VfPools (manifests/examples/, pools pointed at this PF)");
    let pf = setup()?;
    kubectl_shown(&["get", "vfprofiles,vfpools"])?;
    kubectl_shown(&[
        "get",
        "node",
        "-o",
        "custom-columns=NODE:.metadata.name,SRIOV_NET:.status.allocatable.vfnet\\.dev/sriov_net,\
         SRIOV_DPDK:.status.allocatable.vfnet\\.dev/sriov_dpdk",
    ])?;
    vf_table(&pf)?;

    step(4, "Tenants' networks and pods (manifests/examples/networks.yaml and pods.yaml)");
    apply_objects(&example("networks.yaml")?)?;
    apply_objects(&example_pods()?)?;
    for (ns, name) in [("tenant-a", "web"), ("tenant-a", "vm-launcher"), ("tenant-b", "dpdk")] {
        wait_running(ns, name)?;
    }
    kubectl_shown(&["get", "pods", "-A", "-o", "wide"])?;
    let web = vfnet_e2e::examples::pod("tenant-a", "web")?;
    show("tenant-a/web's network-status annotation, net1 (written by Multus from vfnet's result):");
    for line in serde_json::to_string_pretty(&network_status(&web, "net1")?)?.lines() {
        show(format_args!("  {line}"));
    }
    kubectl_shown(&["-n", "tenant-a", "get", "events", "--field-selector", "involvedObject.name=web"])?;
    vf_table(&igb_pf()?)?;

    step(5, "A tenant-b pod asking for tenant-a's network: the profile does not allow tenant-b");
    // Both of the pool's VFs are in use: vm-launcher goes first, or the intruder would only wait
    // for a VF (Pending, Insufficient) and never reach vfnet.
    delete_pods("tenant-a", &["vm-launcher"])?;
    apply_objects(&[vf_pod("tenant-b", "intruder", "tenant-a/tenant-a-direct")?])?;
    let refused = wait_for("vfnet's refusal (its error 102) in the pod's events", Duration::from_secs(180), || {
        Ok(events("tenant-b", "intruder")
            .lines()
            .find(|l| l.contains("may not use VfProfile tenant-a"))
            .map(str::to_owned))
    })?;
    show(format_args!("event: {refused}"));
    kubectl_shown(&["-n", "tenant-b", "get", "pod", "intruder"])?;

    step(6, "Delete the pods: every VF goes back to the host untagged");
    delete_pods("tenant-a", &["web"])?;
    delete_pods("tenant-b", &["dpdk", "intruder"])?;
    let pf = wait_for("every VF untagged", Duration::from_secs(60), || Ok(assert_vfs_untagged(&igb_pf()?).ok()))
        .and_then(|()| igb_pf())?;
    vf_table(&pf)?;
    if kubectl(&["get", "pods", "-A", "--no-headers"])?.lines().any(|l| l.contains("tenant-")) {
        bail!("tenant pods are left");
    }
    println!("\nThe whole flow ran on a real node. Try it yourself: cargo xtask cluster up");
    Ok(())
}
