#!/usr/bin/env bash
# CRI end-to-end suite: csum-offload's DaemonSet pod and workload pods run
# by a private containerd 1.6 through its CRI plugin, driven over the CRI
# v1 gRPC API the way kubelet drives it (tests.py plays kubelet).
#
#   bash e2e/cri/run.sh [--list] [PATTERN...]   the suite, or the cases whose
#                                               name contains a pattern
#
# Needs root, `make build` (target/release/csum-offload) and the packages of
# e2e/install-deps.sh; installs its pinned Python client into
# target/cri-pyenv on first use. Environment: E2E_CRI_TIMEOUT (seconds,
# default 240), E2E_KEEP=1 keeps the work directory, E2E_CRI_SKIP="PATTERN..."
# leaves cases out. See docs/testing.md.
set -uo pipefail
# shellcheck source=e2e/cri/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

outer() {
    [ "$(id -u)" = 0 ] || die "must run as root (containerd, namespaces, cgroups)"
    local tool
    for tool in containerd ctr runc ip ethtool nsenter unshare flock buildah gcc busybox; do
        command -v "$tool" >/dev/null || die "$tool is missing; run: bash e2e/install-deps.sh"
    done
    for tool in bridge host-local portmap; do
        [ -x "$DEBIAN_CNI_DIR/$tool" ] || die "$DEBIAN_CNI_DIR/$tool is missing (containernetworking-plugins)"
    done
    [ -x "$PLUGIN_BIN" ] || die "$PLUGIN_BIN is missing; run: make build"
    # The image is FROM scratch: a dynamic binary (a plain `cargo build
    # --release` writes one to the same path) would exit at once in it.
    ldd "$PLUGIN_BIN" 2>&1 | grep -Eq 'statically linked|not a dynamic executable' \
        || die "$PLUGIN_BIN is dynamically linked (a plain cargo build?); the image needs the static one: run make build"
    ensure_venv
    relaunch_locked "$@"
}

# Under the lock: clear a crashed run's leftovers, run the suite in a new
# mount and network namespace (the node) for at most E2E_CRI_TIMEOUT
# seconds, clear up again.
locked() { run_locked "${E2E_CRI_TIMEOUT:-240}" "--mount --net" "$@"; }

inner() {
    trap 'teardown_node' EXIT
    trap 'exit 143' TERM INT
    if [ "${1:-}" = --list ]; then
        "$VENV/bin/python" "$CRI_DIR/tests.py" --list
        return
    fi
    local t0=$SECONDS rc=0
    setup_node
    build_images 2>"$WORK/logs/images.log" || {
        cat "$WORK/logs/images.log" >&2
        die "building the images failed"
    }
    start_containerd 2>>"$WORK/logs/images.log"
    say "e2e-cri: containerd $(containerd --version | awk '{print $3}') (CRI v1), images built in $((SECONDS - t0)) s, work dir $WORK"
    WORK=$WORK SOCK=$SOCK REPO=$REPO PLUGIN_BIN=$PLUGIN_BIN \
        PAUSE_IMAGE=$PAUSE_IMAGE BUSYBOX_IMAGE=$BUSYBOX_IMAGE \
        PROJECT_IMAGE=$PROJECT_IMAGE NEXT_IMAGE=$NEXT_IMAGE CGROUP_ROOT=$CGROUP_ROOT \
        "$VENV/bin/python" -u "$CRI_DIR/tests.py" "$@" || rc=$?
    if [ "$rc" != 0 ]; then
        local kept
        kept=$(mktemp -d /tmp/csum-e2ecri-logs.XXXXXX)
        cp -r "$WORK/logs/." "$kept/" 2>/dev/null || true
        say "e2e-cri: logs kept in $kept"
    fi
    say "e2e-cri: finished in $((SECONDS - t0)) s"
    return "$rc"
}

suite_main "$@"
