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
