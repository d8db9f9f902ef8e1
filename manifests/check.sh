#!/usr/bin/env bash
# Validates manifests/ offline:
#  1. every manifest is listed in kustomization.yaml;
#  2. kubernetes-validate (PyPI, ships the JSON schemas) in strict mode
#     against the oldest and newest Kubernetes versions we support;
#  3. checkov's Kubernetes checks: every finding fixed, or suppressed with
#     a reason next to the field (checkov.io/skipN annotations); and its
#     Dockerfile checks on the image;
#  4. the DaemonSet and the ConfigMap agree (config path, mounts), and the
#     ConfigMap's entry is accepted by the plugin binary itself;
#  5. the kind suite's files (it cannot run here): workload schemas, the
#     overlay's policy accepted by the plugin, shellcheck;
#  6. negative controls: a broken copy must fail both tools, so a tool
#     that silently checks nothing cannot pass;
#  7. the chart (charts/csum-offload): manifests/ is its default render
#     (make manifests), helm lint, the values schema refusing bad values
#     with its message, the render with every option on (schemas,
#     checkov, the metrics wiring), the values table in docs/install.md,
#     and the Prometheus rules (promtool check rules, promtool test
#     rules); each with a negative control.
# The tools are installed once into a venv under target/ from pinned
# versions (helm is built from e2e/tools' go.mod, promtool taken from
# Debian's prometheus package without installing it); when run as root
# they run in an empty network namespace, which proves they need no
# download.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${CSUM_PYENV:-target/pyenv}
case $VENV in /*) ;; *) VENV=$PWD/$VENV ;; esac
REQUIREMENTS=manifests/requirements-check.txt
K8S_VERSIONS=(1.29.0 1.37.0)
BIN=${BIN:-target/release/csum-offload}
RESOURCES=(serviceaccount.yaml configmap.yaml daemonset.yaml networkpolicy.yaml)

say() { echo "manifests-check: $*"; }
die() {
    echo "manifests-check: FAIL: $*" >&2
    exit 1
}

ensure_python() {
    if command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' 2>/dev/null; then
        return
    fi
    say "installing python3 and python3-venv (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
}

ensure_tools() {
    local stamp="$VENV/.requirements.sha256" want
    want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
    if [ -x "$VENV/bin/checkov" ] && [ -x "$VENV/bin/kubernetes-validate" ] &&
        [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return
    fi
    ensure_python
    say "installing kubernetes-validate and checkov into $VENV (once; about a minute)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$want" >"$stamp"
}

# No network for the checks themselves where we can arrange it.
offline() {
    if [ "$(id -u)" = 0 ] && unshare --net true 2>/dev/null; then
        unshare --net "$@"
    else
        "$@"
    fi
}

validate() {
    local v
    for v in "${K8S_VERSIONS[@]}"; do
        offline "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$@" || return 1
    done
}

run_checkov() {
    offline "$VENV/bin/checkov" --directory "$1" --framework kubernetes \
        --quiet --compact --skip-download --skip-results-upload
}

# helm, pinned in e2e/tools/go.mod and built from it (only helm: about a
# minute warm, several cold).
ensure_helm() {
    [ -n "${HELM:-}" ] && return
    HELM=$(bash e2e/tools/build.sh helm.sh/helm/v4/cmd/helm | tail -n1)/helm
    export HELM
}

# promtool from Debian's prometheus package, unpacked under target/ rather
# than installed: installing it would start a Prometheus server.
ensure_promtool() {
    if command -v promtool >/dev/null 2>&1; then
        PROMTOOL=$(command -v promtool)
        return
    fi
    PROMTOOL=$(bash e2e/tools/debian-prometheus.sh)/promtool
}

ensure_tools
ensure_helm
ensure_promtool
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# 1. The kustomization lists every manifest, and nothing else.
for f in manifests/*.yaml; do
    name=$(basename "$f")
    [ "$name" = kustomization.yaml ] && continue
    grep -qx "$name" <<<"$(printf '%s\n' "${RESOURCES[@]}")" || die "$name is not in RESOURCES in $0"
    grep -qE "^  - $name\$" manifests/kustomization.yaml || die "$name is missing from kustomization.yaml"
done
say "kustomization lists all ${#RESOURCES[@]} manifests"

# 2. Schemas, strict (unknown fields are errors).
(cd manifests && validate "${RESOURCES[@]}") || die "schema validation"
say "schemas: ${RESOURCES[*]} valid for Kubernetes ${K8S_VERSIONS[*]}"

# 3. Security linter.
run_checkov manifests >"$TMP/checkov.out" 2>&1 || {
    cat "$TMP/checkov.out" >&2
    die "checkov findings (fix them, or skip with a reason next to the field)"
}
say "checkov: $(grep -m1 'Passed checks' "$TMP/checkov.out")"
offline "$VENV/bin/checkov" --file Dockerfile --framework dockerfile --quiet --compact \
    --skip-download --skip-results-upload >"$TMP/checkov-docker.out" 2>&1 || {
    cat "$TMP/checkov-docker.out" >&2
    die "checkov findings in the Dockerfile"
}
say "checkov (Dockerfile): $(grep -m1 'Passed checks' "$TMP/checkov-docker.out")"

# 4. The DaemonSet, the ConfigMap and the binary agree.
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' plugin/Cargo.toml | head -n1)
IMAGE_ARCH=$(sed -n 's/^IMAGE_ARCH ?= *//p' Makefile | head -n1)
[ -n "$IMAGE_ARCH" ] || die "no IMAGE_ARCH in the Makefile"
grep -q "^ARG TARGETARCH=$IMAGE_ARCH\$" Dockerfile || die "the Dockerfile's default TARGETARCH is not the Makefile's IMAGE_ARCH ($IMAGE_ARCH)"
"$VENV/bin/python" - manifests "$TMP/config.json" "$VERSION" "$IMAGE_ARCH" <<'EOF'
import json, sys, yaml
d = sys.argv[1]
ds = yaml.safe_load(open(f"{d}/daemonset.yaml"))
cm = yaml.safe_load(open(f"{d}/configmap.yaml"))
pod = ds["spec"]["template"]["spec"]
c = pod["containers"][0]
assert c["image"] == f"csum-offload:{sys.argv[3]}", f"image {c['image']} is not the crate version {sys.argv[3]} (make image tags csum-offload:VERSION)"
config_arg = c["args"][c["args"].index("--config") + 1]
probe = c["readinessProbe"]["exec"]["command"]
assert probe[:3] == ["/csum-offload", "install", "--check"], probe
assert probe[probe.index("--config") + 1] == config_arg, "probe and installer read different configs"
mounts = {m["name"]: m for m in c["volumeMounts"]}
vols = {v["name"]: v for v in pod["volumes"]}
cfg_mount = next(m for m in mounts.values() if config_arg.startswith(m["mountPath"] + "/"))
key = config_arg[len(cfg_mount["mountPath"]) + 1:]
assert vols[cfg_mount["name"]]["configMap"]["name"] == cm["metadata"]["name"], "ConfigMap name"
assert key in cm["data"], f"ConfigMap has no key {key}"
# The installer mounts only the CNI directories from the host; the agent
# only the pods' netns files (read-only) and its own state directory.
host_paths = sorted(v["hostPath"]["path"] for n, v in vols.items() if "hostPath" in v and n in mounts)
assert host_paths == ["/etc/cni/net.d", "/opt/cni/bin"], f"installer's host paths: {host_paths}"
agents = [x for x in pod["containers"] if x["name"] == "agent"]
assert len(agents) == 1 and agents[0]["image"] == c["image"], "one agent container, the installer's image"
agent = agents[0]
assert agent["args"][agent["args"].index("--config") + 1] == config_arg, "agent and installer read different configs"
amounts = {m["name"]: m for m in agent["volumeMounts"]}
agent_paths = sorted(vols[n]["hostPath"]["path"] for n in amounts if "hostPath" in vols[n])
assert agent_paths == ["/run/csum-offload", "/run/netns"], f"agent's host paths: {agent_paths}"
netns_mount = next(m for n, m in amounts.items() if vols[n].get("hostPath", {}).get("path") == "/run/netns")
assert netns_mount.get("readOnly") and netns_mount.get("mountPropagation") == "HostToContainer", netns_mount
asc = agent["securityContext"]
assert asc["capabilities"]["drop"] == ["ALL"], asc
assert sorted(asc["capabilities"]["add"]) == ["NET_ADMIN", "NET_BROADCAST", "SYS_ADMIN"], asc
assert asc["readOnlyRootFilesystem"] and not asc["allowPrivilegeEscalation"] and not asc["privileged"]
assert all(set(v) <= {"name", "hostPath", "configMap"} for v in vols.values())
env = {e["name"]: e.get("value") for e in c.get("env", [])}
# Both containers know their node (probe.nodes, readiness).
for x in (c, agent):
    (node,) = [e for e in x["env"] if e["name"] == "NODE_NAME"]
    assert node["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", node
for var, vol in [("CSUM_OFFLOAD_CNI_CONF_DIR", "cni-conf"), ("CSUM_OFFLOAD_CNI_BIN_DIR", "cni-bin")]:
    assert env[var] == mounts[vol]["mountPath"], f"{var} is not where {vol} is mounted"
sc = c["securityContext"]
assert sc["capabilities"]["drop"] == ["ALL"] and not sc.get("capabilities", {}).get("add")
assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and not sc["privileged"]
assert pod["priorityClassName"] == "system-node-critical"
assert {"operator": "Exists"} in pod["tolerations"]
# Scheduled only where the image runs: Linux, and the image's architectures.
assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}, pod.get("nodeSelector")
(term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
(arch,) = [e for e in term["matchExpressions"] if e["key"] == "kubernetes.io/arch"]
assert arch["operator"] == "In" and arch["values"] == sys.argv[4].split(","), f"arch affinity {arch} is not the image's ({sys.argv[4]})"
json.loads(cm["data"][key])
open(sys.argv[2], "w").write(cm["data"][key])
EOF
say "DaemonSet, ConfigMap, probe and image tag (csum-offload:$VERSION) agree; the installer takes only /etc/cni/net.d and /opt/cni/bin from the host, the agent /run/netns (read-only) and /run/csum-offload with NET_ADMIN, SYS_ADMIN, NET_BROADCAST; scheduled on linux/$IMAGE_ARCH only"

[ -x "$BIN" ] || die "$BIN is missing; run make build first"
mkdir -p "$TMP/net.d" "$TMP/bin"
printf '%s\n' '{"cniVersion":"0.3.1","name":"kindnet","plugins":[{"type":"ptp","ipam":{"type":"host-local"}},{"type":"portmap","capabilities":{"portMappings":true}}]}' \
    >"$TMP/net.d/10-kindnet.conflist"
env -u CNI_COMMAND "$BIN" install --once --cni-conf-dir "$TMP/net.d" --cni-bin-dir "$TMP/bin" \
    --config "$TMP/config.json" --log-level warn >/dev/null || die "the plugin rejects the ConfigMap's entry"
# Readiness also runs the plugin's detection on the node's routes: checked
# here independently of this machine's. With the uplink's driver pinned
# (hostDriver), the installed entry must be ready; as shipped, in a netns
# without a default route, the one reason must be detection.
"$VENV/bin/python" -c 'import json, sys; e = json.load(open(sys.argv[1])); e["hostDriver"] = "txgbe"; json.dump(e, open(sys.argv[2], "w"))' \
    "$TMP/config.json" "$TMP/config-pinned.json"
env -u CNI_COMMAND "$BIN" install --once --cni-conf-dir "$TMP/net.d" --cni-bin-dir "$TMP/bin" \
    --config "$TMP/config-pinned.json" --log-level warn >/dev/null || die "the plugin rejects the pinned entry"
env -u CNI_COMMAND "$BIN" install --check --cni-conf-dir "$TMP/net.d" --cni-bin-dir "$TMP/bin" \
    --config "$TMP/config-pinned.json" >/dev/null || die "readiness check fails right after install"
if [ "$(id -u)" = 0 ] && unshare --net true 2>/dev/null; then
    env -u CNI_COMMAND "$BIN" install --once --cni-conf-dir "$TMP/net.d" --cni-bin-dir "$TMP/bin" \
        --config "$TMP/config.json" --log-level error >/dev/null || die "the plugin rejects the ConfigMap's entry"
    if unshare --net env -u CNI_COMMAND "$BIN" install --check --cni-conf-dir "$TMP/net.d" \
        --cni-bin-dir "$TMP/bin" --config "$TMP/config.json" >/dev/null 2>"$TMP/check.err"; then
        die "readiness passed on a node without a default route"
    fi
    grep -q "host NIC detection failed on this node: " "$TMP/check.err" || die "readiness failed for another reason: $(cat "$TMP/check.err")"
    ! grep -q "; and: " "$TMP/check.err" || die "readiness found more than detection: $(cat "$TMP/check.err")"
fi
say "the ConfigMap's entry installs and passes the readiness check (detection pinned; without a default route, detection is the one reason)"

# 5. The kind suite cannot run in CI (no docker engine); check its files:
#    the workload against the schemas, the overlay's policy against the
#    plugin, and both scripts with shellcheck.
(cd e2e/kind && validate workload.yaml) || die "e2e/kind/workload.yaml schema validation"
"$VENV/bin/python" - e2e/kind/kustomization.yaml manifests/configmap.yaml "$TMP/kind-config.json" <<'EOF'
import json, sys, yaml
overlay = yaml.safe_load(open(sys.argv[1]))
cm = yaml.safe_load(open(sys.argv[2]))
assert overlay["resources"] == ["../../manifests"], overlay["resources"]
(patch,) = overlay["patches"]
assert patch["target"] == {"kind": "ConfigMap", "name": cm["metadata"]["name"]}, patch["target"]
(op,) = yaml.safe_load(patch["patch"])
assert op["op"] == "replace" and op["path"] == "/data/config.json", op
assert "config.json" in cm["data"], "the overlay replaces a key the ConfigMap does not have"
entry = json.loads(op["value"])
assert entry["drivers"]["veth"] == {"tx": False}, "the kind policy must map veth to the txgbe settings"
open(sys.argv[3], "w").write(op["value"])
EOF
rm -rf "$TMP/net.d" && mkdir -p "$TMP/net.d"
printf '%s\n' '{"cniVersion":"0.3.1","name":"kindnet","plugins":[{"type":"ptp"}]}' >"$TMP/net.d/10-kindnet.conflist"
env -u CNI_COMMAND "$BIN" install --once --cni-conf-dir "$TMP/net.d" --cni-bin-dir "$TMP/bin" \
    --config "$TMP/kind-config.json" --log-level warn >/dev/null || die "the plugin rejects e2e/kind's policy"
if ! command -v shellcheck >/dev/null 2>&1; then
    say "installing shellcheck (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi
shellcheck -x e2e/kind/run.sh e2e/k8s/*.sh e2e/tools/*.sh manifests/check.sh \
    charts/render-manifests.sh contrib/coverage.sh || die "shellcheck"
say "kind suite: workload schemas, overlay policy (veth -> tx off), shellcheck: ok"

# 5b. The systemd unit for hosts without Kubernetes (docs/agent.md):
# systemd-analyze verify, with ExecStart pointed at the built binary (it
# checks that the command exists). It exits 0 on unknown keys and bad
# values, only printing them, so any output is a failure.
command -v systemd-analyze >/dev/null || die "systemd-analyze is missing; run: bash e2e/install-deps.sh"
UNIT=contrib/systemd/csum-offload-agent.service
sed "s|/usr/local/bin/csum-offload|$(realpath "$BIN")|" "$UNIT" >"$TMP/csum-offload-agent.service"
out=$(systemd-analyze verify "$TMP/csum-offload-agent.service" 2>&1) || die "systemd-analyze verify $UNIT failed: $out"
[ -z "$out" ] || die "systemd-analyze verify $UNIT: $out"
say "systemd unit: systemd-analyze verify: ok"

# 6. Negative controls: each tool must catch a planted defect.
mkdir -p "$TMP/bad"
sed 's/imagePullPolicy: IfNotPresent/imagePullPolicy: IfNotPresent\n          imagePulPolicy: Always/' \
    manifests/daemonset.yaml >"$TMP/bad/daemonset.yaml"
if (cd "$TMP/bad" && validate daemonset.yaml) >/dev/null 2>&1; then
    die "kubernetes-validate accepted a misspelt field: it is not checking"
fi
sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' \
    manifests/daemonset.yaml >"$TMP/bad/daemonset.yaml"
if run_checkov "$TMP/bad" >"$TMP/bad.out" 2>&1 || ! grep -q CKV_K8S_22 "$TMP/bad.out"; then
    die "checkov did not flag a writable root filesystem: it is not checking"
fi
mkdir -p "$TMP/bad-unit"
sed 's/^ProtectSystem=/ProtectSystm=/' "$TMP/csum-offload-agent.service" >"$TMP/bad-unit/csum-offload-agent.service"
if [ -z "$(systemd-analyze verify "$TMP/bad-unit/csum-offload-agent.service" 2>&1)" ]; then
    die "systemd-analyze verify said nothing about a misspelt key: it is not checking"
fi
say "negative controls: kubernetes-validate, checkov and systemd-analyze catch planted defects"

# 7. The chart.
CHART=charts/csum-offload
helm_offline() { offline "$HELM" "$@"; }
"$VENV/bin/python" - "$CHART/Chart.yaml" "$VERSION" <<'EOF'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
assert c["version"] == sys.argv[2] and c["appVersion"] == sys.argv[2], f"Chart.yaml version {c['version']}, appVersion {c['appVersion']}: not the crate version {sys.argv[2]}"
EOF
ALL_ON=(--set metrics.enabled=true --set metrics.serviceMonitor.enabled=true --set prometheusRule.enabled=true --set runtime=containerd)
helm_offline lint --strict "$CHART" >"$TMP/lint.out" 2>&1 || { cat "$TMP/lint.out" >&2; die "helm lint"; }
helm_offline lint --strict "$CHART" "${ALL_ON[@]}" >"$TMP/lint.out" 2>&1 || { cat "$TMP/lint.out" >&2; die "helm lint (every option on)"; }
say "helm lint --strict: ok, with the defaults and with every option on ($("$HELM" version --short))"

# manifests/ is the chart's default render, byte for byte (comments
# included: they are the manifests' documentation).
drift() { # DIR: differences between DIR and a fresh render, on stdout
    local f
    for f in "${RESOURCES[@]}"; do
        diff -u "$TMP/rendered/$f" "$1/$f" || true
    done
    for f in "$TMP"/rendered/*.yaml; do
        grep -qx "$(basename "$f")" <<<"$(printf '%s\n' "${RESOURCES[@]}")" || echo "rendered but not in manifests/: $(basename "$f")"
    done
}
offline bash charts/render-manifests.sh --out "$TMP/rendered" >/dev/null || die "helm template of the chart's defaults"
out=$(drift manifests)
[ -z "$out" ] || die "manifests/ differs from the chart's default render (edit charts/csum-offload, then run make manifests):
$out"
say "manifests/ is the chart's default render (helm template, ${#RESOURCES[@]} files)"

# Every bad value is refused by values.schema.json, with its message.
schema_refuses() { # --set VALUE, then the text the refusal must hold
    if helm_offline template csum-offload "$CHART" --set "$1" >/dev/null 2>"$TMP/schema.err"; then
        die "the schema accepted --set $1"
    fi
    grep -qF -- "$2" "$TMP/schema.err" || die "--set $1 refused without the schema's message ($2): $(cat "$TMP/schema.err")"
}
schema_refuses apply=pod "at '/apply': value must be one of 'both', 'container', 'host', 'uplink'"
schema_refuses detectionFailure=maybe "at '/detectionFailure': value must be one of 'skip', 'fail'"
schema_refuses failurePolicy=warn "at '/failurePolicy': value must be one of 'fail', 'ignore'"
schema_refuses nonVeth=x "at '/nonVeth': value must be one of 'skip', 'fail'"
schema_refuses logLevel=verbose "at '/logLevel': value must be one of"
schema_refuses runtime=docker "at '/runtime': value must be one of"
schema_refuses metrics.port=0 "at '/metrics/port': minimum: got 0, want 1"
schema_refuses metrics.enabled=yes "at '/metrics/enabled': got string, want boolean"
schema_refuses policy.drivers.txgbe.tx=off "at '/policy/drivers/txgbe/tx': got string, want boolean"
schema_refuses cni.confDir=etc/cni "at '/cni/confDir': 'etc/cni' does not match pattern '^/'"
schema_refuses detectionfailure=skip "additional properties 'detectionfailure' not allowed"
schema_refuses detection=guess "at '/detection': value must be one of 'table', 'probe', 'both'"
schema_refuses probe.target=10.0.0.1 "at '/probe/target': '10.0.0.1' does not match pattern"
schema_refuses probe.target=10.0.0.1:65536 "at '/probe/target': '10.0.0.1:65536' does not match pattern"
schema_refuses probe.source=10.212.1.300 "at '/probe/source': '10.212.1.300' does not match pattern"
schema_refuses probe.interval=5 "at '/probe/interval': minimum: got 5, want 10"
schema_refuses probe.nodes.Node_A.source=10.212.1.250 "'Node_A' does not match pattern"
schema_refuses probe.nodes.node-a.src=10.212.1.250 "at '/probe/nodes/node-a': additional properties 'src' not allowed"
say "values.schema.json refuses 18 bad values, each with its message"

# What the schema cannot say about probe values, the chart refuses with
# the plugin's words.
template_refuses() { # --set VALUES, then the text the refusal must hold
    if helm_offline template csum-offload "$CHART" --set "$1" >/dev/null 2>"$TMP/template.err"; then
        die "the chart accepted --set $1"
    fi
    grep -qF -- "$2" "$TMP/template.err" || die "--set $1 refused without its message ($2): $(cat "$TMP/template.err")"
}
template_refuses probe.target=10.0.0.1:80 'probe.target, probe.source or probe.nodes is set but detection is "table"'
template_refuses detection=probe 'detection "probe" needs probe.target and probe.source, or probe.nodes'
template_refuses detection=both,probe.target=10.0.0.1:80 'detection "both" needs probe.target and probe.source'
template_refuses detection=probe,probe.nodes.node-a.source=10.212.1.250 "probe.nodes.node-a has no target and there is no default probe.target"
template_refuses detection=probe,probe.target=10.0.0.1:80,probe.nodes.node-a.source=10.212.1.250,probe.nodes.node-b.source=10.212.1.250 \
    "probe.source 10.212.1.250 is given to probe.nodes.node-a and probe.nodes.node-b: two nodes cannot own one address"
template_refuses detection=probe,probe.target=10.0.0.1:80,probe.source=10.212.1.250,probe.nodes.node-a.source=10.212.1.250 \
    "probe.source 10.212.1.250 is given to the default probe.source and probe.nodes.node-a"
say "the chart refuses 6 inconsistent probe values (unused, no target or source, one source on two nodes)"

# detection "probe" with per-node paths: the entry the chart renders is
# one the plugin accepts, and readiness follows NODE_NAME: a node with its
# own source is covered, one without is not, and says why.
helm_offline template csum-offload "$CHART" --set detection=probe --set probe.target=10.0.0.1:80 \
    --set probe.nodes.node-a.source=10.212.1.250 --set probe.nodes.node-b.source=10.212.2.250 \
    --set probe.nodes.node-b.target=10.0.0.2:80 --set probe.interval=60 >"$TMP/probe.yaml" ||
    die "helm template with detection probe and probe.nodes"
"$VENV/bin/python" - "$TMP/probe.yaml" "$TMP/probe-config.json" <<'EOF'
import json, sys, yaml
(cm,) = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap"]
entry = json.loads(cm["data"]["config.json"])
assert entry["detection"] == "probe", entry
assert entry["probe"] == {"target": "10.0.0.1:80", "interval": 60, "nodes": {
    "node-a": {"source": "10.212.1.250"},
    "node-b": {"source": "10.212.2.250", "target": "10.0.0.2:80"}}}, entry["probe"]
entry["hostDriver"] = "txgbe"
json.dump(entry, open(sys.argv[2], "w"))
EOF
rm -rf "$TMP/probe-net.d" && mkdir -p "$TMP/probe-net.d"
printf '%s\n' '{"cniVersion":"0.3.1","name":"kindnet","plugins":[{"type":"ptp"}]}' >"$TMP/probe-net.d/10-kindnet.conflist"
env -u CNI_COMMAND NODE_NAME=node-a "$BIN" install --once --cni-conf-dir "$TMP/probe-net.d" --cni-bin-dir "$TMP/bin" \
    --config "$TMP/probe-config.json" --log-level warn >/dev/null || die "the plugin rejects the chart's probe entry"
env -u CNI_COMMAND NODE_NAME=node-a "$BIN" install --check --cni-conf-dir "$TMP/probe-net.d" --cni-bin-dir "$TMP/bin" \
    --config "$TMP/probe-config.json" >/dev/null 2>"$TMP/check.err" || die "readiness fails on node-a, which has a probe path: $(cat "$TMP/check.err")"
if env -u CNI_COMMAND NODE_NAME=node-z "$BIN" install --check --cni-conf-dir "$TMP/probe-net.d" --cni-bin-dir "$TMP/bin" \
    --config "$TMP/probe-config.json" >/dev/null 2>"$TMP/check.err"; then
    die "readiness passed on node-z, which has no probe source"
fi
grep -qF 'this node does not probe: node "node-z" has no probe source' "$TMP/check.err" ||
    die "readiness on node-z failed for another reason: $(cat "$TMP/check.err")"
say "detection probe with probe.nodes: the plugin accepts the chart's entry; readiness passes on node-a (its own source) and fails on node-z with the reason"

# Every option on: schemas, checkov and the metrics wiring.
helm_offline template csum-offload "$CHART" --namespace kube-system "${ALL_ON[@]}" >"$TMP/all-on.yaml" ||
    die "helm template with every option on"
mkdir -p "$TMP/all-on"
"$VENV/bin/python" - "$TMP/all-on.yaml" "$TMP/all-on/builtin.yaml" "$CHART/files/alerts.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by = {d["kind"]: d for d in docs}
assert sorted(by) == ["ConfigMap", "DaemonSet", "NetworkPolicy", "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor"], sorted(by)
builtin = [d for d in docs if d["apiVersion"] != "monitoring.coreos.com/v1"]
yaml.safe_dump_all(builtin, open(sys.argv[2], "w"))
pod = by["DaemonSet"]["spec"]["template"]["spec"]
c = {x["name"]: x for x in pod["containers"]}
# No containerPort: in a hostNetwork pod it is a hostPort, which would keep
# the surge pod of an update off its node.
assert all("ports" not in x for x in c.values()), "a container declares ports"
args = c["agent"]["args"]
assert args[args.index("--metrics-address") + 1] == "$(HOST_IP):9981", args
(env,) = [e for e in c["agent"]["env"] if e["name"] == "HOST_IP"]
assert env["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP", env
assert {"name": "CSUM_OFFLOAD_RUNTIME", "value": "containerd"} in c["install"]["env"]
ann = by["DaemonSet"]["spec"]["template"]["metadata"]["annotations"]
assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "9981", ann
svc = by["Service"]["spec"]
assert svc["clusterIP"] == "None" and svc["ports"] == [{"name": "metrics", "protocol": "TCP", "port": 9981, "targetPort": 9981}], svc
assert svc["selector"] == by["DaemonSet"]["spec"]["selector"]["matchLabels"], "the Service selects other pods than the DaemonSet's"
sm = by["ServiceMonitor"]["spec"]
assert sm["selector"]["matchLabels"].items() <= by["Service"]["metadata"]["labels"].items(), "the ServiceMonitor does not select the Service"
assert sm["endpoints"][0]["port"] == "metrics"
# The job name the alerts expect.
assert by["Service"]["metadata"]["labels"][sm["jobLabel"]] == "csum-offload", sm["jobLabel"]
assert by["NetworkPolicy"]["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 9981}]}]
assert by["PrometheusRule"]["spec"] == yaml.safe_load(open(sys.argv[3])), "the PrometheusRule is not files/alerts.yaml"
EOF
(cd "$TMP/all-on" && validate builtin.yaml) || die "schema validation of the chart with every option on"
run_checkov "$TMP/all-on" >"$TMP/checkov-all-on.out" 2>&1 || {
    cat "$TMP/checkov-all-on.out" >&2
    die "checkov findings in the chart with every option on"
}
say "every option on: schemas valid, checkov: $(grep -m1 'Passed checks' "$TMP/checkov-all-on.out"); metrics on \$(HOST_IP):9981 without a containerPort, Service/ServiceMonitor/job, PrometheusRule = files/alerts.yaml"

# The values table in docs/install.md is the one the schema prints.
table_in() { sed -n '/^<!-- values-table begin -->$/,/^<!-- values-table end -->$/p' "$1" | sed '1d;$d'; }
"$VENV/bin/python" charts/values-table.py >"$TMP/values-table.md" || die "charts/values-table.py"
[ "$(wc -l <"$TMP/values-table.md")" -gt 20 ] || die "the values table is nearly empty"
table_in docs/install.md | diff -u "$TMP/values-table.md" - >&2 ||
    die "the values table in docs/install.md is stale: run python3 charts/values-table.py --write"
say "docs/install.md's values table matches values.schema.json and values.yaml"

# The Prometheus rules: syntax, then the unit tests (each alert fires on
# its input and not on the ones that must not).
offline "$PROMTOOL" check rules "$CHART/files/alerts.yaml" >"$TMP/promtool.out" 2>&1 ||
    { cat "$TMP/promtool.out" >&2; die "promtool check rules"; }
offline "$PROMTOOL" test rules "$CHART/tests/alerts-test.yaml" >"$TMP/promtool-test.out" 2>&1 ||
    { cat "$TMP/promtool-test.out" >&2; die "promtool test rules"; }
say "promtool: $(grep -o '[0-9]* rules found' "$TMP/promtool.out" || echo rules) checked; test rules: ok ($("$PROMTOOL" --version 2>&1 | head -n1))"

# Negative controls for the chart's checks.
mkdir -p "$TMP/drifted"
cp "${RESOURCES[@]/#/manifests/}" "$TMP/drifted/"
sed -i 's/cpu: 5m/cpu: 6m/' "$TMP/drifted/daemonset.yaml"
[ -n "$(drift "$TMP/drifted")" ] || die "the drift check missed a changed value: it is not checking"
cp manifests/daemonset.yaml "$TMP/drifted/"
sed -i 's/^# Installs csum-offload on every node/# Installs it on every node/' "$TMP/drifted/daemonset.yaml"
[ -n "$(drift "$TMP/drifted")" ] || die "the drift check missed a changed comment: it is not checking"
if helm_offline lint --strict "$CHART" --set-string metrics.port=9981 >/dev/null 2>&1; then
    die "helm lint accepted a string port: it does not apply the schema"
fi
mkdir -p "$TMP/rules/files" "$TMP/rules/tests"
cp "$CHART/tests/alerts-test.yaml" "$TMP/rules/tests/"
sed 's/for: 15m/for: 1m/' "$CHART/files/alerts.yaml" >"$TMP/rules/files/alerts.yaml"
if offline "$PROMTOOL" test rules "$TMP/rules/tests/alerts-test.yaml" >/dev/null 2>&1; then
    die "promtool test rules passed with CsumOffloadUnfixedPairs firing on one transient failure: the tests do not test"
fi
sed 's/^          and ignoring(settings)$/          or ignoring(settings)/' "$CHART/files/alerts.yaml" >"$TMP/rules/files/alerts.yaml"
if offline "$PROMTOOL" test rules "$TMP/rules/tests/alerts-test.yaml" >/dev/null 2>&1; then
    die "promtool test rules passed with CsumOffloadUnfixedPairs firing where the policy changes nothing"
fi
sed 's/verdict="broken"} == 1$/verdict="ok"} == 1/' "$CHART/files/alerts.yaml" >"$TMP/rules/files/alerts.yaml"
if offline "$PROMTOOL" test rules "$TMP/rules/tests/alerts-test.yaml" >/dev/null 2>&1; then
    die "promtool test rules passed with CsumOffloadProbeBrokenUnfixed looking at the wrong verdict"
fi
sed 's/expr: csum_offload_detection_ok{job="csum-offload"} == 0/expr: csum_offload_detection_ok{job="csum-offload"} == = 0/' \
    "$CHART/files/alerts.yaml" >"$TMP/rules/files/alerts.yaml"
if offline "$PROMTOOL" check rules "$TMP/rules/files/alerts.yaml" >/dev/null 2>&1; then
    die "promtool check rules accepted a broken expression: it is not checking"
fi
sed '/^<!-- values-table begin -->$/,/^<!-- values-table end -->$/{/image.repository/d}' docs/install.md >"$TMP/install.md"
if table_in "$TMP/install.md" | diff -q "$TMP/values-table.md" - >/dev/null; then
    die "the values table check missed a changed row: it is not checking"
fi
say "negative controls: a changed value and a changed comment are drift; helm lint applies the schema; promtool catches a rule that fires too soon, one that ignores the policy, one on the wrong probe verdict, and a broken expression; a missing table row is caught"
say "ok"
