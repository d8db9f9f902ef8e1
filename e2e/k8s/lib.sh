# shellcheck shell=bash disable=SC2034 # the names are for the scripts that source this
# The local two-node cluster (make cluster-up, make e2e-k8s): names,
# addresses and helpers shared by cluster.sh, node.sh and run.sh.
#
# Layout (every address is a private test subnet of this machine):
#
#   host netns:  etcd (127.0.0.1:23790), kube-apiserver (10.210.0.1:6443),
#                kube-controller-manager, kube-scheduler; bridge csk8s0
#                10.210.0.1/24, the control link of both nodes
#   csk8s-a/b:   one netns (and mount namespace) per node: a containerd
#                2.x and a kubelet; eth1 = control link (10.210.0.2/.3),
#                eth0 = uplink (10.211.0.2/.3, default route), pods on
#                bridge cni0 (10.212.1.0/24 on node-a, 10.212.2.0/24 on
#                node-b), each node routing the other's pod subnet via eth0
#   csk8s-wire:  the cable between the two uplinks: brokennic forwards
#                frames between wa and wb byte for byte, without completing
#                partial checksums (the txgbe path of the field report)
E2E_SUITE=${E2E_SUITE:-cluster}
K8S_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$K8S_DIR/../.." && pwd)
source "$REPO/e2e/common.sh"

STATE=${CLUSTER_STATE:-$REPO/target/cluster}
PKI=$STATE/pki
KUBECONFIG_ADMIN=$STATE/admin.kubeconfig
LOCK=/run/csum-offload-cluster.lock
NODES=(node-a node-b)
# Cgroups of everything the cluster starts: cleanup kills what is in them.
CG_CONTROL=csk8s-control
CG_CONTROLLERS=(cpu cpuacct cpuset memory devices freezer blkio pids systemd)

BRIDGE=csk8s0
API_IP=10.210.0.1
API_PORT=6443
ETCD_PORT=23790
ETCD_PEER_PORT=23800
SERVICE_CIDR=10.213.0.0/16
WIRE_NS=csk8s-wire
PAUSE_IMAGE=localhost/csk8s-pause:1.0
BUSYBOX_IMAGE=docker.io/library/busybox:1.36
# The pinned module's (e2e/tools/go.mod), whatever its version: one tag.
PROMETHEUS_IMAGE=localhost/csk8s-prometheus:pinned
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/plugin/Cargo.toml" | head -n1)
PROJECT_IMAGE=docker.io/library/csum-offload:$VERSION

# Per node: letter, netns, addresses, pod subnet.
node_letter() { echo "${1#node-}"; }
node_netns() { echo "csk8s-$(node_letter "$1")"; }
node_index() { case $1 in node-a) echo 2 ;; node-b) echo 3 ;; *) die "unknown node $1" ;; esac; }
node_ctl_ip() { echo "10.210.0.$(node_index "$1")"; }
node_up_ip() { echo "10.211.0.$(node_index "$1")"; }
node_pod_cidr() { echo "10.212.$(($(node_index "$1") - 1)).0/24"; }
node_dir() { echo "$STATE/$1"; }
node_cgroup() { echo "csk8s-$(node_letter "$1")"; }
node_sock() { echo "$(node_dir "$1")/containerd/containerd.sock"; }

# The pid of the node's supervisor (node.sh), the process whose mount and
# network namespaces are the node's; empty when it is not running.
node_pid() {
    local f pid
    f=$(node_dir "$1")/node.pid
    pid=$(cat "$f" 2>/dev/null) || return 0
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "node.sh run $1" && echo "$pid"
    return 0
}

TOOLS_BIN=${TOOLS_BIN:-}
tools_bin() {
    [ -n "$TOOLS_BIN" ] || TOOLS_BIN=$(bash "$REPO/e2e/tools/build.sh" | tail -n1)
    echo "$TOOLS_BIN"
}

# Runs a command on NODE as if logged into it: in the node's mount and
# network namespaces, with the cluster's tools and the node's containerd
# as crictl's and ctr's default.
node_exec() {
    local node=$1 pid
    shift
    pid=$(node_pid "$node")
    [ -n "$pid" ] || die "$node is not running (make cluster-up)"
    nsenter --target "$pid" --mount --net -- env PATH="$(tools_bin):/usr/sbin:/usr/bin:/sbin:/bin" \
        CONTAINER_RUNTIME_ENDPOINT="unix://$(node_sock "$node")" IMAGE_SERVICE_ENDPOINT="unix://$(node_sock "$node")" \
        CONTAINERD_ADDRESS="$(node_sock "$node")" CONTAINERD_NAMESPACE=k8s.io \
        CRI_CONFIG_FILE="$(node_dir "$node")/crictl.yaml" "$@"
}

kubectl_admin() { "$(tools_bin)/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# Creates the cgroup NAME (and SUB below it) in every v1 controller,
# with cpuset's cpus and mems copied from the root so tasks may join.
make_cgroup() {
    local path=$1 c d
    for c in "${CG_CONTROLLERS[@]}"; do
        d=/sys/fs/cgroup/$c/$path
        [ -d "/sys/fs/cgroup/$c" ] || continue
        mkdir -p "$d"
        if [ "$c" = cpuset ]; then
            local p=/sys/fs/cgroup/cpuset q="" part
            for part in ${path//\// }; do
                q=$q/$part
                [ -n "$(cat "$p$q/cpuset.cpus")" ] || cat "$p/cpuset.cpus" >"$p$q/cpuset.cpus"
                [ -n "$(cat "$p$q/cpuset.mems")" ] || cat "$p/cpuset.mems" >"$p$q/cpuset.mems"
            done
        fi
    done
}

# Moves PID into cgroup PATH in every controller.
join_cgroup() {
    local pid=$1 path=$2 c
    for c in "${CG_CONTROLLERS[@]}"; do
        [ -d "/sys/fs/cgroup/$c/$path" ] && echo "$pid" >"/sys/fs/cgroup/$c/$path/cgroup.procs"
    done
    return 0
}

# Every pid in cgroup PATH or below it (pids controller).
cgroup_pids() {
    local d=/sys/fs/cgroup/pids/$1
    [ -d "$d" ] || return 0
    find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}

remove_cgroup() {
    local c
    for c in "${CG_CONTROLLERS[@]}"; do
        [ -d "/sys/fs/cgroup/$c/$1" ] || continue
        find "/sys/fs/cgroup/$c/$1" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}
