#!/usr/bin/env bash
# The broken-NIC story for a newcomer (`make demo` calls this): the field
# failure reproduced with a NIC that ignores checksum offload, then fixed
# by csum-offload in the pod's CNI chain. Needs root and `make build`.
set -uo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
cat <<'TEXT'
== csum-offload: the field failure, reproduced and fixed ==

On hosts whose uplink NIC uses the txgbe driver, pods can ping but TCP hangs:
the pod's veth hands TCP segments down with TX checksum offload on, i.e. with
only a partial checksum that the NIC is supposed to complete. That path never
completes it, and the receiver drops every segment.

Here a private containerd starts a pod through `ctr run --cni` (Debian's
bridge + host-local plugins). Its host-side veth reaches a "remote host"
(its own network namespace, 10.88.77.100) only through `brokennic`, a
forwarder that copies frames byte for byte over AF_PACKET sockets and, like
the broken NIC, never fills in a checksum.
TEXT
bash "$here/run.sh" --story
rc=$?
if [ "$rc" = 0 ]; then
    cat <<'TEXT'

What changed: csum-offload ran after the bridge plugin, saw the host NIC
driver txgbe (here set with "hostDriver": "txgbe"), and turned TX checksum
offload off on both ends of the pod's veth, so the pod's kernel computes
every TCP checksum itself. Nothing else in the path changed.
Reproduce the wire check on a real node: docs/wire-check.md.
TEXT
fi
exit "$rc"
