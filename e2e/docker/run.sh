#!/usr/bin/env bash
# Docker end-to-end suite: a real Docker engine (Debian's docker.io 20.10,
# its own containerd) isolated in private mount and network namespaces,
# the harness's own cases (docker-*: what dockerd does to veth pairs, and
# when) and the node agent's cases (agent-*: `csum-offload agent` fixing
# every container's veth pair, from outside the runtime).
#
#   bash e2e/docker/run.sh [--list] [PATTERN...]   run the suite (or the
#                                                   cases matching a pattern)
#
# Needs root, `make build` (target/release/csum-offload) and the packages
# of e2e/install-deps.sh. Environment: E2E_TIMEOUT (seconds, default 300),
# E2E_KEEP=1 keeps the work directory, AGENT_BIN (default the built
# binary), NEW_RUNS, BURST, IDLE_SECONDS, TIMING_RUNS. See docs/testing.md.
set -uo pipefail
# shellcheck source=e2e/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

outer() {
    check_harness_tools
    [ -x "$AGENT_BIN" ] || die "$AGENT_BIN is missing; run: make build"
    relaunch_locked "$@"
}

locked() { run_locked "${E2E_TIMEOUT:-300}" "--mount --net" "$@"; }

# --- the suite, inside the private namespaces --------------------------------

CASES=()
# A case is its name and the command that runs it, quoted for eval.
add_case() {
    local name=$1
    shift
    CASES+=("$name $(printf '%q ' "$@")")
}

register_cases() {
    add_case docker-default-bridge test_docker_default_bridge
    add_case docker-user-network test_docker_user_network
    add_case docker-network-connect test_docker_network_connect
    add_case docker-restart test_docker_restart
    add_case docker-host-network test_docker_host_network
    add_case docker-timing test_docker_timing
    add_case kernel-features test_kernel_features
    add_case agent-once-existing test_agent_once_existing
    add_case agent-dry-run test_agent_dry_run
    add_case agent-start-existing test_agent_start_existing
    add_case agent-new-containers test_agent_new_containers
    add_case agent-restart test_agent_restart
    add_case agent-netns-dir test_agent_netns_dir
    add_case agent-network-connect test_agent_network_connect
    add_case agent-user-network test_agent_user_network
    add_case agent-leaves-alone test_agent_leaves_alone
    add_case agent-drift test_agent_drift
    add_case agent-i40e test_agent_i40e
    add_case agent-signals test_agent_signals
    add_case agent-idle-cpu test_agent_idle_cpu
    add_case agent-burst test_agent_burst
    add_case agent-restore test_agent_restore
}

PASSED=0
FAILED=0
FAILED_NAMES=()

# After every case: no agent or monitor left running, no container, only
# the suite's own network, no e2edk link of the case's, and the uplink as
# it was (recreated if a case changed it).
reset_case() {
    kill_recorded_pids
    local cg
    for cg in $AGENT_CGS; do
        kill_cgroup "$cg" || log "processes left in $cg: $(tr '\n' ' ' <"$cg/cgroup.procs")"
    done
    remove_all_containers || log "removing containers failed"
    local net link
    for net in $(dk network ls --format '{{.Name}}'); do
        case $net in bridge | host | none | "$USER_NET") ;; *) dk network rm "$net" >/dev/null || true ;; esac
    done
    for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^$PREFIX"); do
        [ "$link" = "$UPLINK" ] || [ "$link" = "$USER_BRIDGE" ] || ip link del "$link" 2>/dev/null || true
    done
    for link in $(ip netns list | awk '{print $1}'); do
        [ "$link" = "$WAN_NS" ] || ip netns del "$link"
    done
    if [ "$(features "" "$UPLINK")" != "$UPLINK_FEATURES" ] ||
        [ "$(features "/run/netns/$WAN_NS" "$WAN_IF")" != "$WAN_FEATURES" ]; then
        log "the uplink's features changed: recreating it"
        ip link del "$UPLINK"
        ip netns del "$WAN_NS"
        setup_uplink
    fi
}

run_case() {
    local name=$1
    shift
    local log=$WORK/logs/case-$name.log
    NOTES=$WORK/logs/case-$name.notes
    CASE=$name
    : >"$NOTES"
    local t0 t1 rc=0
    t0=$(now_us)
    # Not in a condition: `set -e` would be ignored inside the subshell.
    # In the background, so that a signal to this shell is handled at once
    # (see interrupted).
    (
        trap - TERM INT
        set -eE
        # Failures inside $(...) end the case too.
        shopt -s inherit_errexit
        trap 'echo "  at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND" >&2' ERR
        "$@"
    ) >"$log" 2>&1 &
    CASE_PID=$!
    wait "$CASE_PID"
    rc=$?
    CASE_PID=
    # A failed check that was not fatal still fails the case.
    if grep -q '^FAIL:' "$NOTES" && [ "$rc" = 0 ]; then
        rc=1
    fi
    t1=$(now_us)
    reset_case >>"$log" 2>&1
    local secs
    secs=$(awk -v n=$((t1 - t0)) 'BEGIN {printf "%.1f", n / 1e6}')
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

# SIGTERM/SIGINT (the run's time limit, ^C): the running case is ended,
# its logs are kept, and the EXIT trap tears everything down.
CASE_PID=
interrupted() {
    if [ -n "$CASE_PID" ]; then
        kill -KILL "$CASE_PID" 2>/dev/null || true
        { wait "$CASE_PID"; } 2>/dev/null || true
    fi
    if [ -n "${WORK:-}" ] && [ -d "$WORK/logs" ]; then
        local kept
        kept=$(mktemp -d /tmp/e2edk-logs.XXXXXX)
        cp -r "$WORK/logs/." "$kept/"
        say "e2e-docker: interrupted during ${CASE:-setup} (logs kept in $kept)"
    fi
    exit 143
}

inner() {
    trap 'teardown_environment' EXIT
    trap interrupted TERM INT
    # shellcheck source=e2e/docker/smoke.sh
    source "$E2E_DIR/smoke.sh"
    # shellcheck source=e2e/docker/tests.sh
    source "$E2E_DIR/tests.sh"
    register_cases
    if [ "${1:-}" = --list ]; then
        printf '%s\n' "${CASES[@]%% *}"
        return 0
    fi
    select_cases "$@"
    local c
    local t0=$SECONDS
    setup_environment
    say "e2e-docker: $(versions_line)"
    say "e2e-docker: work dir $WORK, agent $AGENT_BIN, setup $((SECONDS - t0)) s"
    for c in "${SELECTED[@]}"; do
        eval "run_case $c"
    done
    say ""
    if [ "$FAILED" -gt 0 ]; then
        # The work dir goes away at teardown; the logs of a failed run stay.
        local kept
        kept=$(mktemp -d /tmp/e2edk-logs.XXXXXX)
        cp -r "$WORK/logs/." "$kept/"
        say "e2e-docker: failed: ${FAILED_NAMES[*]} (logs kept in $kept)"
    fi
    say "e2e-docker: finished in $((SECONDS - t0)) s"
    say "e2e-docker: $PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}

suite_main "$@"
