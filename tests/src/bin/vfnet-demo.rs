//! `cargo xtask demo`'s story, run inside the emulated-igb VM: the device plugin daemon advertises
//! a pool to a stand-in kubelet, profiles reach the node, two pods in two tenants get VFs through
//! Allocate and a vfnet ADD on VLANs 100 and 200, a tenant trying the other tenant's profile is
//! refused, and DEL returns every VF clean. Each step is narrated; any failure exits non-zero.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use kubelet_api::deviceplugin::v1beta1::{
    AllocateRequest, ContainerAllocateRequest, ContainerPreferredAllocationRequest, Empty, PreferredAllocationRequest,
};
use serde_json::{Value, json};
use sriov::netlink::{LinkOps, Netlink};
use sriov::sysfs::Pf;
use vfnet_e2e::cni::{Invocation, bin_dir, install_node_config};
use vfnet_e2e::igb_pf_with_vfs;
use vfnet_e2e::netns::NamedNetns;
use vfnet_testkit::kubelet::FakeKubelet;
// A stand-in Kubernetes API server speaking the real list/watch protocol over HTTP on 127.0.0.1:
// the same one the device plugin's cluster-mode tests use.
use vfnet_testkit::apiserver;

fn step(n: u32, what: &str) {
    println!("\n[{n}] {what}");
}

fn show(line: impl std::fmt::Display) {
    println!("    {line}");
}

/// The PF's VF table, as `ip link show <pf>` would list it.
fn vf_table(pf: &Pf) -> Result<()> {
    let nl = Netlink::new()?;
    let name = pf.netdev.as_deref().context("PF without netdev")?;
    let index = nl.link_by_name(name)?.index;
    show(format_args!("PF {} ({name}) VF table:", pf.pci));
    for st in nl.vf_states(index)? {
        show(format_args!(
            "  vf {}  vlan {:<4} qos {}  mac {}  spoofchk {}  trust {}",
            st.index,
            st.vlan,
            st.qos,
            st.mac,
            if st.spoofchk { "on" } else { "off" },
            if st.trust { "on" } else { "off" }
        ));
    }
    Ok(())
}

/// Stops the daemon (SIGTERM) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// Puts the PF's administrative state back when dropped.
struct PfState {
    index: u32,
    was_up: bool,
}

impl Drop for PfState {
    fn drop(&mut self) {
        if let Ok(nl) = Netlink::new() {
            let _ = nl.set_up(self.index, self.was_up);
        }
    }
}

fn main() {
    if let Err(e) = run() {
        println!("\nDEMO FAILED: {e:#}");
        std::process::exit(1);
    }
    println!("\nDemo complete: every step passed.");
}

fn run() -> Result<()> {
    let scratch = std::env::var_os("VFNET_SCRATCH").map_or_else(std::env::temp_dir, PathBuf::from).join("vfnet-demo");
    let _ = std::fs::remove_dir_all(&scratch);
    let (kubelet_dir, run_dir, state_dir) = (scratch.join("kubelet"), scratch.join("run"), scratch.join("state"));
    let plugins_dir = kubelet_dir.join("device-plugins");
    std::fs::create_dir_all(&plugins_dir)?;
    // The node configuration, as the DaemonSet installs it: the plugin's directories are the
    // admin's, and no network definition below names them (tenants write those).
    install_node_config(&json!({"runDir": run_dir, "stateDir": state_dir}))?;

    step(1, "The node: an emulated Intel 82576 (igb) with 4 VFs on the real igbvf driver");
    let pf = igb_pf_with_vfs(4)?;
    let pf_name = pf.netdev.clone().context("PF netdev")?;
    for vf in &pf.vfs {
        show(format_args!(
            "VF {} index {} driver {} netdev {}",
            vf.pci,
            vf.index,
            vf.driver.as_deref().unwrap_or("-"),
            vf.netdev.as_deref().unwrap_or("-")
        ));
    }
    let nl = Netlink::new()?;
    let pf_link = nl.link_by_name(&pf_name)?;
    let _pf_state = PfState { index: pf_link.index, was_up: pf_link.up };
    nl.set_up(pf_link.index, true)?;
    show(format_args!("PF {pf_name} set up (VFs are healthy only while their PF is up)"));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        step(2, "The cluster: a Node, a VfPool and two tenants' VfProfiles in the API server");
        let api = apiserver::ApiServer::start().await;
        api.apply(apiserver::NODES, apiserver::node("demo-node", json!({"feature.node.kubernetes.io/network-sriov.capable": "true"})));
        let pool_spec = json!({"resourceName": "tenants", "physicalNetwork": "physnet1",
            "nodeSelector": {"feature.node.kubernetes.io/network-sriov.capable": "true"},
            "selector": {"pfNames": [format!("{pf_name}#0-3")]}});
        api.apply(apiserver::POOLS, apiserver::pool("tenants", pool_spec.clone()));
        show(format_args!("VfPool tenants: {pool_spec}"));
        for (name, spec) in [
            ("tenant-a", json!({"vlan": 100, "vlanQoS": 3, "spoofChk": true, "trust": false, "physicalNetwork": "physnet1", "allowedNamespaces": ["tenant-a"]})),
            ("tenant-b", json!({"vlan": 200, "spoofChk": true, "physicalNetwork": "physnet1", "allowedNamespaces": ["tenant-b"]})),
        ] {
            show(format_args!("VfProfile {name}: {spec}"));
            api.apply(apiserver::PROFILES, apiserver::profile(name, spec));
        }
        let kubeconfig = api.kubeconfig(&scratch);
        show(format_args!("API server (list/watch over HTTP) at {}", api.addr()));

        step(3, "The device plugin daemon, in cluster mode, selects the pool by its Node's labels, registers it with kubelet, and mirrors the profiles to the node");
        let kubelet = FakeKubelet::start(&plugins_dir)?;
        let child = Command::new(bin_dir().join("vfnet-device-plugin"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--kubelet-dir")
            .arg(&kubelet_dir)
            .arg("--run-dir")
            .arg(&run_dir)
            .arg("--devinfo-dir")
            .arg(scratch.join("devinfo"))
            .args(["--node-name", "demo-node", "--metrics-addr", "127.0.0.1:19476", "--log-level", "warn"])
            .stdout(Stdio::null())
            .spawn()
            .context("start vfnet-device-plugin")?;
        let _daemon = Daemon(child);
        let regs = kubelet.wait_for_registrations(1, Duration::from_secs(60)).await.context("the daemon never registered")?;
        show(format_args!("kubelet saw Register: resource {} on {}", regs[0].resource_name, regs[0].endpoint));
        let mut client = kubelet.plugin(&regs[0].endpoint).await?;
        let mut stream = client.list_and_watch(Empty {}).await?.into_inner();
        let start = Instant::now();
        let devices = loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), stream.message()).await.context("ListAndWatch timed out")??.context("ListAndWatch ended")?;
            if msg.devices.len() == 4 && msg.devices.iter().all(|d| d.health == "Healthy") {
                break msg.devices;
            }
            ensure!(start.elapsed() < Duration::from_secs(60), "VFs never became healthy");
        };
        show(format_args!("ListAndWatch: {}", devices.iter().map(|d| format!("{}={}", d.id, d.health)).collect::<Vec<_>>().join(" ")));
        let profiles = vfnet_types::RunDir::new(&run_dir).profiles();
        let start = Instant::now();
        while !(profiles.profile("tenant-a").exists() && profiles.profile("tenant-b").exists()) {
            ensure!(start.elapsed() < Duration::from_secs(30), "the daemon did not mirror the profiles to {profiles}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for name in ["tenant-a", "tenant-b"] {
            let f: Value = serde_json::from_slice(&std::fs::read(profiles.profile(name))?)?;
            show(format_args!("{}: {} {} {}", profiles.profile(name).display(), f["kind"], f["metadata"]["name"], f["spec"]));
        }
        let start = Instant::now();
        let advertised = loop {
            let events: Vec<String> = api.events().iter().map(|e| format!("{} {} ({})", e["reason"].as_str().unwrap_or("-"), e["note"].as_str().unwrap_or(""), e["reportingInstance"].as_str().unwrap_or("-"))).collect();
            if let Some(e) = events.iter().find(|e| e.starts_with("PoolAdvertised")) {
                break e.clone();
            }
            ensure!(start.elapsed() < Duration::from_secs(30), "no PoolAdvertised event (events: {events:?})");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        show(format_args!("Event on VfPool tenants: {advertised}"));

        step(4, "Two pods, in tenants a and b, each get a VF: GetPreferredAllocation, Allocate, then vfnet ADD");
        let mut pods = Vec::new();
        let mut taken: Vec<String> = Vec::new();
        for (tenant, ip_range) in [("tenant-a", "10.100.0.0/24"), ("tenant-b", "10.200.0.0/24")] {
            let available: Vec<String> = devices.iter().map(|d| d.id.clone()).filter(|id| !taken.contains(id)).collect();
            let pref = client
                .get_preferred_allocation(PreferredAllocationRequest {
                    container_requests: vec![ContainerPreferredAllocationRequest { available_device_i_ds: available, must_include_device_i_ds: vec![], allocation_size: 1 }],
                })
                .await?
                .into_inner();
            let vf = pref.container_responses[0].device_i_ds.first().context("no preferred VF")?.clone();
            let alloc = client
                .allocate(AllocateRequest { container_requests: vec![ContainerAllocateRequest { devices_ids: vec![vf.clone()] }] })
                .await?
                .into_inner();
            let envs = &alloc.container_responses[0].envs;
            let (key, value) = envs.iter().find(|(k, _)| k.starts_with("PCIDEVICE_") && !k.ends_with("_INFO")).context("no PCIDEVICE_ variable")?;
            show(format_args!("pod in {tenant}: preferred {vf}; Allocate env {key}={value}"));
            taken.push(vf.clone());
            let ns = NamedNetns::create(&format!("demo-{tenant}"))?;
            let conf = json!({"cniVersion": "1.1.0", "name": format!("{tenant}-net"), "type": "vfnet", "deviceID": value,
                "profile": tenant,
                "ipam": {"type": "host-local", "subnet": ip_range, "dataDir": scratch.join("ipam")}});
            let mut add = Invocation::vfnet("ADD", &format!("ctr-{tenant}"), Some(ns.path()), "net1");
            add.args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={tenant};K8S_POD_NAME=web-0");
            let out = add.run(&conf)?;
            if out.code != Some(0) {
                bail!("vfnet ADD for {tenant} failed: {} {}", out.stdout, out.stderr);
            }
            let res = out.json()?;
            show(format_args!("vfnet ADD ({} ms): {} with {}", out.elapsed.as_millis(), res["interfaces"][0], res["ips"][0]["address"]));
            pods.push((tenant, ns, conf, add));
        }

        step(5, "The PF's VF table during the attachments: tenant-a's VF on VLAN 100 (QoS 3), tenant-b's on VLAN 200");
        vf_table(&pf)?;

        step(6, "A pod in tenant-b tries tenant-a's profile: refused");
        let intruder = NamedNetns::create("demo-intruder")?;
        let free = devices.iter().map(|d| d.id.clone()).find(|id| !taken.contains(id)).context("no free VF")?;
        let conf = json!({"cniVersion": "1.1.0", "name": "intruder", "type": "vfnet", "deviceID": free, "profile": "tenant-a"});
        let mut add = Invocation::vfnet("ADD", "ctr-intruder", Some(intruder.path()), "net1");
        add.args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=tenant-b;K8S_POD_NAME=sneaky".into();
        let out = add.run(&conf)?;
        ensure!(out.error_code() == Some(102), "the intruder was not refused with 102: {}", out.stdout);
        show(format_args!("vfnet ADD refused (exit {:?}): {}", out.code, out.stdout));

        step(7, "DEL returns every VF clean");
        for (tenant, ns, conf, add) in &pods {
            let mut del = add.clone();
            del.command = "DEL".into();
            let out = del.run(conf)?;
            ensure!(out.code == Some(0), "DEL for {tenant} failed: {}", out.stdout);
            show(format_args!("vfnet DEL for {tenant} ({} ms); pod namespace {} now empty", out.elapsed.as_millis(), ns.path().display()));
        }
        vf_table(&pf)?;
        let nl = Netlink::new()?;
        let index = nl.link_by_name(&pf_name)?.index;
        for st in nl.vf_states(index)? {
            ensure!(st.vlan == 0 && st.qos == 0, "VF {} still has VLAN {}", st.index, st.vlan);
        }
        for vf in &pf.vfs {
            ensure!(nl.link_by_pci(&vf.pci).is_ok(), "VF {} netdev is not back on the host", vf.pci);
        }
        show("every VF is back on the host, untagged");
        Ok::<_, anyhow::Error>(())
    })
}
