# csum-offload: `make demo` shows the fix, `make test` runs every test.
SHELL := /bin/bash
TARGET := x86_64-unknown-linux-gnu
# Static-pie: the DaemonSet copies this binary onto hosts of any distro.
STATIC_FLAGS := -C target-feature=+crt-static
BIN := target/release/csum-offload

.PHONY: build deps test unit demo bench fmt lint clean

build:
	RUSTFLAGS="$(STATIC_FLAGS)" cargo build --release --locked --target $(TARGET) -p csum-offload
	mkdir -p target/release
	cp target/$(TARGET)/release/csum-offload $(BIN).tmp && mv $(BIN).tmp $(BIN)

# Installs the system packages the tests and the demo need (apt, when missing).
deps:
	bash e2e/install-deps.sh

# Unit and root integration tests (netns, veth, the built binary).
unit: deps
	cargo test --workspace --locked -- --test-threads=4

test: deps build unit

demo: deps build
	bash e2e/demo.sh

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

clean:
	cargo clean

# ADD/DEL/CHECK latency against the reference tuning plugin and the spawn
# floor, plus footprint (size, peak RSS, syscalls); see docs/performance.md.
# BENCH_ARGS e.g. "--iterations 1000" or "--candidate other=/path/to/build".
BENCH_ARGS ?=
bench: deps build
	/usr/bin/python3 e2e/bench/bench.py --binary $(BIN) $(BENCH_ARGS)
