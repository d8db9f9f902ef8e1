#!/usr/bin/env bash
# End-to-end suite: csum-offload run by a real containerd (Debian's
# package, a private instance) through `ctr run --cni`, i.e. go-cni/libcni
# as containerd's CRI uses them, with Debian's reference plugins.
#
#   bash e2e/containerd/run.sh [--list] [PATTERN...]   run the suite (or the
#                                                       cases matching a pattern)
#   bash e2e/containerd/run.sh --story                  the broken-NIC story only
#
# Needs root, `make build` (target/release/csum-offload) and the packages
# of e2e/install-deps.sh. Environment: E2E_TIMEOUT (seconds, default 540),
# E2E_KEEP=1 keeps the work directory, WIRE_BYTES / BRK_BYTES / PARALLEL.
# See docs/testing.md.
set -uo pipefail
# shellcheck source=e2e/containerd/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

outer() {
    [ "$(id -u)" = 0 ] || die "must run as root (containerd, netns, AF_PACKET)"
    local tool
    for tool in containerd ctr runc ip ethtool nsenter unshare tcpdump ss flock busybox; do
        command -v "$tool" >/dev/null || die "$tool is missing; run: bash e2e/install-deps.sh"
    done
    for tool in bridge ptp host-local portmap tuning; do
        [ -x "$DEBIAN_CNI_DIR/$tool" ] || die "$DEBIAN_CNI_DIR/$tool is missing (containernetworking-plugins)"
    done
    [ -x "$PLUGIN_BIN" ] || die "$PLUGIN_BIN is missing; run: make build"
    ensure_wire_tools
    relaunch_locked "$@"
}

locked() { run_locked "${E2E_TIMEOUT:-540}" --mount "$@"; }

# --- the suite, inside the private mount namespace -------------------------

CASES=()
# A case is its name and the command that runs it, quoted for eval.
add_case() {
    local name=$1
    shift
    CASES+=("$name $(printf '%q ' "$@")")
}

register_cases() {
    local i=1 chain version driver
    # Every chain at 1.0.0 and 0.4.0, the kindnet-like one at 0.3.1 too,
    # each under both driver policies.
    for chain in ptp bridge tuning; do
        for version in 1.0.0 0.4.0 0.3.1; do
            [ "$version" != 0.3.1 ] || [ "$chain" = ptp ] || continue
            for driver in txgbe i40e; do
                add_case "chain-$chain-$version-$driver" test_chain "$chain" "$version" "$driver" "$i"
                i=$((i + 1))
            done
        done
    done
    add_case wire-none test_wire none 40
    add_case wire-i40e test_wire i40e 41
    add_case wire-txgbe test_wire txgbe 42
    add_case broken-nic test_brokennic
    register_wire_placement_cases
    add_case invalid-feature test_invalid feature '"drivers": {"txgbe": {"txcsum": false}}' 'unknown offload feature "txcsum"'
    add_case invalid-apply test_invalid apply '"apply": "pod"' 'apply must be "both", "container", "host" or "uplink", got "pod"'
    add_case failure-policy test_ignore
    add_case parallel-20 test_parallel
    add_case agent-existing test_agent
}

PASSED=0
FAILED=0
FAILED_NAMES=()

run_case() {
    local name=$1
    shift
    local log=$WORK/logs/case-$name.log
    NOTES=$WORK/logs/case-$name.notes
    : >"$NOTES"
    local t0 t1 rc=0
    t0=$(date +%s%N)
    # Not in a condition: `set -e` would be ignored inside the subshell.
    (
        set -eE
        trap 'echo "  at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND" >&2' ERR
        "$@"
    ) >"$log" 2>&1
    rc=$?
    # A failed check that was not fatal still fails the case.
    if grep -q '^FAIL:' "$NOTES" && [ "$rc" = 0 ]; then
        rc=1
    fi
    t1=$(date +%s%N)
    reset_runtime >>"$log" 2>&1
    local secs
    secs=$(awk -v n=$((t1 - t0)) 'BEGIN {printf "%.1f", n / 1e9}')
    if [ "$rc" = 0 ]; then
        PASSED=$((PASSED + 1))
        say "ok   $name (${secs}s)"
        sed 's/^/       /' "$NOTES"
    else
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$name")
        say "FAIL $name (${secs}s)"
        sed 's/^/       /' "$NOTES"
        say "       --- last lines of $log:"
        tail -n 25 "$log" | sed 's/^/       | /'
    fi
}

inner() {
    trap 'teardown_environment' EXIT
    trap 'exit 143' TERM INT
    # shellcheck source=e2e/containerd/tests.sh
    source "$E2E_DIR/tests.sh"
    # shellcheck source=e2e/containerd/wire_placements.sh
    source "$E2E_DIR/wire_placements.sh"
    exec 3>&1
    if [ "${1:-}" = --story ]; then
        setup_environment
        STORY=1 # read by narrate (tests.sh)
        export STORY
        NOTES=$WORK/logs/story.notes
        (
            set -eE
            test_brokennic
        ) 2>"$WORK/logs/story.log"
        local rc=$?
        ! grep -q '^FAIL:' "$NOTES" || rc=1
        [ "$rc" = 0 ] || tail -n 25 "$WORK/logs/story.log"
        return "$rc"
    fi
    register_cases
    if [ "${1:-}" = --list ]; then
        printf '%s\n' "${CASES[@]%% *}"
        return 0
    fi
    select_cases "$@"
    local c
    local t0=$SECONDS
    setup_environment
    say "e2e: containerd $(containerd --version | awk '{print $3}'), CNI plugins from $DEBIAN_CNI_DIR, work dir $WORK"
    for c in "${SELECTED[@]}"; do
        eval "run_case $c"
    done
    say ""
    if [ "$FAILED" -gt 0 ]; then
        # The work dir goes away at teardown; the logs of a failed run stay.
        local kept
        kept=$(mktemp -d /tmp/csum-e2e-logs.XXXXXX)
        cp -r "$WORK/logs/." "$kept/"
        say "e2e: failed: ${FAILED_NAMES[*]} (logs kept in $kept)"
    fi
    say "e2e: finished in $((SECONDS - t0)) s"
    say "e2e: $PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}

suite_main "$@"
