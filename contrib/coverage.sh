#!/usr/bin/env bash
# Node coverage at a glance: one line per csum-offload pod (one per node)
# with what it found and did, from what `kubectl get pods` and `kubectl
# logs` show. Needs only the rights to read pods, their logs and events in
# the namespace (the "view" role); no nodes/proxy, no exec.
#
#   contrib/coverage.sh [-n NAMESPACE] [-l SELECTOR] [--metrics]
#
# Columns:
#   NODE, POD
#   COVERED   the installer's readiness: "yes", or "no" with the probe's
#             last message in PROBLEM (docs/install.md, "What you should see")
#   NIC       the uplink NIC(s) and driver(s) the decision rests on, from
#             the agent's last "decision:" lines; "not detected" when its
#             last word on the NIC was a detection failure
#   DECISION  the settings pods' veths (or, with apply "uplink", the NICs) get
#   FIXED     pairs the agent changed since it started (for a new pod the
#             agent often gets there before the plugin's ADD; pods the
#             plugin set first are not counted);
#             with --metrics, also "(C/N pairs conforming, F failed)" from
#             the agent's endpoint: of the N pairs in scope at its last
#             full pass, C had the policy's settings (fixed, by the agent
#             or the plugin, or already so), and F checks failed since it
#             started
#   PROBLEM   the probe's message when not ready, else the last warning or
#             error of either container ("-": none)
# --metrics reads http://NODE-IP:PORT/metrics (port from the pod's
# prometheus.io/port annotation, metrics.enabled in the chart) with curl:
# it needs network access to the nodes, not more cluster rights.
set -euo pipefail
ns=kube-system
selector=app.kubernetes.io/part-of=csum-offload
metrics=
while [ $# -gt 0 ]; do
    case $1 in
    -n) ns=${2:?-n NAMESPACE} && shift ;;
    -l) selector=${2:?-l SELECTOR} && shift ;;
    --metrics) metrics=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
    *) echo "coverage: unknown argument $1 (see --help)" >&2 && exit 2 ;;
    esac
    shift
done
KUBECTL=${KUBECTL:-kubectl}

# NODE POD HOST-IP INSTALL-READY METRICS-PORT, one pod a line.
pods=$("$KUBECTL" -n "$ns" get pods -l "$selector" -o jsonpath='{range .items[*]}{.spec.nodeName}{"\t"}{.metadata.name}{"\t"}{.status.hostIP}{"\t"}{.status.containerStatuses[?(@.name=="install")].ready}{"\t"}{.metadata.annotations.prometheus\.io/port}{"\n"}{end}')
[ -n "$pods" ] || {
    echo "coverage: no pods with $selector in namespace $ns" >&2
    exit 1
}

# The agent's log -> NIC, DECISION, FIXED, last problem (tab-separated).
summarise() {
    awk '
        function msg(line) { sub(/^[^ ]+ +[A-Z]+ +csum-offload\[[0-9]+\] [a-z]+: /, "", line); return line }
        / (WARN|ERROR) / { problem = msg($0) }
        / INFO .*: decision: uplink: / { nic = ""; detected = 1 }
        / INFO .*: decision: nic: / {
            m = msg($0); sub(/^decision: nic: /, "", m); sub(/ \[.*\]$/, "", m)
            nic = (nic == "" ? m : nic "; " m); detected = 1
        }
        / INFO .*: decision: settings applied to / {
            m = msg($0); sub(/^decision: settings applied to /, "", m); decision = m; detected = 1
        }
        /host NIC detection failed: / { detected = 0; decision = "(none: nothing is changed)" }
        /; changed / {
            m = msg($0); sub(/: host NIC .*$/, "", m); sub(/: -> .*$/, "", m)
            if (!(m in seen)) { seen[m] = 1; fixed++ }
        }
        END {
            if (!detected) nic = "not detected"
            printf "%s\t%s\t%d\t%s\n", (nic == "" ? "-" : nic), (decision == "" ? "-" : decision), fixed, (problem == "" ? "-" : problem)
        }'
}

metric() { awk -v name="$1" '$1 == name { print $2; exit }'; }

clip() { local s=$1; [ ${#s} -le 120 ] && printf '%s' "$s" || printf '%s...' "${s:0:117}"; }

{
    printf 'NODE\tPOD\tCOVERED\tNIC\tDECISION\tFIXED\tPROBLEM\n'
    while IFS=$'\t' read -r node pod ip ready port; do
        IFS=$'\t' read -r nic decision fixed problem < <("$KUBECTL" -n "$ns" logs "$pod" -c agent 2>/dev/null | summarise)
        last_install=$("$KUBECTL" -n "$ns" logs "$pod" -c install 2>/dev/null | grep -E ' (WARN|ERROR) ' | tail -n1 |
            sed -E 's/^[^ ]+ +[A-Z]+ +csum-offload\[[0-9]+\] [a-z]+: //') || true
        [ -z "$last_install" ] || problem=$last_install
        covered=yes
        if [ "$ready" != true ]; then
            covered=no
            probe=$("$KUBECTL" -n "$ns" get events --field-selector "involvedObject.name=$pod,reason=Unhealthy" \
                -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' 2>/dev/null | tail -n1) || true
            problem=${probe:-$problem}
        fi
        if [ -n "$metrics" ] && [ -n "$port" ]; then
            if m=$(curl -fsS --max-time 3 "http://$ip:$port/metrics" 2>/dev/null); then
                fixed="$fixed ($(metric csum_offload_pairs_conforming <<<"$m")/$(metric csum_offload_pairs <<<"$m") pairs conforming, $(metric csum_offload_failures_total <<<"$m") failed)"
            else
                fixed="$fixed (metrics: no answer)"
            fi
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$node" "$pod" "$covered" "$nic" "$decision" "$fixed" "$(clip "$problem")"
    done <<<"$pods"
} | if command -v column >/dev/null; then column -t -s $'\t'; else cat; fi
