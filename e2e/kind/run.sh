#!/usr/bin/env bash
# kind-cluster e2e for csum-offload's DaemonSet (docs/install.md, docs/testing.md).
#
# Needs docker (with a running daemon), kind and kubectl; without them it
# exits 77 with a message. CI runs the same checks (e2e/k8s/checks.sh) on
# the local two-node cluster instead (make e2e-k8s), where kind cannot run
# (no image registry for its node image). On kind, cross-node traffic has
# no broken NIC, so the field failure and apply: uplink's wire checks are
# the local cluster's; kind adds the Service path (kube-proxy, DNS).
#
#  1. builds the image (make image) and loads it into a 2-node kind cluster;
#  2. runs e2e/k8s/checks.sh's run_checks against it (what each step
#     asserts is listed there and in docs/testing.md).
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

missing=()
for tool in docker kind kubectl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "e2e-kind: not run: ${missing[*]} not found in PATH." >&2
    echo "e2e-kind: this suite needs docker, kind, kubectl and jq; CI runs the same checks on a local cluster instead (make e2e-k8s)." >&2
    exit 77
fi
if ! docker info >/dev/null 2>&1; then
    echo "e2e-kind: not run: docker is installed but its daemon is not reachable (docker info failed)." >&2
    exit 77
fi

TMP=$(mktemp -d)
CREATED=0
k() { kubectl --context "kind-$CLUSTER" "$@"; }
# shellcheck source=e2e/k8s/checks.sh
source e2e/k8s/checks.sh

node_sh() { docker exec -i "$1" sh -c "$2"; }
restart_primary_cni() {
    k -n "$NS" delete pod -l app=kindnet --wait=true >/dev/null
    k -n "$NS" rollout status ds/kindnet --timeout=180s
}
# Read by checks.sh (its header lists them).
# shellcheck disable=SC2034
E2E_SUITE=e2e-kind REPO=$(pwd) PRIMARY_NETWORK=kindnet
# shellcheck disable=SC2034
OVERLAY=e2e/kind
# shellcheck disable=SC2034
BROKEN_WIRE=0 SERVICES=1 NODE_ROUTES=0
INSPECT=/usr/local/bin/csum-offload-e2e

diagnostics() {
    echo "---- diagnostics" >&2
    k get pods -A -o wide >&2 || true
    k -n "$NS" describe ds csum-offload >&2 || true
    k -n "$NS" logs -l app.kubernetes.io/name=csum-offload --all-containers --tail=100 --prefix >&2 || true
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
k -n "$NS" rollout status ds/kindnet --timeout=180s
# `csum-offload inspect` on the nodes, before the DaemonSet puts the
# plugin there.
for node in $(kind get nodes --name "$CLUSTER"); do
    docker cp target/release/csum-offload "$node:$INSPECT"
done

run_checks
echo "e2e-kind: ok"
