#!/usr/bin/env bash
# The installer's reading of a conf dir, judged by libcni: confdir.py
# compares, over a corpus, the file `csum-offload install --once --runtime
# containerd` edits with the one containerd's go-cni loads
# (e2e/tools/cmd/confdir-referee). Then the negative control: the same
# corpus under CRI-O's rule (skip a file that fails to load) must
# disagree with containerd's go-cni, or the comparison could not fail.
# Then `uninstall --remove-binary` over a second corpus: the binary must
# stay exactly while a file libcni loads runs csum-offload. Then the fuzz
# run (confdir_fuzz.py): generated conf dirs through the same comparison,
# a random seed each run (printed; CONFDIR_FUZZ_SEED=S repeats it), at
# most CONFDIR_FUZZ_COUNT dirs (500) in CONFDIR_FUZZ_SECONDS (50), failing
# below CONFDIR_FUZZ_MIN (100); a disagreement is saved under
# target/confdir-fuzz/ as a reproducer for `confdir.py --cases FILE`.
#
#   bash e2e/libcni/confdir.sh [PATTERN...]   (make build first; a pattern
#                                             runs corpus cases only)
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
# control WHAT COMPARISON SCRIPT ARGS...: a negative control, SCRIPT run
# under CRI-O's rule, must report disagreements with go-cni (WHAT's %s is
# their count), or COMPARISON could not fail.
control() {
    local what=$1 comparison=$2 script=$3 out n
    shift 3
    out=$($py "$script" --runtime crio --binary "$bin" --referee "$tools/confdir-referee" "$@" || true)
    n=$(grep -ac '^DISAGREE' <<<"$out" || true)
    if [ "$n" -gt 0 ]; then
        # shellcheck disable=SC2059 # WHAT is the message's format
        echo "ok   control: $(printf "$what" "$n") (e.g. $(grep -am1 '^DISAGREE' <<<"$out" | cut -d' ' -f2 | tr -d :))"
    else
        echo "FAIL control: under CRI-O's rule nothing disagrees: $comparison cannot fail"
        rc=1
    fi
}
if [ $# -eq 0 ]; then
    # The fuzz run (confdir_fuzz.py): generated dirs through the same
    # comparison, bounded in count and time; CONFDIR_FUZZ_SEED repeats a run.
    seed=${CONFDIR_FUZZ_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
    $py "$root/e2e/libcni/confdir_fuzz.py" --binary "$bin" --referee "$tools/confdir-referee" --seed "$seed" \
        --count "${CONFDIR_FUZZ_COUNT:-500}" --seconds "${CONFDIR_FUZZ_SECONDS:-50}" --min "${CONFDIR_FUZZ_MIN:-100}" \
        --save "$root/target/confdir-fuzz" || rc=1
    # Its negative control: under CRI-O's rule, generated dirs must
    # disagree with go-cni, or the fuzz comparison could not fail. About 3
    # in 100 do; a fixed seed (5 of its first 100) keeps it deterministic.
    control "under CRI-O's rule %s of 100 generated dirs (seed 5) disagree with containerd's go-cni" \
        "the fuzz comparison" "$root/e2e/libcni/confdir_fuzz.py" --seed 5 --count 100 --seconds 120
    # Two corpus cases where containerd's load fails on the first file.
    control "under CRI-O's rule the installer disagrees with containerd's go-cni on %s cases" \
        "the comparison" "$root/e2e/libcni/confdir.py" bom no-type-conf
fi
exit "$rc"
