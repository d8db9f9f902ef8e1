# shellcheck shell=bash
# The node agent's cases: `csum-offload agent` run in the suite's host
# netns beside a real dockerd, fixing containers' veth pairs that no CNI
# plugin ever saw. Every verdict comes from ethtool -k, run in the
# container's netns (nsenter) and on the host end, never from the agent's
# own output. Sourced by run.sh after lib.sh; each case runs in its own
# subshell with set -e.
#
# The contract under test (issue 11):
#   csum-offload agent --once [--config FILE] [--dry-run]
#   csum-offload agent [--config FILE] [--state-file PATH] ...   (until SIGTERM/SIGINT)
#   csum-offload agent restore [--state-file PATH]
# FILE holds the plugin's conflist entry, e.g. {"hostDriver": "txgbe"}
# (TX checksum off on both veth ends) or {"hostDriver": "i40e"} (no change).

# --- the agent -------------------------------------------------------------

# The policy file for DRIVER: the same JSON as the plugin's conflist entry.
agent_config() {
    local file=$WORK/agent/$1.json
    printf '{"hostDriver": "%s"}\n' "$1" >"$file"
    echo "$file"
}

# Each case has its own state file (the restore record).
agent_state() { echo "$WORK/agent/$CASE.state"; }

# Every agent process runs in the cgroup AGENT_CG (the case's reset kills
# whatever is left there) with the default signal dispositions a service
# manager gives it: a shell's `cmd &` would leave SIGINT and SIGQUIT
# ignored.
# shellcheck disable=SC2016 # expanded by that bash
AGENT_LAUNCH=(bash -c 'for d in $1; do echo "$$" >"$d/cgroup.procs" || exit 125; done; shift; exec env --default-signal=HUP,INT,QUIT,TERM "$@"' agent-launch)

# Runs `agent --once` under DRIVER's policy with extra ARGS. Sets ONCE_RC
# and ONCE_OUT (its stdout); both streams go to the case log too.
ONCE_N=0
agent_once() {
    local driver=$1 rc=0
    shift
    ONCE_N=$((ONCE_N + 1))
    local out=$WORK/logs/$CASE-once$ONCE_N
    timeout 60 "${AGENT_LAUNCH[@]}" "$AGENT_CGS" "$AGENT_BIN" agent --once --config "$(agent_config "$driver")" \
        --state-file "$(agent_state)" "$@" >"$out.out" 2>"$out.err" || rc=$?
    ONCE_RC=$rc
    ONCE_OUT=$out.out
    {
        echo "agent --once ($driver) $*: exit $rc"
        sed 's/^/  stdout| /' "$out.out"
        sed 's/^/  stderr| /' "$out.err"
    } >&2
}

# Starts the agent daemon under DRIVER's policy with extra ARGS. Sets
# AGENT_PID (recorded: the case's reset kills it if the case does not).
agent_start() {
    local driver=$1
    shift
    AGENT_LOG=$WORK/logs/$CASE-agent
    "${AGENT_LAUNCH[@]}" "$AGENT_CGS" "$AGENT_BIN" agent --config "$(agent_config "$driver")" \
        --state-file "$(agent_state)" "$@" >"$AGENT_LOG.out" 2>"$AGENT_LOG.err" &
    AGENT_PID=$!
    AGENT_T0=$(now_us)
    record_pid "$AGENT_PID"
    echo "agent ($driver) $* started, pid $AGENT_PID" >&2
}

agent_alive() {
    local state
    state=$(awk '{print $3}' "/proc/$AGENT_PID/stat" 2>/dev/null || true)
    [ -n "$state" ] && [ "$state" != Z ]
}

agent_tail() { cat "$AGENT_LOG.err" "$AGENT_LOG.out" 2>/dev/null | tail -n 5 | tr '\n' ' '; }

# Sends SIGNAL (default TERM) to the daemon; it must exit 0 within 2 s
# (the contract). Sets STOP_MS.
agent_stop() {
    local sig=${1:-TERM} rc=0 t0 i
    agent_alive || fail "the agent had already exited: $(agent_tail)"
    t0=$(now_us)
    kill -"$sig" "$AGENT_PID"
    for ((i = 0; i < 40; i++)); do
        agent_alive || break
        sleep 0.05
    done
    STOP_MS=$((($(now_us) - t0) / 1000))
    if agent_alive; then
        kill -KILL "$AGENT_PID"
        wait "$AGENT_PID" 2>/dev/null || true
        rm -f "$WORK/pids/$AGENT_PID"
        fail "the agent did not exit within 2 s of SIG$sig"
    fi
    wait "$AGENT_PID" || rc=$?
    rm -f "$WORK/pids/$AGENT_PID"
    {
        echo "agent stopped by SIG$sig after $STOP_MS ms: exit $rc"
        sed 's/^/  stdout| /' "$AGENT_LOG.out"
        sed 's/^/  stderr| /' "$AGENT_LOG.err"
    } >&2
    expect_eq "agent exit status after SIG$sig" "$rc" 0
}

# --- containers and their pairs ------------------------------------------------

# A container's pid without a docker client round trip: docker's cgroup
# (parent /e2edk) lists it; docker inspect otherwise.
fast_pid() {
    local id=$1 f
    for f in "/sys/fs/cgroup/pids/$DOCKER_CG/$id/cgroup.procs" "/sys/fs/cgroup/$DOCKER_CG/$id/cgroup.procs"; do
        if [ -r "$f" ]; then
            head -n 1 "$f"
            return 0
        fi
    done
    dk inspect -f '{{.State.Pid}}' "$id"
}

# Starts container NAME (extra docker run OPTS) and records its pair of
# eth0 under key NAME: PAIR_NS[NAME] (netns path), PAIR_HOST[NAME].
# Sets RUN_RETURNED (epoch us when docker run returned).
declare -A PAIR_NS PAIR_HOST
start_ctr() {
    local name=$1 id pid
    shift
    id=$(dk run -d --name "$name" "$@" "$IMAGE" /bin/sleep 600)
    RUN_RETURNED=$(now_us)
    pid=$(fast_pid "$id")
    track_pair "$name" "/proc/$pid/ns/net" eth0
    LOOKUP_MS=$((($(now_us) - RUN_RETURNED) / 1000))
}

# Records the pair of IFNAME in NETNS under KEY.
track_pair() {
    local key=$1 netns=$2 ifname=$3 host
    host=$(host_end "$netns" "$ifname") || fail "$key: no host end for $ifname in $netns"
    PAIR_NS[$key]=$netns
    PAIR_HOST[$key]=$host
    PAIR_IF[$key]=$ifname
}
declare -A PAIR_IF

# Records the pairs of container NAME again (after a restart), by
# interface: keys NAME (eth0) and NAME/eth1 when it has one.
retrack_ctr() {
    local name=$1 netns
    netns=$(ctr_netns "$name")
    track_pair "$name" "$netns" eth0
    if ctr_veths "$netns" | grep -q '^eth1 '; then
        track_pair "$name/eth1" "$netns" eth1
    fi
}

# "INSIDE HOST" tx-checksumming of pair KEY.
pair_tx() {
    local key=$1
    echo "$(tx_csum "${PAIR_NS[$key]}" "${PAIR_IF[$key]}") $(tx_csum "" "${PAIR_HOST[$key]}")"
}

# Both ends of pair KEY must show tx-checksumming WANT now.
expect_pair() {
    local key=$1 want=$2
    expect_eq "$key ${PAIR_IF[$key]} / host end ${PAIR_HOST[$key]} tx-checksumming" "$(pair_tx "$key")" "$want $want"
}

# Polls pair KEY until both ends show WANT, at most LIMIT_MS. Prints the
# milliseconds from FROM_US (epoch us) to the first poll that saw it;
# fails after the limit.
wait_pair() {
    local key=$1 want=$2 limit_ms=$3 from=$4 now
    local deadline=$(($(now_us) + limit_ms * 1000))
    while true; do
        if [ "$(pair_tx "$key")" = "$want $want" ]; then
            now=$(now_us)
            echo $(((now - from) / 1000))
            return 0
        fi
        [ "$(now_us)" -lt "$deadline" ] || break
        # A daemon that died cannot fix anything any more.
        if [ -n "${AGENT_PID:-}" ] && ! agent_alive; then
            fail "the agent exited: $(agent_tail)"
            return 1
        fi
        sleep 0.01
    done
    fail "$key: both ends not tx-checksumming $want within $limit_ms ms (now: $(pair_tx "$key"))"
    return 1
}

# Every feature of both ends of pair KEY, for before/after comparisons.
pair_features() {
    local key=$1
    features "${PAIR_NS[$key]}" "${PAIR_IF[$key]}" | sed 's/^/inside /'
    features "" "${PAIR_HOST[$key]}" | sed 's/^/host /'
}

# Containers of the "existing" cases: one on the default bridge, one on
# the user-defined network, one on both (docker network connect). Keys:
# NAME-def, NAME-usr, NAME-two, NAME-two/eth1.
start_existing_set() {
    local p=$1
    start_ctr "$p-def"
    start_ctr "$p-usr" --network "$USER_NET"
    start_ctr "$p-two"
    dk network connect "$USER_NET" "$p-two"
    track_pair "$p-two/eth1" "${PAIR_NS[$p-two]}" eth1
    EXISTING=("$p-def" "$p-usr" "$p-two" "$p-two/eth1")
}

# Proves the checks can fail: right now (no agent yet) every pair has
# TX checksum on, as dockerd leaves it.
expect_all_unfixed() {
    local key
    for key in "$@"; do
        expect_pair "$key" on
    done
}

# The agent's CPU time in clock ticks: utime+stime, plus cutime+cstime of
# children it waited for (so work handed to a helper process counts).
# And its context switches (all threads).
cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$1/stat"; }
ctx_switches() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ {n += $2} END {print n + 0}'
}

# --- cases -----------------------------------------------------------------

# Containers that existed before the agent: `--once` fixes every pair and
# exits 0; a second `--once` finds them already set and exits 0.
test_agent_once_existing() {
    start_existing_set e2edk-once
    expect_all_unfixed "${EXISTING[@]}"
    agent_once txgbe
    expect_eq "agent --once exit status" "$ONCE_RC" 0
    local key
    for key in "${EXISTING[@]}"; do
        expect_pair "$key" off
    done
    agent_once txgbe
    expect_eq "second agent --once (already set) exit status" "$ONCE_RC" 0
    for key in "${EXISTING[@]}"; do
        expect_pair "$key" off
    done
    note "--once, txgbe policy: ${#EXISTING[@]} pairs of 3 containers created before it (default bridge, $USER_NET, a second NIC) have tx-checksumming off on both ends; exit 0, and exit 0 again when already set"
}

# --dry-run changes nothing (every feature of both ends identical) and
# names what it would change.
test_agent_dry_run() {
    start_ctr e2edk-dry-a
    start_ctr e2edk-dry-b --network "$USER_NET"
    local before_a before_b
    before_a=$(pair_features e2edk-dry-a)
    before_b=$(pair_features e2edk-dry-b)
    agent_once txgbe --dry-run
    expect_same "features of e2edk-dry-a after --dry-run" "$(pair_features e2edk-dry-a)" "$before_a"
    expect_same "features of e2edk-dry-b after --dry-run" "$(pair_features e2edk-dry-b)" "$before_b"
    local key
    for key in e2edk-dry-a e2edk-dry-b; do
        grep -qF "${PAIR_HOST[$key]}" "$ONCE_OUT" || fail "--dry-run's output does not name ${PAIR_HOST[$key]} (pair of $key)"
    done
    note "--once --dry-run (exit $ONCE_RC): every feature of both ends of 2 pairs unchanged; its output names both host ends"
}

# The daemon fixes, at its start, every pair that existed before it.
test_agent_start_existing() {
    start_existing_set e2edk-start
    expect_all_unfixed "${EXISTING[@]}"
    agent_start txgbe
    local key ms worst=0
    for key in "${EXISTING[@]}"; do
        ms=$(wait_pair "$key" off 5000 "$AGENT_T0")
        [ "$ms" -le "$worst" ] || worst=$ms
    done
    agent_stop TERM
    note "daemon, txgbe policy: all ${#EXISTING[@]} pairs of containers created before it fixed on both ends within $worst ms of its start (bound 5 s); SIGTERM: exit 0 after $STOP_MS ms"
}

# Starts the daemon and waits until it has fixed a container created
# before it: from then on it is following link events.
agent_start_ready() {
    local driver=$1
    start_ctr e2edk-sentinel
    agent_start "$driver"
    local want=off
    [ "$driver" = txgbe ] || want=on
    READY_MS=$(wait_pair e2edk-sentinel "$want" 5000 "$AGENT_T0")
}

# New containers while the daemon runs: both ends of each fixed soon
# after `docker run` returns. Two measures per container: from docker run
# returning to the first poll that sees both ends off (an upper bound:
# each poll runs ethtool twice), and from the host end's RTM_NEWLINK with
# link-netnsid (its peer has landed) to the host end's next feature-change
# event (the agent's ethtool), both from `ip -ts monitor`.
test_agent_new_containers() {
    local n=${NEW_RUNS:-20} i key mon=$WORK/logs/$CASE-monitor.log
    agent_start_ready txgbe
    start_link_monitor "$mon"
    : >"$WORK/logs/$CASE-poll.ms"
    : >"$WORK/logs/$CASE-lookup.ms"
    for ((i = 1; i <= n; i++)); do
        key=e2edk-new-$i
        start_ctr "$key"
        echo "$LOOKUP_MS" >>"$WORK/logs/$CASE-lookup.ms"
        wait_pair "$key" off 3000 "$RUN_RETURNED" >>"$WORK/logs/$CASE-poll.ms"
    done
    sleep 0.2
    stop_link_monitor
    # The event measure is for the report only: the verdict is the poll's.
    : >"$WORK/logs/$CASE-event.ms"
    local host landed fixed line no_event=0
    for ((i = 1; i <= n; i++)); do
        host=${PAIR_HOST[e2edk-new-$i]}
        line=$(grep -F " $host@" "$mon" | grep -m1 ' link-netnsid ' || true)
        [ -n "$line" ] || fail "no RTM_NEWLINK with link-netnsid for $host in $mon"
        landed=$(ts_us "${line%% *}")
        line=$(grep -F " $host@" "$mon" | grep -m1 'event FEATURE CHANGE' || true)
        if [ -z "$line" ]; then
            no_event=$((no_event + 1))
            continue
        fi
        fixed=$(ts_us "${line%% *}")
        echo $(((fixed - landed) / 1000)) >>"$WORK/logs/$CASE-event.ms"
    done
    expect_pair e2edk-sentinel off
    agent_stop TERM
    # The poll's own cost, for reading the first measure.
    local p0 poll_cost
    p0=$(now_us)
    pair_tx e2edk-new-1 >/dev/null
    poll_cost=$((($(now_us) - p0) / 1000))
    local poll event
    poll=$(stats <"$WORK/logs/$CASE-poll.ms")
    event=$(stats <"$WORK/logs/$CASE-event.ms")
    note "daemon, txgbe policy: $n containers started one after another, both ends of each fixed (bound 3 s each); ready $READY_MS ms after start"
    note "  docker run returned -> both ends seen off (poll, upper bound: the pair's lookup takes $(field median "$(stats <"$WORK/logs/$CASE-lookup.ms")") ms, one poll $poll_cost ms): median $(field median "$poll") ms, p99 $(field p99 "$poll") ms, max $(field max "$poll") ms"
    note "  host end landed (RTM_NEWLINK with link-netnsid) -> its first feature change (ip -ts monitor): median $(field median "$event") ms, p99 $(field p99 "$event") ms, max $(field max "$event") ms (no such event for $no_event)"
}

# docker restart: a new netns and a new pair, fixed again.
test_agent_restart() {
    agent_start_ready txgbe
    start_ctr e2edk-rst
    wait_pair e2edk-rst off 3000 "$RUN_RETURNED" >/dev/null
    local old=${PAIR_HOST[e2edk-rst]} t0 ms
    t0=$(now_us)
    dk restart -t 0 e2edk-rst >/dev/null
    local returned
    returned=$(now_us)
    retrack_ctr e2edk-rst
    [ "${PAIR_HOST[e2edk-rst]}" != "$old" ] || fail "docker restart kept host end $old"
    ms=$(wait_pair e2edk-rst off 3000 "$returned")
    agent_stop TERM
    note "docker restart ($(((returned - t0) / 1000)) ms): new pair (host end $old -> ${PAIR_HOST[e2edk-rst]}) fixed on both ends $ms ms after the restart returned"
}

# Docker's netns files only (no /proc scan): the agent finds each
# container's netns in the exec-root's netns dir, also after `docker
# restart` leaves the old container's file behind (no longer a netns: it
# fails to open with EINVAL), and `--once` over that dir succeeds.
test_agent_netns_dir() {
    local dir=$WORK/exec/netns
    start_ctr e2edk-sentinel
    agent_start txgbe --no-proc --netns-dir "$dir"
    wait_pair e2edk-sentinel off 5000 "$AGENT_T0" >/dev/null
    start_ctr e2edk-nd
    wait_pair e2edk-nd off 3000 "$RUN_RETURNED" >/dev/null
    local old_key new_key returned ms
    old_key=$(dk inspect -f '{{.NetworkSettings.SandboxKey}}' e2edk-nd)
    dk restart -t 0 e2edk-nd >/dev/null
    returned=$(now_us)
    retrack_ctr e2edk-nd
    new_key=$(dk inspect -f '{{.NetworkSettings.SandboxKey}}' e2edk-nd)
    [ "$new_key" != "$old_key" ] || fail "docker restart kept SandboxKey $old_key"
    [[ $new_key == "$dir/"* ]] || fail "SandboxKey $new_key is not in $dir"
    ms=$(wait_pair e2edk-nd off 3000 "$returned")
    agent_stop TERM
    agent_once txgbe --no-proc --netns-dir "$dir"
    [ "$ONCE_RC" = 0 ] || fail "agent --once over $dir exited $ONCE_RC: $(cat "$ONCE_OUT")"
    local stale=absent
    [ ! -e "$old_key" ] || stale=present
    note "netns found in $dir only (--no-proc): restarted container's new pair fixed $ms ms after the restart returned; old SandboxKey file $stale; --once over the dir: exit 0 ($(tail -n 1 "$ONCE_OUT"))"
}

# docker network connect: the second pair in the same netns is fixed, the
# first stays fixed.
test_agent_network_connect() {
    agent_start_ready txgbe
    start_ctr e2edk-nc
    wait_pair e2edk-nc off 3000 "$RUN_RETURNED" >/dev/null
    dk network connect "$USER_NET" e2edk-nc
    local returned ms
    returned=$(now_us)
    track_pair e2edk-nc/eth1 "${PAIR_NS[e2edk-nc]}" eth1
    ms=$(wait_pair e2edk-nc/eth1 off 3000 "$returned")
    expect_pair e2edk-nc off
    agent_stop TERM
    note "docker network connect: eth1 <-> ${PAIR_HOST[e2edk-nc/eth1]} ($USER_BRIDGE) fixed on both ends $ms ms after the command returned; eth0 still off"
}

# User-defined bridge networks: the suite's, and one created while the
# daemon runs (a bridge it has never seen).
test_agent_user_network() {
    agent_start_ready txgbe
    start_ctr e2edk-un8 --network "$USER_NET"
    local ms8 ms9
    ms8=$(wait_pair e2edk-un8 off 3000 "$RUN_RETURNED")
    dk network create --driver bridge --subnet 10.62.9.0/24 --gateway 10.62.9.1 \
        -o com.docker.network.bridge.name=e2edkbr9 e2edk-net9 >/dev/null
    start_ctr e2edk-un9 --network e2edk-net9
    expect_eq "e2edk-un9's bridge" "$(master_of "${PAIR_HOST[e2edk-un9]}")" e2edkbr9
    ms9=$(wait_pair e2edk-un9 off 3000 "$RUN_RETURNED")
    agent_stop TERM
    note "user-defined bridges: a container on $USER_NET fixed after $ms8 ms; a network created while the agent runs (e2edk-net9, bridge e2edkbr9): its container fixed after $ms9 ms"
}

# What the agent must never touch: the uplink (a veth whose peer is in
# another netns, like a kind node's eth0) and that peer, a veth pair with
# both ends in the host netns, and a host-network container's view. A
# normal container in the same runs is fixed, so the agent was at work.
test_agent_leaves_alone() {
    ip link add e2edkhh0 type veth peer name e2edkhh1
    ip link set e2edkhh0 up
    ip link set e2edkhh1 up
    run_ctr e2edk-la-host --network host
    start_ctr e2edk-la-ctr
    snap() {
        features "" "$UPLINK" | sed "s/^/$UPLINK /"
        features "/run/netns/$WAN_NS" "$WAN_IF" | sed "s/^/$WAN_IF /"
        local l
        for l in e2edkhh0 e2edkhh1 e2edkhh2 e2edkhh3; do
            ! ip link show dev "$l" >/dev/null 2>&1 || features "" "$l" | sed "s/^/$l /"
        done
    }
    local before
    before=$(snap)
    grep -q "^$UPLINK tx-checksumming: on" <<<"$before" || fail "the uplink's tx-checksumming is not on to start with"
    agent_once txgbe
    expect_eq "agent --once exit status" "$ONCE_RC" 0
    expect_pair e2edk-la-ctr off
    expect_same "uplink, its peer and the host-only pair after --once" "$(snap)" "$before"
    # The daemon, with events on each of them while it runs.
    agent_start txgbe
    start_ctr e2edk-la-new
    wait_pair e2edk-la-new off 3000 "$RUN_RETURNED" >/dev/null
    ip link add e2edkhh2 type veth peer name e2edkhh3
    ip link set e2edkhh2 up
    ip link set e2edkhh3 up
    before=$(snap)
    run_ctr e2edk-la-host2 --network host
    ip link set dev "$UPLINK" mtu 1400
    ip link set dev "$UPLINK" mtu 1500
    ip link set dev e2edkhh0 mtu 1400
    ip link set dev e2edkhh0 mtu 1500
    sleep 1.5
    expect_same "uplink, its peer and the host-only pairs while the daemon runs" "$(snap)" "$before"
    agent_stop TERM
    note "left alone by --once and by the daemon (every feature unchanged): the uplink $UPLINK (veth, peer $WAN_IF in netns $WAN_NS, default route), that peer, host-only veth pairs e2edkhh0/1 (before) and e2edkhh2/3 (created while it ran), with MTU events on them; two --network host containers; meanwhile 2 normal containers were fixed"
}

# Drift: TX checksum turned back on by hand, on the host end and inside
# the container, is set again within 5 s; afterwards the agent does not
# touch the pair again (no loop on its own changes).
test_agent_drift() {
    agent_start_ready txgbe
    start_ctr e2edk-drift
    wait_pair e2edk-drift off 3000 "$RUN_RETURNED" >/dev/null
    local host=${PAIR_HOST[e2edk-drift]} ns=${PAIR_NS[e2edk-drift]} t0 host_ms inside_ms
    t0=$(now_us)
    ethtool -K "$host" tx on >/dev/null
    host_ms=$(wait_pair e2edk-drift off 5000 "$t0")
    t0=$(now_us)
    nsenter --net="$ns" ethtool -K eth0 tx on >/dev/null
    inside_ms=$(wait_pair e2edk-drift off 5000 "$t0")
    local mon=$WORK/logs/$CASE-quiet.log events
    start_link_monitor "$mon"
    sleep 2
    stop_link_monitor
    events=$(grep -cF " $host@" "$mon" || true)
    expect_eq "link events on $host in 2 quiet s after the repair" "$events" 0
    expect_pair e2edk-drift off
    agent_stop TERM
    note "drift: 'ethtool -K $host tx on' repaired after $host_ms ms, 'ethtool -K eth0 tx on' inside the container after $inside_ms ms (bound 5 s each); then no link event on $host for 2 s"
}

# The i40e policy changes nothing: every feature of both ends of every
# pair as dockerd left it, for --once and for the daemon.
test_agent_i40e() {
    start_ctr e2edk-i40-a
    start_ctr e2edk-i40-b --network "$USER_NET"
    local before_a before_b
    before_a=$(pair_features e2edk-i40-a)
    before_b=$(pair_features e2edk-i40-b)
    agent_once i40e
    expect_eq "agent --once (i40e) exit status" "$ONCE_RC" 0
    expect_same "features of e2edk-i40-a after --once" "$(pair_features e2edk-i40-a)" "$before_a"
    expect_same "features of e2edk-i40-b after --once" "$(pair_features e2edk-i40-b)" "$before_b"
    agent_start i40e
    start_ctr e2edk-i40-c
    sleep 1.5
    expect_same "features of e2edk-i40-c, started under the i40e daemon" "$(pair_features e2edk-i40-c)" "$before_a"
    expect_same "features of e2edk-i40-a under the daemon" "$(pair_features e2edk-i40-a)" "$before_a"
    agent_stop TERM
    note "i40e policy: --once (exit 0) and the daemon left every feature of both ends of 3 pairs as dockerd set them (tx-checksumming on)"
}

# SIGTERM and SIGINT: the daemon keeps running until signalled, then
# exits 0 within 2 s.
test_agent_signals() {
    local sig report=()
    for sig in TERM INT; do
        agent_start_ready txgbe
        sleep 1
        agent_alive || fail "the agent exited by itself: $(agent_tail)"
        agent_stop "$sig"
        report+=("SIG$sig: exit 0 after $STOP_MS ms")
        remove_all_containers
    done
    note "daemon: ${report[*]} (bound 2 s)"
}

# CPU while nothing happens: over IDLE_SECONDS with 3 fixed containers,
# the agent process's CPU time (utime+stime and its waited-for children's)
# and its context switches, and the CPU time of everything in the agents'
# cgroup (helpers it might run included): under 1% of the period.
test_agent_idle_cpu() {
    local idle=${IDLE_SECONDS:-20}
    agent_start_ready txgbe
    start_ctr e2edk-idle-a
    start_ctr e2edk-idle-b --network "$USER_NET"
    wait_pair e2edk-idle-a off 3000 "$RUN_RETURNED" >/dev/null
    wait_pair e2edk-idle-b off 3000 "$RUN_RETURNED" >/dev/null
    sleep 2
    local c0 c1 s0 s1 g0 g1 hz
    hz=$(getconf CLK_TCK)
    c0=$(cpu_ticks "$AGENT_PID")
    s0=$(ctx_switches "$AGENT_PID")
    g0=$(agent_cgroup_cpu_ns)
    sleep "$idle"
    c1=$(cpu_ticks "$AGENT_PID")
    s1=$(ctx_switches "$AGENT_PID")
    g1=$(agent_cgroup_cpu_ns)
    agent_stop TERM
    local ms=$(((c1 - c0) * 1000 / hz))
    local cg_ms=$ms cg_text="no cgroup CPU accounting"
    if [ -n "$g0" ] && [ -n "$g1" ]; then
        cg_ms=$(((g1 - g0) / 1000000))
        cg_text="its cgroup $cg_ms ms"
    fi
    # Busy polling would show here; 1% of the idle period is the limit.
    [ "$((ms * 100))" -lt "$((idle * 1000))" ] || fail "the agent used $ms ms of CPU in $idle idle s (>= 1%)"
    [ "$((cg_ms * 100))" -lt "$((idle * 1000))" ] || fail "the agent's cgroup used $cg_ms ms of CPU in $idle idle s (>= 1%)"
    note "idle $idle s with 3 fixed containers: agent CPU $ms ms (utime+stime with waited-for children, resolution $((1000 / hz)) ms), $cg_text, $((s1 - s0)) context switches (limit 1% = $((idle * 10)) ms)"
}

# A burst of containers started at once (BURST, default 100; BURST_PARALLEL
# docker run at a time): every pair fixed on both ends.
test_agent_burst() {
    local n=${BURST:-100} par=${BURST_PARALLEL:-20} i t0 t1
    agent_start_ready txgbe
    t0=$(now_us)
    seq 1 "$n" | xargs -P "$par" -I{} timeout 120 env DOCKER_CONFIG="$WORK/client" \
        "$DOCKER_CLI" -H "unix://$WORK/docker.sock" run -d --name e2edk-burst-{} "$IMAGE" /bin/sleep 600 \
        >"$WORK/logs/$CASE-ids" 2>"$WORK/logs/$CASE-run.err" || true
    t1=$(now_us)
    local started
    started=$(wc -l <"$WORK/logs/$CASE-ids")
    echo "burst: $started of $n docker run returned in $(((t1 - t0) / 1000)) ms" >&2
    expect_eq "containers started" "$started" "$n"
    local ids id pid k pending=()
    mapfile -t ids <"$WORK/logs/$CASE-ids"
    for ((i = 0; i < ${#ids[@]}; i++)); do
        id=${ids[i]}
        pid=$(fast_pid "$id")
        track_pair "b$i" "/proc/$pid/ns/net" eth0
        pending+=("b$i")
    done
    # Every pair, bounded: 20 s after the last docker run returned.
    local deadline=$(($(now_us) + 20000000)) round=0 first_round_unfixed=-1 left
    while [ ${#pending[@]} -gt 0 ] && [ "$(now_us)" -lt "$deadline" ]; do
        left=()
        for k in "${pending[@]}"; do
            [ "$(pair_tx "$k")" = "off off" ] || left+=("$k")
        done
        [ "$first_round_unfixed" -ge 0 ] || first_round_unfixed=${#left[@]}
        pending=("${left[@]}")
        round=$((round + 1))
        [ ${#pending[@]} = 0 ] || sleep 0.5
    done
    local t2
    t2=$(now_us)
    [ ${#pending[@]} = 0 ] || fail "${#pending[@]} of $n pairs not fixed 20 s after the burst, e.g. ${PAIR_HOST[${pending[0]}]}: $(pair_tx "${pending[0]}")"
    expect_pair e2edk-sentinel off
    agent_stop TERM
    note "burst: $n containers started ($par docker run at a time) in $(((t1 - t0) / 1000)) ms; all $n pairs fixed on both ends, checked by $round sweep(s) ($first_round_unfixed unfixed at the first sweep), done $(((t2 - t1) / 1000)) ms after the last docker run returned"
}

# restore puts back exactly what the agent changed, on interfaces that
# still exist: every feature of both ends as before, a removed container
# skipped, and a pair the agent never changed left as it is.
test_agent_restore() {
    start_ctr e2edk-rsto-a
    start_ctr e2edk-rsto-b
    dk network connect "$USER_NET" e2edk-rsto-b
    track_pair e2edk-rsto-b/eth1 "${PAIR_NS[e2edk-rsto-b]}" eth1
    local before_b0 before_b1
    before_b0=$(pair_features e2edk-rsto-b)
    before_b1=$(pair_features e2edk-rsto-b/eth1)
    agent_once txgbe
    expect_eq "agent --once exit status" "$ONCE_RC" 0
    expect_pair e2edk-rsto-a off
    expect_pair e2edk-rsto-b/eth1 off
    local state mode
    state=$(agent_state)
    [ -s "$state" ] || fail "no state file at $state after the agent changed interfaces"
    mode=$(stat -c '%a %U' "$state")
    [[ $mode == [0-7]00\ root ]] || fail "state file $state is not root-only: mode/owner $mode"
    # One container goes away; a new one, never seen by the agent, gets
    # TX checksum off by hand.
    dk rm -f e2edk-rsto-a >/dev/null
    start_ctr e2edk-rsto-c
    ethtool -K "${PAIR_HOST[e2edk-rsto-c]}" tx off >/dev/null
    nsenter --net="${PAIR_NS[e2edk-rsto-c]}" ethtool -K eth0 tx off >/dev/null
    local rc=0 out=$WORK/logs/$CASE-restore
    timeout 60 "${AGENT_LAUNCH[@]}" "$AGENT_CGS" "$AGENT_BIN" agent restore --state-file "$state" >"$out.out" 2>"$out.err" || rc=$?
    {
        echo "agent restore: exit $rc"
        sed 's/^/  stdout| /' "$out.out"
        sed 's/^/  stderr| /' "$out.err"
    } >&2
    expect_eq "agent restore exit status (one recorded container gone)" "$rc" 0
    expect_same "features of e2edk-rsto-b eth0 after restore" "$(pair_features e2edk-rsto-b)" "$before_b0"
    expect_same "features of e2edk-rsto-b eth1 after restore" "$(pair_features e2edk-rsto-b/eth1)" "$before_b1"
    expect_pair e2edk-rsto-c off
    note "restore: after --once changed 3 pairs (state file mode/owner $mode) and one container was removed, 'agent restore' (exit 0) put back every feature of both ends of the 2 pairs left; a pair set by hand after the agent ran stayed as set"
}
