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
