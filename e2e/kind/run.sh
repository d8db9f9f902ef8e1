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
#     binary, and existing pods still delete cleanly.
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
    k -n "$NS" logs -l app.kubernetes.io/name=csum-offload --tail=100 --prefix >&2 || true
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

# Asserts TX checksum is off on both ends of a pod's eth0 veth.
check_pod_offload() {
    local pod=$1 node id pid out sides
    node=$(k get pod "$pod" -o jsonpath='{.spec.nodeName}')
    id=$(docker exec "$node" crictl pods --namespace default --name "^$pod\$" --state ready -q | head -n1)
    [ -n "$id" ] || fail "no sandbox for pod $pod on $node"
    pid=$(docker exec "$node" crictl inspectp -o go-template --template '{{.info.pid}}' "$id")
    out=$(docker exec "$node" "$PLUGIN" inspect --netns "/proc/$pid/ns/net" --ifname eth0)
    sides=$(awk '/^container interface/ {s = "container"} /^host interface/ {s = "host"}
                 $1 == "tx-checksum-ip-generic:" {print s "=" $2}' <<<"$out" | sort | tr '\n' ' ')
    if [ "$sides" != "container=off host=off " ]; then
        echo "$out" >&2
        fail "$pod on $node: tx-checksum-ip-generic is '$sides', want off on both veth ends"
    fi
    echo "   $pod on $node: tx-checksum-ip-generic off on the container and host veth ends"
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
sample() {
    while [ ! -e "$TMP/stop-sampling" ]; do
        primary_entries "$1" >>"$TMP/samples-$1" || true
        sleep 0.2
    done
}
samplers=()
for node in "${NODES[@]}"; do
    : >"$TMP/samples-$node"
    sample "$node" &
    samplers+=($!)
done
k -n "$NS" rollout restart ds/csum-offload
k -n "$NS" rollout status ds/csum-offload --timeout=300s
sleep 2
touch "$TMP/stop-sampling"
wait "${samplers[@]}"
for node in "${NODES[@]}"; do
    total=$(wc -l <"$TMP/samples-$node")
    bad=$(grep -cvx 1 "$TMP/samples-$node" || true)
    [ "$total" -ge 5 ] || fail "$node: only $total samples during the rollout"
    [ "$bad" = 0 ] || fail "$node: the entry was missing or duplicated in $bad of $total samples during the rolling restart"
    echo "   $node: entry present once in all $total samples during the rollout"
done

step "uninstall: delete the DaemonSet"
k delete -k e2e/kind --wait=true
wait_until 60 "the entry to leave every node" no_node_has_an_entry
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

echo "e2e-kind: ok"
