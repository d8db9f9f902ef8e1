#!/usr/bin/env bash
# make demo: the main job on a throwaway pod. Creates a netns + veth pair as
# a main CNI plugin would, runs csum-offload exactly as a runtime does
# (CNI_* env + config on stdin) with the txgbe policy, and shows the veth's
# offload state before and after. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/csum-offload}
NS=csum-demo-$$
HOST_IF=csdemo$$
HOST_IF=${HOST_IF:0:15}

cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() {
    printf '  %-26s %-22s %s\n' "feature" "pod eth0" "host $HOST_IF"
    for f in tx-checksumming tx-checksum-ip-generic tx-checksum-sctp tx-tcp-segmentation rx-checksumming; do
        c=$(ip netns exec "$NS" ethtool -k eth0 | sed -n "s/^[[:space:]]*$f: //p")
        h=$(ethtool -k "$HOST_IF" | sed -n "s/^[[:space:]]*$f: //p")
        printf '  %-26s %-22s %s\n' "$f" "$c" "$h"
    done
}

say "What this node's uplink needs (csum-offload detect)"
"$BIN" detect || true

say "A pod as the main plugin leaves it: netns $NS, veth eth0 <-> $HOST_IF"
ip netns add "$NS"
ip link add "$HOST_IF" type veth peer name eth0 netns "$NS"
ip link set "$HOST_IF" up
ip -n "$NS" link set eth0 up
show

CONF=$(cat <<JSON
{
  "cniVersion": "1.0.0",
  "name": "demo",
  "type": "csum-offload",
  "hostDriver": "txgbe",
  "prevResult": {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "$HOST_IF"}, {"name": "eth0", "sandbox": "/run/netns/$NS"}],
    "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 1}]
  }
}
JSON
)
say "The runtime runs: CNI_COMMAND=ADD ... csum-offload < config (hostDriver: txgbe)"
echo "$CONF" | sed 's/^/  /'
say "csum-offload's stdout (the prevResult, unchanged) and its log"
echo "$CONF" | CNI_COMMAND=ADD CNI_CONTAINERID=demo-$$ CNI_NETNS=/run/netns/$NS CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni "$BIN"
echo

say "After: TX checksum offload is off on both ends (the txgbe fix)"
show

say "CHECK (the runtime's health check) passes"
echo "$CONF" | CNI_COMMAND=CHECK CNI_CONTAINERID=demo-$$ CNI_NETNS=/run/netns/$NS CNI_IFNAME=eth0 "$BIN" && echo "  CHECK ok"

say "Someone turns offload back on behind our back; CHECK names the drift"
ethtool -K "$HOST_IF" tx on >/dev/null 2>&1 || true
echo "$CONF" | CNI_COMMAND=CHECK CNI_CONTAINERID=demo-$$ CNI_NETNS=/run/netns/$NS CNI_IFNAME=eth0 "$BIN" 2>/dev/null || true
echo

say "An i40e node: the same call changes nothing"
ethtool -K "$HOST_IF" tx on >/dev/null 2>&1; ip netns exec "$NS" ethtool -K eth0 tx on >/dev/null 2>&1
echo "${CONF/txgbe/i40e}" | CNI_COMMAND=ADD CNI_CONTAINERID=demo-$$ CNI_NETNS=/run/netns/$NS CNI_IFNAME=eth0 "$BIN" >/dev/null
show

if [ "${DEMO_STORY:-1}" = 1 ]; then
    say "The field failure and its fix, through containerd and a simulated broken NIC"
    bash e2e/containerd/story.sh
fi
say "Done; the demo netns is removed."
