# shellcheck shell=bash
# Shell side of the CRI end-to-end suite (run.sh): the lock, the node (a
# private mount and network namespace), a private containerd with the CRI
# plugin, the images, and the cleanup of crashed runs. The cases
# themselves are Python (tests.py), talking CRI v1 over gRPC.
#
# Everything this suite names starts with "e2ecri" (links, netns, cgroups,
# images, the work dir), and every address is in 10.61.0.0/16.
E2E_SUITE=e2e-cri
# shellcheck source=e2e/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

CRI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$CRI_DIR/../.." && pwd)
PLUGIN_BIN=${PLUGIN_BIN:-$REPO/target/release/csum-offload}
DEBIAN_CNI_DIR=${DEBIAN_CNI_DIR:-/usr/lib/cni}
VENV=${CRI_PYENV:-$REPO/target/cri-pyenv}
REQUIREMENTS=$CRI_DIR/requirements.txt
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/plugin/Cargo.toml" | head -n1)
# Its own lock: names and subnets differ from e2e/containerd's, so the two
# suites may run at the same time; two CRI runs may not.
SUITE_LOCK=/run/csum-offload-e2e-cri/lock
WORK_PREFIX=/tmp/csum-e2ecri.
# cgroupfs parent of every pod (kubelet's /kubepods); see tests.py.
CGROUP_ROOT=e2ecri

# outer -> locked -> inner, each a new run of the calling script
# (e2e/common.sh: suite_main, relaunch_locked, run_locked).
STAGE=E2E_CRI

# The CRI client's venv: pinned packages (requirements.txt), installed
# once; reinstalled when the requirements change.
ensure_venv() {
    local stamp=$VENV/.requirements.sha256 want
    want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    say "e2e-cri: installing the CRI client into $VENV (pinned, once)"
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV" || die "python3 -m venv failed; run: bash e2e/install-deps.sh"
    timeout 300 "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS" ||
        die "pip install -r $REQUIREMENTS failed"
    echo "$want" >"$stamp"
}

# --- outside the namespaces (the real host) ---------------------------------

# Ends what a killed earlier run left: containerd, shims and containers
# (their command lines carry the run's unique work dir), processes still
# in the suite's cgroups, then the cgroups and the work dirs.
reap_stale_runs() {
    local dir pid p f
    for dir in "$WORK_PREFIX"*; do
        [ -d "$dir" ] || continue
        for p in $(pids_with_arg "$dir"); do
            kill_tree "$p"
        done
    done
    for f in /proc/[0-9]*/cgroup; do
        if grep -q ":/$CGROUP_ROOT/" "$f" 2>/dev/null; then
            pid=${f#/proc/}
            kill -KILL "${pid%/cgroup}" 2>/dev/null || true
        fi
    done
    sleep 0.2
    remove_cgroups
    for dir in "$WORK_PREFIX"*; do
        [ -d "$dir" ] || continue
        # Overlay work dirs can hold root-only d--------- entries.
        [ -n "${E2E_KEEP:-}" ] || rm -rf --one-file-system "$dir" 2>/dev/null || true
    done
}

# rmdir, deepest first, of every cgroup under /e2ecri (empty ones only:
# rmdir fails on a cgroup that still has processes).
remove_cgroups() {
    local d
    for d in /sys/fs/cgroup/*/"$CGROUP_ROOT" /sys/fs/cgroup/"$CGROUP_ROOT"; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

# --- inside: the node --------------------------------------------------------

# The node is this run's own mount and network namespace (run.sh starts
# the inner stage under `unshare --mount --net`). There:
#  - /etc, /opt, /var/lib, /var/log and /run are overlays whose upper layers are in
#    WORK, so /etc/cni/net.d, /opt/cni/bin, /var/lib/cni and
#    /run/containerd (the paths kubelet's nodes use, and that containerd's
#    shims and libcni use whatever the config says) can be created and
#    bound to private dirs without creating anything on the host;
#  - /sys is this netns's sysfs (cgroups kept), as on a node;
#  - lo and an uplink veth (e2ecri-up0, its peer in netns e2ecri-wan)
#    with a default route: the node's network. No packet leaves it.
setup_node() {
    WORK=$(mktemp -d "${WORK_PREFIX}XXXXXX")
    export WORK
    mkdir -p "$WORK/logs" "$WORK/ovl" "$WORK/node"
    node_overlays "$WORK" e2ecri
    node_binds "$WORK" /etc/cni/net.d /opt/cni/bin /var/lib/cni /run/containerd /var/lib/kubelet \
        /var/log/pods /var/log/csum-offload-e2ecri
    node_sysfs "$WORK" e2ecri-sysfs
    ip link set lo up
    ip netns add e2ecri-wan
    ip link add e2ecri-up0 type veth peer name e2ecri-up1 netns e2ecri-wan
    ip addr add 10.61.255.2/24 dev e2ecri-up0
    ip link set e2ecri-up0 up
    ip -n e2ecri-wan addr add 10.61.255.1/24 dev e2ecri-up1
    ip -n e2ecri-wan link set e2ecri-up1 up
    ip route add default via 10.61.255.1 dev e2ecri-up0
    cp "$DEBIAN_CNI_DIR"/* /opt/cni/bin/
}

# Images, built from source with buildah (private storage) into OCI
# archives that carry full names, imported into containerd's k8s.io
# namespace: nothing is ever pulled.
PAUSE_IMAGE=localhost/e2ecri-pause:1.0
BUSYBOX_IMAGE=localhost/e2ecri-busybox:1.0
PROJECT_IMAGE=docker.io/library/csum-offload:$VERSION
NEXT_IMAGE=docker.io/library/csum-offload:$VERSION-e2ecri-next
build_images() {
    local b=$CRI_DIR/../images/build.sh out=$WORK/images
    bash "$b" pause --tag "$PAUSE_IMAGE" --archive "$out/pause.tar" --private "$WORK/buildah" >&2
    bash "$b" busybox --tag "$BUSYBOX_IMAGE" --archive "$out/busybox.tar" --private "$WORK/buildah" >&2
    # The project's image the way a user builds it without docker: through
    # `make image`'s buildah path, with PLUGIN_BIN (run.sh checked it is
    # the static binary; -o build: no cargo run in the node's namespaces).
    make -C "$REPO" --no-print-directory -o build image BIN="$PLUGIN_BIN" \
        IMAGE_BUILDER=buildah IMAGE="csum-offload:$VERSION" \
        IMAGE_ARCHIVE="$out/csum-offload.tar" IMAGE_PRIVATE="$WORK/buildah" >&2
}

SOCK=
start_containerd() {
    SOCK=$WORK/containerd.sock
    start_containerd_with "$SOCK" <<EOF
version = 2
root = "$WORK/containerd-root"
state = "$WORK/containerd-state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
  level = "debug"
[plugins."io.containerd.internal.v1.opt"]
  path = "$WORK/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  # Built from source and imported: RunPodSandbox never pulls it.
  sandbox_image = "$PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: without this, every sandbox fails
  # with runc's "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
EOF
    local img
    for img in pause busybox csum-offload; do
        timeout 60 ctr --address "$SOCK" -n k8s.io images import "$WORK/images/$img.tar" >&2 ||
            die "ctr images import $img.tar failed"
    done
    # The upgrade's second tag, as a registry would serve it.
    timeout 30 ctr --address "$SOCK" -n k8s.io images tag "$PROJECT_IMAGE" "$NEXT_IMAGE" >&2
}

teardown_node() {
    [ -n "${WORK:-}" ] || return 0
    local pid
    pid=$(cat "$WORK/containerd.pid" 2>/dev/null || true)
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_for 50 sh -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
    for pid in $(pids_with_arg "$WORK"); do
        kill_tree "$pid"
    done
    remove_cgroups
}
