# shellcheck shell=bash disable=SC2317 # helpers defined in run_checks are called through wait_until
# The checks of csum-offload's DaemonSet on a real cluster, the same for
# both kinds of cluster: sourced by e2e/k8s/run.sh (the local two-node
# cluster, make e2e-k8s, in CI) and by e2e/kind/run.sh (kind, for users
# with docker and kind). The caller defines:
#
#   k ARGS...             kubectl for the cluster
#   node_sh NODE SCRIPT   runs a shell script on the node (as root, in its
#                         mount and network namespaces, crictl configured)
#   restart_primary_cni   makes the primary CNI write its config again
#   PRIMARY_NETWORK       the "name" of the primary CNI's conflist
#   OVERLAY               the kustomize dir to apply (e2e/kind)
#   BROKEN_WIRE           1 when cross-node traffic runs through brokennic
#                         (then wire_counts prints its live counts)
#   SERVICES              1 when the cluster has Service routing and DNS
#   INSPECT               the path of a csum-offload binary on the nodes
#                         for `inspect` (it must work before the install)
#   TMP                   a scratch dir
#
# Every check prints its evidence; any failure ends the run (fail).
# shellcheck source=e2e/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
NS=kube-system
CONF_DIR=/etc/cni/net.d
PLUGIN=/opt/cni/bin/csum-offload

step() { echo "== $*"; }
fail() {
    echo "${E2E_SUITE:-e2e-k8s}: FAIL: $*" >&2
    exit 1
}

nodes() { k get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | sort; }

# The file the runtime uses: first *.conf/*.conflist/*.json by name.
primary() {
    node_sh "$1" "cd $CONF_DIR && ls -1 | grep -E '\\.(conf|conflist|json)\$' | LC_ALL=C sort | head -n1"
}
has_config() { [ -n "$(primary "$1")" ]; }
primary_text() { node_sh "$1" "cat $CONF_DIR/$(primary "$1")"; }
# Changes whenever the primary file is rewritten or replaced.
stamp() { node_sh "$1" "stat -c '%n %i %Y %Z %s' $CONF_DIR/$(primary "$1")"; }
# csum-offload entries in all of a node's config files.
entries() {
    node_sh "$1" "cat $CONF_DIR/*.conf $CONF_DIR/*.conflist $CONF_DIR/*.json 2>/dev/null" |
        grep -cE '"type": *"csum-offload"' || true
}
primary_entries() {
    local file
    file=$(primary "$1")
    [ -n "$file" ] || {
        echo 0
        return
    }
    node_sh "$1" "cat $CONF_DIR/$file" | grep -cE '"type": *"csum-offload"' || true
}
all_nodes_have_one_entry() {
    local node
    for node in "${NODES[@]}"; do
        [ "$(primary_entries "$node")" = 1 ] || return 1
    done
}
no_node_has_an_entry() {
    local node
    for node in "${NODES[@]}"; do
        [ "$(entries "$node")" = 0 ] || return 1
    done
}

# Sets SIDES to a pod's eth0 veth state, "container=on|off host=on|off "
# (tx-checksum-ip-generic), and INSPECTED to `csum-offload inspect`'s output.
pod_offload() {
    local pod=$1 node id pid
    node=$(k get pod "$pod" -o jsonpath='{.spec.nodeName}')
    id=$(node_sh "$node" "crictl pods --namespace default --name '^$pod\$' --state ready -q | head -n1")
    [ -n "$id" ] || fail "no sandbox for pod $pod on $node"
    pid=$(node_sh "$node" "crictl inspectp -o go-template --template '{{.info.pid}}' $id")
    # shellcheck disable=SC2153 # INSPECT comes from the caller
    INSPECTED=$(node_sh "$node" "$INSPECT inspect --netns /proc/$pid/ns/net --ifname eth0")
    SIDES=$(awk '/^container interface/ {s = "container"} /^host interface/ {s = "host"}
                 $1 == "tx-checksum-ip-generic:" {print s "=" $2}' <<<"$INSPECTED" | sort | tr '\n' ' ')
}

# Asserts a pod's eth0 veth has tx-checksum-ip-generic WANT_CONTAINER on
# the container end and WANT_HOST on the host end (default: off, off).
check_pod_offload() {
    local pod=$1 want_c=${2:-off} want_h=${3:-off}
    pod_offload "$pod"
    if [ "$SIDES" != "container=$want_c host=$want_h " ]; then
        echo "$INSPECTED" >&2
        fail "$pod: tx-checksum-ip-generic is '$SIDES', want container=$want_c host=$want_h"
    fi
    echo "   $pod: tx-checksum-ip-generic $want_c on the container end, $want_h on the host end"
}
pod_fixed() {
    pod_offload "$1"
    [ "$SIDES" = "container=off host=off " ]
}

# The node's NetworkReady condition as its CRI runtime reports it, and
# its Ready condition as the API server has it.
network_ready() {
    node_sh "$1" "crictl info -o go-template --template '{{range .status.conditions}}{{if eq .type \"NetworkReady\"}}{{.status}}{{end}}{{end}}'" 2>/dev/null || echo error
}
node_ready() {
    k get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || echo error
}
node_ready_message() {
    k get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}'
}

# The installer process on NODE as the kernel sees it: no capabilities,
# no_new_privs, a seccomp filter (the DaemonSet's securityContext).
check_installer_process() {
    local node=$1 id pid status
    id=$(node_sh "$node" "crictl ps --name '^install\$' --label io.kubernetes.pod.namespace=kube-system -q | head -n1")
    [ -n "$id" ] || fail "no running installer container on $node"
    pid=$(node_sh "$node" "crictl inspect -o go-template --template '{{.info.pid}}' $id")
    status=$(node_sh "$node" "cat /proc/$pid/status")
    grep -qx $'CapEff:\t0000000000000000' <<<"$status" || fail "$node: the installer has capabilities: $(grep CapEff <<<"$status")"
    grep -qx $'NoNewPrivs:\t1' <<<"$status" || fail "$node: the installer runs without no_new_privs"
    grep -qx $'Seccomp:\t2' <<<"$status" || fail "$node: the installer runs without a seccomp filter"
    echo "   $node: installer pid $pid: no capabilities, no_new_privs, seccomp filter"
}

# Starts pod NAME (busybox, sleeping) on NODE without waiting.
start_probe_pod() {
    k run "$1" --image=busybox:1.36 --restart=Never --labels=e2e=csum-probe-pod \
        --overrides="{\"apiVersion\": \"v1\", \"spec\": {\"nodeName\": \"$2\", \"terminationGracePeriodSeconds\": 1}}" \
        -- sleep 3600 >/dev/null
}

# The workload: a server (4 MiB of random data and its sha256 over HTTP)
# on SERVER_NODE, a client on CLIENT_NODE, and a client beside the server.
apply_workload() {
    sed -e "s/SERVER_NODE/$1/" -e "s/CLIENT_NODE/$2/" "$REPO/e2e/kind/workload.yaml" >"$TMP/workload.yaml"
    k apply -f "$TMP/workload.yaml" >/dev/null
    k wait --for=condition=Ready pod/csum-server pod/csum-client pod/csum-client-local --timeout=180s >/dev/null
}

# Fetches the 4 MiB blob from HOST:8080 in pod CLIENT and compares
# hashes. An HTTP/1.0 request over busybox nc (busybox's static wget
# crashes in Debian's build), the body being the response's last 4 MiB.
transfer_ok() {
    local client=$1 host=$2 want got
    want=$(k exec csum-server -- cat /www/blob.sha256)
    got=$(k exec "$client" -- sh -c "printf 'GET /blob HTTP/1.0\r\n\r\n' | nc -w 10 '$host' 8080 | tail -c 4194304 | sha256sum | cut -d' ' -f1" 2>/dev/null) || true
    LAST_TRANSFER="sha256 ${got:-(none)}, want $want"
    [ "$got" = "$want" ]
}
check_transfer() {
    transfer_ok "$1" "$2" || fail "TCP transfer from $2:8080 to $1: $LAST_TRANSFER"
    echo "   $1: 4 MiB from $2:8080 arrived intact ($LAST_TRANSFER)"
}

# brokennic's live counts: "a_to_b: ... partial=N ..." and "b_to_a: ...".
wire_partial() {
    awk '{for (i = 1; i <= NF; i++) if ($i ~ /^partial=/) {split($i, kv, "="); n += kv[2]}} END {print n + 0}' "$WIRE_STATS"
}

# Samples every node's entry count, NetworkReady and Ready until told to
# stop (bounded: at most 10 minutes).
sample() {
    local node=$1 deadline=$((SECONDS + 600))
    while [ ! -e "$TMP/stop-sampling" ] && [ "$SECONDS" -lt "$deadline" ]; do
        printf '%s\n' "$(primary_entries "$node")" >>"$TMP/samples-$node"
        printf '%s\n' "$(network_ready "$node")" >>"$TMP/ready-$node"
        printf '%s\n' "$(node_ready "$node")" >>"$TMP/node-ready-$node"
        sleep 0.3
    done
}
start_samplers() {
    rm -f "$TMP/stop-sampling"
    samplers=()
    local node
    for node in "${NODES[@]}"; do
        : >"$TMP/samples-$node"
        : >"$TMP/ready-$node"
        : >"$TMP/node-ready-$node"
        sample "$node" &
        samplers+=($!)
    done
}
# Stops the samplers once each node has at least 5 samples (a quick step
# must not pass on too few to mean anything; at most 15 s more).
stop_samplers() {
    enough_samples() {
        local node
        for node in "${NODES[@]}"; do
            [ "$(wc -l <"$TMP/ready-$node")" -ge 5 ] || return 1
        done
    }
    wait_until 15 "5 samples on every node" enough_samples
    touch "$TMP/stop-sampling"
    wait "${samplers[@]}"
}
# NetworkReady and node Ready true in every sample of WHAT; with
# ENTRIES=1, the entry present exactly once in every sample too.
check_samples() {
    local what=$1 node total bad
    for node in "${NODES[@]}"; do
        total=$(wc -l <"$TMP/ready-$node")
        [ "$total" -ge 5 ] || fail "$node: only $total samples during $what"
        bad=$(grep -cvx true "$TMP/ready-$node" || true)
        [ "$bad" = 0 ] || fail "$node: NetworkReady not true in $bad of $total samples during $what: $(sort "$TMP/ready-$node" | uniq -c | tr '\n' ' ')"
        bad=$(grep -cvx True "$TMP/node-ready-$node" || true)
        [ "$bad" = 0 ] || fail "$node: node Ready not True in $bad of $total samples during $what: $(sort "$TMP/node-ready-$node" | uniq -c | tr '\n' ' ')"
        if [ "${ENTRIES:-0}" = 1 ]; then
            bad=$(grep -cvx 1 "$TMP/samples-$node" || true)
            [ "$bad" = 0 ] || fail "$node: the entry was missing or duplicated in $bad of $total samples during $what: $(sort "$TMP/samples-$node" | uniq -c | tr '\n' ' ')"
        fi
        echo "   $node: NetworkReady true, node Ready$([ "${ENTRIES:-0}" = 1 ] && echo ", entry present once") in all $total samples during $what"
    done
}

# Patches the ConfigMap's entry to JSON and waits until every node's
# primary conflist carries it (GREP: an extended regex the entry must
# match) and the DaemonSet is ready again.
set_policy() {
    local json=$1 want=$2 node
    k -n "$NS" patch configmap csum-offload-config --type merge \
        -p "$(jq -cn --arg c "$json" '{data: {"config.json": $c}}')" >/dev/null
    entry_matches() {
        for node in "${NODES[@]}"; do
            primary_text "$node" | tr -d ' \n' | grep -qE "$want" || return 1
        done
    }
    wait_until 180 "the new entry ($want) on every node" entry_matches
    k -n "$NS" rollout status ds/csum-offload --timeout=120s >/dev/null
    echo "   the ConfigMap's new entry reached every node's $CONF_DIR ($want)"
}
# The overlay's policy: the nodes' uplink driver (veth) -> tx off.
POLICY_VETH='{"drivers": {"veth": {"tx": false}}, "logLevel": "debug"}'

ds_ready() {
    local want ready
    want=$(k -n "$NS" get ds csum-offload -o jsonpath='{.status.desiredNumberScheduled}')
    ready=$(k -n "$NS" get ds csum-offload -o jsonpath='{.status.numberReady}')
    [ "$want" = "${#NODES[@]}" ] && [ "$ready" = "$want" ]
}
# The DaemonSet's pod on NODE, and whether it is Ready.
ds_pod() {
    k -n "$NS" get pods -l app.kubernetes.io/name=csum-offload --field-selector "spec.nodeName=$1" \
        -o jsonpath='{.items[0].metadata.name}'
}
ds_pod_ready() {
    [ "$(k -n "$NS" get pod "$(ds_pod "$1")" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = "${2:-True}" ]
}
# TX checksum of the node's uplink eth0 (apply: uplink).
uplink_tx() {
    node_sh "$1" "ethtool -k eth0" | awk '$1 == "tx-checksum-ip-generic:" {print $2}'
}

# probe_path NODE SOURCE WANT EXIT: `csum-offload probe` from a throwaway
# pod on NODE (address SOURCE) to the server pod gives verdict WANT and
# exit status EXIT, and leaves no csprobe veth behind.
probe_path() {
    local node=$1 source=$2 want=$3 want_rc=$4 out rc=0 verdict
    out=$(node_sh "$node" "$INSPECT probe --target $server_ip:8080 --source $source --bytes 512 --json") || rc=$?
    verdict=$(jq -r .verdict <<<"$out")
    if [ "$verdict" != "$want" ] || [ "$rc" != "$want_rc" ]; then
        echo "$out" >&2
        fail "probe from $node ($source) to $server_ip:8080: verdict $verdict, exit $rc; want $want, exit $want_rc"
    fi
    echo "   $node -> csum-server: $verdict (exit $rc): $(jq -r '[.attempts[] | "\(.mode) \(.bytesAcked)/\(.bytes)"] | join(", ")' <<<"$out") bytes acknowledged"
    if node_sh "$node" "ip -o link" | grep -q csprobe; then
        fail "$node: the probe left a csprobe veth behind"
    fi
}

run_checks() {
    mapfile -t NODES < <(nodes)
    [ ${#NODES[@]} -ge 2 ] || fail "want 2 nodes, got ${NODES[*]}"
    local a=${NODES[0]} b=${NODES[1]} node server_ip p0 p1 logs detected i

    step "1. the cluster: every node Ready"
    for node in "${NODES[@]}"; do
        [ "$(node_ready "$node")" = True ] || fail "$node is not Ready: $(node_ready_message "$node")"
        echo "   $node: Ready; kubelet $(k get node "$node" -o jsonpath='{.status.nodeInfo.kubeletVersion}'), $(k get node "$node" -o jsonpath='{.status.nodeInfo.containerRuntimeVersion}'), kernel $(k get node "$node" -o jsonpath='{.status.nodeInfo.kernelVersion}')"
        wait_until 120 "the primary CNI's config on $node" has_config "$node"
        primary_text "$node" >"$TMP/original-$node"
        [ "$(entries "$node")" = 0 ] || fail "$node already has a csum-offload entry before the install"
        echo "   $node: $CONF_DIR/$(primary "$node") is $PRIMARY_NETWORK's, without csum-offload"
    done

    step "2. before the install: pods on two nodes (TX checksum offload on)"
    apply_workload "$b" "$a"
    server_ip=$(k get pod csum-server -o jsonpath='{.status.podIP}')
    check_pod_offload csum-client on on
    check_pod_offload csum-server on on
    check_transfer csum-client-local "$server_ip"
    if [ "$BROKEN_WIRE" = 1 ]; then
        k exec csum-client -- ping -c 2 -W 2 "$server_ip" >/dev/null || fail "csum-client cannot ping $server_ip across the wire"
        echo "   csum-client ($a) pings csum-server ($b) at $server_ip: the route works"
        p0=$(wire_partial)
        if transfer_ok csum-client "$server_ip"; then
            fail "cross-node TCP worked without csum-offload: the broken NIC is not reproduced ($LAST_TRANSFER)"
        fi
        sleep 1.5
        p1=$(wire_partial)
        [ "$p1" -gt "$p0" ] || fail "the transfer failed, but brokennic saw no segment with a partial checksum ($p0 -> $p1): another fault?"
        echo "   csum-client ($a) -> csum-server ($b) over TCP fails: $LAST_TRANSFER; brokennic forwarded $((p1 - p0)) segments with partial checksums (the field failure)"
    else
        check_transfer csum-client "$server_ip"
    fi

    step "3. install: kubectl apply -k $OVERLAY"
    start_samplers
    k apply -k "$OVERLAY"
    k -n "$NS" rollout status ds/csum-offload --timeout=120s
    wait_until 60 "the DaemonSet ready on every node" ds_ready
    echo "   DaemonSet csum-offload: $(k -n "$NS" get ds csum-offload -o jsonpath='{.status.numberReady}/{.status.desiredNumberScheduled}') Ready"
    wait_until 30 "the entry on every node" all_nodes_have_one_entry
    stop_samplers
    check_samples "the install"
    for node in "${NODES[@]}"; do
        echo "   $node: $(primary "$node") has the csum-offload entry once"
        node_sh "$node" "test -x $PLUGIN" || fail "$PLUGIN missing on $node"
        check_installer_process "$node"
    done
    logs=$(k -n "$NS" logs -l app.kubernetes.io/name=csum-offload -c install --tail=-1 --prefix)
    detected=$(grep -cE 'detect: nic: eth0 driver: veth( \(version [^)]*\))? -> tx off' <<<"$logs" || true)
    [ "$detected" -ge "${#NODES[@]}" ] || {
        echo "$logs" >&2
        fail "the installer did not log 'eth0 driver: veth -> tx off' on every node"
    }
    echo "   installer logs: uplink eth0, driver veth -> tx off on ${#NODES[@]} nodes"

    step "4. the agent fixes the pods from before; new pods are fixed at ADD; cross-node TCP works"
    # No CNI ADD ran for these pods after the install: only the agent can.
    for pod in csum-server csum-client csum-client-local; do
        wait_until 30 "the agent fixing $pod" pod_fixed "$pod"
        echo "   $pod (from before the install): fixed on both ends by the agent"
    done
    start_probe_pod csum-new "$a"
    k wait --for=condition=Ready pod/csum-new --timeout=180s >/dev/null
    check_pod_offload csum-new
    [ "$BROKEN_WIRE" = 1 ] && p0=$(wire_partial)
    check_transfer csum-client "$server_ip"
    check_transfer csum-client-local "$server_ip"
    if [ "$BROKEN_WIRE" = 1 ]; then
        sleep 1.5
        p1=$(wire_partial)
        [ "$p1" = "$p0" ] || fail "brokennic forwarded $((p1 - p0)) segments with partial checksums after the fix"
        echo "   brokennic: 0 segments with partial checksums during the transfers ($p0 before and after)"
    fi
    if [ "$SERVICES" = 1 ]; then
        check_transfer csum-client csum-server.default.svc.cluster.local
    fi
    k delete pod csum-new --wait=false >/dev/null

    if [ "$BROKEN_WIRE" = 1 ]; then
        step "4b. csum-offload probe: the path across the wire is broken, the path on one node is healthy"
        # The server's own veth is fixed now, so its ACKs cross the wire;
        # the probe judges the client side's path (docs/probe.md).
        probe_path "$a" 10.212.1.250 broken 1
        # A source outside every pod subnet: node-b routes the answer back
        # to the probe's /32 (the server's gateway is node-b's cni0).
        probe_path "$b" 10.214.0.2 ok 0
    fi

    step "5. the primary CNI writes its config again: the entry comes back"
    node=$b
    local file start
    file=$(primary "$node")
    start=$(date +%s%N)
    node_sh "$node" "cat > $CONF_DIR/.e2e-rewrite && mv $CONF_DIR/.e2e-rewrite $CONF_DIR/$file" <"$TMP/original-$node"
    wait_until 10 "the entry back in $file on $node" all_nodes_have_one_entry
    echo "   back in $file on $node $((($(date +%s%N) - start) / 1000000)) ms after a plain rewrite"
    restart_primary_cni
    wait_until 30 "the entry after the primary CNI's restart" all_nodes_have_one_entry
    echo "   entry present on every node after $PRIMARY_NETWORK wrote its config again"
    start_probe_pod csum-rewrite "$b"
    k wait --for=condition=Ready pod/csum-rewrite --timeout=180s >/dev/null
    check_pod_offload csum-rewrite
    k delete pod csum-rewrite --wait=false >/dev/null

    step "6. rolling restart of the DaemonSet: the entry never leaves, the nodes stay ready"
    start_samplers
    (
        i=0
        while [ ! -e "$TMP/stop-pods" ] && [ "$i" -lt 40 ]; do
            start_probe_pod "csum-roll-$i" "${NODES[$((i % ${#NODES[@]}))]}" || true
            i=$((i + 1))
            sleep 1
        done
    ) &
    local pod_starter=$!
    k -n "$NS" rollout restart ds/csum-offload
    k -n "$NS" rollout status ds/csum-offload --timeout=300s
    sleep 2
    touch "$TMP/stop-pods"
    wait "$pod_starter"
    stop_samplers
    ENTRIES=1 check_samples "the rolling restart"
    k wait --for=condition=Ready pod -l e2e=csum-probe-pod --timeout=180s >/dev/null
    local roll_pods
    roll_pods=$(k get pods -l e2e=csum-probe-pod -o name | sed 's|^pod/||')
    [ "$(wc -w <<<"$roll_pods")" -ge 5 ] || fail "only $(wc -w <<<"$roll_pods") pods were created during the rollout"
    for pod in $roll_pods; do
        check_pod_offload "$pod"
    done
    echo "   all $(wc -w <<<"$roll_pods") pods created during the rollout got the settings"
    k delete pods -l e2e=csum-probe-pod --wait=true --timeout=120s >/dev/null

    if [ "$NODE_ROUTES" = 1 ]; then
        step "7. a node whose NIC cannot be detected (its default route removed)"
        echo "   detectionFailure \"skip\" (the default): $b stays Ready, its DaemonSet pod turns unready and says why"
        start_samplers
        node_sh "$b" "ip route del default"
        wait_until 60 "$b's DaemonSet pod to turn unready" ds_pod_ready "$b" False
        local events
        events=$(k -n "$NS" get events --field-selector "involvedObject.name=$(ds_pod "$b"),reason=Unhealthy" -o jsonpath='{range .items[*]}{.message}{"\n"}{end}')
        grep -q 'host NIC detection failed on this node: the host has no default route' <<<"$events" ||
            fail "the readiness probe of $b's DaemonSet pod does not say why: $events"
        echo "   $(grep -m1 -o 'host NIC detection failed on this node: [^;]*' <<<"$events") (readiness probe of $(ds_pod "$b"))"
        node_sh "$b" "ip route add default via 10.211.0.254 dev eth0"
        wait_until 60 "$b's DaemonSet pod to be ready again" ds_pod_ready "$b" True
        stop_samplers
        check_samples "detection failing on $b under \"skip\""

        echo "   detectionFailure \"fail\": $b goes NotReady with the plugin's message, then Ready when fixed"
        set_policy '{"drivers": {"veth": {"tx": false}}, "detectionFailure": "fail", "logLevel": "debug"}' '"detectionFailure":"fail"'
        node_sh "$b" "ip route del default"
        node_not_ready() { [ "$(node_ready "$1")" = False ]; }
        wait_until 90 "$b NotReady" node_not_ready "$b"
        local msg
        msg=$(node_ready_message "$b")
        grep -q 'no default route' <<<"$msg" || fail "$b is NotReady, but not with the plugin's message: $msg"
        echo "   $b NotReady: $msg"
        echo "   $b CRI NetworkReady: $(network_ready "$b")"
        [ "$(network_ready "$b")" = false ] || fail "$b: CRI NetworkReady is not false"
        [ "$(node_ready "$a")" = True ] || fail "$a left Ready too: $(node_ready_message "$a")"
        node_sh "$b" "ip route add default via 10.211.0.254 dev eth0"
        is_ready() { [ "$(node_ready "$1")" = True ]; }
        wait_until 90 "$b Ready again" is_ready "$b"
        echo "   $b Ready again after its route came back; $a Ready throughout"
        set_policy "$POLICY_VETH" '"drivers":\{"veth":\{"tx":false\}\},"logLevel"'
    fi

    step "8. a ConfigMap change reaches new pods (apply: container)"
    set_policy '{"drivers": {"veth": {"tx": false}}, "apply": "container", "logLevel": "debug"}' '"apply":"container"'
    start_probe_pod csum-cm "$a"
    k wait --for=condition=Ready pod/csum-cm --timeout=180s >/dev/null
    check_pod_offload csum-cm off on
    k delete pod csum-cm --wait=false >/dev/null

    if [ "$BROKEN_WIRE" = 1 ]; then
        step "9. apply: uplink: the NICs carry the fix, pods' veths are untouched"
        set_policy '{"drivers": {"veth": {"tx": false}}, "apply": "uplink", "logLevel": "debug"}' '"apply":"uplink"'
        for node in "${NODES[@]}"; do
            uplink_off() { [ "$(uplink_tx "$1")" = off ]; }
            wait_until 30 "tx off on $node's eth0" uplink_off "$node"
            echo "   $node: eth0 tx-checksum-ip-generic off"
        done
        k delete -f "$TMP/workload.yaml" --wait=true --timeout=120s >/dev/null
        apply_workload "$b" "$a"
        server_ip=$(k get pod csum-server -o jsonpath='{.status.podIP}')
        check_pod_offload csum-client on on
        check_pod_offload csum-server on on
        p0=$(wire_partial)
        check_transfer csum-client-local "$server_ip"
        check_transfer csum-client "$server_ip"
        sleep 1.5
        p1=$(wire_partial)
        [ "$p1" = "$p0" ] || fail "brokennic forwarded $((p1 - p0)) segments with partial checksums under apply: uplink"
        echo "   brokennic: 0 segments with partial checksums; on-node and cross-node TCP intact with the pods' offload on"
    fi

    step "10. uninstall: kubectl delete -k $OVERLAY"
    start_samplers
    k delete -k "$OVERLAY" --wait=true
    wait_until 60 "the entry to leave every node" no_node_has_an_entry
    sleep 2
    stop_samplers
    check_samples "the uninstall"
    for node in "${NODES[@]}"; do
        file=$(primary "$node")
        [ -n "$file" ] || fail "$node has no network config left"
        node_sh "$node" "cat $CONF_DIR/$file" | grep -q "\"$PRIMARY_NETWORK\"" || fail "$node: $file lost $PRIMARY_NETWORK's config"
        node_sh "$node" "test -x $PLUGIN" || fail "$node: the binary was removed; pods created with it could not be deleted"
        echo "   $node: entry gone from $file, $PRIMARY_NETWORK's config intact, binary kept"
        if [ "$BROKEN_WIRE" = 1 ]; then
            [ "$(uplink_tx "$node")" = on ] || fail "$node: eth0 TX checksum was not restored on uninstall"
            echo "   $node: eth0 tx-checksum-ip-generic on again (restored by the last agent)"
        fi
    done
    # Created with csum-offload in their chain: their DEL runs the cached
    # chain, which needs the binary.
    k delete -f "$TMP/workload.yaml" --wait=true --timeout=120s >/dev/null
    echo "   pods created with csum-offload deleted cleanly"
    start_probe_pod csum-after "$a"
    k wait --for=condition=Ready pod/csum-after --timeout=180s >/dev/null
    check_pod_offload csum-after on on
    k delete pod csum-after --wait=true >/dev/null
    echo "   a pod created after the uninstall is untouched"
}
