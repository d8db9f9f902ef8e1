#!/usr/bin/env bash
# The installer's reading of a conf dir, judged by libcni: confdir.py
# compares, over a corpus, the file `csum-offload install --once --runtime
# containerd` edits with the one containerd's go-cni loads
# (e2e/tools/cmd/confdir-referee). Then the negative control: the same
# corpus under CRI-O's rule (skip a file that fails to load) must
# disagree with containerd's go-cni, or the comparison could not fail.
# Then `uninstall --remove-binary` over a second corpus: the binary must
# stay exactly while a file libcni loads runs csum-offload.
#
#   bash e2e/libcni/confdir.sh [PATTERN...]   (make build first)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${CSUM_OFFLOAD_BIN:-$root/target/release/csum-offload}
[ -x "$bin" ] || { echo "e2e-confdir: $bin missing; run make build" >&2; exit 1; }
tools=$(bash "$root/e2e/tools/build.sh" | tail -n1)
py=/usr/bin/python3
rc=0
$py "$root/e2e/libcni/confdir.py" --binary "$bin" --referee "$tools/confdir-referee" "$@" || rc=1
# Uninstall's rule for the binary, judged by libcni (binary_rule.py).
$py "$root/e2e/libcni/binary_rule.py" --binary "$bin" --referee "$tools/confdir-referee" "$@" || rc=1
if [ $# -eq 0 ]; then
    # Two cases where containerd's load fails on the first file are enough
    # (each costs the installer's 2 s of "being written" retries).
    out=$($py "$root/e2e/libcni/confdir.py" --runtime crio --binary "$bin" --referee "$tools/confdir-referee" bom no-type-conf || true)
    n=$(grep -c '^DISAGREE' <<<"$out" || true)
    if [ "$n" -gt 0 ]; then
        echo "ok   control: under CRI-O's rule the installer disagrees with containerd's go-cni on $n cases (e.g. $(grep -m1 '^DISAGREE' <<<"$out" | cut -d' ' -f2 | tr -d :))"
    else
        echo "FAIL control: under CRI-O's rule no case disagrees: the comparison cannot fail"
        rc=1
    fi
fi
exit "$rc"
