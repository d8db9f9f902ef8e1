# shellcheck shell=bash
# Shared helpers of the containerd end-to-end suite (run.sh) and the
# newcomer's story (story.sh): a private containerd, containers started
# through `ctr run --cni`, and checks on what CNI left behind.
#
# Everything this suite names starts with "e2ecd" (netns, links, bridges,
# the ctr namespace), so it never touches another test's objects.
E2E_SUITE=e2e
# shellcheck source=e2e/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
PLUGIN_BIN=${PLUGIN_BIN:-$REPO/target/release/csum-offload}
WIRE_DIR=${WIRE_DIR:-$REPO/target/release}
DEBIAN_CNI_DIR=${DEBIAN_CNI_DIR:-/usr/lib/cni}
CTR_NS=e2ecd
# ctr (containerd 1.6, go-cni WithDefaultConf) reads conflists only from
# /etc/cni/net.d and plugins from /opt/cni/bin, libcni caches results in
# /var/lib/cni, and containerd's shims keep runc state, shim sockets and
# fifos in /run/containerd whatever the config says. The suite runs in a
# private mount namespace with its own directories bound over these, so
# the host's files there are never read or written, and a killed run's
# leftovers stay in its work dir.
# The plugin's logFile must be under /var/log; this run's log directory is
# bound over PLUGIN_LOG_DIR the same way.
PLUGIN_LOG_DIR=/var/log/csum-offload-e2e
# /run/csum-offload: the uplink placement's record (and the agent's state)
# stays in the run, never in the host's.
SYSTEM_DIRS=(/etc/cni/net.d /opt/cni/bin /var/lib/cni /run/containerd /run/csum-offload "$PLUGIN_LOG_DIR")
# Created mount points are recorded here so a later run (even after a
# crash) removes them again if they are still empty.
CREATED_LIST=/run/csum-offload-e2e/created-dirs

# One e2e run at a time, the suite's and the pod-start benchmark's alike:
# names and subnets are fixed. The stages and the lock: e2e/common.sh
# (suite_main, relaunch_locked, run_locked); the run is in a private mount
# namespace (`run_locked LIMIT --mount`).
SUITE_LOCK=/run/csum-offload-e2e/lock
STAGE=E2E

# run_locked's hooks: the bind mounts' mount points, made before the
# private run and removed after it (if still empty).
before_inner() { prepare_mount_points; }
after_inner() { remove_created_mount_points; }
# --- outside the private mount namespace -----------------------------------

# Creates missing mount points for the bind mounts and remembers them.
prepare_mount_points() {
    mkdir -p "$(dirname "$CREATED_LIST")"
    local d
    for d in "${SYSTEM_DIRS[@]}"; do
        if [ ! -d "$d" ]; then
            local missing=$d
            # Record every level that mkdir -p creates, deepest last.
            local levels=()
            while [ ! -e "$missing" ]; do
                levels=("$missing" "${levels[@]}")
                missing=$(dirname "$missing")
            done
            mkdir -p "$d"
            printf '%s\n' "${levels[@]}" >>"$CREATED_LIST"
        fi
    done
}

# Removes the mount points an earlier or this run created, if still empty.
remove_created_mount_points() {
    [ -f "$CREATED_LIST" ] || return 0
    local d
    # Deepest first.
    sort -r -u "$CREATED_LIST" | while read -r d; do
        [ -n "$d" ] && rmdir "$d" 2>/dev/null || true
    done
    rm -f "$CREATED_LIST"
}

# Ends what a crashed earlier run left running: its containerd, shims and
# container processes (found through the pid files and the unique work
# directory on their command lines), and links/netns named e2ecd*.
reap_stale_runs() {
    local dir pid
    for dir in /tmp/csum-e2e.*; do
        [ -d "$dir" ] || continue
        if [ -f "$dir/containerd.pid" ]; then
            pid=$(cat "$dir/containerd.pid")
            for p in $(pids_with_arg "$dir"); do
                kill_tree "$p"
            done
            if [ -d "/proc/$pid" ] && grep -qF "$dir" "/proc/$pid/cmdline" 2>/dev/null; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        [ -n "${E2E_KEEP:-}" ] || rm -rf --one-file-system "$dir" 2>/dev/null || true
    done
    # A container whose shim died while runc was creating it is reparented
    # to init; it is still in its cgroup, named after the ctr namespace.
    local f
    for f in /proc/[0-9]*/cgroup; do
        if grep -q ":/$CTR_NS/" "$f" 2>/dev/null; then
            pid=${f#/proc/}
            kill -KILL "${pid%/cgroup}" 2>/dev/null || true
        fi
    done
    remove_e2e_links
}

remove_e2e_links() {
    local ns link
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^e2ecd'); do
        ip netns del "$ns" 2>/dev/null || true
    done
    for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^e2ecd'); do
        ip link del "$link" 2>/dev/null || true
    done
}

# --- inside the private mount namespace ------------------------------------

# Sets up WORK (the run's temp dir): CNI dirs bound over the system
# paths, a busybox rootfs, and a containerd of our own.
setup_environment() {
    WORK=$(mktemp -d /tmp/csum-e2e.XXXXXX)
    export WORK
    NETD=$WORK/net.d
    CNIBIN=$WORK/cni-bin
    CNICACHE=$WORK/var-lib-cni
    IPAMDIR=$WORK/ipam
    ROOTFS=$WORK/rootfs
    SOCK=$WORK/containerd.sock
    # What the plugin writes to $PLUGIN_LOG_DIR/csum-offload.log.
    PLUGIN_LOG=$WORK/logs/plugin/csum-offload.log
    export PLUGIN_LOG
    mkdir -p "$NETD" "$CNIBIN" "$CNICACHE" "$IPAMDIR" "$WORK/ctr" "$WORK/data" "$WORK/logs/plugin" \
        "$WORK/run-containerd"
    mount --make-rprivate / 2>/dev/null || true
    mount --bind "$NETD" /etc/cni/net.d
    mount --bind "$CNIBIN" /opt/cni/bin
    mount --bind "$CNICACHE" /var/lib/cni
    mount --bind "$WORK/run-containerd" /run/containerd
    mkdir -p "$WORK/run-csum-offload"
    mount --bind "$WORK/run-csum-offload" /run/csum-offload
    mount --bind "$WORK/logs/plugin" "$PLUGIN_LOG_DIR"
    cp "$DEBIAN_CNI_DIR"/* "$CNIBIN"/
    install -m 0755 "$PLUGIN_BIN" "$CNIBIN/csum-offload"
    build_rootfs "$ROOTFS"
    start_containerd
}

build_rootfs() {
    local root=$1 app
    mkdir -p "$root"/{bin,proc,sys,dev,etc,tmp,data}
    cp /bin/busybox "$root/bin/busybox"
    for app in sh nc ping ip cat sha256sum wc ls sleep head dd true mkfifo; do
        ln -sf busybox "$root/bin/$app"
    done
}

start_containerd() {
    start_containerd_with "$SOCK" <<EOF
version = 2
root = "$WORK/containerd-root"
state = "$WORK/containerd-state"
# Only what ctr run needs: no CRI plugin, no listener on a system path.
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
EOF
}

# Kills every task of the suite's namespace, waits for the ctr processes
# that started them (they run the CNI DEL), and deletes the containers.
reset_runtime() {
    local id pidfile
    for id in $(ctr_ task ls -q 2>/dev/null); do
        ctr_ task kill -s KILL "$id" >/dev/null 2>&1 || true
    done
    for pidfile in "$WORK"/ctr/*.pid; do
        [ -f "$pidfile" ] || continue
        wait_pid_gone "$(cat "$pidfile")" 200 || kill_tree "$(cat "$pidfile")"
        rm -f "$pidfile"
    done
    for id in $(ctr_ task ls -q 2>/dev/null); do
        ctr_ task delete -f "$id" >/dev/null 2>&1 || true
    done
    for id in $(ctr_ container ls -q 2>/dev/null); do
        ctr_ container delete "$id" >/dev/null 2>&1 || true
    done
}

teardown_environment() {
    [ -n "${WORK:-}" ] || return 0
    reset_runtime 2>/dev/null || true
    local pid
    pid=$(cat "$WORK/containerd.pid" 2>/dev/null || true)
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_pid_gone "$pid" 50 || kill -KILL "$pid" 2>/dev/null || true
    fi
    # Shims outlive containerd; they carry WORK in their arguments.
    for pid in $(pids_with_arg "$WORK"); do
        kill_tree "$pid"
    done
    remove_e2e_links
    if [ -n "${E2E_KEEP:-}" ]; then
        say "e2e: kept $WORK"
    else
        rm -rf --one-file-system "$WORK"
    fi
}

ctr_() { timeout 60 ctr --address "$SOCK" --namespace "$CTR_NS" "$@"; }

# --- conflists --------------------------------------------------------------

# Writes the one conflist go-cni will load.
write_conflist() {
    rm -f "$NETD"/*
    cat >"$NETD/10-e2ecd.conflist"
}

# csum-offload's conflist entry: hostDriver and extra JSON members.
csum_entry() {
    local driver=$1 extra=${2:-}
    printf '{"type": "csum-offload", "hostDriver": "%s", "logFile": "%s", "logLevel": "debug"%s}' \
        "$driver" "$PLUGIN_LOG_DIR/csum-offload.log" "${extra:+, $extra}"
}

host_local() {
    printf '{"type": "host-local", "dataDir": "%s", "ranges": [[{"subnet": "%s"%s}]]}' \
        "$IPAMDIR" "$1" "${2:+, $2}"
}

# Adds csum-offload's ENTRY to the conflist the way a node gets it: the
# DaemonSet's installer, `csum-offload install --once`, which also copies
# the binary into the CNI bin dir. With HAND_WRITTEN=1 the chain functions
# write the entry into the conflist directly instead (an entry the
# installer would refuse, or a position it would not choose).
install_entry() {
    printf '%s\n' "$1" >"$WORK/entry.json"
    "$PLUGIN_BIN" install --once --cni-conf-dir "$NETD" --cni-bin-dir "$CNIBIN" \
        --config "$WORK/entry.json" >&2 || return 1
    grep -q '"type": *"csum-offload"' "$NETD"/* || {
        echo "install --once did not add the entry" >&2
        return 1
    }
}

# ptp + host-local + portmap [+ csum-offload], as kindnet sets it up.
chain_ptp() {
    local version=$1 net=$2 subnet=$3 csum=$4 inline=
    [ -z "${HAND_WRITTEN:-}" ] || inline=$csum
    write_conflist <<EOF
{"cniVersion": "$version", "name": "$net", "plugins": [
  {"type": "ptp", "ipMasq": false, "ipam": $(host_local "$subnet")},
  {"type": "portmap", "capabilities": {"portMappings": true}}${inline:+,
  $inline}
]}
EOF
    [ -n "$inline" ] || [ -z "$csum" ] || install_entry "$csum"
}

# bridge + host-local [+ csum-offload], as docker/podman set it up.
chain_bridge() {
    local version=$1 net=$2 subnet=$3 bridge=$4 csum=$5 inline=
    [ -z "${HAND_WRITTEN:-}" ] || inline=$csum
    write_conflist <<EOF
{"cniVersion": "$version", "name": "$net", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false,
   "ipam": $(host_local "$subnet" '"gateway": "'"${subnet%.0/24}.1"'"')}${inline:+,
  $inline}
]}
EOF
    [ -n "$inline" ] || [ -z "$csum" ] || install_entry "$csum"
}

# ptp + host-local + csum-offload + tuning: csum-offload before another
# chained plugin, which must still get the interface result. Always
# written by hand: the installer appends its entry at the end.
chain_tuning() {
    local version=$1 net=$2 subnet=$3 csum=$4
    write_conflist <<EOF
{"cniVersion": "$version", "name": "$net", "plugins": [
  {"type": "ptp", "ipMasq": false, "ipam": $(host_local "$subnet")},
  $csum,
  {"type": "tuning", "mtu": 1400, "sysctl": {"net.ipv4.tcp_syn_retries": "3"}}
]}
EOF
}

# --- containers -------------------------------------------------------------

# Starts container NAME through `ctr run --cni` in the background (ctr
# stays in the foreground of that job: it runs the CNI DEL when the task
# ends). Returns once the task runs, or 1 if ctr gave up (its error is in
# $WORK/ctr/NAME.log).
start_container() {
    local name=$1
    mkdir -p "$WORK/data/$name"
    # Bounded: the container's own command ends after 10 minutes anyway.
    timeout 600 ctr --address "$SOCK" --namespace "$CTR_NS" run --rm --cni \
        --mount "type=bind,src=$WORK/data/$name,dst=/data,options=rbind:rw" \
        --rootfs "$ROOTFS" "$name" /bin/sleep 590 \
        </dev/null >"$WORK/ctr/$name.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$WORK/ctr/$name.pid"
    local i
    for ((i = 0; i < 300; i++)); do
        if [ "$(task_status "$name")" = RUNNING ]; then
            return 0
        fi
        if [ ! -d "/proc/$pid" ]; then
            wait "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
    log "$name: not running after 30 s"
    return 1
}

task_status() { ctr_ task ls 2>/dev/null | awk -v n="$1" '$1 == n {print $3}'; }
task_pid() { ctr_ task ls 2>/dev/null | awk -v n="$1" '$1 == n {print $2}'; }

# Kills the task; ctr's foreground job then runs the CNI DEL and removes
# the container (--rm).
stop_container() {
    local name=$1 pidfile=$WORK/ctr/$1.pid
    ctr_ task kill -s KILL "$name" >/dev/null 2>&1 || true
    if [ -f "$pidfile" ]; then
        wait_pid_gone "$(cat "$pidfile")" 300 || {
            log "$name: ctr did not exit 30 s after the task was killed"
            return 1
        }
        rm -f "$pidfile"
    fi
}

# Runs a command inside container NAME.
exec_in() {
    local name=$1
    shift
    ctr_ task exec --exec-id "x$RANDOM$RANDOM" "$name" "$@" </dev/null
}

netns_path() { echo "/proc/$(task_pid "$1")/ns/net"; }

container_ipv4() {
    nsenter --net="$(netns_path "$1")" ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1
}

# The host-side end of the container's eth0, found from the kernel's
# peer index (eth0@ifN), not from the plugin under test.
host_peer() {
    local index
    index=$(nsenter --net="$(netns_path "$1")" ip -o link show dev eth0 | sed -n 's/^[0-9]*: eth0@if\([0-9]*\):.*/\1/p')
    [ -n "$index" ] || return 1
    ip -o link show | awk -F': ' -v i="$index" '$1 == i {print $2}' | cut -d@ -f1
}

# ethtool -k's "tx-checksumming" summary (on/off) for IFNAME in NETNS
# (empty NETNS: the host).
tx_checksumming() {
    local netns=$1 ifname=$2
    if [ -n "$netns" ]; then
        nsenter --net="$netns" ethtool -k "$ifname"
    else
        ethtool -k "$ifname"
    fi | awk -F': ' '$1 == "tx-checksumming" {print $2}' | awk '{print $1}'
}

# The netns inode of a running container, to check later that no process
# or mount still holds that namespace.
netns_inode() { stat -L -c %i "$(netns_path "$1")"; }

netns_alive() {
    local inode=$1 f
    for f in /proc/[0-9]*/ns/net; do
        [ "$(stat -L -c %i "$f" 2>/dev/null)" = "$inode" ] && return 0
    done
    grep -q "net:\[$inode\]" /proc/self/mountinfo /proc/1/mountinfo 2>/dev/null
}

# IP addresses host-local still holds for NETWORK (one file per address).
ipam_allocations() {
    local dir=$IPAMDIR/$1
    [ -d "$dir" ] || return 0
    find "$dir" -maxdepth 1 -type f ! -name lock ! -name 'last_reserved_ip*' -printf '%f\n'
}

# libcni's cached results for NETWORK (kept from ADD until DEL).
cni_cache_entries() {
    find "$CNICACHE" -type f -name "$1-*" -printf '%f\n' 2>/dev/null
}

# A payload file in DIR, with its size and hash in the log.
make_payload() {
    local file=$1 size=$2
    head -c "$size" /dev/urandom >"$file"
}

sha() { sha256sum "$1" | awk '{print $1}'; }
size_of() { stat -c %s "$1"; }

# Builds the wire tools if they are missing or older than their sources.
ensure_wire_tools() {
    local bin
    for bin in wirecheck brokennic; do
        if [ ! -x "$WIRE_DIR/$bin" ] ||
            [ -n "$(find "$REPO/e2e/wire" -newer "$WIRE_DIR/$bin" -name '*.rs' -print -quit)" ]; then
            (cd "$REPO" && cargo build --release --locked -q -p csum-offload-wire) ||
                die "building e2e/wire failed"
            break
        fi
    done
}
