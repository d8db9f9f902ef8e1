# shellcheck shell=bash
# Helpers every end-to-end suite uses (containerd, CRI, Docker), sourced
# by each suite's lib.sh after it sets E2E_SUITE (the prefix of its
# messages: e2e, e2e-cri, e2e-docker).

say() { printf '%s\n' "$*"; }
log() { printf '  %s\n' "$*" >&2; }
die() {
    printf '%s: %s\n' "${E2E_SUITE:-e2e}" "$*" >&2
    exit 1
}

# Bounded wait: retry CMD every 0.1 s, at most TRIES times.
wait_for() {
    local tries=$1 i
    shift
    for ((i = 0; i < tries; i++)); do
        "$@" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Polls COMMAND every 0.5 s for at most SECONDS; dies naming WHAT.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${limit}s waiting for $what"
        sleep 0.5
    done
}

# A node of a test's own in this (new, private) mount namespace: the
# node's writes land under WORK, never on the host.
#
# node_overlays WORK PREFIX: /etc, /opt, /var/lib, /var/log and /run become
# overlays whose upper layers are in WORK/ovl (mounts named PREFIX_etc...),
# and /run is shared within this namespace, as systemd makes a node's:
# runc lets a pod's HostToContainer mount (the agent's view of /run/netns)
# follow the node only from a shared or slave mount. The host's own
# /run/netns mount (ip netns makes one) is unmounted first: under the /run
# overlay it would stay in the mount table, where runc and containerd
# judge /run/netns by the first mount listed at that path.
node_overlays() {
    local work=$1 prefix=$2 d n
    mount --make-rprivate /
    if mountpoint -q /run/netns; then umount -R -l /run/netns; fi
    for d in /etc /opt /var/lib /var/log /run; do
        n=${d//\//_}
        mkdir -p "$work/ovl/$n/upper" "$work/ovl/$n/work"
        mount -t overlay "$prefix$n" -o "lowerdir=$d,upperdir=$work/ovl/$n/upper,workdir=$work/ovl/$n/work" "$d"
    done
    mount --make-rshared /run
}

# node_binds WORK DIR...: each DIR becomes a bind of an empty dir of its
# own under WORK/node (the node's CNI dirs, its runtime's state...).
node_binds() {
    local work=$1 d n
    shift
    for d in "$@"; do
        n=${d//\//_}
        mkdir -p "$d" "$work/node/$n"
        mount --bind "$work/node/$n" "$d"
    done
}

# node_sysfs WORK NAME: /sys becomes the sysfs of this netns (what a node
# sees of its interfaces), with the host's cgroup mounts kept under it.
node_sysfs() {
    local work=$1
    mkdir -p "$work/cgroup-keep"
    mount --rbind /sys/fs/cgroup "$work/cgroup-keep"
    mount -t sysfs "$2" /sys
    mount --move "$work/cgroup-keep" /sys/fs/cgroup
}

# Microseconds since the epoch, without a fork.
now_us() { echo "${EPOCHREALTIME/./}"; }

# Waits (at most TRIES x 0.1 s) for PID to exit; reaps it if it is our
# child. A zombie counts as gone.
wait_pid_gone() {
    local pid=$1 tries=$2 i state
    for ((i = 0; i < tries; i++)); do
        state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
        if [ -z "$state" ] || [ "$state" = Z ]; then
            wait "$pid" 2>/dev/null || true
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Pids whose command line contains ARG (exact substring).
pids_with_arg() {
    local f p
    for f in /proc/[0-9]*/cmdline; do
        p=${f#/proc/}
        p=${p%/cmdline}
        [ "$p" = "$$" ] && continue
        if tr '\0' ' ' 2>/dev/null <"$f" | grep -qF -- "$1"; then
            echo "$p"
        fi
    done
}

# Kills a process and its children (children first), by pid.
kill_tree() {
    local child
    # shellcheck disable=SC2013 # the children files hold space-separated pids
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        kill_tree "$child"
    done
    kill -KILL "$1" 2>/dev/null || true
}

# SELECTED: the entries of CASES ("name function args...") whose name
# contains one of the PATTERNS given, or all of them without any.
select_cases() {
    SELECTED=()
    local c p
    for c in "${CASES[@]}"; do
        if [ $# = 0 ]; then
            SELECTED+=("$c")
            continue
        fi
        for p in "$@"; do
            if [[ ${c%% *} == *$p* ]]; then
                SELECTED+=("$c")
                break
            fi
        done
    done
    [ ${#SELECTED[@]} -gt 0 ] || die "no case matches: $*"
}

# --- one run of a suite at a time -------------------------------------------
# A suite's script runs in three stages, each a new run of the script with
# a marker in its environment: outer (checks, then takes the lock), locked
# (under the lock), inner (the work itself, in private namespaces). The
# suite's lib.sh sets STAGE (the markers are ${STAGE}_LOCKED and
# ${STAGE}_INNER) and SUITE_LOCK; its script defines outer, locked, inner.
suite_main() {
    local locked_mark="${STAGE}_LOCKED" inner_mark="${STAGE}_INNER"
    if [ -n "${!inner_mark:-}" ]; then
        inner "$@"
    elif [ -n "${!locked_mark:-}" ]; then
        locked "$@"
    else
        outer "$@"
    fi
}

# Runs the calling script again under SUITE_LOCK (waiting at most 15
# minutes); flock -o keeps the lock out of the processes the run starts.
relaunch_locked() {
    mkdir -p "$(dirname "$SUITE_LOCK")"
    exec flock -o -w 900 "$SUITE_LOCK" env "${STAGE}_LOCKED=1" bash "$0" "$@"
}

# run_locked LIMIT UNSHARE_FLAGS ARGS...: under the lock, reaps what a
# killed earlier run left (the suite's reap_stale_runs, and its
# before_inner when it has one), runs the calling script again
# (${STAGE}_INNER=1) under `unshare UNSHARE_FLAGS --propagation private`
# for at most LIMIT seconds, then reaps whatever that run could not (and
# runs the suite's after_inner). Exits with the inner run's status.
run_locked() {
    local limit=$1 flags=$2 rc=0
    shift 2
    reap_stale_runs
    if declare -F before_inner >/dev/null; then before_inner; fi
    # shellcheck disable=SC2086 # the flags are words
    env "${STAGE}_INNER=1" timeout --kill-after=20 "$limit" \
        unshare $flags --propagation private bash "$0" "$@" || rc=$?
    [ "$rc" != 124 ] || say "$E2E_SUITE: aborted after $limit s"
    reap_stale_runs
    if declare -F after_inner >/dev/null; then after_inner; fi
    exit "$rc"
}

# start_containerd_with SOCKET < CONFIG: a private containerd (the
# binary CONTAINERD, or containerd on PATH) with CONFIG as
# $WORK/containerd.toml, its log in $WORK/logs/containerd.log and its pid
# in $WORK/containerd.pid; waits (10 s at most) until it answers on SOCKET.
start_containerd_with() {
    local socket=$1
    # shellcheck disable=SC2153 # WORK: the calling suite's work dir
    cat >"$WORK/containerd.toml"
    "${CONTAINERD:-containerd}" --config "$WORK/containerd.toml" >"$WORK/logs/containerd.log" 2>&1 &
    echo $! >"$WORK/containerd.pid"
    wait_for 100 ctr --address "$socket" version >/dev/null ||
        die "containerd did not start; see $WORK/logs/containerd.log"
}
