# csum-offload: `make demo` shows the fix, `make test` runs every test.
SHELL := /bin/bash
TARGET := x86_64-unknown-linux-gnu
# Static-pie: the DaemonSet copies this binary onto hosts of any distro.
STATIC_FLAGS := -C target-feature=+crt-static
BIN := target/release/csum-offload

.PHONY: build deps test unit demo bench fmt lint clean soak

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
	# Replays the fuzz corpus's saved crashers and seeds (no libFuzzer needed).
	CARGO_TARGET_DIR=target/fuzz cargo test --locked --manifest-path plugin/fuzz/Cargo.toml

test: deps lint build unit docs-examples e2e e2e-cri e2e-docker e2e-libcni e2e-confdir e2e-k8s manifests-check

# Every command output the docs show, run again in a netns lab and
# compared (e2e/docs/examples.py). Needs root; see docs/testing.md.
.PHONY: docs-examples
docs-examples: build
	/usr/bin/python3 e2e/docs/examples.py

demo: deps build
	bash e2e/demo.sh

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

clean:
	cargo clean

# The churn soak at full size (plugin/tests/soak.rs; a few minutes, not in
# `make test`, whose `unit` runs its short version): the release binary's
# agent and plugin under SOAK_PAIRS veth pairs made and deleted (at most
# SOAK_LIVE at once), socket overflows, config reloads and SIGKILLs at
# seeded random points, each followed by `agent restore`; RSS and fds
# sampled. The figures go to docs/performance.md. SOAK_SEED=N repeats a run.
SOAK_PAIRS ?= 5000
SOAK_LIVE ?= 1000
SOAK_BATCH ?= 250
SOAK_KILLS ?= 4
SOAK_BURSTS ?= 3
SOAK_RELOADS ?= 4
soak: deps build
	SOAK_BIN=$(CURDIR)/$(BIN) SOAK_PAIRS=$(SOAK_PAIRS) SOAK_LIVE=$(SOAK_LIVE) \
	SOAK_BATCH=$(SOAK_BATCH) SOAK_KILLS=$(SOAK_KILLS) SOAK_BURSTS=$(SOAK_BURSTS) \
	SOAK_RELOADS=$(SOAK_RELOADS) $(if $(SOAK_SEED),SOAK_SEED=$(SOAK_SEED)) \
	cargo test --locked -p csum-offload --test soak -- --nocapture

# ADD/DEL/CHECK latency against the reference tuning plugin (Debian's
# 1.1.1 and plugins v1.10.0 from e2e/tools) and the spawn
# floor, plus footprint (size, peak RSS, syscalls), then the pod-start
# overhead under containerd, then the datapath cost (below); see
# docs/performance.md.
# BENCH_ARGS e.g. "--iterations 1000" or "--candidate other=/path/to/build".
BENCH_ARGS ?=
PODSTART_RUNS ?= 40
bench: deps build wire-tools
	tools=$$(bash e2e/tools/build.sh | tail -n1) && \
	/usr/bin/python3 e2e/bench/bench.py --binary $(BIN) --reference tuning-1.10.0=$$tools/tuning $(BENCH_ARGS)
	bash e2e/bench/podstart.sh $(PODSTART_RUNS)
	$(MAKE) --no-print-directory bench-agent
	$(DATAPATH)

# The node agent: a full pass over 500 pairs, the time to fix a new pair and
# its CPU (netns), then the time to fix a new Docker container (the Docker
# e2e's timing case, NEW_RUNS containers).
.PHONY: bench-agent
AGENT_NEW_RUNS ?= 50
bench-agent: deps build
	/usr/bin/python3 e2e/bench/agent.py --binary $(BIN)
	NEW_RUNS=$(AGENT_NEW_RUNS) bash e2e/docker/run.sh agent-new-containers

# What each setting costs pod traffic (iperf3 in netns topologies) and
# which settings are correct behind the broken-NIC simulator; a few
# minutes. DATAPATH_ARGS e.g. "--rounds 3", "--only wire",
# "--settings both,uplink" (see e2e/bench/datapath.py --help).
DATAPATH_ARGS ?=
DATAPATH = /usr/bin/python3 e2e/bench/datapath.py --binary $(BIN) --wire-dir target/release $(DATAPATH_ARGS)
.PHONY: bench-datapath wire-tools
bench-datapath: deps build wire-tools
	$(DATAPATH)

# wirecheck and brokennic (e2e/wire) in target/release.
wire-tools:
	cargo build --release --locked -p csum-offload-wire

# End-to-end under a private containerd (`ctr run --cni`, Debian's CNI
# plugins): chains, wire check, broken-NIC reproduction, failure cases.
# Needs root; see docs/testing.md. `bash e2e/containerd/run.sh PATTERN` runs a subset.
.PHONY: e2e
e2e: deps build
	bash e2e/containerd/run.sh

# csum-offload driven through libcni (Go, e2e/tools/cmd/libcni-e2e) as
# runtimes drive it: ADD/CHECK/DEL/STATUS/GC, the result cache, CNI_ARGS,
# capabilities, every CNI version, chains of the v1.10.0 reference plugins,
# config errors and negative controls. Needs root and Go; see
# docs/testing.md. `bash e2e/libcni/run.sh PATTERN` runs a subset.
.PHONY: e2e-libcni
e2e-libcni: deps build
	bash e2e/libcni/run.sh

# Which conf file the installer edits, judged by containerd's go-cni and
# libcni over a corpus of awkward conf dirs (e2e/libcni/confdir.py) and a
# short fuzz run of generated ones (confdir_fuzz.py), with CRI-O's rule as
# the negative control of each. No root needed; see docs/testing.md.
.PHONY: e2e-confdir
e2e-confdir: build
	bash e2e/libcni/confdir.sh

# The long fuzz run of the same comparison, for local use (not in make
# test): CONFDIR_FUZZ_COUNT dirs at most, in CONFDIR_FUZZ_SECONDS; a
# random seed unless CONFDIR_FUZZ_SEED is set.
CONFDIR_FUZZ_COUNT ?= 20000
CONFDIR_FUZZ_SECONDS ?= 1800
.PHONY: e2e-confdir-fuzz
e2e-confdir-fuzz: build
	tools=$$(bash e2e/tools/build.sh | tail -n1) && \
	/usr/bin/python3 e2e/libcni/confdir_fuzz.py --binary $(BIN) --referee $$tools/confdir-referee \
		$${CONFDIR_FUZZ_SEED:+--seed $$CONFDIR_FUZZ_SEED} --count $(CONFDIR_FUZZ_COUNT) \
		--seconds $(CONFDIR_FUZZ_SECONDS) --save target/confdir-fuzz

# End-to-end under a private Docker engine (Debian's docker.io 20.10 with
# its own containerd, in private mount and network namespaces): what
# dockerd does to veth pairs, and the node agent's cases. Needs root; see
# docs/testing.md. `bash e2e/docker/run.sh PATTERN` runs a subset.
.PHONY: e2e-docker
e2e-docker: deps build
	bash e2e/docker/run.sh

# End-to-end through containerd's CRI plugin, driven over the CRI v1 gRPC
# API as kubelet drives it: the DaemonSet's pod from manifests/ (image
# built with buildah, pause image from source), workload pods through
# RunPodSandbox, rewrites, upgrade, ConfigMap update, uninstall, leaks.
# Needs root; see docs/testing.md. `bash e2e/cri/run.sh PATTERN` runs a subset.
.PHONY: e2e-cri
e2e-cri: deps build
	bash e2e/cri/run.sh

# Container image with the static binary (docs/install.md): docker when
# its daemon answers, else buildah (e2e/images/build.sh; the image lands in
# buildah's storage as localhost/$(IMAGE)). IMAGE_ARCHIVE=FILE also writes
# an OCI archive named docker.io/library/$(IMAGE) for
# `ctr -n k8s.io images import` (buildah only).
# IMAGE_ARCH names the platform of $(TARGET) in the Docker sense.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' plugin/Cargo.toml | head -n1)
IMAGE ?= csum-offload:$(VERSION)
IMAGE_ARCH ?= amd64
IMAGE_ARCHIVE ?=
# IMAGE_BUILDER=buildah skips the docker check (the CRI e2e builds this
# way); IMAGE_PRIVATE=DIR keeps buildah's storage in DIR (build.sh --private).
IMAGE_BUILDER ?=
IMAGE_PRIVATE ?=
.PHONY: image e2e-kind manifests-check
image: build
	mkdir -p target/image/linux-$(IMAGE_ARCH)
	cp $(BIN) target/image/linux-$(IMAGE_ARCH)/csum-offload.tmp
	mv target/image/linux-$(IMAGE_ARCH)/csum-offload.tmp target/image/linux-$(IMAGE_ARCH)/csum-offload
	@if [ "$(IMAGE_BUILDER)" != buildah ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; then \
		echo "make image: docker build"; \
		docker build --platform linux/$(IMAGE_ARCH) -t $(IMAGE) .; \
	elif command -v buildah >/dev/null; then \
		if [ "$(IMAGE_BUILDER)" = buildah ]; then echo "make image: IMAGE_BUILDER=buildah"; \
		else echo "make image: docker $$(command -v docker >/dev/null && echo 'daemon not reachable' || echo 'not installed'); building with buildah"; fi; \
		bash e2e/images/build.sh project --tag $(IMAGE) --platform linux/$(IMAGE_ARCH) \
			$(if $(IMAGE_ARCHIVE),--archive $(IMAGE_ARCHIVE)) $(if $(IMAGE_PRIVATE),--private $(IMAGE_PRIVATE)); \
	else \
		echo "make image: needs docker (with a running daemon) or buildah" >&2; exit 1; \
	fi

# kind-cluster e2e for machines with docker, kind and kubectl (not part of
# `make test`; exits 77 with a message when they are missing). The same
# checks as make e2e-k8s (e2e/k8s/checks.sh).
e2e-kind:
	bash e2e/kind/run.sh

# The pinned test tools (e2e/tools: Kubernetes, etcd, containerd 2.x,
# crictl, the CNI plugins v1.10.0) built into target/tools/<key>/bin;
# a second run with the same go.mod/go.sum builds nothing.
.PHONY: tools cluster-up cluster-down cluster-status e2e-k8s
tools:
	@start=$$(date +%s); bash e2e/tools/build.sh >/dev/null; echo "tools: ready in $$(( $$(date +%s) - start )) s"

# A local two-node Kubernetes cluster on this machine (e2e/k8s/cluster.sh):
# cluster-up prints the KUBECONFIG path and leaves it running (safe to
# run twice); cluster-down stops and removes everything it made.
cluster-up: deps
	bash e2e/k8s/cluster.sh up
cluster-down:
	bash e2e/k8s/cluster.sh down
cluster-status:
	bash e2e/k8s/cluster.sh status

# The DaemonSet on a fresh local cluster with kubectl, the field failure
# reproduced behind brokennic and fixed across nodes (e2e/k8s/run.sh;
# KEEP_CLUSTER=1 leaves the cluster up afterwards).
e2e-k8s: deps build
	bash e2e/k8s/run.sh

# Offline schema validation and checkov over manifests/ (tools in target/pyenv).
manifests-check: build
	bash manifests/check.sh

# manifests/ rendered from charts/csum-offload's defaults (helm template;
# helm is built from e2e/tools on first use). manifests-check fails when
# the committed files differ from a fresh render.
.PHONY: manifests
manifests:
	bash charts/render-manifests.sh

# Fuzzing (stable Rust + libFuzzer): replays plugin/fuzz/regressions and
# seeds, then fuzzes each target for FUZZ_SECONDS (default 60).
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash plugin/fuzz/run.sh
