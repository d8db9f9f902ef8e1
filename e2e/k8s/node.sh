#!/usr/bin/env bash
# One node of the local cluster: `node.sh run NODE` is started by
# cluster.sh inside the node's network namespace, in a mount namespace of
# its own, and becomes the node's supervisor: it gives the node private
# copies of the paths a node owns, starts its containerd, imports the
# images, starts its kubelet, and waits. Everything it starts lives in the
# node's cgroup, which cluster.sh down empties.
#
# What the node sees as its own (everything else is the host's, read-only
# in effect because nothing on the node writes there):
#   /etc /opt /var/lib /var/log /run  overlays, written to target/cluster/NODE/ovl
#   /etc/cni/net.d /opt/cni/bin      the node's CNI dirs (target/cluster/NODE/cni-*)
#   /var/lib/kubelet /var/log/pods /var/lib/cni /run/csum-offload ...
#   /run/netns                       a tmpfs, shared, for the pods' netns files
#   /sys                             a sysfs of the node's netns
#   /proc/sys/{vm,kernel}/...        the kubelet's six kernel tunables, as
#                                    files holding the values it wants, so
#                                    it never changes the host's sysctls
set -euo pipefail
# shellcheck disable=SC2034 # read by common.sh
E2E_SUITE=node
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ "${1:-}" != run ] || [ -z "${2:-}" ]; then
    die "usage: node.sh run NODE (started by cluster.sh)"
fi
NODE=$2
DIR=$(node_dir "$NODE")
BIN=$(tools_bin)

setup_mounts() {
    node_overlays "$DIR" csk8s
    mkdir -p /run/netns
    mount -t tmpfs -o mode=0755,size=16m csk8s-netns /run/netns
    # The pods' netns files are mounted here after the agent's container
    # starts: they reach it (HostToContainer) only from a shared mount.
    mount --make-shared /run/netns
    node_binds "$DIR" /etc/cni/net.d /opt/cni/bin /var/lib/cni /var/lib/kubelet /var/log/pods \
        /var/log/containers /run/csum-offload /var/log/csum-offload
    # /var/lib/kubelet holds the pods' volumes, which the runtime mounts
    # and the kubelet expects to see propagate.
    mount --make-rshared /var/lib/kubelet
    node_sysfs "$DIR" csk8s-sysfs
    # The kubelet sets six global kernel tunables (vm.overcommit_memory,
    # kernel.panic, ...) when they differ from what it wants. Here it reads
    # files that already hold those values, and the host's stay as they are.
    local want
    mkdir -p "$DIR/sysctl"
    while read -r key want; do
        if [ "$(cat "/proc/sys/$key")" != "$want" ]; then
            echo "$want" >"$DIR/sysctl/${key//\//.}"
            mount --bind -o ro "$DIR/sysctl/${key//\//.}" "/proc/sys/$key"
            mount -o remount,bind,ro "/proc/sys/$key"
        fi
    done <<'TUNABLES'
vm/overcommit_memory 1
vm/panic_on_oom 0
kernel/panic 10
kernel/panic_on_oops 1
kernel/keys/root_maxkeys 1000000
kernel/keys/root_maxbytes 25000000
TUNABLES
    ip link set lo up
}

start_containerd() {
    PATH=$BIN:$PATH containerd --config "$DIR/containerd.toml" >"$DIR/logs/containerd.log" 2>&1 &
    echo $! >"$DIR/containerd.pid"
    wait_for 300 test -S "$(node_sock "$NODE")" || die "$NODE: containerd did not start (see $DIR/logs/containerd.log)"
    wait_for 100 "$BIN/ctr" --address "$(node_sock "$NODE")" version >/dev/null || die "$NODE: containerd does not answer"
}

import_images() {
    local a
    for a in "$STATE"/images/*.tar; do
        "$BIN/ctr" --address "$(node_sock "$NODE")" -n k8s.io images import --local "$a" >>"$DIR/logs/images.log" 2>&1 ||
            die "$NODE: ctr images import $a failed (see $DIR/logs/images.log)"
    done
}

start_kubelet() {
    PATH=$BIN:$PATH kubelet --config "$DIR/kubelet.yaml" --kubeconfig "$DIR/kubelet.kubeconfig" \
        --hostname-override "$NODE" --node-ip "$(node_ctl_ip "$NODE")" \
        --root-dir /var/lib/kubelet --cert-dir "$DIR/kubelet-pki" --v 2 \
        >"$DIR/logs/kubelet.log" 2>&1 &
    echo $! >"$DIR/kubelet.pid"
}

mkdir -p "$DIR/logs"
setup_mounts
start_containerd
import_images
start_kubelet
echo "$NODE: containerd $(cat "$DIR/containerd.pid"), kubelet $(cat "$DIR/kubelet.pid")" >"$DIR/logs/node.log"
# The supervisor holds the namespaces; it ends when cluster.sh down
# empties the node's cgroup.
wait
