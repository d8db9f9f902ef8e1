#!/usr/bin/env bash
# A local two-node Kubernetes cluster on this machine, built from the
# pinned modules in e2e/tools (docs/testing.md, "The local cluster"):
#
#   cluster.sh up      build what is missing, start the cluster, print the
#                      KUBECONFIG path; safe to run twice (a running
#                      cluster is kept, a half-started one is replaced)
#   cluster.sh down    stop every process it started, remove every netns,
#                      veth, bridge, cgroup and file it made
#   cluster.sh status  whether it runs, and the nodes
#
# Needs root. Layout and addresses: e2e/k8s/lib.sh.
set -euo pipefail
# shellcheck disable=SC2034 # read by common.sh
E2E_SUITE=cluster
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, mounts, cgroups)"

# --- build -----------------------------------------------------------------

build_all() {
    local t0=$SECONDS
    TOOLS_BIN=$(tools_bin)
    export TOOLS_BIN
    say "cluster: tools ready in $((SECONDS - t0)) s ($TOOLS_BIN)"
    make -C "$REPO" --no-print-directory build wire-tools >&2
    build_images
}

# The images every node imports: the sandbox (pause), the workload
# (busybox), the project's and Prometheus (operator.sh's), as OCI
# archives; rebuilt when their inputs change.
build_images() {
    local out=$STATE/images b=$REPO/e2e/images/build.sh key
    key=$( { cat "$b" "$REPO/e2e/images/pause/pause.c" "$REPO/Dockerfile" "$REPO/target/release/csum-offload" "$TOOLS_BIN/prometheus"; } | sha256sum | cut -c1-16)
    if [ "$(cat "$out/.key" 2>/dev/null)" = "$key" ]; then
        return 0
    fi
    rm -rf "$out" && mkdir -p "$out"
    bash "$b" pause --tag "$PAUSE_IMAGE" --archive "$out/pause.tar" --private "$STATE/buildah" >&2
    bash "$b" busybox --tag "$BUSYBOX_IMAGE" --archive "$out/busybox.tar" --private "$STATE/buildah" >&2
    make -C "$REPO" --no-print-directory -o build image IMAGE_BUILDER=buildah IMAGE="csum-offload:$VERSION" \
        IMAGE_ARCHIVE="$out/csum-offload.tar" IMAGE_PRIVATE="$STATE/buildah" >&2
    bash "$b" prometheus --binary "$TOOLS_BIN/prometheus" --tag "$PROMETHEUS_IMAGE" \
        --archive "$out/prometheus.tar" --private "$STATE/buildah" >&2
    rm -rf "$STATE/buildah"
    echo "$key" >"$out/.key"
}

# --- PKI -------------------------------------------------------------------

# cert NAME CN [O] [SAN]: a key and a certificate signed by the cluster CA.
cert() {
    local name=$1 cn=$2 o=${3:-} san=${4:-} subj ext=$PKI/$1.ext
    [ -f "$PKI/$name.crt" ] && return 0
    subj="/CN=$cn"
    [ -z "$o" ] || subj="/O=$o$subj"
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
    openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        if [ -n "$san" ]; then
            echo "extendedKeyUsage=serverAuth,clientAuth"
            echo "subjectAltName=$san"
        else
            echo "extendedKeyUsage=clientAuth"
        fi
    } >"$ext"
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
        -days 30 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$PKI/$name.csr" "$ext"
}

# kubeconfig FILE USER-CERT: a kubeconfig for the API server with that
# client certificate.
kubeconfig() {
    cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: csk8s
  cluster:
    server: https://$API_IP:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: csk8s
  context: {cluster: csk8s, user: $2}
current-context: csk8s
KC
}

make_pki() {
    mkdir -p "$PKI"
    chmod 0700 "$PKI"
    if [ ! -f "$PKI/ca.crt" ]; then
        openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
        openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=csum-offload-local-cluster-ca" -days 30 \
            -out "$PKI/ca.crt" 2>/dev/null
        openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
        openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    fi
    cert apiserver kube-apiserver "" \
        "IP:$API_IP,IP:127.0.0.1,IP:${SERVICE_CIDR%.0.0/16}.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
    cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
    cert admin admin system:masters
    cert controller-manager system:kube-controller-manager
    cert scheduler system:kube-scheduler
    kubeconfig "$KUBECONFIG_ADMIN" admin
    kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager
    kubeconfig "$STATE/scheduler.kubeconfig" scheduler
    local node
    for node in "${NODES[@]}"; do
        cert "$node" "system:node:$node" system:nodes
        cert "$node-serving" "$node" "" "IP:$(node_ctl_ip "$node"),DNS:$node"
    done
}

# --- network ---------------------------------------------------------------

make_network() {
    ip link add "$BRIDGE" type bridge
    ip addr add "$API_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    ip netns add "$WIRE_NS"
    ip -n "$WIRE_NS" link set lo up
    local node ns l
    for node in "${NODES[@]}"; do
        ns=$(node_netns "$node")
        l=$(node_letter "$node")
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # The control link: eth1, on the host's bridge.
        ip link add "csk8s-$l-ctl" type veth peer name eth1 netns "$ns"
        ip link set "csk8s-$l-ctl" master "$BRIDGE" up
        ip -n "$ns" addr add "$(node_ctl_ip "$node")/24" dev eth1
        ip -n "$ns" link set eth1 up
        # The uplink: eth0, to the wire.
        ip link add "csk8s-$l-up" type veth peer name eth0 netns "$ns"
        ip link set "csk8s-$l-up" netns "$WIRE_NS"
        ip -n "$WIRE_NS" link set "csk8s-$l-up" name "w$l" up
        ip -n "$ns" addr add "$(node_up_ip "$node")/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route add default via 10.211.0.254 dev eth0
    done
    ip -n csk8s-a route add "$(node_pod_cidr node-b)" via "$(node_up_ip node-b)" dev eth0
    ip -n csk8s-b route add "$(node_pod_cidr node-a)" via "$(node_up_ip node-a)" dev eth0
    ip netns exec csk8s-a sysctl -qw net.ipv4.ip_forward=1
    ip netns exec csk8s-b sysctl -qw net.ipv4.ip_forward=1
    # The cable: brokennic, as long as a cluster may live (a day).
    ip netns exec "$WIRE_NS" setsid "$REPO/target/release/brokennic" --a wa --b wb --seconds 86400 \
        --max-frames 100000000 --ready-file "$STATE/brokennic.ready" --summary "$STATE/brokennic.summary" \
        --stats "$STATE/brokennic.stats" \
        >"$STATE/logs/brokennic.log" 2>&1 </dev/null 9>&- &
    echo $! >"$STATE/brokennic.pid"
    join_cgroup "$!" "$CG_CONTROL"
    wait_for 50 test -f "$STATE/brokennic.ready" || die "brokennic did not start (see $STATE/logs/brokennic.log)"
}

# --- control plane ---------------------------------------------------------

# start NAME COMMAND...: a daemon in the control plane's cgroup. Daemons
# never inherit the lock (fd 9): it is held only while cluster.sh runs.
start() {
    local name=$1
    shift
    setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null 9>&- &
    echo $! >"$STATE/$name.pid"
    join_cgroup "$!" "$CG_CONTROL"
}

api_healthy() {
    curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
        "https://$API_IP:$API_PORT/readyz" >/dev/null
}

start_control_plane() {
    local bin
    bin=$(tools_bin)
    start etcd "$bin/etcd" --name csk8s --data-dir "$STATE/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "csk8s=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
        --quota-backend-bytes 1073741824
    start kube-apiserver "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address "$API_IP" --advertise-address "$API_IP" --secure-port "$API_PORT" \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --client-ca-file "$PKI/ca.crt" \
        --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
        --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction,PodSecurity \
        --allow-privileged=true --cert-dir "$STATE/apiserver" --profiling=false
    wait_until 180 "kube-apiserver /readyz" api_healthy
    start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$STATE/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
        --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
        --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
        --use-service-account-credentials --leader-elect=false --bind-address 127.0.0.1 --secure-port 10257 \
        --controllers '*,-nodeipam' --profiling=false
    start kube-scheduler "$bin/kube-scheduler" --kubeconfig "$STATE/scheduler.kubeconfig" \
        --authentication-kubeconfig "$STATE/scheduler.kubeconfig" --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
        --leader-elect=false --bind-address 127.0.0.1 --secure-port 10259 --profiling=false
}

# --- nodes -----------------------------------------------------------------

# The primary CNI of each node, written as a cluster's CNI installer
# would: bridge + host-local with the node's pod subnet, then portmap.
# cniVersion 1.1.0, so containerd 2.x runs STATUS on the chain.
primary_conflist() {
    cat <<CNI
{
  "cniVersion": "1.1.0",
  "name": "csk8s",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$(node_pod_cidr "$1")" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
CNI
}

prepare_node() {
    local node=$1 dir bin
    dir=$(node_dir "$node")
    bin=$(tools_bin)
    mkdir -p "$dir/logs" "$dir/containerd" "$dir/kubelet-pki" "$dir/node/_etc_cni_net.d" "$dir/node/_opt_cni_bin"
    for p in bridge host-local loopback portmap; do
        cp "$bin/$p" "$dir/node/_opt_cni_bin/$p"
    done
    primary_conflist "$node" >"$dir/node/_etc_cni_net.d/10-csk8s.conflist"
    cp "$PKI/$node-serving.crt" "$dir/kubelet-pki/kubelet.crt"
    cp "$PKI/$node-serving.key" "$dir/kubelet-pki/kubelet.key"
    kubeconfig "$dir/kubelet.kubeconfig" "$node"
    printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 10\n' "$(node_sock "$node")" "$(node_sock "$node")" >"$dir/crictl.yaml"
    cat >"$dir/containerd.toml" <<TOML
version = 3
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$(node_sock "$node")"
[ttrpc]
  address = "$(node_sock "$node").ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""
[plugins.'io.containerd.internal.v1.opt']
  path = "$dir/containerd/opt"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/opt/cni/bin"]
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
TOML
    cat >"$dir/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $(node_ctl_ip "$node")
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $dir/kubelet-pki/kubelet.crt
tlsPrivateKeyFile: $dir/kubelet-pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$(node_sock "$node")
# These machines run cgroup v1 (hybrid); kubelet 1.35 and later refuse it
# unless told otherwise (docs/testing.md).
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$(node_cgroup "$node")
failSwapOn: false
# Root here lacks CAP_SYS_RESOURCE: the kubelet leaves its own score.
oomScoreAdj: 0
# Faster than the defaults, so the suite sees changes in seconds.
syncFrequency: 10s
nodeStatusUpdateFrequency: 4s
fileCheckFrequency: 10s
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: ""
maxPods: 60
YAML
}

start_node() {
    local node=$1 dir
    dir=$(node_dir "$node")
    make_cgroup "$(node_cgroup "$node")/system"
    nsenter --net="/run/netns/$(node_netns "$node")" setsid unshare --mount --propagation private \
        bash "$K8S_DIR/node.sh" run "$node" >"$dir/logs/supervisor.log" 2>&1 </dev/null 9>&- &
    local pid=$!
    join_cgroup "$pid" "$(node_cgroup "$node")/system"
    # unshare execs bash: the same pid becomes the supervisor.
    echo "$pid" >"$dir/node.pid"
}

node_ready() {
    [ "$(kubectl_admin get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# --- up, down, status ------------------------------------------------------

# The pid in STATE/NAME.pid, when that process still runs.
alive() {
    local pid
    pid=$(cat "$STATE/$1.pid" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

running() {
    [ -f "$STATE/up" ] && api_healthy || return 1
    local name node
    for name in etcd kube-apiserver kube-controller-manager kube-scheduler brokennic; do
        alive "$name" || return 1
    done
    for node in "${NODES[@]}"; do
        [ -n "$(node_pid "$node")" ] || return 1
    done
}

up() {
    if running; then
        say "cluster: already running"
        status
        return 0
    fi
    if [ -d "$STATE" ] || ip link show "$BRIDGE" >/dev/null 2>&1 || ip netns list | grep -q '^csk8s-'; then
        say "cluster: a previous cluster is half there; taking it down first"
        down
    fi
    local t0=$SECONDS ns
    mkdir -p "$STATE/logs"
    build_all
    make_pki
    make_cgroup "$CG_CONTROL"
    make_network
    start_control_plane
    local node
    for node in "${NODES[@]}"; do
        prepare_node "$node"
        start_node "$node"
    done
    for node in "${NODES[@]}"; do
        wait_until 240 "$node Ready (logs: $(node_dir "$node")/logs)" node_ready "$node"
    done
    # Pods can be created once the controller-manager made the namespaces'
    # default service accounts.
    for ns in default kube-system; do
        wait_until 60 "the service account $ns/default" kubectl_admin -n "$ns" get serviceaccount default
    done
    # kubectl and crictl of the cluster's release, for the user's PATH.
    ln -sfn "$(tools_bin)" "$STATE/bin"
    touch "$STATE/up"
    say "cluster: up in $((SECONDS - t0)) s"
    status
}

# Ends every process in the cluster's cgroups (the supervisors, kubelets,
# containerds, shims, pods, the control plane, brokennic), by pid.
kill_cgroups() {
    local cg pids=() i
    for ((i = 0; i < 10; i++)); do
        pids=()
        for cg in "$CG_CONTROL" csk8s-a csk8s-b; do
            mapfile -t -O "${#pids[@]}" pids < <(cgroup_pids "$cg")
        done
        [ ${#pids[@]} -gt 0 ] || return 0
        kill -KILL "${pids[@]}" 2>/dev/null || true
        sleep 0.3
    done
    die "processes left in the cluster's cgroups: ${pids[*]}"
}

down() {
    kill_cgroups
    local cg ns
    for cg in "$CG_CONTROL" csk8s-a csk8s-b; do
        remove_cgroup "$cg"
    done
    for ns in csk8s-a csk8s-b "$WIRE_NS"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    for l in a b; do
        ip link del "csk8s-$l-ctl" 2>/dev/null || true
    done
    if [ -d "$STATE" ]; then
        # Mounts live in the nodes' mount namespaces, gone with their
        # processes; nothing is mounted under the state dir on the host.
        if grep -qF " $STATE" /proc/mounts; then
            die "something is still mounted under $STATE (see /proc/mounts)"
        fi
        rm -rf --one-file-system "$STATE"
    fi
    say "cluster: down"
}

status() {
    if ! running; then
        say "cluster: not running"
        return 1
    fi
    kubectl_admin get nodes -o wide
    say "export KUBECONFIG=$KUBECONFIG_ADMIN PATH=$STATE/bin:\$PATH"
}

cmd=${1:-}
case $cmd in
up | down | status) ;;
*) die "usage: cluster.sh up|down|status" ;;
esac
mkdir -p "$(dirname "$LOCK")"
exec 9>"$LOCK"
flock -w 600 9 || die "another cluster.sh holds $LOCK"
"$cmd"
