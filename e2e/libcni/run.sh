#!/usr/bin/env bash
# csum-offload driven through libcni, as containerd, CRI-O and Podman
# drive it: e2e/tools/cmd/libcni-e2e runs ADD, CHECK, DEL, STATUS and GC
# of chains of the reference plugins (v1.10.0) followed by csum-offload,
# at every CNI version, in netns of its own. See docs/testing.md.
#
#   bash e2e/libcni/run.sh [--list] [PATTERN...]   (root; make build first)
#
# Everything it makes is named lcni* (netns, links in those netns) or
# lives in a temp dir; the trap removes all of it, pass or fail.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${CSUM_OFFLOAD_BIN:-$root/target/release/csum-offload}
prefix=lcni
E2E_TIMEOUT=${E2E_TIMEOUT:-600}

[ "$(id -u)" = 0 ] || { echo "e2e-libcni: needs root (netns, veth)" >&2; exit 1; }
[ -x "$bin" ] || { echo "e2e-libcni: $bin missing; run make build" >&2; exit 1; }
for t in ip ethtool /usr/bin/python3 iptables nsenter flock timeout; do
    command -v "$t" >/dev/null || { echo "e2e-libcni: $t is missing (make deps)" >&2; exit 1; }
done

tools=$(bash "$root/e2e/tools/build.sh" | tail -n1)
if [ "${1:-}" = --list ]; then
    exec "$tools/libcni-e2e" --list
fi

# One run at a time on a machine: the netns names are fixed.
mkdir -p /run/csum-offload-e2e
exec 9>/run/csum-offload-e2e/libcni.lock
flock -w 600 9 || { echo "e2e-libcni: another run holds the lock" >&2; exit 1; }

work=$(mktemp -d /tmp/lcni-e2e.XXXXXX)
cleanup() {
    local ns
    for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
cleanup # what a killed run left

mkdir -p "$work/bin" "$work/state"
for p in bridge ptp host-local portmap loopback; do
    cp "$tools/$p" "$work/bin/$p"
done
cp "$bin" "$work/bin/csum-offload"

# The test's "host": a netns of its own, so ptp's host ends, the bridge
# and portmap's iptables rules never touch the machine's. nsenter (not
# ip netns exec) keeps the mount namespace, so the pod netns the program
# adds under /run/netns stay visible here for the cleanup.
ip netns add "$prefix-host"
ip -n "$prefix-host" link set lo up
start=$(date +%s)
rc=0
timeout --kill-after=10 "$E2E_TIMEOUT" nsenter --net="/run/netns/$prefix-host" \
    "$tools/libcni-e2e" --cni-bin-dir "$work/bin" --work-dir "$work/state" --prefix "$prefix" "$@" || rc=$?
echo "e2e-libcni: finished in $(( $(date +%s) - start )) s (exit $rc)"
left=$(find "$work/state/cache" -type f 2>/dev/null | wc -l)
if [ "$left" != 0 ]; then
    echo "e2e-libcni: FAIL: libcni's cache holds $left files after every case" >&2
    rc=1
fi
exit "$rc"
