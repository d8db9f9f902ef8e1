#!/usr/bin/env bash
# make e2e-k8s: csum-offload's DaemonSet on the local two-node cluster
# (cluster.sh), checked with the same checks as the kind suite
# (checks.sh). A fresh cluster each run; it is taken down at the end
# unless KEEP_CLUSTER=1. Needs root. See docs/testing.md.
set -euo pipefail
# shellcheck disable=SC2034 # read by common.sh
E2E_SUITE=e2e-k8s
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=e2e/k8s/checks.sh
source "$K8S_DIR/checks.sh"
# shellcheck source=e2e/k8s/operator.sh
source "$K8S_DIR/operator.sh"
# shellcheck source=e2e/k8s/probe.sh
source "$K8S_DIR/probe.sh"

[ "$(id -u)" = 0 ] || die "needs root"
# One run at a time on this machine: the cluster's netns, bridge and
# cgroups have fixed names. cluster.sh's own lock covers only up/down, so
# the suite holds this one for its whole run (daemons never inherit it).
SUITE_LOCK=/run/csum-offload-e2e-k8s.lock
exec 8>"$SUITE_LOCK"
flock -w 1800 8 || die "another e2e-k8s run holds $SUITE_LOCK"
TMP=$(mktemp -d /tmp/csum-e2ek8s.XXXXXX)
PROM_DIR=$TMP/prometheus

k() { kubectl_admin "$@"; }
node_sh() { node_exec "$1" sh -c "$2"; }
# The suite plays the cluster's CNI installer: it writes each node's
# primary conflist again, as one does when it restarts.
restart_primary_cni() {
    local node
    for node in "${NODES[@]}"; do
        node_sh "$node" "cat > $CONF_DIR/.csk8s-tmp && mv $CONF_DIR/.csk8s-tmp $CONF_DIR/10-csk8s.conflist" <"$TMP/original-$node"
    done
}
PRIMARY_NETWORK=csk8s
# The nodes share the host's file system outside their own dirs.
INSPECT=$REPO/target/release/csum-offload
OVERLAY=$REPO/e2e/kind
BROKEN_WIRE=1
WIRE_STATS=$STATE/brokennic.stats
SERVICES=0
NODE_ROUTES=1

diagnostics() {
    echo "---- diagnostics" >&2
    k get nodes -o wide >&2 || true
    k get pods -A -o wide >&2 || true
    k -n "$NS" describe ds csum-offload >&2 || true
    k -n "$NS" logs -l app.kubernetes.io/name=csum-offload --all-containers --tail=60 --prefix >&2 || true
    local node
    for node in "${NODES[@]:-node-a node-b}"; do
        echo "-- $node: kubelet (last 20 lines)" >&2
        tail -n 20 "$(node_dir "$node")/logs/kubelet.log" >&2 || true
    done
    cat "$WIRE_STATS" >&2 || true
}

finish() {
    local rc=$?
    [ "$rc" = 0 ] || diagnostics
    stop_prometheus
    [ "$rc" = 0 ] || tail -n 20 "$PROM_DIR/prometheus.log" >&2 2>/dev/null || true
    if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
        say "e2e-k8s: KEEP_CLUSTER=1: the cluster stays up (make cluster-down)"
    else
        bash "$K8S_DIR/cluster.sh" down 8>&- || rc=1
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap finish EXIT

t0=$SECONDS
TOOLS_BIN=$(tools_bin)
export TOOLS_BIN
bash "$K8S_DIR/cluster.sh" down >/dev/null 8>&-
bash "$K8S_DIR/cluster.sh" up 8>&-
export KUBECONFIG=$KUBECONFIG_ADMIN
t1=$SECONDS
run_checks
run_operator_checks
run_probe_checks
say "e2e-k8s: ok (cluster up in $((t1 - t0)) s, checks in $((SECONDS - t1)) s)"
