# shellcheck shell=bash
# The harness's own cases: they prove the isolated Docker engine works and
# measure, on this machine, the facts the agent relies on (what dockerd
# does to veth pairs and when). They use no csum-offload at all. Sourced
# by run.sh after lib.sh; each case runs in its own subshell with set -e.

# The one veth of container NAME as "IFNAME HOSTEND", checked: exactly
# the expected interfaces inside, each paired with a host end.
# Sets NS (its netns path), HOST (eth0's host end).
smoke_ctr() {
    local name=$1
    NS=$(ctr_netns "$name")
    HOST=$(host_end "$NS" eth0) || fail "$name: no host end found for eth0"
}

test_docker_default_bridge() {
    local c=e2edk-def before after
    before=$(host_veth_ends | { grep -vx "$UPLINK" || true; } | wc -l)
    expect_eq "container veths in the suite netns before" "$before" 0
    run_ctr "$c"
    smoke_ctr "$c"
    local inside sandbox pid
    inside=$(ctr_veths "$NS" | awk '{print $1}' | tr '\n' ' ')
    expect_eq "$c veths inside" "$inside" "eth0 "
    expect_eq "$c host end's bridge" "$(master_of "$HOST")" docker0
    [[ $HOST == veth* ]] || fail "host end $HOST is not named veth*"
    # Docker's netns file (SandboxKey, under its exec-root) is the netns of
    # the container's processes.
    sandbox=$(ctr_sandbox "$c")
    pid=$(ctr_pid "$c")
    [[ $sandbox == "$WORK/exec/netns/"* ]] || fail "SandboxKey $sandbox is not under the exec-root's netns dir"
    expect_eq "inode of SandboxKey vs /proc/$pid/ns/net" "$(netns_inode "$sandbox")" "$(netns_inode "$NS")"
    # The link-netnsid on the host end names that netns: give it a name
    # (ip netns attach, in the private /run/netns) and ask the kernel.
    local nsid listed
    nsid=$(ip -o -d link show dev "$HOST" | sed -n 's/.* link-netnsid \([0-9]*\) .*/\1/p')
    [ -n "$nsid" ] || fail "host end $HOST has no link-netnsid: $(ip -o -d link show dev "$HOST")"
    ip netns attach e2edk-probe "$pid"
    listed=$(ip netns list-id | awk -v n="$nsid" '$2 == n' | sed -n 's/.*name: \([^)]*\)).*/\1/p')
    ip netns del e2edk-probe
    expect_eq "netns with nsid $nsid" "$listed" e2edk-probe
    local ip_addr tx_in tx_host
    ip_addr=$(dk inspect -f '{{.NetworkSettings.IPAddress}}' "$c")
    [[ $ip_addr == 10.62.0.* ]] || fail "$c address $ip_addr not in ${DEFAULT_BIP%.1/24}.0/24"
    tx_in=$(tx_csum "$NS" eth0)
    tx_host=$(tx_csum "" "$HOST")
    note "default bridge: $c eth0 ($ip_addr) <-> host end $HOST (master docker0, link-netnsid $nsid = the container's netns by RTM_GETNSID); SandboxKey ${sandbox#"$WORK"/} is /proc/$pid/ns/net (same inode); dockerd leaves tx-checksumming $tx_in inside and $tx_host on the host end"
    after=$(host_veth_ends | { grep -vx "$UPLINK" || true; } | wc -l)
    expect_eq "container veths in the suite netns" "$after" 1
}

test_docker_user_network() {
    local c=e2edk-usr
    run_ctr "$c" --network "$USER_NET"
    smoke_ctr "$c"
    expect_eq "$c host end's bridge" "$(master_of "$HOST")" "$USER_BRIDGE"
    local ip_addr
    ip_addr=$(dk inspect -f "{{(index .NetworkSettings.Networks \"$USER_NET\").IPAddress}}" "$c")
    [[ $ip_addr == 10.62.8.* ]] || fail "$c address $ip_addr not in $USER_SUBNET"
    note "user-defined bridge network $USER_NET ($USER_SUBNET, bridge $USER_BRIDGE): $c eth0 ($ip_addr) <-> host end $HOST on $USER_BRIDGE"
}

test_docker_network_connect() {
    local c=e2edk-con
    run_ctr "$c"
    smoke_ctr "$c"
    local first=$HOST t0 t1
    t0=$(now_us)
    dk network connect "$USER_NET" "$c"
    t1=$(now_us)
    # Right after `network connect` returns, eth1 is in the same netns.
    local inside second
    inside=$(ctr_veths "$NS" | awk '{print $1}' | sort | tr '\n' ' ')
    expect_eq "$c veths inside after network connect" "$inside" "eth0 eth1 "
    second=$(host_end "$NS" eth1) || fail "$c: no host end for eth1"
    expect_eq "eth1's host end's bridge" "$(master_of "$second")" "$USER_BRIDGE"
    expect_eq "eth0's host end after connect" "$(host_end "$NS" eth0)" "$first"
    note "docker network connect ($(((t1 - t0) / 1000)) ms): a second pair in the same netns, eth1 <-> $second on $USER_BRIDGE, already in place when the command returns; eth0 <-> $first unchanged"
}

# The nsid (link-netnsid) of host end HOST.
nsid_of() { ip -o -d link show dev "$1" | sed -n 's/.* link-netnsid \([0-9]*\) .*/\1/p'; }

test_docker_restart() {
    local c=e2edk-rst
    run_ctr "$c"
    smoke_ctr "$c"
    local old_host=$HOST old_inode old_sandbox old_index old_nsid old_pid
    old_inode=$(netns_inode "$NS")
    old_sandbox=$(ctr_sandbox "$c")
    old_index=$(ip -o link show dev "$old_host" | cut -d: -f1)
    old_nsid=$(nsid_of "$old_host")
    old_pid=$(ctr_pid "$c")
    dk restart -t 0 "$c" >/dev/null
    smoke_ctr "$c"
    local new_inode new_sandbox new_index new_nsid
    new_inode=$(netns_inode "$NS")
    new_sandbox=$(ctr_sandbox "$c")
    new_index=$(ip -o link show dev "$HOST" | cut -d: -f1)
    new_nsid=$(nsid_of "$HOST")
    [ "$(ctr_pid "$c")" != "$old_pid" ] || fail "docker restart kept pid $old_pid"
    [ "$HOST" != "$old_host" ] || fail "docker restart kept the host end name $old_host"
    ! ip link show dev "$old_host" >/dev/null 2>&1 || fail "the old host end $old_host still exists"
    local old_file
    if [ "$new_sandbox" = "$old_sandbox" ]; then
        old_file="same SandboxKey path"
    elif [ -e "$old_sandbox" ]; then
        old_file="new SandboxKey; the old file still exists, no longer a netns: $(nsenter --net="$old_sandbox" true 2>&1 | head -n 1 || true)"
    else
        old_file="new SandboxKey, the old file is gone"
    fi
    local reuse=()
    [ "$new_nsid" != "$old_nsid" ] || reuse+=("the nsid")
    [ "$new_inode" != "$old_inode" ] || reuse+=("the netns inode")
    local reused="neither nsid nor inode reused this time"
    [ ${#reuse[@]} = 0 ] || reused="$(printf '%s and ' "${reuse[@]}" | sed 's/ and $//') of the dead netns reused"
    note "docker restart: new pair (host end $old_host #$old_index -> $HOST #$new_index), old host end deleted; $old_file; netns inode $old_inode -> $new_inode, nsid $old_nsid -> $new_nsid ($reused)"
    # Again with the old netns held open: it cannot die, so its inode and
    # nsid cannot be reused, and the new netns is visibly another one.
    local fd
    exec {fd}<"$NS"
    old_inode=$(netns_inode "/proc/self/fd/$fd")
    old_host=$HOST
    old_nsid=$(nsid_of "$HOST")
    dk restart -t 0 "$c" >/dev/null
    smoke_ctr "$c"
    new_inode=$(netns_inode "$NS")
    new_nsid=$(nsid_of "$HOST")
    local left
    left=$(nsenter --net="/proc/self/fd/$fd" ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
    exec {fd}<&-
    [ "$new_inode" != "$old_inode" ] || fail "docker restart kept the netns ($old_inode)"
    [ "$new_nsid" != "$old_nsid" ] || fail "the new netns has the held one's nsid $old_nsid"
    expect_eq "links left in the old netns" "$left" "lo "
    note "docker restart with the old netns held open: a new netns (inode $old_inode -> $new_inode, nsid $old_nsid -> $new_nsid); docker deleted the pair, only lo is left in the old one"
}

test_docker_host_network() {
    local c=e2edk-hst before after
    before=$(host_veth_ends | sort | tr '\n' ' ')
    run_ctr "$c" --network host
    after=$(host_veth_ends | sort | tr '\n' ' ')
    expect_eq "veths with a peer in another netns" "$after" "$before"
    local pid
    pid=$(ctr_pid "$c")
    expect_eq "$c's netns" "$(netns_inode "/proc/$pid/ns/net")" "$(netns_inode /proc/self/ns/net)"
    note "--network host: no veth created; the container's netns is the suite's host netns (inode $(netns_inode /proc/self/ns/net)); SandboxKey '$(ctr_sandbox "$c")'"
}

# When things happen, as seen from the host netns: `docker run -d`
# returning, the host end's first RTM_NEWLINK (created), and the host
# end's first RTM_NEWLINK that carries link-netnsid (its peer has landed
# in the container's netns). Timestamps from `ip -ts monitor link`.
test_docker_timing() {
    local n=${TIMING_RUNS:-10} mon=$WORK/logs/timing-monitor.log i
    start_link_monitor "$mon"
    local -a before after name
    for ((i = 1; i <= n; i++)); do
        name[i]=e2edk-tim-$i
        before[i]=$(now_us)
        run_ctr "${name[i]}"
        after[i]=$(now_us)
    done
    sleep 0.2
    stop_link_monitor
    local created moved host first_line nsid_line temp
    : >"$WORK/logs/timing.tsv"
    for ((i = 1; i <= n; i++)); do
        host=$(host_end "$(ctr_netns "${name[i]}")" eth0)
        first_line=$(grep -m1 -F " $host@" "$mon" || true)
        nsid_line=$(grep -F " $host@" "$mon" | grep -m1 ' link-netnsid ' || true)
        if [ -z "$first_line" ] || [ -z "$nsid_line" ]; then
            fail "no events for $host in $mon"
        fi
        created=$(ts_us "${first_line%% *}")
        moved=$(ts_us "${nsid_line%% *}")
        # The container end's temporary name, from the host end's first
        # event (host@temp), and its "Deleted ... new-netnsid" event.
        temp=$(sed -n 's/^[^ ]* [0-9]*: [^@]*@\([^:]*\):.*/\1/p' <<<"$first_line")
        grep -q "Deleted [0-9]*: $temp@.* new-netnsid" "$mon" || fail "no move event for $temp in $mon"
        printf '%s\t%s\t%s\t%s\n' $(((created - before[i]) / 1000)) $(((moved - created) / 1000)) \
            $(((after[i] - moved) / 1000)) $(((after[i] - before[i]) / 1000)) >>"$WORK/logs/timing.tsv"
    done
    cat "$WORK/logs/timing.tsv" >&2
    local run_to_created created_to_moved moved_to_return run_total
    run_to_created=$(cut -f1 "$WORK/logs/timing.tsv" | stats)
    created_to_moved=$(cut -f2 "$WORK/logs/timing.tsv" | stats)
    moved_to_return=$(cut -f3 "$WORK/logs/timing.tsv" | stats)
    run_total=$(cut -f4 "$WORK/logs/timing.tsv" | stats)
    local early
    early=$(awk -F'\t' '$3 < 0' "$WORK/logs/timing.tsv" | wc -l)
    note "timing over $n sequential \`docker run -d\` (ms, median [min..max]):"
    note "  run start -> host end created: $(field median "$run_to_created") [$(field min "$run_to_created")..$(field max "$run_to_created")]"
    note "  host end created -> its RTM_NEWLINK with link-netnsid (container end moved into the netns and renamed): $(field median "$created_to_moved") [$(field min "$created_to_moved")..$(field max "$created_to_moved")]"
    note "  that RTM_NEWLINK -> docker run returns: $(field median "$moved_to_return") [$(field min "$moved_to_return")..$(field max "$moved_to_return")]; runs that returned before it: $early"
    note "  docker run -d total: $(field median "$run_total") [$(field min "$run_total")..$(field max "$run_total")]"
    host=$(host_end "$(ctr_netns "${name[1]}")" eth0)
    note "  events of ${name[1]}'s pair in the host netns (ms after creation): $(describe_events "$mon" "$host")"
}

# The link events of host end HOST and its peer, as "+MS what" with
# repeats collapsed. ip monitor link also prints the bridge's AF_BRIDGE
# notices about its ports (the lines without qdisc); they carry no
# link-netnsid even once the peer has moved.
describe_events() {
    local mon=$1 host=$2 temp line t0='' t last='' what out=()
    temp=$(grep -m1 -F " $host@" "$mon" | sed -n 's/^[^ ]* [0-9]*: [^@]*@\([^:]*\):.*/\1/p')
    while IFS= read -r line; do
        case $line in
        *"Deleted "*" new-netnsid "*) what="peer $temp leaves the host netns (RTM_DELLINK, new-netnsid $(sed -n 's/.* new-netnsid \([0-9]*\).*/\1/p' <<<"$line"))" ;;
        *" link-netnsid "*) what="host end: peer @if$(sed -n 's/.*@if\([0-9]*\):.*/\1/p' <<<"$line"), link-netnsid $(sed -n 's/.* link-netnsid \([0-9]*\).*/\1/p' <<<"$line")" ;;
        *"@NONE:"*) what="peer $temp created" ;;
        *"@if"*) what="bridge's AF_BRIDGE port notice: peer @if$(sed -n 's/.*@if\([0-9]*\):.*/\1/p' <<<"$line"), no link-netnsid" ;;
        *" state UP "*) what="host end up" ;;
        *LOWERLAYERDOWN*) what="host end admin up, no carrier" ;;
        *" master "*) what="host end on $(sed -n 's/.* master \([^ ]*\) .*/\1/p' <<<"$line")" ;;
        *) what="host end created" ;;
        esac
        [ "$what" != "$last" ] || continue
        last=$what
        t=$(ts_us "${line%% *}")
        [ -n "$t0" ] || t0=$t
        out+=("+$(((t - t0) / 1000)) $what")
    done < <(grep -E " ($host|$temp)@" "$mon")
    local IFS='|' joined
    joined="${out[*]}"
    echo "${joined//|/; }"
}

# Kernel facts the agent relies on, on a pair of our own: ethtool -K emits
# a link event (RTM_NEWLINK, IFLA_EVENT feature change) only when a value
# really changes, and a setting survives the move into another netns and
# the rename to eth0.
test_kernel_features() {
    local a=e2edkfa b=e2edkfb ns=e2edk-move mon=$WORK/logs/feature-monitor.log
    ip link add "$a" type veth peer name "$b"
    start_link_monitor "$mon"
    ethtool -K "$a" tx off >/dev/null 2>&1
    ethtool -K "$a" tx off >/dev/null 2>&1 || true
    ethtool -K "$a" tx on >/dev/null 2>&1
    sleep 0.2
    stop_link_monitor
    local events
    events=$(grep -cF " $a@$b: " "$mon" | tr -d ' ')
    local feat
    feat=$(grep -F " $a@$b: " "$mon" | grep -c 'event FEATURE CHANGE' || true)
    expect_eq "events for off, off again, on" "$events" 2
    expect_eq "of which FEATURE CHANGE events" "$feat" 2
    ethtool -K "$b" tx off >/dev/null
    ip netns add "$ns"
    ip link set dev "$b" netns "$ns"
    ip -n "$ns" link set dev "$b" name eth0
    local moved
    moved=$(tx_csum "/run/netns/$ns" eth0)
    ip link del "$a"
    ip netns del "$ns"
    expect_eq "tx-checksumming after the move and rename" "$moved" off
    note "ethtool -K tx off / off again / on: $events link events, all 'event FEATURE CHANGE' (none for the no-op); tx off set in the host netns survives the move into a netns and the rename to eth0"
}
