#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when something is missing.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip || need+=(iproute2)
have ethtool || need+=(ethtool)
have containerd || need+=(containerd)
have ctr || need+=(containerd)
have runc || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
[ -x /bin/busybox ] || need+=(busybox-static)
have tcpdump || need+=(tcpdump)
# The Docker suite runs Debian's engine and client by full path (a newer
# docker elsewhere on PATH does not count).
{ [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ]; } || need+=(docker.io)
have strace || need+=(strace)
[ -x /usr/bin/time ] || need+=(time)
have g++ || need+=(g++)   # make fuzz builds libFuzzer
have systemd-analyze || need+=(systemd)   # manifests-check verifies the agent's unit
# The installer tests run it in namespaces of its own (user, mount).
have unshare || need+=(util-linux)
have nsenter || need+=(util-linux)
have mount || need+=(mount)
# make e2e-cri: images without docker (buildah), the pause program built
# static from source, the CRI client's venv (Debian's python3).
have buildah || need+=(buildah)
have gcc || need+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
[ -x /usr/bin/python3 ] || need+=(python3)
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
have iperf3 || need+=(iperf3)   # make bench: the datapath benchmark
have iptables || need+=(iptables)   # make bench: NAT in the datapath wire check
# make cluster-up / e2e-k8s: the cluster's certificates, health checks and
# ConfigMap patches.
have openssl || need+=(openssl)
have curl || need+=(curl)
have jq || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
    echo "install-deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
