#!/usr/bin/env bash
# kind-cluster e2e for csum-offload's DaemonSet (docs/install.md, docs/testing.md).
#
# Needs docker (with a running daemon), kind and kubectl; without them it
# exits 77 with a message. CI cannot run it (no docker engine there): the
# containerd e2e (make e2e) covers the same plugin behaviour.
#
#  1. builds the image (make image) and loads it into a 2-node kind cluster;
#  2. applies manifests/ with a policy mapping the kind node's uplink driver
#     (veth) to the txgbe settings (e2e/kind/kustomization.yaml);
#  3. checks every node's primary conflist holds the entry exactly once and
#     the installer logged the detected driver;
#  4. runs a server and a client pod on different nodes and a Service:
#     TX checksum is off on both veth ends of both pods (csum-offload
#     inspect on the node), pod-to-pod and pod-to-Service TCP moves 4 MiB
#     intact;
#  5. a kindnet restart (and a plain rewrite of the file) keeps the entry,
#     and a pod created afterwards still gets the settings; a rolling
#     restart of the DaemonSet never leaves a node without the entry;
#  6. deleting the DaemonSet removes the entry from every node, keeps the
#     binary, and existing pods still delete cleanly; a pod created
#     afterwards is untouched (TX checksum on at both veth ends).
# As in the CRI suite (make e2e-cri, which CI runs instead): the installer
# process runs with no capabilities, no_new_privs and a seccomp filter;
# the node's NetworkReady (crictl info) stays true in every sample during
# the rolling restart and the uninstall; pods created throughout the
# rolling restart all get the settings; a ConfigMap change reaches new
# pods.
#
# Environment: KIND_CLUSTER_NAME (default csum-offload-e2e); KEEP_CLUSTER=1
# keeps the cluster afterwards; REUSE_CLUSTER=1 uses an existing one.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${KIND_CLUSTER_NAME:-csum-offload-e2e}
KEEP=${KEEP_CLUSTER:-0}
REUSE=${REUSE_CLUSTER:-0}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' plugin/Cargo.toml | head -n1)
IMAGE=csum-offload:$VERSION
NS=kube-system
CONF_DIR=/etc/cni/net.d
PLUGIN=/opt/cni/bin/csum-offload

missing=()
for tool in docker kind kubectl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "e2e-kind: not run: ${missing[*]} not found in PATH." >&2
    echo "e2e-kind: this suite needs docker, kind and kubectl; CI runs the containerd e2e (make e2e) instead." >&2
    exit 77
fi
if ! docker info >/dev/null 2>&1; then
    echo "e2e-kind: not run: docker is installed but its daemon is not reachable (docker info failed)." >&2
    exit 77
fi

TMP=$(mktemp -d)
CREATED=0
step() { echo "== $*"; }
fail() {
    echo "e2e-kind: FAIL: $*" >&2
    exit 1
}
k() { kubectl --context "kind-$CLUSTER" "$@"; }

diagnostics() {
    echo "---- diagnostics" >&2
    k get pods -A -o wide >&2 || true
    k -n "$NS" describe ds csum-offload >&2 || true
    k -n "$NS" logs -l app.kubernetes.io/name=csum-offload --all-containers --tail=100 --prefix >&2 || true
    for node in $(nodes); do
        echo "-- $node: $CONF_DIR" >&2
        docker exec "$node" sh -c "ls -la $CONF_DIR; for f in $CONF_DIR/*; do echo \"# \$f\"; cat \"\$f\"; done" >&2 || true
    done
}

cleanup() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        diagnostics
    fi
    if [ "$CREATED" = 1 ] && [ "$KEEP" != 1 ]; then
        kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT

nodes() { kind get nodes --name "$CLUSTER" 2>/dev/null | sort; }

# The file the runtime uses: first *.conf/*.conflist/*.json by name.
primary() {
    docker exec "$1" sh -c "cd $CONF_DIR && ls -1 | grep -E '\\.(conf|conflist|json)\$' | LC_ALL=C sort | head -n1"
}

has_config() { [ -n "$(primary "$1")" ]; }

# Changes whenever the primary file is rewritten or replaced.
stamp() {
    docker exec "$1" sh -c "f=\$(ls -1 $CONF_DIR | grep -E '\\.(conf|conflist|json)\$' | LC_ALL=C sort | head -n1); stat -c '%n %i %Y %Z %s' $CONF_DIR/\$f"
}

# How many csum-offload entries a node's config files hold (all of them).
entries() {
    docker exec "$1" sh -c "cat $CONF_DIR/*.conf $CONF_DIR/*.conflist $CONF_DIR/*.json 2>/dev/null" |
        grep -cE '"type": *"csum-offload"' || true
}

primary_entries() {
    local file
    file=$(primary "$1")
    [ -n "$file" ] || {
        echo 0
        return
    }
    docker exec "$1" cat "$CONF_DIR/$file" | grep -cE '"type": *"csum-offload"' || true
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls every 0.5 s.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${limit}s waiting for $what"
        sleep 0.5
    done
}

all_nodes_have_one_entry() {
    local node
    for node in $(nodes); do
        [ "$(primary_entries "$node")" = 1 ] || return 1
    done
}

no_node_has_an_entry() {
    local node
    for node in $(nodes); do
        [ "$(entries "$node")" = 0 ] || return 1
    done
}

# Sets SIDES to a pod's eth0 veth state, "container=on|off host=on|off "
# (tx-checksum-ip-generic), and INSPECT to `csum-offload inspect`'s output.
pod_offload() {
    local pod=$1 node id pid
    node=$(k get pod "$pod" -o jsonpath='{.spec.nodeName}')
    id=$(docker exec "$node" crictl pods --namespace default --name "^$pod\$" --state ready -q | head -n1)
    [ -n "$id" ] || fail "no sandbox for pod $pod on $node"
    pid=$(docker exec "$node" crictl inspectp -o go-template --template '{{.info.pid}}' "$id")
    INSPECT=$(docker exec "$node" "$PLUGIN" inspect --netns "/proc/$pid/ns/net" --ifname eth0)
    SIDES=$(awk '/^container interface/ {s = "container"} /^host interface/ {s = "host"}
                 $1 == "tx-checksum-ip-generic:" {print s "=" $2}' <<<"$INSPECT" | sort | tr '\n' ' ')
}

# Asserts a pod's eth0 veth has tx-checksum-ip-generic WANT_CONTAINER on
# the container end and WANT_HOST on the host end (default: off, off).
check_pod_offload() {
    local pod=$1 want_c=${2:-off} want_h=${3:-off}
    pod_offload "$pod"
    if [ "$SIDES" != "container=$want_c host=$want_h " ]; then
        echo "$INSPECT" >&2
        fail "$pod: tx-checksum-ip-generic is '$SIDES', want container=$want_c host=$want_h"
    fi
    echo "   $pod: tx-checksum-ip-generic $want_c on the container end, $want_h on the host end"
}

pod_fixed() {
    pod_offload "$1"
    [ "$SIDES" = "container=off host=off " ]
}

# The node's NetworkReady condition as containerd's CRI reports it.
network_ready() {
    docker exec "$1" crictl info -o go-template \
        --template '{{range .status.conditions}}{{if eq .type "NetworkReady"}}{{.status}}{{end}}{{end}}' 2>/dev/null || echo error
}

# The installer process on NODE as the kernel sees it: no capabilities,
# no_new_privs, a seccomp filter (the DaemonSet's securityContext).
check_installer_process() {
    local node=$1 id pid status
    id=$(docker exec "$node" crictl ps --name '^install$' --label io.kubernetes.pod.namespace=kube-system -q | head -n1)
    [ -n "$id" ] || fail "no running installer container on $node"
    pid=$(docker exec "$node" crictl inspect -o go-template --template '{{.info.pid}}' "$id")
    status=$(docker exec "$node" cat "/proc/$pid/status")
    grep -qx $'CapEff:\t0000000000000000' <<<"$status" || fail "$node: the installer has capabilities: $(grep CapEff <<<"$status")"
    grep -qx $'NoNewPrivs:\t1' <<<"$status" || fail "$node: the installer runs without no_new_privs"
    grep -qx $'Seccomp:\t2' <<<"$status" || fail "$node: the installer runs without a seccomp filter"
    echo "   $node: installer pid $pid: no capabilities, no_new_privs, seccomp filter"
}

# Starts pod NAME (busybox, sleeping) on NODE without waiting.
start_probe_pod() {
    k run "$1" --image=busybox:1.36 --restart=Never --labels=e2e=csum-probe-pod \
        --overrides="{\"apiVersion\": \"v1\", \"spec\": {\"nodeName\": \"$2\", \"terminationGracePeriodSeconds\": 1}}" \
        -- sleep 3600 >/dev/null
}

# Fetches the 4 MiB blob from URL in the client pod and compares hashes.
check_transfer() {
    local url=$1 want got
    want=$(k exec csum-server -- cat /www/blob.sha256)
    got=$(k exec csum-client -- sh -c "wget -q -T 20 -O - '$url' | sha256sum | cut -d' ' -f1")
    [ "$got" = "$want" ] || fail "TCP transfer from $url: sha256 $got, want $want"
    echo "   4 MiB from $url arrived intact (sha256 $want)"
}

step "image $IMAGE"
make image IMAGE="$IMAGE"

step "cluster $CLUSTER"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    [ "$REUSE" = 1 ] || fail "a kind cluster named $CLUSTER exists; delete it, or set REUSE_CLUSTER=1 or KIND_CLUSTER_NAME"
else
    kind create cluster --name "$CLUSTER" --config e2e/kind/kind-config.yaml --wait 180s
    CREATED=1
fi
kind load docker-image "$IMAGE" --name "$CLUSTER"
mapfile -t NODES < <(nodes)
[ ${#NODES[@]} -ge 2 ] || fail "want 2 nodes, got ${NODES[*]}"
k -n "$NS" rollout status ds/kindnet --timeout=180s
for node in "${NODES[@]}"; do
    wait_until 120 "kindnet's config on $node" has_config "$node"
    docker exec "$node" cat "$CONF_DIR/$(primary "$node")" >"$TMP/original-$node"
    [ "$(entries "$node")" = 0 ] || fail "$node already has a csum-offload entry before the install"
done

step "a pod from before the install: TX checksum on (the negative control)"
start_probe_pod csum-pre "${NODES[0]}"
k wait --for=condition=Ready pod/csum-pre --timeout=180s
check_pod_offload csum-pre on on

step "install: kubectl apply -k e2e/kind"
k apply -k e2e/kind
k -n "$NS" rollout status ds/csum-offload --timeout=180s
wait_until 30 "the entry on every node" all_nodes_have_one_entry
for node in "${NODES[@]}"; do
    echo "   $node: $(primary "$node") has the csum-offload entry once"
    docker exec "$node" test -x "$PLUGIN" || fail "$PLUGIN missing on $node"
done
logs=$(k -n "$NS" logs -l app.kubernetes.io/name=csum-offload --tail=-1 --prefix)
detected=$(grep -c 'detect: nic: eth0 driver: veth -> tx off' <<<"$logs" || true)
[ "$detected" -ge "${#NODES[@]}" ] || {
    echo "$logs" >&2
    fail "the installer did not log 'eth0 driver: veth -> tx off' on every node"
}
echo "   installer logs: uplink eth0, driver veth -> tx off on ${#NODES[@]} nodes"
for node in "${NODES[@]}"; do
    check_installer_process "$node"
done

step "the node agent fixes the pod from before the install"
# No CNI ADD ran for this pod after the install: only the agent can fix it
# (drift repair is covered by the Docker and CRI suites; kind nodes have
# no ethtool to make drift with).
wait_until 30 "the agent fixing csum-pre" pod_fixed csum-pre
echo "   csum-pre: fixed on both ends by the agent"
k delete pod csum-pre --wait=false >/dev/null

step "workload: two pods on two nodes and a Service"
sed -e "s/SERVER_NODE/${NODES[1]}/" -e "s/CLIENT_NODE/${NODES[0]}/" e2e/kind/workload.yaml >"$TMP/workload.yaml"
k apply -f "$TMP/workload.yaml"
k wait --for=condition=Ready pod/csum-server pod/csum-client --timeout=180s
check_pod_offload csum-server
check_pod_offload csum-client
server_ip=$(k get pod csum-server -o jsonpath='{.status.podIP}')
check_transfer "http://$server_ip:8080/blob"
check_transfer "http://csum-server.default.svc.cluster.local:8080/blob"

step "the primary CNI rewrites its config: the entry comes back"
node=${NODES[1]}
file=$(primary "$node")
start=$(date +%s%N)
docker exec -i "$node" sh -c "cat > $CONF_DIR/.e2e-rewrite && mv $CONF_DIR/.e2e-rewrite $CONF_DIR/$file" <"$TMP/original-$node"
wait_until 10 "the entry back in $file on $node" all_nodes_have_one_entry
echo "   back in $file on $node after $((($(date +%s%N) - start) / 1000000)) ms"
for node in "${NODES[@]}"; do
    stamp "$node" >"$TMP/stamp-$node"
done
k -n "$NS" delete pod -l app=kindnet --wait=true
k -n "$NS" rollout status ds/kindnet --timeout=180s
# kindnet writes its config again when it starts; give it up to 20 s.
deadline=$((SECONDS + 20))
for node in "${NODES[@]}"; do
    while [ "$(stamp "$node")" = "$(cat "$TMP/stamp-$node")" ] && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.5
    done
    if [ "$(stamp "$node")" = "$(cat "$TMP/stamp-$node")" ]; then
        echo "   $node: kindnet did not rewrite $(primary "$node") on restart"
    else
        echo "   $node: kindnet rewrote $(primary "$node") on restart"
    fi
done
wait_until 30 "the entry after the kindnet restart" all_nodes_have_one_entry
k wait --for=condition=Ready node --all --timeout=120s
echo "   entry present on every node after kindnet restarted"
k delete pod csum-client --wait=true
k apply -f "$TMP/workload.yaml"
k wait --for=condition=Ready pod/csum-client --timeout=180s
check_pod_offload csum-client
check_transfer "http://csum-server.default.svc.cluster.local:8080/blob"

step "rolling restart of the DaemonSet: the entry never leaves"
# Samples every node's primary conflist while the new pods take over
# (maxSurge: the old installer hands over instead of removing the entry).
# Samples each node's entry count and NetworkReady until told to stop
# (bounded: at most 10 minutes).
sample() {
    local deadline=$((SECONDS + 600))
    while [ ! -e "$TMP/stop-sampling" ] && [ "$SECONDS" -lt "$deadline" ]; do
        primary_entries "$1" >>"$TMP/samples-$1" || true
        network_ready "$1" >>"$TMP/ready-$1"
        sleep 0.2
    done
}
start_samplers() {
    rm -f "$TMP/stop-sampling"
    samplers=()
    for node in "${NODES[@]}"; do
        : >"$TMP/samples-$node"
        : >"$TMP/ready-$node"
        sample "$node" &
        samplers+=($!)
    done
}
stop_samplers() {
    touch "$TMP/stop-sampling"
    wait "${samplers[@]}"
}
# NetworkReady must be true in every sample of WHAT.
check_network_ready() {
    local what=$1 node total bad
    for node in "${NODES[@]}"; do
        total=$(wc -l <"$TMP/ready-$node")
        bad=$(grep -cvx true "$TMP/ready-$node" || true)
        [ "$total" -ge 5 ] || fail "$node: only $total NetworkReady samples during $what"
        [ "$bad" = 0 ] || fail "$node: NetworkReady not true in $bad of $total samples during $what"
        echo "   $node: NetworkReady true in all $total samples during $what"
    done
}
start_samplers
# Pods created all through the rollout, alternating nodes (at most 40).
(
    i=0
    while [ ! -e "$TMP/stop-pods" ] && [ "$i" -lt 40 ]; do
        start_probe_pod "csum-roll-$i" "${NODES[$((i % ${#NODES[@]}))]}" || true
        i=$((i + 1))
        sleep 1
    done
) &
pod_starter=$!
k -n "$NS" rollout restart ds/csum-offload
k -n "$NS" rollout status ds/csum-offload --timeout=300s
sleep 2
touch "$TMP/stop-pods"
wait "$pod_starter"
stop_samplers
for node in "${NODES[@]}"; do
    total=$(wc -l <"$TMP/samples-$node")
    bad=$(grep -cvx 1 "$TMP/samples-$node" || true)
    [ "$total" -ge 5 ] || fail "$node: only $total samples during the rollout"
    [ "$bad" = 0 ] || fail "$node: the entry was missing or duplicated in $bad of $total samples during the rolling restart"
    echo "   $node: entry present once in all $total samples during the rollout"
done
check_network_ready "the rolling restart"
k wait --for=condition=Ready pod -l e2e=csum-probe-pod --timeout=180s
roll_pods=$(k get pods -l e2e=csum-probe-pod -o name | sed 's|^pod/||')
[ "$(wc -w <<<"$roll_pods")" -ge 5 ] || fail "only $(wc -w <<<"$roll_pods") pods were created during the rollout"
for pod in $roll_pods; do
    check_pod_offload "$pod"
done
echo "   all $(wc -w <<<"$roll_pods") pods created during the rollout got the settings"
k delete pods -l e2e=csum-probe-pod --wait=true --timeout=120s >/dev/null

step "a ConfigMap change reaches new pods"
# apply: container (host ends keep offload). The kubelet delivers the
# change through the ..data symlink swap within its sync period.
k -n "$NS" patch configmap csum-offload-config --type merge \
    -p '{"data": {"config.json": "{\"drivers\": {\"veth\": {\"tx\": false}}, \"apply\": \"container\", \"logLevel\": \"debug\"}"}}'
entry_applies_container() {
    local node
    for node in "${NODES[@]}"; do
        docker exec "$node" cat "$CONF_DIR/$(primary "$node")" | grep -qE '"apply": *"container"' || return 1
    done
}
wait_until 180 "the new entry on every node" entry_applies_container
k -n "$NS" rollout status ds/csum-offload --timeout=120s
start_probe_pod csum-cm "${NODES[0]}"
k wait --for=condition=Ready pod/csum-cm --timeout=180s
check_pod_offload csum-cm off on
k delete pod csum-cm --wait=true >/dev/null

step "uninstall: delete the DaemonSet"
start_samplers
k delete -k e2e/kind --wait=true
wait_until 60 "the entry to leave every node" no_node_has_an_entry
sleep 2
stop_samplers
check_network_ready "the uninstall"
for node in "${NODES[@]}"; do
    file=$(primary "$node")
    [ -n "$file" ] || fail "$node has no network config left"
    docker exec "$node" grep -q '"kindnet"' "$CONF_DIR/$file" || fail "$node: $file lost kindnet's config"
    docker exec "$node" test -x "$PLUGIN" || fail "$node: the binary was removed; pods created with it could not be deleted"
    echo "   $node: entry gone from $file, kindnet config intact, binary kept"
done
# These pods were created with csum-offload in their chain: their DEL runs
# the cached chain, which needs the binary.
k delete -f "$TMP/workload.yaml" --wait=true --timeout=120s
echo "   pods created with csum-offload deleted cleanly"
start_probe_pod csum-after "${NODES[0]}"
k wait --for=condition=Ready pod/csum-after --timeout=180s
check_pod_offload csum-after on on
k delete pod csum-after --wait=true >/dev/null
echo "   a pod created after the uninstall is untouched"

echo "e2e-kind: ok"
