# shellcheck shell=bash
# The Docker end-to-end harness: a real Docker engine (Debian's docker.io
# 20.10) with its own containerd, isolated so that it touches nothing else
# on the machine, and helpers that find each container's veth pair and
# read its offload features with tools independent of csum-offload.
#
# Isolation (see docs/testing.md, "Docker end-to-end"):
# - The run lives in a private mount namespace AND a private network
#   namespace (the suite's "host netns"). dockerd's bridges and every
#   container's host-side veth end exist only there, and the agent under
#   test, started there too, cannot see (or change) any other suite's
#   veths. Its "uplink" is a veth to a netns of its own (no route out).
# - /run is a private tmpfs in that mount namespace: containerd's shims
#   write to /run/containerd whatever containerd's config says, dockerd
#   20.10 adopts /run/containerd/containerd.sock when it exists, and
#   `ip netns add` writes to /run/netns. None of that reaches the host.
# - /sys is a fresh sysfs of the suite netns (with the host's cgroup
#   mounts bound back), so /sys/class/net shows the suite's links.
# - dockerd gets its own --data-root, --exec-root, --pidfile, -H socket,
#   daemon.json (with deprecated-key-path: else it writes
#   /etc/docker/key.json), its own containerd (--containerd), no
#   iptables/masquerade/forwarding, --bip in 10.62.0.0/16 and cgroup
#   parent /e2edk.
# - Every process of the run is in cgroup e2edk-suite (pids controller)
#   or under docker's /e2edk: a run killed outright is reaped by the next
#   one through those cgroups, by pid.
#
# Everything this suite names starts with "e2edk". Its subnet is
# 10.62.0.0/16: 10.62.0.0/24 docker's default bridge, 10.62.8.0/24 the
# user-defined network, 10.62.255.0/24 the uplink.
E2E_SUITE=e2e-docker
# shellcheck source=e2e/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
AGENT_BIN=${AGENT_BIN:-$REPO/target/release/csum-offload}
# Debian's own client: a newer /usr/local/bin/docker may come first on
# PATH (28.x here), and the Debian engine is 20.10.
DOCKER_CLI=${DOCKER_CLI:-/usr/bin/docker}
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
CONTAINERD=${CONTAINERD:-/usr/bin/containerd}

PREFIX=e2edk
IMAGE=e2edk/busybox:1
DEFAULT_BIP=10.62.0.1/24
USER_NET=e2edk-net8
USER_SUBNET=10.62.8.0/24
USER_BRIDGE=e2edkbr8
UPLINK=e2edkup0
WAN_NS=e2edk-wan
WAN_IF=e2edkwan0
# cgroups: the suite's processes, and docker's parent for containers.
SUITE_CG=e2edk-suite
DOCKER_CG=e2edk
# The stages and the lock: e2e/common.sh (suite_main, relaunch_locked,
# run_locked); the run is in private mount and network namespaces.
SUITE_LOCK=/run/csum-offload-e2e/docker.lock
STAGE=E2E

# The tools the harness itself needs; the caller checks its own.
check_harness_tools() {
    [ "$(id -u)" = 0 ] || die "must run as root (dockerd, netns, cgroups)"
    local tool
    for tool in "$DOCKERD" "$DOCKER_CLI" "$CONTAINERD" runc ip ethtool nsenter unshare flock tar busybox timeout; do
        command -v "$tool" >/dev/null || die "$tool is missing; run: bash e2e/install-deps.sh"
    done
    local v
    v=$("$DOCKER_CLI" --version 2>/dev/null | awk '{print $3}')
    case $v in
    20.10.*) ;;
    *) die "$DOCKER_CLI is docker $v, not Debian's docker.io 20.10 client" ;;
    esac
}

# --- cgroups: how every process of a run is found again -----------------

# The suite's and docker's cgroup directories, in every mounted hierarchy
# (cgroup v1: one per controller; v2: the unified root).
suite_cgroup_dirs() {
    find /sys/fs/cgroup -maxdepth 2 -mindepth 1 -type d \
        \( -name "$SUITE_CG" -o -name "$DOCKER_CG" \) 2>/dev/null
}

# Pids in those cgroups (and below).
suite_cgroup_pids() {
    local d
    for d in $(suite_cgroup_dirs); do
        find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -u
}

# Moves the calling shell (and so everything it starts) into the suite's
# cgroup. In cgroup v1 the pids hierarchy is used: every process is in
# exactly one of its cgroups, and docker puts containers there too.
join_suite_cgroup() {
    local dir
    if [ -d /sys/fs/cgroup/pids ] && [ -f /sys/fs/cgroup/pids/cgroup.procs ]; then
        dir=/sys/fs/cgroup/pids/$SUITE_CG
    elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        dir=/sys/fs/cgroup/$SUITE_CG
    else
        die "no cgroup pids (v1) or unified (v2) hierarchy at /sys/fs/cgroup"
    fi
    mkdir -p "$dir"
    echo "$BASHPID" >"$dir/cgroup.procs"
    # The agents' own cgroup, there and (v1) in cpuacct, whose usage then
    # counts every process an agent runs.
    AGENT_CG=$dir/agents
    AGENT_CGS=$AGENT_CG
    if [ "$dir" = "/sys/fs/cgroup/pids/$SUITE_CG" ] && [ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then
        AGENT_CGS="$AGENT_CGS /sys/fs/cgroup/cpuacct/$SUITE_CG/agents"
    fi
    local d
    for d in $AGENT_CGS; do mkdir -p "$d"; done
}

# CPU time (ns) used by the processes in the agents' cgroup since it was
# made: cpuacct.usage (v1) or cpu.stat usage_usec (v2); empty if neither.
agent_cgroup_cpu_ns() {
    local d
    for d in $AGENT_CGS; do
        if [ -f "$d/cpuacct.usage" ]; then
            cat "$d/cpuacct.usage"
            return 0
        elif [ -f "$d/cpu.stat" ]; then
            awk '$1 == "usage_usec" {print $2 * 1000}' "$d/cpu.stat"
            return 0
        fi
    done
}

# Kills every process in cgroup DIR (by pid, until it is empty; bounded).
kill_cgroup() {
    local dir=$1 i pids
    for ((i = 0; i < 50; i++)); do
        pids=$(cat "$dir/cgroup.procs" 2>/dev/null || true)
        [ -n "$pids" ] || return 0
        # shellcheck disable=SC2086 # one pid per word
        kill -KILL $pids 2>/dev/null || true
        sleep 0.1
    done
    return 1
}

# Ends every process a run left (they are all in the suite's cgroups) and
# removes those cgroups and the run's work directories. Outside the run's
# namespaces: its mounts, netns, veths and bridges go away with its last
# process.
reap_stale_runs() {
    local i pids
    for ((i = 0; i < 50; i++)); do
        pids=$(suite_cgroup_pids)
        [ -n "$pids" ] || break
        # shellcheck disable=SC2086 # one pid per word
        kill -KILL $pids 2>/dev/null || true
        sleep 0.1
    done
    [ -z "$(suite_cgroup_pids)" ] || say "e2e-docker: processes left in cgroups $SUITE_CG/$DOCKER_CG: $(suite_cgroup_pids | tr '\n' ' ')"
    local d
    for d in $(suite_cgroup_dirs); do
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    [ -z "$(suite_cgroup_dirs)" ] || say "e2e-docker: cgroups left: $(suite_cgroup_dirs | tr '\n' ' ')"
    if [ -z "${E2E_KEEP:-}" ]; then
        for d in /tmp/e2edk.*; do
            [ -d "$d" ] && rm -rf --one-file-system "$d"
        done
    fi
}

# --- inside the private namespaces ---------------------------------------

# /run private (tmpfs), /sys of this netns (host cgroup mounts bound back).
private_mounts() {
    mount --make-rprivate /
    mkdir -p "$WORK/cgroup-hold"
    mount --rbind /sys/fs/cgroup "$WORK/cgroup-hold"
    mount -t sysfs e2edk-sysfs /sys
    mount --rbind "$WORK/cgroup-hold" /sys/fs/cgroup
    umount --recursive --lazy "$WORK/cgroup-hold"
    mount -t tmpfs -o mode=0755,size=64m e2edk-run /run
    mkdir -p /run/netns /run/lock
    ln -s /dev/shm /run/shm
}

# The suite netns's uplink: a veth to a netns of its own, with the
# default route. Like a kind node's eth0, it is a veth whose peer is in
# another netns, and the agent must leave it alone.
setup_uplink() {
    ip link set lo up
    ip netns add "$WAN_NS"
    ip -n "$WAN_NS" link set lo up
    ip link add "$UPLINK" type veth peer name "$WAN_IF" netns "$WAN_NS"
    ip addr add 10.62.255.2/24 dev "$UPLINK"
    ip link set "$UPLINK" up
    ip -n "$WAN_NS" addr add 10.62.255.1/24 dev "$WAN_IF"
    ip -n "$WAN_NS" link set "$WAN_IF" up
    ip route add default via 10.62.255.1 dev "$UPLINK"
}

setup_environment() {
    join_suite_cgroup
    WORK=$(mktemp -d /tmp/e2edk.XXXXXX)
    export WORK
    mkdir -p "$WORK/logs" "$WORK/pids" "$WORK/client" "$WORK/agent"
    private_mounts
    setup_uplink
    start_containerd
    start_dockerd
    import_image
    dk network create --driver bridge --subnet "$USER_SUBNET" --gateway "${USER_SUBNET%.0/24}.1" \
        -o com.docker.network.bridge.name="$USER_BRIDGE" "$USER_NET" >/dev/null ||
        die "docker network create $USER_NET failed"
    UPLINK_FEATURES=$(features "" "$UPLINK")
    WAN_FEATURES=$(features "/run/netns/$WAN_NS" "$WAN_IF")
}

start_containerd() {
    start_containerd_with "$WORK/containerd.sock" <<EOF
version = 2
root = "$WORK/containerd-root"
state = "$WORK/containerd-state"
# dockerd needs no CRI plugin; no listener on a system path.
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$WORK/containerd.sock"
[ttrpc]
  address = "$WORK/containerd.sock.ttrpc"
[debug]
  address = ""
EOF
}

start_dockerd() {
    cat >"$WORK/daemon.json" <<EOF
{
  "deprecated-key-path": "$WORK/key.json",
  "log-driver": "none",
  "userland-proxy": false,
  "shutdown-timeout": 2,
  "default-address-pools": [{"base": "10.62.16.0/20", "size": 24}]
}
EOF
    "$DOCKERD" --config-file "$WORK/daemon.json" -H "unix://$WORK/docker.sock" \
        --data-root "$WORK/docker-data" --exec-root "$WORK/exec" --pidfile "$WORK/dockerd.pid" \
        --containerd "$WORK/containerd.sock" \
        --iptables=false --ip-masq=false --ip-forward=false \
        --bip "$DEFAULT_BIP" --cgroup-parent "/$DOCKER_CG" \
        >"$WORK/logs/dockerd.log" 2>&1 &
    echo $! >"$WORK/dockerd.started-pid"
    wait_for 300 dk version >/dev/null || die "dockerd did not start; see $WORK/logs/dockerd.log"
}

# The Debian client against our engine only (no DOCKER_HOST/context from
# the environment, no ~/.docker).
dk() {
    timeout 120 env -u DOCKER_HOST -u DOCKER_CONTEXT -u DOCKER_TLS_VERIFY DOCKER_CONFIG="$WORK/client" \
        "$DOCKER_CLI" -H "unix://$WORK/docker.sock" "$@"
}

# A busybox image from Debian's busybox-static, by `docker import` (no
# registry).
import_image() {
    local root=$WORK/rootfs app
    mkdir -p "$root"/{bin,proc,sys,dev,etc,tmp}
    cp /bin/busybox "$root/bin/busybox"
    for app in sh sleep ip cat ls true ping nc ethtool; do
        ln -sf busybox "$root/bin/$app"
    done
    tar -C "$root" -c . | dk import --change 'CMD ["/bin/sleep", "600"]' - "$IMAGE" >/dev/null ||
        die "docker import failed"
}

versions_line() {
    local client server
    client=$("$DOCKER_CLI" --version | awk '{print $3}' | tr -d ,)
    server=$(dk version -f '{{.Server.Version}}' 2>/dev/null)
    printf 'dockerd %s (%s), client %s %s; containerd %s; runc %s; kernel %s' \
        "$server" "$(dpkg -S "$DOCKERD" 2>/dev/null | cut -d: -f1)" "$DOCKER_CLI" "$client" \
        "$("$CONTAINERD" --version | awk '{print $3}')" "$(runc --version | awk 'NR == 1 {print $3}')" "$(uname -r)"
    local first
    first=$(command -v docker || true)
    if [ -n "$first" ] && [ "$first" != "$DOCKER_CLI" ]; then
        printf '; docker first on PATH is %s (%s), not used' "$first" "$("$first" --version 2>/dev/null | awk '{print $3}' | tr -d ,)"
    fi
}

# Ends the engine: containers, dockerd, containerd, shims, in that order.
teardown_environment() {
    [ -n "${WORK:-}" ] || return 0
    kill_recorded_pids
    remove_all_containers 2>/dev/null || true
    stop_pid_file "$WORK/dockerd.started-pid" 100
    stop_pid_file "$WORK/containerd.pid" 50
    # Shims outlive containerd; like every process of the run they are in
    # the suite's cgroup. Only this shell and its children of the moment
    # (this pipeline) are spared.
    local pid
    for pid in $(suite_cgroup_pids); do
        [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] || kill -KILL "$pid" 2>/dev/null || true
    done
    if [ -n "${E2E_KEEP:-}" ]; then
        say "e2e-docker: kept $WORK"
    else
        # The overlay and netns mounts live in this mount namespace.
        umount --recursive --lazy "$WORK/docker-data" 2>/dev/null || true
        umount --recursive --lazy "$WORK/exec" 2>/dev/null || true
        rm -rf --one-file-system "$WORK" 2>/dev/null || true
    fi
}

stop_pid_file() {
    local file=$1 tries=$2 pid
    pid=$(cat "$file" 2>/dev/null || true)
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait_pid_gone "$pid" "$tries" || kill -KILL "$pid" 2>/dev/null || true
}

# Background helpers (agents, monitors) record their pid here; each case's
# reset ends the ones still running, by pid.
record_pid() { echo "$1" >"$WORK/pids/$1"; }
kill_recorded_pids() {
    local f pid
    for f in "$WORK"/pids/*; do
        [ -f "$f" ] || continue
        pid=$(basename "$f")
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$f"
    done
}

remove_all_containers() {
    local ids
    ids=$(dk ps -aq)
    [ -z "$ids" ] || printf '%s\n' "$ids" | xargs -r -n 10 -P 4 timeout 120 env DOCKER_CONFIG="$WORK/client" \
        "$DOCKER_CLI" -H "unix://$WORK/docker.sock" rm -f >/dev/null
}

# --- containers and their veth pairs ---------------------------------------

# Starts a detached container NAME running sleep; extra docker run
# options (e.g. --network) before the image.
run_ctr() {
    local name=$1
    shift
    dk run -d --name "$name" "$@" "$IMAGE" /bin/sleep 600 >/dev/null
}

ctr_pid() { dk inspect -f '{{.State.Pid}}' "$1"; }
ctr_netns() { echo "/proc/$(ctr_pid "$1")/ns/net"; }
ctr_sandbox() { dk inspect -f '{{.NetworkSettings.SandboxKey}}' "$1"; }
netns_inode() { stat -L -c %i "$1"; }

# The container's veth ends as "IFNAME INDEX PEER_INDEX", from the
# kernel's view inside its netns (ip link: IFNAME@ifPEER).
ctr_veths() {
    nsenter --net="$1" ip -o link show type veth |
        sed -n 's/^\([0-9]*\): \([^@]*\)@if\([0-9]*\):.*/\2 \1 \3/p'
}

# The host end of container netns NETNS's interface IFNAME: the host link
# whose index is IFNAME's peer index and whose own peer index is IFNAME's
# index, carrying a link-netnsid (its peer is in another netns). Fails
# unless exactly that holds.
host_end() {
    local netns=$1 ifname=$2 line index peer name hpeer
    line=$(ctr_veths "$netns" | awk -v n="$ifname" '$1 == n')
    [ -n "$line" ] || return 1
    read -r _ index peer <<<"$line"
    line=$(ip -o -d link show | awk -v i="$peer:" '$1 == i')
    name=$(awk '{print $2}' <<<"$line" | cut -d@ -f1)
    hpeer=$(awk '{print $2}' <<<"$line" | sed -n 's/.*@if\([0-9]*\):$/\1/p')
    [ -n "$name" ] && [ "$hpeer" = "$index" ] && grep -Eq ' link-netns(id)? ' <<<"$line" || return 1
    echo "$name"
}

# Veths in the suite netns whose peer is in another netns, one name per
# line. ip prints "link-netnsid N", or "link-netns NAME" when that netns
# has a name in /run/netns (the uplink's does).
host_veth_ends() {
    ip -o -d link show type veth | awk '/ link-netns(id)? / {print $2}' | cut -d@ -f1
}

# The bridge a host link is attached to.
master_of() { ip -o link show dev "$1" | sed -n 's/.* master \([^ ]*\) .*/\1/p'; }

# ethtool -k of IFNAME in NETNS (empty: the suite's host netns).
ethtool_k() {
    local netns=$1 ifname=$2
    if [ -n "$netns" ]; then
        nsenter --net="$netns" ethtool -k "$ifname"
    else
        ethtool -k "$ifname"
    fi
}

# The "tx-checksumming" summary (on/off) of IFNAME in NETNS.
tx_csum() { ethtool_k "$1" "$2" | awk -F': ' '$1 == "tx-checksumming" {print $2}' | awk '{print $1}'; }

# Every feature line of IFNAME in NETNS, for before/after comparisons.
features() { ethtool_k "$1" "$2" | tail -n +2 | sort; }

# --- case helpers ------------------------------------------------------------

# A case's findings (its summary) go to NOTES; everything else to its log.
note() { printf '%s\n' "$*" | tee -a "$NOTES" >&2; }
fail() {
    note "FAIL: $*"
    return 1
}
expect_eq() {
    local what=$1 got=$2 want=$3
    [ "$got" = "$want" ] || fail "$what: got '$got', want '$want'"
}
# The same for multi-line text (feature lists): names the lines that
# differ (< before, > now), at most 8.
expect_same() {
    local what=$1 got=$2 want=$3
    [ "$got" = "$want" ] ||
        fail "$what differ (< before, > now): $(diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") |
            grep '^[<>]' | head -n 8 | tr -s '\t ' ' ' | tr '\n' ';')"
}

# "n=N median=X p99=Y min=A max=B" of the numbers on stdin (nearest rank).
stats() {
    sort -n | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "n=0"; exit }
            r = int(NR * 0.99 + 0.999999); if (r < 1) r = 1; if (r > NR) r = NR
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "n=%d median=%s p99=%s min=%s max=%s\n", NR, m, v[r], v[1], v[NR]
        }'
}

# The value of KEY in a "key=value key=value" line.
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

# Epoch microseconds of an `ip -ts monitor` timestamp ([YYYY-MM-DDTHH:MM:SS.ffffff]).
ts_us() {
    local t=${1#[}
    t=${t%]}
    local frac=${t##*.}
    echo "$(date -d "${t%.*}" +%s)$frac"
}

# Starts `ip -o -ts monitor link` in the suite netns (or in NETNS) into
# FILE; bounded by time, recorded for the case's reset. Sets MON_PID.
start_link_monitor() {
    local file=$1 netns=${2:-}
    if [ -n "$netns" ]; then
        timeout 300 nsenter --net="$netns" ip -o -ts monitor link >"$file" 2>&1 &
    else
        timeout 300 ip -o -ts monitor link >"$file" 2>&1 &
    fi
    MON_PID=$!
    record_pid "$MON_PID"
    # ip has subscribed once it reports a change: lo's MTU, toggled until
    # it shows up (a change made before ip subscribed is never reported).
    local in=() i
    [ -z "$netns" ] || in=(nsenter --net="$netns")
    for ((i = 0; i < 50; i++)); do
        "${in[@]}" ip link set dev lo mtu 65535
        "${in[@]}" ip link set dev lo mtu 65536
        grep -q ': lo: .* mtu 65535 ' "$file" && return 0
        sleep 0.1
    done
    fail "ip monitor did not start"
}
stop_link_monitor() {
    kill -TERM "$MON_PID" 2>/dev/null || true
    wait "$MON_PID" 2>/dev/null || true
    rm -f "$WORK/pids/$MON_PID"
}
