# shellcheck shell=bash
# The test cases of the containerd suite. Each runs in its own subshell
# with `set -e`; `note` lines are the case's summary, everything else goes
# to its log. Sourced by run.sh after lib.sh.

note() { printf '%s\n' "$*" | tee -a "$NOTES" >&2; }
fail() {
    note "FAIL: $*"
    return 1
}
# In story mode these lines are the story; in test mode they go to the log.
narrate() {
    if [ -n "${STORY:-}" ]; then
        printf '%s\n' "$*" >&3
    else
        printf '%s\n' "$*" >&2
    fi
}

expect_eq() {
    local what=$1 got=$2 want=$3
    [ "$got" = "$want" ] || fail "$what: got '$got', want '$want'"
}

# State every container keeps while running, for the after-stop checks.
declare -A PEER NETNS_INODE

# Starts a container and records its host peer and netns.
up() {
    local name=$1
    start_container "$name" || fail "$name did not start: $(tr '\n' ' ' <"$WORK/ctr/$name.log")"
    PEER[$name]=$(host_peer "$name") || fail "$name: no host peer for eth0"
    NETNS_INODE[$name]=$(netns_inode "$name")
}

# Stops a container and checks that its veth pair and netns are gone.
down() {
    local name=$1
    stop_container "$name"
    ! ip link show dev "${PEER[$name]}" >/dev/null 2>&1 ||
        fail "$name: host veth ${PEER[$name]} still exists after stop"
    ! netns_alive "${NETNS_INODE[$name]}" ||
        fail "$name: netns ${NETNS_INODE[$name]} still held after stop"
}

# Both ends of NAME's veth must show tx-checksumming WANT.
expect_tx() {
    local name=$1 want=$2
    local inside host
    inside=$(tx_checksumming "$(netns_path "$name")" eth0)
    host=$(tx_checksumming "" "${PEER[$name]}")
    expect_eq "$name eth0 tx-checksumming" "$inside" "$want"
    expect_eq "$name host ${PEER[$name]} tx-checksumming" "$host" "$want"
    echo "$name: eth0 tx-checksumming $inside, host ${PEER[$name]} $host" >&2
}

# After all containers of NETWORK stopped: no address, no cached result.
expect_released() {
    local net=$1 left
    left=$(ipam_allocations "$net" | tr '\n' ' ')
    [ -z "$left" ] || fail "host-local still holds $left for $net"
    left=$(cni_cache_entries "$net" | tr '\n' ' ')
    [ -z "$left" ] || fail "libcni cache still has $left"
}

# --- chains -----------------------------------------------------------------

# One chain at one CNI version under one driver policy: two containers,
# both veth ends of each as the policy says, traffic flows, nothing left.
test_chain() {
    local chain=$1 version=$2 driver=$3 index=$4
    local net=e2ecd-$chain-${version//./}-$driver
    local subnet=10.99.$index.0/24 bridge=e2ecdbr$index
    local want=off
    [ "$driver" = txgbe ] || want=on
    local entry
    entry=$(csum_entry "$driver")
    case $chain in
    ptp) chain_ptp "$version" "$net" "$subnet" "$entry" ;;
    bridge) chain_bridge "$version" "$net" "$subnet" "$bridge" "$entry" ;;
    tuning) chain_tuning "$version" "$net" "$subnet" "$entry" ;;
    esac
    cat "$NETD"/* >&2
    local a=$net-a b=$net-b
    up "$a"
    up "$b"
    expect_tx "$a" "$want"
    expect_tx "$b" "$want"
    local ip_b
    ip_b=$(container_ipv4 "$b")
    exec_in "$a" /bin/ping -c 1 -W 3 "$ip_b" >&2 || fail "$a cannot ping $b ($ip_b)"
    if [ "$chain" = tuning ]; then
        # tuning ran after csum-offload, on the result csum-offload passed on.
        local mtu retries
        mtu=$(nsenter --net="$(netns_path "$a")" cat /sys/class/net/eth0/mtu)
        retries=$(exec_in "$a" /bin/cat /proc/sys/net/ipv4/tcp_syn_retries)
        expect_eq "$a eth0 mtu set by tuning" "$mtu" 1400
        expect_eq "$a tcp_syn_retries set by tuning" "$retries" 3
    fi
    local held
    held=$(ipam_allocations "$net" | wc -l)
    expect_eq "addresses held while running" "$held" 2
    # libcni caches each ADD's result until DEL: the after-stop check for
    # an empty cache means something only if the cache is seen here.
    held=$(cni_cache_entries "$net" | wc -l)
    expect_eq "libcni cached results while running" "$held" 2
    down "$a"
    down "$b"
    expect_released "$net"
    [ "$chain" != bridge ] || ip link del "$bridge"
    local how="entry added by csum-offload install --once"
    [ "$chain" != tuning ] || how="entry written before tuning by hand"
    note "$chain cniVersion $version, $driver policy ($how): both veth ends of 2 containers have tx-checksumming $want; ping ok; stopped clean"
}

# --- proof on the wire --------------------------------------------------------

# A real TCP transfer between two containers, captured on the sender's
# host-side veth; every TCP checksum verified by wirecheck and, from the
# same capture, by tcpdump.
test_wire() {
    local mode=$1 index=$2
    local net=e2ecd-wire-$mode subnet=10.99.$index.0/24 expect entry=
    case $mode in
    none) expect=partial ;;
    i40e) expect=partial entry=$(csum_entry i40e) ;;
    txgbe) expect=valid entry=$(csum_entry txgbe) ;;
    esac
    chain_ptp 1.0.0 "$net" "$subnet" "$entry"
    local a=$net-a b=$net-b
    up "$a"
    up "$b"
    local ip_b size=${WIRE_BYTES:-4194304}
    ip_b=$(container_ipv4 "$b")
    make_payload "$WORK/data/$a/payload" "$size"
    local cap=$WORK/logs/wire-$mode
    "$WIRE_DIR/wirecheck" --ifname "${PEER[$a]}" --port 5001 --seconds 120 \
        --expect "$expect" --pcap "$cap.pcap" --summary "$cap.summary" \
        --ready-file "$cap.ready" >&2 &
    local wc=$!
    wait_for 50 test -f "$cap.ready" || fail "wirecheck did not start"
    # The receiver's stdin is a FIFO it holds open itself: it never sees
    # EOF there, so it never half-closes (busybox nc's client stops
    # sending when the server's FIN arrives).
    exec_in "$b" /bin/sh -c 'mkfifo /data/hold && exec nc -l -p 5001 > /data/received <> /data/hold' >&2 &
    local listener=$!
    wait_for 100 listening "$(netns_path "$b")" 5001 || fail "$b is not listening on 5001"
    local t0 t1
    t0=$(date +%s%N)
    exec_in "$a" /bin/sh -c "nc $ip_b 5001 < /data/payload" >&2 || fail "sending from $a failed"
    wait_pid_gone "$listener" 100 || fail "$b's nc did not finish"
    t1=$(date +%s%N)
    kill -INT "$wc"
    local wc_rc=0
    wait "$wc" || wc_rc=$?
    local got_size got_sha want_sha
    got_size=$(size_of "$WORK/data/$b/received")
    want_sha=$(sha "$WORK/data/$a/payload")
    got_sha=$(sha "$WORK/data/$b/received")
    expect_eq "bytes received" "$got_size" "$size"
    expect_eq "sha256 of what arrived" "$got_sha" "$want_sha"
    local all valid partial bad tcp
    all=$(grep '^all:' "$cap.summary")
    tcp=$(field tcp "$all") valid=$(field valid "$all") partial=$(field partial "$all") bad=$(field bad "$all")
    # tcpdump, from the same capture, must agree segment for segment.
    local td_bad td_good
    td_bad=$(tcpdump -r "$cap.pcap" -nn -vv 'tcp port 5001' 2>/dev/null | grep -c 'incorrect' || true)
    td_good=$(tcpdump -r "$cap.pcap" -nn -vv 'tcp port 5001' 2>/dev/null | grep -c 'cksum 0x[0-9a-f]* (correct)' || true)
    expect_eq "tcpdump's incorrect checksums" "$td_bad" "$((partial + bad))"
    expect_eq "tcpdump's correct checksums" "$td_good" "$valid"
    [ "$wc_rc" = 0 ] || fail "wirecheck: expected $expect checksums: $(grep -E '^(in|out):' "$cap.summary" | tr '\n' ' ')"
    local ms=$(((t1 - t0) / 1000000))
    local in_line
    in_line=$(grep '^in:' "$cap.summary")
    note "wire, $(mode_label "$mode"): $got_size bytes sent, sha256 ${got_sha:0:16}... intact, ${ms} ms; on ${PEER[$a]}: $tcp TCP segments checked, $valid valid, $partial partial, $bad bad (from the sender: $(field tcp "$in_line") segments, largest frame $(field max_frame "$in_line") bytes); tcpdump agrees: $td_bad incorrect, $td_good correct"
    down "$a"
    down "$b"
    expect_released "$net"
}

mode_label() {
    case $1 in
    none) echo "no csum-offload in the chain" ;;
    i40e) echo "csum-offload i40e policy (offload kept)" ;;
    txgbe) echo "csum-offload txgbe policy (TX checksum off)" ;;
    esac
}

# The value of KEY in a "key=value key=value" line.
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

listening() {
    nsenter --net="$1" ss -Hltn "sport = :$2" | grep -q .
}

# --- the field failure, reproduced and fixed -------------------------------

BRK_NET=e2ecd-brk
BRK_PEER_NS=e2ecd-peer
BRK_PEER_IP=10.88.77.100

# A "remote host" in its own netns, reached only through brokennic:
# e2ecdwire0 (host netns, no address) <-> e2ecdpeer0 (peer netns).
brk_setup_peer() {
    ip netns add "$BRK_PEER_NS"
    ip link add e2ecdwire0 type veth peer name e2ecdpeer0 netns "$BRK_PEER_NS"
    echo 1 >/proc/sys/net/ipv6/conf/e2ecdwire0/disable_ipv6
    ip link set e2ecdwire0 up
    ip -n "$BRK_PEER_NS" link set lo up
    ip -n "$BRK_PEER_NS" addr add "$BRK_PEER_IP/24" dev e2ecdpeer0
    ip -n "$BRK_PEER_NS" link set e2ecdpeer0 up
    # The remote host has a healthy NIC: it sends complete checksums.
    ip netns exec "$BRK_PEER_NS" ethtool -K e2ecdpeer0 tx off >/dev/null
}

brk_teardown_peer() {
    ip link del e2ecdwire0 2>/dev/null || true
    ip netns del "$BRK_PEER_NS" 2>/dev/null || true
    ip link del e2ecdbrk0 2>/dev/null || true
}

# One pod behind the broken NIC: the bridge plugin on an address-less
# bridge (so the host never routes the pod's traffic), the pod's
# host-side veth wired to the peer by brokennic only.
brk_conflist() {
    local csum=$1
    write_conflist <<EOF
{"cniVersion": "1.0.0", "name": "$BRK_NET", "plugins": [
  {"type": "bridge", "bridge": "e2ecdbrk0", "isGateway": false, "ipMasq": false,
   "ipam": $(host_local 10.88.77.0/24 '"rangeStart": "10.88.77.10", "rangeEnd": "10.88.77.50"')}${csum:+,
  $csum}
]}
EOF
}

# Runs one phase; with_csum is 0 or 1. Sets BRK_RESULT.
brk_phase() {
    local with_csum=$1 name=e2ecd-brk-$1
    local entry=
    [ "$with_csum" = 0 ] || entry=$(csum_entry txgbe)
    brk_conflist "$entry"
    up "$name"
    local tx
    tx=$(tx_checksumming "$(netns_path "$name")" eth0)
    narrate "  pod $name is up: eth0 $(container_ipv4 "$name"), TX checksum offload $tx; its host-side veth ${PEER[$name]} is wired to the remote host only through brokennic"
    local sim=$WORK/logs/brokennic-$with_csum
    "$WIRE_DIR/brokennic" --a "${PEER[$name]}" --b e2ecdwire0 --seconds 90 \
        --summary "$sim.summary" --ready-file "$sim.ready" >"$sim.log" 2>&1 &
    local nic=$!
    wait_for 50 test -f "$sim.ready" || fail "brokennic did not start"
    local size=${BRK_BYTES:-1048576}
    make_payload "$WORK/data/$name/payload" "$size"
    local ping replies
    ping=$(exec_in "$name" /bin/ping -c 3 -W 2 "$BRK_PEER_IP" 2>&1 || true)
    echo "$ping" >&2
    replies=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' <<<"$ping")
    if [ "${replies:-0}" -lt 3 ]; then
        kill -INT "$nic"
        fail "ping across brokennic: ${replies:-0} of 3 replies (with_csum=$with_csum)"
    fi
    narrate "  ping $BRK_PEER_IP: $replies of 3 replies (ICMP checksums are always computed in software)"
    rm -f "$WORK/data/peer-received" "$WORK/data/peer-hold"
    mkfifo "$WORK/data/peer-hold"
    # stdin held open (see test_wire): the peer never half-closes first.
    timeout 40 ip netns exec "$BRK_PEER_NS" busybox nc -l -p 5001 \
        >"$WORK/data/peer-received" 2>/dev/null <>"$WORK/data/peer-hold" &
    local listener=$!
    wait_for 100 listening "/run/netns/$BRK_PEER_NS" 5001 || fail "the peer is not listening"
    local t0 t1 rc=0
    t0=$(date +%s%N)
    exec_in "$name" /bin/sh -c "nc -w ${BRK_CONNECT_TIMEOUT:-5} $BRK_PEER_IP 5001 < /data/payload" >&2 || rc=$?
    [ "$rc" != 0 ] || wait_pid_gone "$listener" 100 || true
    t1=$(date +%s%N)
    kill_tree "$listener"
    kill -INT "$nic"
    wait "$nic" 2>/dev/null || true
    local got_size got_sha want_sha ms=$(((t1 - t0) / 1000000))
    got_size=$(size_of "$WORK/data/peer-received")
    want_sha=$(sha "$WORK/data/$name/payload")
    got_sha=$(sha "$WORK/data/peer-received")
    local out
    out=$(grep '^a_to_b:' "$sim.summary")
    local fwd partial valid syn
    fwd=$(field tcp "$out") partial=$(field partial "$out") valid=$(field valid "$out") syn=$(field syn "$out")
    cat "$sim.summary" >&2
    if [ "$with_csum" = 0 ]; then
        [ "$rc" != 0 ] || fail "TCP through the broken NIC should time out without csum-offload, but nc succeeded"
        expect_eq "bytes the peer received" "$got_size" 0
        # About 1 partial checksum in 65536 is valid by chance, so "valid"
        # is reported, not required to be 0; nothing may arrive either way.
        [ "$partial" -gt 0 ] || fail "brokennic forwarded no partial checksum: $out"
        narrate "  TCP to $BRK_PEER_IP:5001: connect timed out after $ms ms; the peer received $got_size bytes"
        narrate "  brokennic forwarded $fwd TCP segments from the pod ($syn of them SYNs: connection attempts): $partial with a partial checksum, $valid valid -> the peer's kernel dropped them all"
        BRK_RESULT="without csum-offload: ping $replies/3, TCP connect timed out after $ms ms, 0 bytes arrived; brokennic forwarded $fwd segments from the pod ($syn SYN), $partial partial / $valid valid"
    else
        [ "$rc" = 0 ] || fail "TCP through the broken NIC failed with csum-offload (nc exit $rc)"
        expect_eq "bytes the peer received" "$got_size" "$size"
        expect_eq "sha256 of what the peer received" "$got_sha" "$want_sha"
        [ "$partial" = 0 ] && [ "$valid" -gt 0 ] ||
            fail "with csum-offload every forwarded segment must be valid: $out"
        narrate "  TCP to $BRK_PEER_IP:5001: $got_size bytes in $ms ms, sha256 ${got_sha:0:16}... matches what the pod sent"
        narrate "  brokennic forwarded $fwd TCP segments from the pod: $valid valid, $partial partial"
        BRK_RESULT="with csum-offload (txgbe policy): ping $replies/3, TCP $got_size bytes in $ms ms, sha256 intact; brokennic forwarded $fwd segments from the pod, $valid valid / $partial partial"
    fi
    down "$name"
    expect_released "$BRK_NET"
}

test_brokennic() {
    brk_teardown_peer
    brk_setup_peer
    narrate ""
    narrate "1) The pod's chain has no csum-offload: the pod's veth keeps TX checksum offload on."
    brk_phase 0
    note "broken NIC, $BRK_RESULT"
    narrate ""
    narrate "2) The same pod again, through the same broken NIC, now with csum-offload in the chain (hostDriver txgbe)."
    brk_phase 1
    note "broken NIC, $BRK_RESULT"
    brk_teardown_peer
}

# --- failure behaviour ------------------------------------------------------

# An invalid csum-offload entry: the container must not start, ctr's error
# must carry csum-offload's message, and nothing may leak.
test_invalid() {
    local case=$1 extra=$2 message=$3
    local net=e2ecd-bad-$case name=e2ecd-bad-$case-a
    local entry
    entry=$(csum_entry txgbe "$extra")
    # The installer refuses the entry and leaves the conflist alone...
    chain_ptp 1.0.0 "$net" 10.99.60.0/24 ""
    local before refusal
    before=$(sha "$NETD/10-e2ecd.conflist")
    if refusal=$(install_entry "$entry" 2>&1); then
        fail "csum-offload install accepted an invalid entry ($extra)"
    fi
    grep -qF -- "$message" <<<"$refusal" || fail "the installer's refusal lacks '$message': $refusal"
    expect_eq "conflist after the refused install" "$(sha "$NETD/10-e2ecd.conflist")" "$before"
    # ...so a hand-edited conflist is how such an entry reaches a node.
    HAND_WRITTEN=1 chain_ptp 1.0.0 "$net" 10.99.60.0/24 "$entry"
    if start_container "$name"; then
        fail "$name started although csum-offload's entry is invalid ($extra)"
    fi
    local err
    err=$(cat "$WORK/ctr/$name.log")
    echo "ctr said: $err" >&2
    grep -qF -- "$message" <<<"$err" || fail "ctr's error lacks csum-offload's message '$message': $err"
    grep -qF 'plugin type="csum-offload" failed (add)' <<<"$err" || fail "ctr's error does not name csum-offload: $err"
    # ptp's host-local did allocate (it ran before csum-offload), and the
    # runtime's DEL released the address even though ADD failed.
    [ -f "$IPAMDIR/$net/last_reserved_ip.0" ] || fail "host-local never allocated an address for $net"
    expect_released "$net"
    # ctr 1.6 leaves the created (never started) task behind after a CNI
    # failure; deleting it, as kubelet deletes a failed sandbox, must leave
    # no veth and no netns.
    local peer='' inode=''
    if [ -n "$(task_pid "$name")" ]; then
        peer=$(host_peer "$name" || true)
        inode=$(netns_inode "$name")
        ctr_ task delete -f "$name" >/dev/null 2>&1 || true
    fi
    ctr_ container delete "$name" >/dev/null 2>&1 || true
    if [ -n "$peer" ]; then
        wait_for 50 sh -c "! ip link show dev $peer" || fail "veth $peer left after the failed start"
    fi
    if [ -n "$inode" ]; then
        ! netns_alive "$inode" || fail "netns $inode left after the failed start"
    fi
    note "invalid entry ($extra): csum-offload install refused it, conflist unchanged; written by hand: container refused; ctr: \"$(grep -o 'plugin type="csum-offload".*' <<<"$err" | head -c 160)\"; address released, no veth or netns left"
}

# failurePolicy ignore where setting fails: the container starts and the
# log says why; the same entry with the default policy fails.
test_ignore() {
    local net=e2ecd-ignore name=e2ecd-ignore-a
    # veth has tx-checksum-ipv4 fixed off, so asking for it on cannot work.
    local want='"drivers": {"txgbe": {"tx-checksum-ipv4": true}}'
    chain_ptp 1.0.0 "$net" 10.99.61.0/24 "$(csum_entry txgbe "$want, \"failurePolicy\": \"ignore\"")"
    : >"$PLUGIN_LOG"
    up "$name"
    local why
    why=$(grep -F 'failurePolicy ignore' "$PLUGIN_LOG" | head -n 1)
    [ -n "$why" ] || fail "the log does not say why nothing was applied"
    grep -qF 'tx-checksum-ipv4 is fixed off on this device, wanted on' <<<"$why" ||
        fail "the log line does not name the feature: $why"
    down "$name"
    expect_released "$net"
    note "failurePolicy ignore: container started; log: \"${why#*: }\""

    local strict=e2ecd-strict-a
    chain_ptp 1.0.0 "$net" 10.99.61.0/24 "$(csum_entry txgbe "$want")"
    if start_container "$strict"; then
        fail "$strict started although the policy cannot be applied and failurePolicy is fail"
    fi
    grep -qF 'tx-checksum-ipv4 is fixed off on this device, wanted on' "$WORK/ctr/$strict.log" ||
        fail "ctr's error lacks the reason: $(cat "$WORK/ctr/$strict.log")"
    expect_released "$net"
    note "failurePolicy fail (default), same entry: container refused with \"$(grep -o 'container eth0.*wanted on' "$WORK/ctr/$strict.log" | head -n 1)\""
}

# 20 containers started at once against one conflist: all start, all get
# the policy, all go away cleanly.
test_parallel() {
    local n=${PARALLEL:-20} net=e2ecd-par
    chain_ptp 1.0.0 "$net" 10.99.62.0/24 "$(csum_entry txgbe)"
    local i pids=() t0 t1
    t0=$(date +%s%N)
    for ((i = 1; i <= n; i++)); do
        start_container "$net-$i" &
        pids+=($!)
    done
    local failed=0
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || failed=$((failed + 1))
    done
    t1=$(date +%s%N)
    [ "$failed" = 0 ] || fail "$failed of $n containers did not start: $(cat "$WORK"/ctr/"$net"-*.log | sort | uniq -c | head -n 5)"
    for ((i = 1; i <= n; i++)); do
        PEER[$net-$i]=$(host_peer "$net-$i")
        NETNS_INODE[$net-$i]=$(netns_inode "$net-$i")
        expect_tx "$net-$i" off 2>>"$WORK/logs/parallel-tx.log"
    done
    local held
    held=$(ipam_allocations "$net" | wc -l)
    expect_eq "addresses held" "$held" "$n"
    for ((i = 1; i <= n; i++)); do
        ctr_ task kill -s KILL "$net-$i" >/dev/null 2>&1 &
    done
    wait
    for ((i = 1; i <= n; i++)); do
        down "$net-$i"
    done
    expect_released "$net"
    note "parallel: $n containers started at once in $(((t1 - t0) / 1000000)) ms; all $n have tx-checksumming off on both veth ends; all stopped clean"
}

# The node agent (csum-offload agent) on containers the chained plugin never
# saw: a conflist without the entry (pods created before the DaemonSet),
# then --once fixes them, and the daemon fixes a container started later.
# Scoped to this case's bridge, so no other interface of the node is touched.
test_agent() {
    local net=e2ecd-agent bridge=e2ecdbr50 subnet=10.99.50.0/24
    chain_bridge 1.0.0 "$net" "$subnet" "$bridge" ""
    local a=$net-a b=$net-b c=$net-c
    up "$a"
    up "$b"
    expect_tx "$a" on
    expect_tx "$b" on
    local conf=$WORK/agent.json state=$WORK/agent-state/state.jsonl out
    printf '{"hostDriver": "txgbe"}\n' >"$conf"
    out=$("$PLUGIN_BIN" agent --once --config "$conf" --state-file "$state" --bridge "$bridge") ||
        fail "agent --once failed: $out"
    echo "$out" >&2
    expect_tx "$a" off
    expect_tx "$b" off
    grep -q '2 container veth pairs: 2 changed' <<<"$out" || fail "summary: $out"
    "$PLUGIN_BIN" agent --config "$conf" --state-file "$state" --bridge "$bridge" --resync 0 \
        2>"$WORK/logs/agent.log" &
    local agent=$!
    up "$c"
    local i
    for ((i = 0; i < 50; i++)); do
        [ "$(tx_checksumming "" "${PEER[$c]}")" = off ] && break
        sleep 0.1
    done
    expect_tx "$c" off
    kill -TERM "$agent"
    wait "$agent" || fail "the agent exited $? on SIGTERM"
    down "$a"
    down "$b"
    down "$c"
    expect_released "$net"
    ip link del "$bridge"
    note "agent: 2 containers started without the entry fixed by --once (both ends), a third fixed by the daemon as it started; stopped clean"
}
