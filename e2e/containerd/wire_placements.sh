# shellcheck shell=bash
# Wire proof per placement under containerd: a container started by
# `ctr run --cni` (ptp + host-local, then csum-offload with one setting)
# sends a file to a "remote host" that the node reaches through a routed
# uplink; the broken-NIC simulator (brokennic) sits between the uplink
# and the remote host, so what the node hands its NIC crosses it verbatim,
# partial checksums included. Per setting: how many partial checksums
# left the node, and whether the file arrived intact.
#
# Sourced by run.sh after tests.sh; run.sh's register_cases calls
# register_wire_placement_cases. Names: e2ecd-dpb* / e2ecddpb* (the
# suite's own cleanup removes e2ecd* objects), addresses 10.63.200.0/24
# (uplink) and 10.63.201.0/24 (pods).
#
#   e2ecddpbup0 (host netns, 10.63.200.1, the node's uplink "NIC")
#     <-> e2ecddpbn0 [netns e2ecd-dpb-wire: brokennic] e2ecddpbn1
#     <-> eth0 (netns e2ecd-dpb-peer, 10.63.200.2)

WP_NET=e2ecd-dpb-wp
WP_SUBNET=10.63.201.0/24
WP_WIRE_NS=e2ecd-dpb-wire
WP_PEER_NS=e2ecd-dpb-peer
WP_UPLINK=e2ecddpbup0
WP_UPLINK_IP=10.63.200.1
WP_PEER_IP=10.63.200.2
# The uplink placement, by the product (no hostDriver: the placement
# needs detection, which starts at hostInterface; the NIC it finds is that
# veth, driver "veth"). Empty: the same kernel state by `ethtool -K
# e2ecddpbup0 tx off` instead, a stand-in the note names.
WP_UPLINK_ENTRY='"apply": "uplink", "hostInterface": "e2ecddpbup0", "drivers": {"veth": {"tx": false}}'

register_wire_placement_cases() {
    local p
    for p in untouched both container host uplink c-tx-gro both-gro; do
        add_case "wire-placement-$p" test_wire_placement "$p"
    done
}

wp_teardown() {
    # A case that failed half-way leaves its brokennic and wirecheck
    # running (bounded, 90 s); they carry this run's wp- log paths.
    local pid
    for pid in $(pids_with_arg "$WORK/logs/wp-"); do
        kill_tree "$pid"
    done
    ip link del "$WP_UPLINK" 2>/dev/null || true
    ip netns del "$WP_WIRE_NS" 2>/dev/null || true
    ip netns del "$WP_PEER_NS" 2>/dev/null || true
}

wp_setup() {
    ip netns add "$WP_WIRE_NS"
    ip netns add "$WP_PEER_NS"
    ip link add "$WP_UPLINK" type veth peer name e2ecddpbn0 netns "$WP_WIRE_NS"
    ip -n "$WP_WIRE_NS" link add e2ecddpbn1 type veth peer name eth0 netns "$WP_PEER_NS"
    local dev
    for dev in e2ecddpbn0 e2ecddpbn1; do
        ip netns exec "$WP_WIRE_NS" sh -c "echo 1 > /proc/sys/net/ipv6/conf/$dev/disable_ipv6"
        ip -n "$WP_WIRE_NS" link set "$dev" up
    done
    echo 1 >"/proc/sys/net/ipv6/conf/$WP_UPLINK/disable_ipv6"
    # A physical NIC takes no fraglist GSO packets (a veth does): the
    # kernel segments them before this "NIC", as it would before txgbe.
    ethtool -K "$WP_UPLINK" tx-gso-list off >/dev/null
    ip addr add "$WP_UPLINK_IP/24" dev "$WP_UPLINK"
    ip link set "$WP_UPLINK" up
    ip -n "$WP_PEER_NS" link set lo up
    ip -n "$WP_PEER_NS" addr add "$WP_PEER_IP/24" dev eth0
    ip -n "$WP_PEER_NS" link set eth0 up
    ip -n "$WP_PEER_NS" route add 10.63.0.0/16 via "$WP_UPLINK_IP"
    # The remote host has a healthy NIC: it sends complete checksums.
    ip netns exec "$WP_PEER_NS" ethtool -K eth0 tx off >/dev/null
}

# The csum-offload entry of a setting (empty: none in the chain), and
# whether the setting must be correct on the wire.
wp_entry() {
    case $1 in
    untouched) echo "" ;;
    both | both-gro) csum_entry txgbe '"apply": "both"' ;;
    container) csum_entry txgbe '"apply": "container"' ;;
    host) csum_entry txgbe '"apply": "host"' ;;
    uplink) [ -z "$WP_UPLINK_ENTRY" ] || wp_detect_entry "$WP_UPLINK_ENTRY" ;;
    c-tx-gro) csum_entry txgbe '"apply": "container", "drivers": {"txgbe": {"tx": false, "gro": true}}' ;;
    esac
}

# csum_entry without hostDriver: the plugin detects the NIC.
wp_detect_entry() { csum_entry "" "$1" | sed 's/"hostDriver": "", //'; }

# What ethtool -k must show once the setting is made: TX checksumming of
# the pod's eth0, its host end and the uplink, then GRO of the pod's eth0
# and its host end (the kernel's defaults: tx on, GRO off on a veth).
wp_want() {
    case $1 in
    untouched) echo "on on on off off" ;;
    both) echo "off off on off off" ;;
    container) echo "off on on off off" ;;
    host) echo "on off on off off" ;;
    uplink) echo "on on off off off" ;;
    c-tx-gro) echo "off on on on off" ;;
    both-gro) echo "off off on off on" ;;
    esac
}

# ethtool -k's FEATURE (on/off) for IFNAME in NETNS (empty: the host).
wp_feature() {
    local netns=$1 ifname=$2 feature=$3
    if [ -n "$netns" ]; then
        nsenter --net="$netns" ethtool -k "$ifname"
    else
        ethtool -k "$ifname"
    fi | awk -F': ' -v f="$feature" '$1 == f {print $2}' | awk '{print $1}'
}

wp_must_work() {
    case $1 in
    untouched | host | both-gro) return 1 ;;
    *) return 0 ;;
    esac
}

wp_label() {
    case $1 in
    untouched) echo "no csum-offload" ;;
    uplink) [ -n "$WP_UPLINK_ENTRY" ] && echo "apply: uplink (csum-offload)" ||
        echo "uplink (STAND-IN: ethtool -K $WP_UPLINK tx off, not csum-offload, until apply: uplink lands)" ;;
    c-tx-gro) echo "container end tx off + gro on" ;;
    both-gro) echo "apply: both, then GRO on the host end by ethtool -K (not offered by csum-offload)" ;;
    *) echo "apply: $1" ;;
    esac
}

test_wire_placement() {
    local placement=$1 name=e2ecd-dpb-wp-$1
    wp_teardown
    wp_setup
    local entry
    entry=$(wp_entry "$placement")
    write_conflist <<EOF
{"cniVersion": "1.0.0", "name": "$WP_NET", "plugins": [
  {"type": "ptp", "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$IPAMDIR", "ranges": [[{"subnet": "$WP_SUBNET"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}}${entry:+,
  $entry}
]}
EOF
    cat "$NETD"/* >&2
    up "$name"
    if [ "$placement" = uplink ] && [ -z "$WP_UPLINK_ENTRY" ]; then
        ethtool -K "$WP_UPLINK" tx off >/dev/null
    fi
    # GRO on a forwarding host end, the negative control: csum-offload
    # does not offer it (builds that check refuse it), so it is made here.
    [ "$placement" != both-gro ] || ethtool -K "${PEER[$name]}" gro on >/dev/null
    # And the ACKs slowed on their way back (a token bucket on the peer's
    # egress), so the sender's 1 KiB writes pile up into back-to-back
    # full-size segments for GRO to merge: on an idle machine every write
    # could leave and be acked alone, leaving GRO nothing to merge (a run
    # saw 0 partial of 846 segments). The peer's netns goes with the case.
    [ "$placement" != both-gro ] ||
        ip netns exec "$WP_PEER_NS" tc qdisc replace dev eth0 root tbf rate 512kbit burst 1600 latency 1s
    local tx_pod tx_host tx_up gro_pod gro_host
    tx_pod=$(tx_checksumming "$(netns_path "$name")" eth0)
    tx_host=$(tx_checksumming "" "${PEER[$name]}")
    tx_up=$(tx_checksumming "" "$WP_UPLINK")
    gro_pod=$(wp_feature "$(netns_path "$name")" eth0 generic-receive-offload)
    gro_host=$(wp_feature "" "${PEER[$name]}" generic-receive-offload)
    echo "tx-checksumming: pod eth0 $tx_pod, host ${PEER[$name]} $tx_host, uplink $WP_UPLINK $tx_up; GRO: pod eth0 $gro_pod, host end $gro_host" >&2
    # The setting must be made, and nothing else changed, before the wire
    # says anything about it.
    expect_eq "$placement: tx-checksumming (pod, host end, uplink), GRO (pod, host end)" \
        "$tx_pod $tx_host $tx_up $gro_pod $gro_host" "$(wp_want "$placement")"
    local sim=$WORK/logs/wp-$placement
    ip netns exec "$WP_WIRE_NS" "$WIRE_DIR/brokennic" --a e2ecddpbn0 --b e2ecddpbn1 --seconds 90 \
        --summary "$sim.summary" --ready-file "$sim.ready" >"$sim.log" 2>&1 &
    local nic=$!
    wait_for 50 test -f "$sim.ready" || fail "brokennic did not start"
    # The pod's side of the same transfer, kept for the log.
    local cap=$WORK/logs/wp-$placement-pod
    "$WIRE_DIR/wirecheck" --ifname "${PEER[$name]}" --port 5001 --seconds 90 \
        --pcap "$cap.pcap" --summary "$cap.summary" --ready-file "$cap.ready" >&2 &
    local wc=$!
    wait_for 50 test -f "$cap.ready" || fail "wirecheck did not start"
    local size=${WP_BYTES:-1048576}
    make_payload "$WORK/data/$name/payload" "$size"
    rm -f "$WORK/data/wp-received" "$WORK/data/wp-hold"
    mkfifo "$WORK/data/wp-hold"
    # stdin held open (see test_wire): the peer never half-closes first.
    # The listener's limit also ends a sender stuck behind the broken NIC
    # (busybox nc's -w does not bound a blocked write): 20 s where the
    # transfer must work, 8 s where it must fail.
    local hold=20
    wp_must_work "$placement" || hold=8
    timeout "$hold" ip netns exec "$WP_PEER_NS" busybox nc -l -p 5001 \
        >"$WORK/data/wp-received" 2>/dev/null <>"$WORK/data/wp-hold" &
    local listener=$!
    wait_for 100 listening "/run/netns/$WP_PEER_NS" 5001 || fail "the peer is not listening"
    local t0 t1 rc=0
    t0=$(date +%s%N)
    exec_in "$name" /bin/sh -c "nc -w ${WP_CONNECT_TIMEOUT:-5} $WP_PEER_IP 5001 < /data/payload" >&2 || rc=$?
    # Where it must work, up to 10 s for the last bytes to arrive after
    # nc exits; where it must fail, 3 s (what arrives is only reported).
    local grace=100
    wp_must_work "$placement" || grace=30
    [ "$rc" != 0 ] || wait_pid_gone "$listener" "$grace" || true
    t1=$(date +%s%N)
    kill_tree "$listener"
    kill -INT "$nic" "$wc"
    wait "$nic" 2>/dev/null || true
    wait "$wc" 2>/dev/null || true
    cat "$sim.summary" >&2
    echo "on the pod's host end ${PEER[$name]} (first 30 segments):" >&2
    tcpdump -r "$cap.pcap" -nn 2>/dev/null | head -n 30 >&2 || true
    local got_size got_sha want_sha out ms=$(((t1 - t0) / 1000000))
    got_size=$(size_of "$WORK/data/wp-received")
    want_sha=$(sha "$WORK/data/$name/payload")
    got_sha=$(sha "$WORK/data/wp-received")
    out=$(grep '^a_to_b:' "$sim.summary")
    local tcp valid partial large errs
    tcp=$(field tcp "$out") valid=$(field valid "$out") partial=$(field partial "$out")
    large=$(field large "$out") errs=$(field send_errors "$out")
    local what
    what="$(wp_label "$placement"): pod eth0 tx $tx_pod gro $gro_pod, host end tx $tx_host gro $gro_host, uplink tx $tx_up; the simulated NIC got $tcp TCP segments from the node: $valid valid, $partial partial, ${large:-0} above the MTU (${errs:-0} frames too large to send on)"
    if wp_must_work "$placement"; then
        [ "$rc" = 0 ] || fail "TCP through the broken NIC failed (nc exit $rc): $what"
        expect_eq "bytes the peer received" "$got_size" "$size"
        expect_eq "sha256 of what the peer received" "$got_sha" "$want_sha"
        if [ "$partial" != 0 ] || [ "$valid" = 0 ]; then
            fail "partial checksums left the node: $what"
        fi
        note "wire placement, $what; $got_size bytes arrived intact in $ms ms: correct"
    else
        # The negative side: partial checksums must leave the node (each
        # one a segment the peer drops). The transfer may still finish
        # late, when retransmissions go out unmerged; that is reported.
        [ "$partial" -gt 0 ] || fail "no partial checksum reached the simulated NIC: $what"
        local arrived="$got_size of $size bytes arrived"
        [ "$got_size" != "$size" ] || [ "$got_sha" != "$want_sha" ] ||
            arrived="the data arrived intact, after retransmissions"
        note "wire placement, $what; $arrived (nc exit $rc, $ms ms): not correct, as expected"
    fi
    wp_drain "$name"
    down "$name"
    expect_released "$WP_NET"
    wp_teardown
}

# After the measurement: lets what the pod still retransmits reach the
# peer (software checksums on the uplink from now on), where the closed
# port resets it, and waits for the pod's connections to end. A TCP
# socket left retransmitting into the broken NIC would keep the pod's
# netns, and its veth, alive long after the container stopped.
# By then its retransmission timer may have backed off for tens of
# seconds: what is still open after 3 s is closed with SOCK_DESTROY
# (`ss -K`, CONFIG_INET_DIAG_DESTROY), where the kernel has it.
wp_drain() {
    local netns
    netns=$(netns_path "$1")
    ethtool -K "$WP_UPLINK" tx off >/dev/null
    wait_for 30 wp_no_connection "$netns" && return 0
    nsenter --net="$netns" ss -HK dst "$WP_PEER_IP" >&2 || true
    wait_for 100 wp_no_connection "$netns" ||
        log "$1: TCP connections still open: $(nsenter --net="$netns" ss -Htan | tr '\n' ' ')"
}

wp_no_connection() {
    ! nsenter --net="$1" ss -Htan | grep -qv -e '^LISTEN' -e '^TIME-WAIT'
}
