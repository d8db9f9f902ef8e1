# shellcheck shell=bash disable=SC2317 # helpers defined in run_operator_checks are called through wait_until
# The operator's kit on the local cluster (make e2e-k8s, after checks.sh):
# the Helm chart installed, upgraded and uninstalled with helm, and a real
# Prometheus (Debian's, on the host) that scrapes both nodes' agents and
# evaluates the chart's rules. Debian builds Prometheus without Kubernetes
# discovery, so the suite does what kubernetes_sd would: it lists the
# DaemonSet's pods through the API server and writes the targets their
# prometheus.io annotations name into a file_sd file. Needs what
# checks.sh needs, plus PROM_DIR (a scratch dir) and TOOLS_BIN.

PROM_PORT=19090
CHART=$REPO/charts/csum-offload

helm_() { "$TOOLS_BIN/helm" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# A PromQL instant query; prints the result vector as JSON.
promql() {
    curl -sf --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" | jq -c '.data.result'
}

# Starts Prometheus with the chart's rules, every `for:` set to 0 so the
# run sees each alert's expression fire instead of waiting minutes.
start_prometheus() {
    local bin
    bin=$(bash "$REPO/e2e/tools/debian-prometheus.sh")/prometheus
    # shellcheck disable=SC2153 # PROM_DIR comes from the caller
    mkdir -p "$PROM_DIR/data"
    sed -E 's/^( +)for: .*/\1for: 0s/' "$CHART/files/alerts.yaml" >"$PROM_DIR/rules.yaml"
    discover_targets
    cat >"$PROM_DIR/prometheus.yml" <<YAML
global: {scrape_interval: 2s, evaluation_interval: 2s}
rule_files: [$PROM_DIR/rules.yaml]
scrape_configs:
  - job_name: csum-offload
    file_sd_configs:
      - files: [$PROM_DIR/targets.json]
        refresh_interval: 2s
YAML
    "$bin" --config.file "$PROM_DIR/prometheus.yml" --storage.tsdb.path "$PROM_DIR/data" \
        --web.listen-address "127.0.0.1:$PROM_PORT" >"$PROM_DIR/prometheus.log" 2>&1 &
    PROM_PID=$!
    prom_up() { curl -sf --max-time 2 "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null; }
    wait_until 60 "Prometheus ready" prom_up
    echo "   Prometheus $("$bin" --version 2>&1 | head -n1 | awk '{print $3}') on 127.0.0.1:$PROM_PORT (pid $PROM_PID)"
}
# The scrape targets kubernetes_sd would find: every csum-offload pod with
# prometheus.io/scrape "true", at its IP (the node's: hostNetwork) and the
# annotated port, labelled with its node.
discover_targets() {
    k -n "$NS" get pods -l app.kubernetes.io/name=csum-offload -o json | jq '[.items[]
        | select(.metadata.annotations["prometheus.io/scrape"] == "true" and .status.podIP != null)
        | {targets: ["\(.status.podIP):\(.metadata.annotations["prometheus.io/port"])"],
           labels: {node: .spec.nodeName, pod: .metadata.name}}]' >"$PROM_DIR/targets.json.tmp"
    mv "$PROM_DIR/targets.json.tmp" "$PROM_DIR/targets.json"
    echo "   targets from the pods' annotations: $(jq -r '[.[] | "\(.labels.node) \(.targets[0])"] | join(", ")' "$PROM_DIR/targets.json")"
}

stop_prometheus() {
    [ -n "${PROM_PID:-}" ] || return 0
    kill "$PROM_PID" 2>/dev/null || true
    wait_pid_gone "$PROM_PID" 100 || kill -KILL "$PROM_PID" 2>/dev/null || true
    PROM_PID=
}

run_operator_checks() {
    local a=${NODES[0]} b=${NODES[1]} node out
    # The lab's eth1 (the node's link to the control plane) is a veth whose
    # peer the agent cannot reach: excluded, as docs/install.md says. A
    # full pass every 5 s, so csum_offload_pairs follows the pods quickly.
    local policy=(--set-json 'policy={"drivers":{"veth":{"tx":false}},"rules":[],"default":{}}'
        --set metrics.enabled=true --set logLevel=debug
        --set-json 'agentArgs=["--exclude-ifname","eth1","--resync","5"]')

    step "11. helm install (metrics on): the chart's DaemonSet covers both nodes"
    helm_ install csum-offload "$CHART" -n "$NS" "${policy[@]}" --wait --timeout 180s >/dev/null
    wait_until 60 "the DaemonSet ready on every node" ds_ready
    wait_until 30 "the entry on every node" all_nodes_have_one_entry
    echo "   release $(helm_ -n "$NS" list -o json | jq -r '.[0] | "\(.name) \(.chart) revision \(.revision) \(.status)"'); DaemonSet $(k -n "$NS" get ds csum-offload -o jsonpath='{.status.numberReady}/{.status.desiredNumberScheduled}') Ready; the entry once on every node"

    step "12. Prometheus scrapes both nodes' agents"
    start_prometheus
    both_up() { [ "$(promql 'sum(up{job="csum-offload"})' | jq -r '.[0].value[1] // 0')" = "${#NODES[@]}" ]; }
    wait_until 60 "both agents scraped" both_up
    out=$(promql 'up{job="csum-offload"}')
    echo "   up: $(jq -r '[.[] | "\(.metric.node) \(.metric.instance)=\(.value[1])"] | join(", ")' <<<"$out")"
    out=$(promql 'csum_offload_uplink_info{job="csum-offload"}')
    [ "$(jq -r '[.[] | select(.metric.driver == "veth" and .metric.nic == "eth0")] | length' <<<"$out")" = "${#NODES[@]}" ] ||
        fail "csum_offload_uplink_info does not show eth0/veth on every node: $out"
    echo "   csum_offload_uplink_info: $(jq -r '[.[] | "\(.metric.node): nic \(.metric.nic) driver \(.metric.driver) \(.metric.driver_version) firmware \(.metric.firmware_version // "-") settings \(.metric.settings)"] | join("; ")' <<<"$out")"
    start_probe_pod csum-metrics "$a"
    k wait --for=condition=Ready pod/csum-metrics --timeout=180s >/dev/null
    check_pod_offload csum-metrics
    pairs_seen() {
        [ "$(promql "csum_offload_pairs{job=\"csum-offload\",node=\"$a\"}" | jq -r '.[0].value[1] // 0')" -ge 1 ]
    }
    wait_until 60 "the pod's pair in $a's metrics" pairs_seen
    out=$(promql 'csum_offload_pairs{job="csum-offload"} and on(node) csum_offload:wants_fix')
    echo "   pairs in scope per node where the policy wants the fix: $(jq -r '[.[] | "\(.metric.node)=\(.value[1])"] | join(", ")' <<<"$out")"
    out=$(promql 'sum by (node) (increase(csum_offload_failures_total{job="csum-offload"}[5m]))')
    [ "$(jq -r '[.[] | select((.value[1] | tonumber) > 0)] | length' <<<"$out")" = 0 ] ||
        fail "agents report failed pairs: $out"
    echo "   failed pair checks in the last 5 minutes: $(jq -r '[.[] | "\(.metric.node)=\(.value[1])"] | join(", ")' <<<"$out")"
    out=$(promql 'ALERTS')
    [ "$out" = "[]" ] || fail "alerts fire on a healthy cluster: $out"
    echo "   no alert on the healthy cluster (the rules' for: set to 0 s)"

    step "13. the alerts fire: detection failing on $b, then an agent down"
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
