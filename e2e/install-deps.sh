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
have strace || need+=(strace)
[ -x /usr/bin/time ] || need+=(time)
have g++ || need+=(g++)   # make fuzz builds libFuzzer
have iperf3 || need+=(iperf3)   # make bench: the datapath benchmark
[ -x /usr/bin/python3 ] || need+=(python3)   # make bench
have iptables || need+=(iptables)   # make bench: NAT in the datapath wire check
if [ ${#need[@]} -gt 0 ]; then
    echo "install-deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
