#!/usr/bin/env bash
# make fuzz: replays every saved input (regressions/, seeds/), then runs each
# libFuzzer target for a bounded time. Stable Rust: the coverage
# instrumentation cargo-fuzz would add is passed here by hand (sancov with
# inline 8-bit counters, PC table and compare tracing); no sanitizer, as the
# code under test is safe Rust and panics are what we hunt.
#
#   FUZZ_SECONDS   per target, default 60
#   FUZZ_TARGETS   default: config_parse cni_run conflist_edit
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-config_parse cni_run conflist_edit}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cd ../.. && pwd)/target/fuzz}
host=$(rustc -vV | sed -n 's/^host: //p')
# libfuzzer-sys compiles libFuzzer (C++) in its build script.
command -v c++ >/dev/null || { echo "fuzz: a C++ compiler is needed (apt-get install g++)" >&2; exit 2; }

status=0
echo "fuzz: replaying saved inputs"
if ! cargo test --locked --quiet; then
    echo "fuzz: a saved input fails (see above); fuzzing anyway"
    status=1
fi

# --target keeps RUSTFLAGS off build scripts, which cannot link the
# coverage hooks.
RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing" \
    cargo build --locked --release --features fuzz --bins --target "$host"

for t in $targets; do
    corpus=$CARGO_TARGET_DIR/corpus/$t
    artifacts=$CARGO_TARGET_DIR/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    echo "fuzz: $t for ${seconds}s"
    # -close_fd_mask=3: the plugin logs every rejected config to stderr;
    # libFuzzer keeps its own copy of stderr for its reports.
    if ! "$CARGO_TARGET_DIR/$host/release/$t" "$corpus" "seeds/$t" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$artifacts/" 2>"$artifacts/log.txt"; then
        status=1
        tail -25 "$artifacts/log.txt"
        # Replay the newest artifact with stderr open, to show the panic.
        crash=$(ls -t "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-* 2>/dev/null | head -1 || true)
        [ -n "$crash" ] && "$CARGO_TARGET_DIR/$host/release/$t" "$crash" 2>&1 | grep -A3 panicked || true
        echo "fuzz: $t found a failing input in $artifacts/; copy it to plugin/fuzz/regressions/$t/ (a regression test from then on) and fix the cause"
    else
        grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "$artifacts/log.txt" | sed "s/^/fuzz: $t: /" || true
    fi
done
exit $status
