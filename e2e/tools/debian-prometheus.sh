#!/usr/bin/env bash
# Debian's prometheus package (prometheus and promtool), unpacked under
# target/prometheus rather than installed: installing it would start a
# Prometheus server on the machine. Prints the dir holding the binaries.
# manifests/check.sh uses its promtool; make e2e-k8s runs the prometheus
# e2e/tools builds (with Kubernetes discovery, which Debian's lacks).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$root/target/prometheus
bin=$dir/root/usr/bin
if [ ! -x "$bin/prometheus" ] || [ ! -x "$bin/promtool" ]; then
    echo "prometheus: unpacking Debian's prometheus package into $dir (once)" >&2
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && { apt-get download prometheus >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get download prometheus >/dev/null; }; })
    dpkg-deb -x "$dir"/prometheus_*.deb "$dir/root"
    if [ ! -x "$bin/prometheus" ] || [ ! -x "$bin/promtool" ]; then
        echo "prometheus: no prometheus or promtool in Debian's package" >&2
        exit 1
    fi
fi
echo "$bin"
