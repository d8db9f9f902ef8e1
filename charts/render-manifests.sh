#!/usr/bin/env bash
# Renders manifests/ from the chart's defaults: `helm template` in
# kube-system, one file per template, each under a header that says where
# it comes from. manifests/check.sh renders into a temp dir and fails when
# the committed files differ, so the chart and manifests/ cannot drift.
#
#   bash charts/render-manifests.sh              # rewrite manifests/ (make manifests)
#   bash charts/render-manifests.sh --out DIR    # write into DIR instead
#
# helm: $HELM, else built from e2e/tools (pinned in go.mod) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
out=manifests
case ${1:-} in
--out) out=${2:?--out DIR} ;;
"") ;;
*) echo "usage: $0 [--out DIR]" >&2 && exit 2 ;;
esac
if [ -z "${HELM:-}" ]; then
    HELM=$(bash e2e/tools/build.sh helm.sh/helm/v4/cmd/helm | tail -n1)/helm
fi
mkdir -p "$out"
"$HELM" template csum-offload charts/csum-offload --namespace kube-system >"$out/.rendered.tmp"
python3 - "$out" <<'PY'
import os, re, sys
out = sys.argv[1]
text = open(os.path.join(out, ".rendered.tmp")).read()
os.remove(os.path.join(out, ".rendered.tmp"))
parts = re.split(r"^---\n# Source: csum-offload/templates/([a-z-]+\.yaml)\n", text, flags=re.M)
assert parts[0] == "", f"unexpected text before the first template: {parts[0][:200]!r}"
header = ("# Generated from charts/csum-offload by `make manifests` (helm template\n"
          "# with the chart's defaults); edit the chart, then run make manifests.\n")
for name, body in zip(parts[1::2], parts[2::2]):
    with open(os.path.join(out, name), "w") as f:
        f.write(header + body.rstrip("\n") + "\n")
    print(name)
PY
