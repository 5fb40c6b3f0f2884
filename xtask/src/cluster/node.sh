#!/bin/sh
# The test cluster's node, in the emulated-igb guest: containerd and kubelet (built by
# `cargo xtask k8s-components`), the images imported without a registry, Multus as the node's CNI.
# Written by xtask (xtask/src/cluster/node.sh); its settings come from node.env beside it.
#
#   node.sh up               uplink, filesystems, containerd, images, CNI, kubelet; waits Ready
#   node.sh install          vfnet with `kubectl apply -k` (cluster up); writes $R/ready
#   node.sh restart-kubelet  stops kubelet (SIGTERM) and starts it again with the same command
#   node.sh hold             keeps the node up until the host writes $R/stop (cluster up)
#   node.sh down             stops kubelet and containerd (pods' containers with them)
set -eu
. "$(dirname "$0")/node.env"
say() { echo "vfnet-node: $*"; }
die() { say "FAILED: $*"; exit 1; }
S=/run/vfnet-node
kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$PKI/admin.guest.kubeconfig" "$@"; }

# The tail of a component's log, for failures.
log_tail() { echo "--- last lines of $1:"; tail -n 30 "$1" 2>/dev/null || true; echo "---"; }

start_kubelet() {
    setsid "$K8S_BIN/kubelet" --config "$S/kubelet.yaml" \
        --kubeconfig "$PKI/kubelet.guest.kubeconfig" \
        --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
        --v=2 >>"$R/kubelet.log" 2>&1 </dev/null &
    echo $! >"$S/kubelet.pid"
}

stop_pid() {
    [ -f "$1" ] || return 0
    pid=$(cat "$1")
    kill -TERM "$pid" 2>/dev/null || return 0
    n=0
    while kill -0 "$pid" 2>/dev/null; do
        n=$((n + 1))
        [ "$n" -gt 150 ] && { kill -KILL "$pid" 2>/dev/null || true; break; }
        sleep 0.1
    done
    rm -f "$1"
}

# Polls "$@" every 0.2 s for up to $WAIT seconds.
wait_for() {
    what=$1; shift
    n=0
    until "$@" >/dev/null 2>&1; do
        n=$((n + 1))
        [ "$n" -gt $((WAIT * 5)) ] && return 1
        sleep 0.2
    done
    say "$what after $((n / 5)) s"
}

node_ready() {
    [ "$(kubectl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

up() {
    mkdir -p "$S" && mount -t tmpfs -o size=64m tmpfs "$S"
    for m in virtio_net overlay bridge br_netfilter; do modprobe "$m" || say "modprobe $m failed"; done

    # The uplink: the virtio NIC (the igb PF stays the tests' own), addressed statically.
    up=""
    n=0
    while [ -z "$up" ] && [ "$n" -lt 100 ]; do
        for d in /sys/class/net/*; do
            drv=$(readlink "$d/device/driver" 2>/dev/null || true)
            [ "${drv##*/}" = virtio_net ] && up=${d##*/}
        done
        n=$((n + 1)); [ -z "$up" ] && sleep 0.1
    done
    [ -n "$up" ] || die "no virtio uplink netdev"
    ip link set lo up
    ip link set "$up" up
    ip addr add "$NODE_IP/24" dev "$up"
    ip route add default via "$HOST_ALIAS" dev "$up"
    say "uplink $up $NODE_IP via $HOST_ALIAS"
    # The SR-IOV PF is up, as a node's network configuration leaves it (the device plugin counts
    # VFs under a PF that is down or without carrier as unhealthy).
    for pf in /sys/bus/pci/drivers/igb/*/net/*; do
        ip link set "${pf##*/}" up && say "PF ${pf##*/} up"
    done

    # Filesystems: the guest's root is the host's over 9p and overlays, where neither containerd's
    # overlayfs snapshotter nor kubelet's volumes work. Each of these starts empty, as on a node
    # that just booted, so nothing of a previous run (or of the host) is seen.
    for d in /var/lib/containerd /run/containerd /var/lib/kubelet /etc/cni/net.d /opt/cni/bin \
             /var/lib/cni /run/vfnet /var/lib/vfnet /etc/vfnet /run/k8s.cni.cncf.io /etc/cni/multus /run/cdi; do
        mkdir -p "$d" && mount -t tmpfs -o mode=0755 tmpfs "$d"
    done
    # kubelet propagates volume mounts into containers: the root must be a shared mount.
    mount --make-rshared /
    # cgroup v2 controllers for the pods' cgroups (cgroupfs driver: no systemd in the guest).
    for c in cpuset cpu io memory pids hugetlb; do
        echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || say "cgroup controller $c unavailable"
    done
    # 2 MiB huge pages for the userspace (DPDK) example pod.
    echo "$HUGEPAGES_2M" >/proc/sys/vm/nr_hugepages || say "no huge pages"

    cat >"$S/containerd.toml" <<EOF
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$SANDBOX_IMAGE"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    BinaryName = "$OCI_RUNTIME"
    SystemdCgroup = false
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["/opt/cni/bin"]
  conf_dir = "/etc/cni/net.d"
  max_conf_num = 1
EOF
    PATH="$CONTAINERD_BIN:$PATH" setsid "$CONTAINERD_BIN/containerd" --config "$S/containerd.toml" \
        >>"$R/containerd.log" 2>&1 </dev/null &
    echo $! >"$S/containerd.pid"
    WAIT=60 wait_for "containerd answers" "$CONTAINERD_BIN/ctr" version || { log_tail "$R/containerd.log"; die "containerd did not start"; }
    for archive in $IMAGES; do
        "$CONTAINERD_BIN/ctr" -n k8s.io images import "$archive" >/dev/null || die "cannot import $archive"
    done
    say "images: $("$CONTAINERD_BIN/ctr" -n k8s.io images ls -q | tr '\n' ' ')"

    # The node's CNI: Multus (thin plugin) delegating the pods' default network to a bridge with
    # host-local addresses (Debian's reference plugins), and the pods' extra networks to whatever
    # their NetworkAttachmentDefinitions name (vfnet, installed by its DaemonSet).
    cp "$MULTUS_BIN/multus" /opt/cni/bin/
    for p in bridge host-local loopback static tuning; do cp "/usr/lib/cni/$p" /opt/cni/bin/; done
    mkdir -p /etc/cni/net.d/multus.d
    cat >/etc/cni/net.d/00-multus.conf <<EOF
{
  "cniVersion": "1.0.0",
  "name": "multus-cni-network",
  "type": "multus",
  "kubeconfig": "$PKI/multus.guest.kubeconfig",
  "binDir": "/opt/cni/bin",
  "logFile": "$R/multus.log",
  "logLevel": "verbose",
  "delegates": [{
    "cniVersion": "1.0.0",
    "name": "podnet",
    "plugins": [
      {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
       "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "dataDir": "/var/lib/cni/networks"}},
      {"type": "loopback"}
    ]
  }]
}
EOF

    cat >"$S/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
failSwapOn: false
readOnlyPort: 0
# The node's filesystems are small tmpfs mounts: never evict or collect images for disk space
# (the images were imported, there is no registry to pull them again from).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "0%", imagefs.available: "0%"}
localStorageCapacityIsolation: false
resolvConf: /etc/resolv.conf
# Containers' logs in the results directory, readable on the host (the guest's /var/log is its own).
podLogsDir: "$R/pods"
serializeImagePulls: false
EOF
    : >"$R/kubelet.log"
    start_kubelet
    WAIT=180 wait_for "node $NODE_NAME Ready" node_ready || {
        log_tail "$R/kubelet.log"; log_tail "$R/containerd.log"; die "node $NODE_NAME not Ready"; }
}

# vfnet as an operator installs it, for `cluster up` (the tests run the same as their first
# scenario): the published manifests through the overlay, then the DaemonSet rolled out.
install() {
    kubectl apply -k "$OVERLAY"
    kubectl label node "$NODE_NAME" feature.node.kubernetes.io/network-sriov.capable=true --overwrite
    kubectl -n vfnet-system rollout status daemonset/vfnet-node --timeout=300s || {
        kubectl -n vfnet-system get pods -o wide; die "the vfnet DaemonSet did not roll out"; }
    echo ready >"$R/ready"
}

case "${1:-}" in
up) up ;;
install) install ;;
restart-kubelet)
    stop_pid "$S/kubelet.pid"
    start_kubelet
    say "kubelet restarted (pid $(cat "$S/kubelet.pid"))"
    ;;
hold)
    say "node up; \`cargo xtask cluster down\` stops it"
    while [ ! -e "$R/stop" ]; do sleep 1; done
    ;;
down)
    stop_pid "$S/kubelet.pid"
    stop_pid "$S/containerd.pid"
    ;;
*) die "usage: node.sh up|restart-kubelet|hold|down" ;;
esac
