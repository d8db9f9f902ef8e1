#!/usr/bin/env bash
# Pod-start overhead of csum-offload under a real containerd: the median
# wall time of `ctr run --rm --cni` (CNI ADD of the whole chain, task start,
# /bin/true, task exit, CNI DEL, cleanup) with the kindnet-like chain
# ptp + host-local + portmap, alternating runs without csum-offload, with
# csum-offload (txgbe policy) appended, and with a minimal static
# pass-through plugin (passthrough.c) appended instead: the runtime's own
# cost of one more plugin in the chain (two more execs, result caching),
# which any chained plugin pays.
#
#   bash e2e/bench/podstart.sh [RUNS]     (default 40 per variant)
#
# Reuses the containerd e2e's setup (e2e/containerd/lib.sh): a private
# containerd in a private mount namespace, Debian's reference plugins, the
# same lock, so it never runs alongside the e2e suite. Needs root and
# `make build`.
set -uo pipefail
# shellcheck source=e2e/containerd/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../containerd/lib.sh"

RUNS=${1:-40}
SUBNET=10.253.0.0/24

outer() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    local tool
    for tool in containerd ctr runc ip unshare flock busybox; do
        command -v "$tool" >/dev/null || die "$tool is missing; run: bash e2e/install-deps.sh"
    done
    [ -x "$PLUGIN_BIN" ] || die "$PLUGIN_BIN is missing; run: make build"
    command -v cc >/dev/null || die "cc is missing (builds the pass-through plugin)"
    relaunch_locked "$@"
}

locked() { run_locked 600 --mount "$@"; }

conflist() {
    local csum=$1
    cat <<EOF
{"cniVersion": "1.0.0", "name": "e2ecd-bench", "plugins": [
  {"type": "ptp", "ipMasq": false, "ipam": $(host_local "$SUBNET")},
  {"type": "portmap", "capabilities": {"portMappings": true}}${csum:+,
  $csum}
]}
EOF
}

# One container lifecycle; prints its wall time in ms.
one_run() {
    local name=$1 t0 t1
    t0=$(date +%s%N)
    ctr_ run --rm --cni --rootfs "$ROOTFS" "$name" /bin/true </dev/null >"$WORK/ctr/$name.log" 2>&1 ||
        die "ctr run $name failed: $(cat "$WORK/ctr/$name.log")"
    t1=$(date +%s%N)
    awk -v n=$((t1 - t0)) 'BEGIN {printf "%.2f\n", n / 1e6}'
}

stats() {
    sort -n | awk '{v[NR] = $1} END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        p = v[int(NR * 0.95 + 0.999)]
        printf "median %.1f ms, p95 %.1f ms (n=%d)", m, p, NR }'
}

median() { sort -n "$1" | awk '{v[NR]=$1} END {print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; }

inner() {
    trap 'teardown_environment' EXIT
    trap 'exit 143' TERM INT
    setup_environment
    cc -static -O2 -s -o "$CNIBIN/e2ecd-passthrough" "$(dirname "${BASH_SOURCE[0]}")/passthrough.c" ||
        die "cannot build passthrough.c"
    local -A conf
    conf[without]=$(conflist "")
    conf[csum-offload]=$(conflist '{"type": "csum-offload", "hostDriver": "txgbe", "logFile": "'"$PLUGIN_LOG_DIR"'/csum-offload.log"}')
    conf[passthrough]=$(conflist '{"type": "e2ecd-passthrough"}')
    local variants=(without csum-offload passthrough) i k v
    for v in "${variants[@]}"; do : >"$WORK/$v.ms"; done
    say "podstart: containerd $(containerd --version | awk '{print $3}'), $RUNS runs per variant after 3 warm-up rounds, load $(cut -d' ' -f1-3 /proc/loadavg)"
    for ((i = 0; i < RUNS + 3; i++)); do
        # Rotate which variant goes first, so drift hits all alike.
        for ((k = 0; k < 3; k++)); do
            v=${variants[$(((i + k) % 3))]}
            printf '%s\n' "${conf[$v]}" | write_conflist
            ms=$(one_run "e2ecd-b$i-$k") || exit 1
            [ "$i" -lt 3 ] || echo "$ms" >>"$WORK/$v.ms"
        done
    done
    local applied
    applied=$(grep -c '; changed: \[' "$PLUGIN_LOG" || true)
    [ "$applied" -ge "$((2 * RUNS))" ] ||
        die "csum-offload applied its policy $applied times, expected $((2 * RUNS)) (2 ends per run)"
    for v in "${variants[@]}"; do
        say "$(printf '%-26s' "$v:") $(stats <"$WORK/$v.ms")"
    done
    local base csum pass
    base=$(median "$WORK/without.ms")
    csum=$(median "$WORK/csum-offload.ms")
    pass=$(median "$WORK/passthrough.ms")
    say "csum-offload - without:    $(awk -v a="$csum" -v b="$base" 'BEGIN {printf "%+.1f ms (%+.1f%%)", a - b, (a - b) * 100 / b}')"
    say "passthrough - without:     $(awk -v a="$pass" -v b="$base" 'BEGIN {printf "%+.1f ms (any chained plugin)", a - b}')"
    say "csum-offload - passthrough: $(awk -v a="$csum" -v b="$pass" 'BEGIN {printf "%+.1f ms (csum-offload itself)", a - b}')"
    say "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

suite_main "$@"
