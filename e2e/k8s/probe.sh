# shellcheck shell=bash disable=SC2317 # helpers are called through wait_until
# Probe mode rolled out as a DaemonSet on the local two-node cluster:
# one helm release, detection "probe", each node with its own throwaway
# pod address (probe.nodes) and a target on the other node, so both
# nodes' probes cross brokennic between the uplinks. Sourced by
# e2e/k8s/run.sh after the operator's checks (nothing is installed then);
# uses checks.sh's helpers. Every step prints its evidence.

PROBE_CHART=$REPO/charts/csum-offload
PROBE_PORT=5001
# One address per node, in its pod subnet: host-local hands addresses out
# from .2 upwards, and the suite never runs 250 pods on a node; checked
# unused before the install (the probe itself also refuses an address the
# node holds).
probe_source() { echo "10.212.$(($(node_index "$1") - 1)).250"; }
probe_helm() { "$TOOLS_BIN/helm" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# A TCP sink pod NAME on NODE: busybox nc, a persistent server that
# accepts every connection (the probe needs only the peer's kernel to
# acknowledge its bytes).
start_sink() {
    k run "$1" --image=busybox:1.36 --restart=Never --labels=e2e=csum-probe-sink \
        --overrides="{\"apiVersion\": \"v1\", \"spec\": {\"nodeName\": \"$2\", \"terminationGracePeriodSeconds\": 1}}" \
        -- nc -ll -p "$PROBE_PORT" -e cat >/dev/null
}

# Turns TX checksum off on both ends of POD's eth0, by hand: the target's
# side plays a healthy remote NIC (as the peer's eth0 does in
# plugin/tests/agent_probe.rs), so its ACKs cross brokennic intact and the
# verdict is about the probing node's path alone.
healthy_nic() {
    local pod=$1 node id pid peer
    node=$(k get pod "$pod" -o jsonpath='{.spec.nodeName}')
    id=$(node_sh "$node" "crictl pods --namespace default --name '^$pod\$' --state ready -q | head -n1")
    pid=$(node_sh "$node" "crictl inspectp -o go-template --template '{{.info.pid}}' $id")
    peer=$(node_sh "$node" "nsenter -t $pid -n ip -o link show eth0" | sed -n 's/.*eth0@if\([0-9]*\).*/\1/p')
    [ -n "$peer" ] || fail "$pod: no veth peer index for eth0"
    node_sh "$node" "nsenter -t $pid -n ethtool -K eth0 tx off >/dev/null && ethtool -K \$(ip -o link | awk -F': ' '\$1 == $peer {sub(/@.*/, \"\", \$2); print \$2}') tx off >/dev/null"
    check_pod_offload "$pod"
}

# The verdict file the agent on NODE keeps (root-only, on the node).
verdict_on() { node_sh "$1" "cat /run/csum-offload/probe-verdict.json 2>/dev/null" || true; }
# verdict_is NODE VERDICT TARGET: the node's verdict for TARGET is VERDICT.
verdict_is() {
    local v
    v=$(verdict_on "$1")
    [ -n "$v" ] && [ "$(jq -r '"\(.verdict) \(.target) \(.node)"' <<<"$v")" = "$2 $3 $1" ]
}
show_verdict() {
    jq -r '"verdict \(.verdict) for \(.target) from \(.source) (node \(.node)), \(.millis) ms: " + ([.attempts[] | "try \(.tryNumber) \(.mode) \(.bytesAcked)/\(.bytes)"] | join(", "))' <<<"$(verdict_on "$1")"
}

run_probe_checks() {
    local a=${NODES[0]} b=${NODES[1]} node sink_a sink_b server_ip out logs
    local -A target

    step "16. probe mode as a DaemonSet: targets for each node on the other node, behind brokennic"
    start_sink csum-sink-a "$a"
    start_sink csum-sink-b "$b"
    k wait --for=condition=Ready pod/csum-sink-a pod/csum-sink-b --timeout=180s >/dev/null
    sink_a=$(k get pod csum-sink-a -o jsonpath='{.status.podIP}')
    sink_b=$(k get pod csum-sink-b -o jsonpath='{.status.podIP}')
    healthy_nic csum-sink-a
    healthy_nic csum-sink-b
    target[$a]=$sink_b:$PROBE_PORT
    target[$b]=$sink_a:$PROBE_PORT
    for node in "$a" "$b"; do
        if k get pods -A -o jsonpath='{range .items[*]}{.status.podIP}{"\n"}{end}' | grep -qx "$(probe_source "$node")"; then
            fail "$(probe_source "$node") is a pod's address: not an unused one"
        fi
        node_sh "$node" "ip -4 -o addr; ip -4 route" | grep -qw "$(probe_source "$node")" &&
            fail "$node already uses $(probe_source "$node")"
        echo "   $node: source $(probe_source "$node") (unused, in $(node_pod_cidr "$node")), target ${target[$node]} (a sink pod on the other node)"
    done
    # Control: before the install, the path across the wire drops
    # segments with partial checksums (no fix anywhere).
    out=$(node_sh "$a" "$INSPECT probe --target ${target[$a]} --source $(probe_source "$a") --json") || true
    [ "$(jq -r .verdict <<<"$out")" = broken ] || {
        echo "$out" >&2
        fail "a manual probe from $a to ${target[$a]} before the install is not broken"
    }
    echo "   control: a manual probe from $a to ${target[$a]} says broken before the install"

    local values=(--set detection=probe --set logLevel=debug
        --set "probe.nodes.$a.source=$(probe_source "$a")" --set "probe.nodes.$a.target=${target[$a]}"
        --set "probe.nodes.$b.source=$(probe_source "$b")" --set "probe.nodes.$b.target=${target[$b]}"
        --set-json 'agentArgs=["--exclude-ifname","eth1","--exclude-ifname","csprobe*"]')
    probe_helm install csum-offload "$PROBE_CHART" -n "$NS" "${values[@]}" --wait --timeout 180s >/dev/null
    wait_until 60 "the DaemonSet ready on every node" ds_ready
    wait_until 30 "the entry on every node" all_nodes_have_one_entry
    echo "   helm install: detection \"probe\", $(k -n "$NS" get cm csum-offload-config -o jsonpath='{.data.config\.json}' | jq -c .probe)"

    step "17. both agents probe their own path and find it broken"
    for node in "$a" "$b"; do
        wait_until 60 "$node's verdict" verdict_is "$node" broken "${target[$node]}"
        echo "   $node: $(show_verdict "$node")"
        logs=$(k -n "$NS" logs "$(ds_pod "$node")" -c agent)
        grep -qF "probe ${target[$node]} from throwaway pod $(probe_source "$node")" <<<"$logs" ||
            fail "$node's agent did not log its probe: $logs"
        echo "   $node agent log: $(grep -F "probe ${target[$node]} from throwaway pod" <<<"$logs" | tail -n1 | sed 's/^.*\] //')"
        out=$(k -n "$NS" exec "$(ds_pod "$node")" -c agent -- /csum-offload detect --config /etc/csum-offload/config.json)
        grep -q "^probe: broken, [0-9]* s ago (target ${target[$node]}; detection \"probe\": decides)\$" <<<"$out" ||
            fail "detect on $node: $out"
        echo "   $node detect: $(grep '^probe: ' <<<"$out")"
    done

    step "18. pods created now on both nodes are fixed; cross-node TCP intact"
    apply_workload "$b" "$a"
    server_ip=$(k get pod csum-server -o jsonpath='{.status.podIP}')
    for pod in csum-server csum-client csum-client-local; do
        check_pod_offload "$pod"
    done
    check_transfer csum-client "$server_ip"
    check_transfer csum-client-local "$server_ip"

    step "19. a path that never crosses the wire: ok, and no fix"
    # node-a's target moves to the sink beside it; the agent follows the
    # ConfigMap, probes again, and ADD leaves new pods on node-a alone.
    # Its source moves out of every pod subnet: the sink, on cni0's subnet,
    # would look for an address of that subnet on the bridge, while any
    # other goes to its gateway, node-a, which routes it to the probe's /32
    # (as step 4b's on-node probe does).
    probe_helm upgrade csum-offload "$PROBE_CHART" -n "$NS" "${values[@]}" \
        --set "probe.nodes.$a.target=$sink_a:$PROBE_PORT" --set "probe.nodes.$a.source=10.214.0.3" \
        --wait --timeout 180s >/dev/null
    wait_until 150 "$a's verdict for the sink beside it" verdict_is "$a" ok "$sink_a:$PROBE_PORT"
    echo "   $a: $(show_verdict "$a")"
    verdict_is "$b" broken "${target[$b]}" || fail "$b's verdict changed: $(verdict_on "$b")"
    echo "   $b: still $(show_verdict "$b")"
    start_probe_pod csum-probe-ok "$a"
    start_probe_pod csum-probe-broken "$b"
    k wait --for=condition=Ready pod/csum-probe-ok pod/csum-probe-broken --timeout=180s >/dev/null
    check_pod_offload csum-probe-ok on on
    check_pod_offload csum-probe-broken

    step "20. detection \"both\": the table leaves veth alone while $b's probe says broken, so CsumOffloadProbeBrokenUnfixed fires for $b only"
    # The chart's default policy lists txgbe and i40e, not veth: under
    # "both" the table decides (no change) and the probe only reports.
    probe_helm upgrade csum-offload "$PROBE_CHART" -n "$NS" "${values[@]}" \
        --set "probe.nodes.$a.target=$sink_a:$PROBE_PORT" --set "probe.nodes.$a.source=10.214.0.3" \
        --set detection=both --set metrics.enabled=true --wait --timeout 180s >/dev/null
    both_reported() {
        k -n "$NS" exec "$(ds_pod "$b")" -c agent -- /csum-offload detect --config /etc/csum-offload/config.json 2>/dev/null |
            grep -q '^probe: broken, .*detection "both"'
    }
    wait_until 120 "$b's agent under detection \"both\"" both_reported
    echo "   $b detect: $(k -n "$NS" exec "$(ds_pod "$b")" -c agent -- /csum-offload detect --config /etc/csum-offload/config.json | grep -E '^(probe|settings applied)' | paste -sd ';' -)"
    start_prometheus
    broken_unfixed() {
        promql 'ALERTS{alertname="CsumOffloadProbeBrokenUnfixed",alertstate="firing"}' | jq -e --arg n "$b" 'any(.[]; .metric.node == $n)' >/dev/null
    }
    wait_until 120 "CsumOffloadProbeBrokenUnfixed for $b" broken_unfixed
    out=$(promql 'ALERTS{alertname="CsumOffloadProbeBrokenUnfixed",alertstate="firing"}')
    [ "$(jq -r '[.[].metric.node] | unique | join(",")' <<<"$out")" = "$b" ] ||
        fail "CsumOffloadProbeBrokenUnfixed must fire for $b alone ($a's probe says ok): $out"
    echo "   CsumOffloadProbeBrokenUnfixed firing for $b alone; $(promql 'csum_offload_probe_verdict{job="csum-offload"} == 1' | jq -r '[.[] | "\(.metric.node) verdict \(.metric.verdict)"] | join(", ")')"
    stop_prometheus

    step "21. cleanup: pods deleted, helm uninstall"
    k delete pod csum-probe-ok csum-probe-broken csum-sink-a csum-sink-b --wait=true --timeout=120s >/dev/null
    k delete -f "$TMP/workload.yaml" --wait=true --timeout=120s >/dev/null
    probe_helm uninstall csum-offload -n "$NS" --wait --timeout 120s >/dev/null
    wait_until 60 "the entry to leave every node" no_node_has_an_entry
    for node in "$a" "$b"; do
        node_sh "$node" "ip -o link" | grep -q csprobe && fail "$node: a csprobe veth was left behind"
    done
    echo "   entries gone, no csprobe veth left on either node"
}
