# shellcheck shell=bash disable=SC2317 # helpers defined in run_operator_checks are called through wait_until
# The operator's kit on the local cluster (make e2e-k8s, after checks.sh):
# the Helm chart installed, upgraded and uninstalled with helm; a real
# Prometheus inside the cluster (prometheus.sh) that finds both nodes'
# agents with Kubernetes discovery, scrapes them and evaluates the chart's
# rules, each alert made to fire by a real fault; and contrib/coverage.sh
# with no more than the "view" role. Needs what checks.sh needs, plus
# PROM_DIR (a scratch dir) and TOOLS_BIN.

CHART=$REPO/charts/csum-offload
# shellcheck source=e2e/k8s/prometheus.sh
source "$K8S_DIR/prometheus.sh"

helm_() { "$TOOLS_BIN/helm" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# contrib/coverage.sh as an operator with the "view" role in $NS and no
# more (a ServiceAccount's token, not the admin's certificate), --metrics
# included; checks each node's row. WHEN: "healthy" (every pair fixed, no
# problem) or "unfixed" (each node's eth1 left in: its warning shown).
coverage_check() {
    local when=$1 token kc=$PROM_DIR/viewer.kubeconfig table node row
    if [ ! -f "$kc" ]; then
        k -n "$NS" create serviceaccount csum-coverage-viewer >/dev/null
        k -n "$NS" create rolebinding csum-coverage-viewer --clusterrole view \
            --serviceaccount "$NS:csum-coverage-viewer" >/dev/null
        token=$(k -n "$NS" create token csum-coverage-viewer --duration 30m)
        cat >"$kc" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://$API_IP:$API_PORT", certificate-authority: "$PKI/ca.crt"}}]
users: [{name: viewer, user: {token: "$token"}}]
contexts: [{name: viewer, context: {cluster: local, user: viewer, namespace: $NS}}]
current-context: viewer
KC
        # The negative control: this identity can do no more than read.
        local verb resource
        for verb in create/pods get/nodes/proxy create/pods/exec get/secrets; do
            resource=${verb#*/} verb=${verb%%/*}
            [ "$("$TOOLS_BIN/kubectl" --kubeconfig "$kc" auth can-i "$verb" "$resource" -n "$NS")" = no ] ||
                fail "the coverage viewer may $verb $resource"
        done
    fi
    printf '#!/bin/sh\nexec "%s" --kubeconfig "%s" "$@"\n' "$TOOLS_BIN/kubectl" "$kc" >"$PROM_DIR/kubectl-viewer"
    chmod +x "$PROM_DIR/kubectl-viewer"
    table=$(KUBECTL=$PROM_DIR/kubectl-viewer bash "$REPO/contrib/coverage.sh" -n "$NS" --metrics) ||
        fail "contrib/coverage.sh failed: $table"
    echo "   contrib/coverage.sh --metrics, as a ServiceAccount with the view role only:"
    echo "     ${table//$'\n'/$'\n'     }"
    [ "$(grep -c '^node-' <<<"$table")" = "${#NODES[@]}" ] || fail "coverage.sh does not list every node once"
    for node in "${NODES[@]}"; do
        row=$(grep "^$node " <<<"$table")
        # COVERED, NIC (eth0, driver veth), DECISION (pods' veths: tx off).
        grep -Eq "^$node +csum-offload-[a-z0-9]+ +yes +eth0 driver: veth .*tx off" <<<"$row" ||
            fail "coverage.sh's row for $node lacks covered/eth0/veth/tx off: $row"
        case $when in
        healthy)
            # FIXED: from the log, then (conforming/in scope, failed) from
            # the agent's endpoint: every pair fixed, none failed; no
            # PROBLEM.
            grep -Eq " [0-9]+ \(([0-9]+)/\1 pairs conforming, 0 failed\) +-$" <<<"$row" ||
                fail "coverage.sh's row for $node is not fixed and quiet: $row"
            ;;
        unfixed)
            # One pair short of conforming (eth1), failures, and its
            # warning in PROBLEM.
            grep -Eq " \(([0-9]+)/([0-9]+) pairs conforming, [1-9][0-9]* failed\) +eth1: " <<<"$row" ||
                fail "coverage.sh's row for $node does not show eth1 unfixed: $row"
            ;;
        esac
    done
}

run_operator_checks() {
    local a=${NODES[0]} b=${NODES[1]} node out pod
    # The lab's eth1 (the node's link to the control plane) is a veth whose
    # peer the agent cannot reach: excluded, as docs/install.md says (step
    # 13 leaves it in to fire CsumOffloadUnfixedPairs). A full pass every
    # 5 s, so the pair gauges follow the pods quickly.
    local policy=(--set-json 'policy={"drivers":{"veth":{"tx":false}},"rules":[],"default":{}}'
        --set metrics.enabled=true --set logLevel=debug
        --set-json 'agentArgs=["--exclude-ifname","eth1","--resync","5"]')

    step "11. helm install (metrics on): the chart's DaemonSet covers both nodes"
    helm_ install csum-offload "$CHART" -n "$NS" "${policy[@]}" --wait --timeout 180s >/dev/null
    wait_until 60 "the DaemonSet ready on every node" ds_ready
    wait_until 30 "the entry on every node" all_nodes_have_one_entry
    echo "   release $(helm_ -n "$NS" list -o json | jq -r '.[0] | "\(.name) \(.chart) revision \(.revision) \(.status)"'); DaemonSet $(k -n "$NS" get ds csum-offload -o jsonpath='{.status.numberReady}/{.status.desiredNumberScheduled}') Ready; the entry once on every node"

    step "12. Prometheus in the cluster finds both nodes' agents and scrapes them"
    start_prometheus
    both_up() { [ "$(promql 'sum(up{job="csum-offload"})' | jq -r '.[0].value[1] // 0')" = "${#NODES[@]}" ]; }
    wait_until 60 "both agents scraped" both_up
    out=$(promql 'up{job="csum-offload"}')
    echo "   up (targets from kubernetes_sd and the pods' annotations): $(jq -r '[.[] | "\(.metric.node) \(.metric.instance)=\(.value[1])"] | join(", ")' <<<"$out")"
    start_probe_pod csum-metrics "$a"
    k wait --for=condition=Ready pod/csum-metrics --timeout=180s >/dev/null
    check_pod_offload csum-metrics
    fixed_seen() {
        [ "$(promql "csum_offload_pairs_conforming{job=\"csum-offload\",node=\"$a\"}" | jq -r '.[0].value[1] // 0')" -ge 1 ]
    }
    wait_until 60 "the pod's pair among $a's fixed pairs" fixed_seen
    # The fixed pairs per node with the NIC info, in one query: the
    # uplink's labels (node_ethtool_info's names) on the count.
    out=$(promql 'csum_offload_uplink_info{job="csum-offload"} * ignoring(nic, driver, driver_version, firmware_version, settings) group_left csum_offload_pairs_conforming{job="csum-offload"} and on(node) csum_offload:wants_fix')
    [ "$(jq -r '[.[] | select(.metric.driver == "veth" and .metric.nic == "eth0" and .metric.driver_version != null)] | length' <<<"$out")" = "${#NODES[@]}" ] ||
        fail "the fixed pairs with the NIC info do not show eth0/veth on every node: $out"
    [ "$(jq -r --arg n "$a" '.[] | select(.metric.node == $n) | .value[1]' <<<"$out")" -ge 1 ] ||
        fail "no fixed pair on $a, where csum-metrics runs: $out"
    echo "   fixed pairs per node, with the NIC: $(jq -r '[.[] | "\(.metric.node)=\(.value[1]) (nic \(.metric.nic) driver \(.metric.driver) \(.metric.driver_version) firmware \(.metric.firmware_version // "-"), \(.metric.settings))"] | join("; ")' <<<"$out")"
    # max by node: during a rollout the old pod's target (the same node
    # address) is still listed beside the new one.
    out=$(promql 'max by (node) (csum_offload_pairs{job="csum-offload"} - csum_offload_pairs_conforming{job="csum-offload"})')
    [ "$(jq -r '[.[] | select(.value[1] == "0")] | length' <<<"$out")" = "${#NODES[@]}" ] ||
        fail "pairs in scope that are not fixed: $out"
    out=$(promql 'sum by (node) (increase(csum_offload_failures_total{job="csum-offload"}[5m]))')
    [ "$(jq -r '[.[] | select((.value[1] | tonumber) > 0)] | length' <<<"$out")" = 0 ] ||
        fail "agents report failed pairs: $out"
    echo "   every pair in scope fixed; failed pair checks in the last 5 minutes: $(jq -r '[.[] | "\(.metric.node)=\(.value[1])"] | join(", ")' <<<"$out")"
    out=$(promql 'ALERTS')
    [ "$out" = "[]" ] || fail "alerts fire on a healthy cluster: $out"
    echo "   no alert on the healthy cluster (the rules' for: set to 0 s)"
    coverage_check healthy

    step "13. the alerts fire: detection failing on $b, an agent down, pairs the agents cannot fix"
    node_sh "$b" "ip route del default"
    detection_alert() {
        promql 'ALERTS{alertname="CsumOffloadDetectionFailed",alertstate="firing"}' | jq -e --arg n "$b" 'any(.[]; .metric.node == $n)' >/dev/null
    }
    wait_until 90 "CsumOffloadDetectionFailed on $b" detection_alert
    echo "   CsumOffloadDetectionFailed firing for $b (csum_offload_detection_ok 0 there)"
    node_sh "$b" "ip route add default via 10.211.0.254 dev eth0"
    detection_clear() { ! detection_alert; }
    wait_until 90 "CsumOffloadDetectionFailed to clear" detection_clear
    echo "   cleared once $b's route is back"
    # The agent's endpoint stops answering: its pod's node drops the port
    # (a firewall rule in the node's netns, as a node firewall would).
    node_sh "$b" "iptables -I INPUT -p tcp --dport 9981 -j REJECT"
    down_alert() {
        promql 'ALERTS{alertname="CsumOffloadAgentDown",alertstate="firing"}' | jq -e --arg n "$b" 'any(.[]; .metric.node == $n)' >/dev/null
    }
    wait_until 60 "CsumOffloadAgentDown on $b" down_alert
    echo "   CsumOffloadAgentDown firing for $b while its metrics port is closed"
    node_sh "$b" "iptables -D INPUT -p tcp --dport 9981 -j REJECT"
    wait_until 60 "both agents scraped again" both_up
    # A real pair no agent can fix: each node's eth1 is a veth whose peer
    # (the host's end of the control link) is in no netns the agent sees,
    # so it cannot set that end and says so at every pass. Without the
    # chart's --exclude-ifname eth1, the policy (veth: tx off) wants the
    # fix there and CsumOffloadUnfixedPairs fires on both nodes.
    helm_ upgrade csum-offload "$CHART" -n "$NS" "${policy[@]}" --set-json 'agentArgs=["--resync","5"]' \
        --wait --timeout 180s >/dev/null
    unfixed_alert() {
        [ "$(promql 'ALERTS{alertname="CsumOffloadUnfixedPairs",alertstate="firing"}' | jq -r '[.[].metric.node] | unique | length')" = "${#NODES[@]}" ]
    }
    wait_until 90 "CsumOffloadUnfixedPairs on both nodes" unfixed_alert
    # The rollout's old pods gone: one pod, hence one log and one row, per node.
    one_pod_per_node() { [ "$(k -n "$NS" get pods -l app.kubernetes.io/name=csum-offload -o name | wc -l)" = "${#NODES[@]}" ]; }
    wait_until 60 "one csum-offload pod per node" one_pod_per_node
    out=$(promql 'max by (node) (csum_offload_pairs{job="csum-offload"} - csum_offload_pairs_conforming{job="csum-offload"}) > 0')
    [ "$(jq -r 'length' <<<"$out")" = "${#NODES[@]}" ] || fail "not every node reports an unfixed pair: $out"
    echo "   CsumOffloadUnfixedPairs firing for both nodes; pairs in scope not fixed: $(jq -r '[.[] | "\(.metric.node)=\(.value[1])"] | join(", ")' <<<"$out")"
    for node in "${NODES[@]}"; do
        pod=$(k -n "$NS" get pods -l app.kubernetes.io/name=csum-offload --field-selector "spec.nodeName=$node" -o jsonpath='{.items[0].metadata.name}')
        k -n "$NS" logs "$pod" -c agent | grep -E ' WARN .*eth1: ' >/dev/null ||
            fail "$node's agent does not name eth1 as the pair it cannot fix"
    done
    echo "   each agent's log names the pair: $(k -n "$NS" logs "$pod" -c agent | grep -E ' WARN .*eth1: ' | tail -n1 | sed -E 's/^[^ ]+ +//')"
    coverage_check unfixed
    stop_prometheus

    step "14. helm upgrade: a changed policy reaches new pods"
    helm_ upgrade csum-offload "$CHART" -n "$NS" "${policy[@]}" --set apply=container --wait --timeout 180s >/dev/null
    entry_container() {
        for node in "${NODES[@]}"; do
            primary_text "$node" | tr -d ' \n' | grep -q '"apply":"container"' || return 1
        done
    }
    wait_until 180 "apply: container on every node" entry_container
    start_probe_pod csum-helm-up "$a"
    k wait --for=condition=Ready pod/csum-helm-up --timeout=180s >/dev/null
    check_pod_offload csum-helm-up off on
    helm_ upgrade csum-offload "$CHART" -n "$NS" "${policy[@]}" --set apply=uplink --wait --timeout 180s >/dev/null
    uplink_off_everywhere() {
        for node in "${NODES[@]}"; do [ "$(uplink_tx "$node")" = off ] || return 1; done
    }
    wait_until 60 "apply: uplink on every node's eth0" uplink_off_everywhere
    echo "   revision $(helm_ -n "$NS" list -o json | jq -r '.[0].revision'): apply uplink, eth0 TX checksum off on every node"

    step "15. helm uninstall: the entry goes, the NICs are restored"
    k delete pod csum-metrics csum-helm-up --wait=true >/dev/null
    helm_ uninstall csum-offload -n "$NS" --wait --timeout 120s >/dev/null
    wait_until 60 "the entry to leave every node" no_node_has_an_entry
    for node in "${NODES[@]}"; do
        uplink_on() { [ "$(uplink_tx "$1")" = on ]; }
        wait_until 30 "$node's eth0 TX checksum restored" uplink_on "$node"
        echo "   $node: entry gone, eth0 tx-checksum-ip-generic on again"
    done
}
