#!/usr/bin/env python3
"""What csum-offload's settings cost pod traffic, and which are correct on the wire.

Two parts, each on a "node" built from network namespaces (all named dpb-*,
addresses from 10.63.0.0/16 only):

  throughput  iperf3 (one TCP stream, a warm-up run discarded) in five
              topologies, for offload untouched and for every setting
              (SETTINGS): Gbit/s and the CPU time of all cores (/proc/stat)
              per gigabyte moved, with ratios to "untouched".
  wire        the broken-NIC simulator (e2e/wire brokennic) stands for the
              node's uplink NIC: a transfer from a pod to a peer beyond it,
              for each setting: how many partial checksums leave the node,
              and whether the data arrives intact (SHA-256).

The node (dpb-node) is wired the way the reference plugins wire a node: the
pods' interfaces are made by Debian's /usr/lib/cni/bridge and /usr/lib/cni/ptp
(with host-local), run as CNI ADDs from the node netns, and each setting is
applied by the csum-offload binary itself, run as the next plugin of the chain
(CNI ADD with the real prevResult, hostDriver txgbe; the uplink row by
`apply: "uplink"` with detection from dpbup0, see UPLINK_ENTRY). Never by
ethtool.

  dpb-pa, dpb-pb   pods on the bridge dpbbr0 (10.63.1.0/24, gateway .1)
  dpb-pc, dpb-pd   pods on ptp veths (10.63.2.0/24, /32 routes on the node)
  dpb-node         the node: the bridge, the ptp host ends, the uplink dpbup0
                   (10.63.0.1/24, default route via the peer)
  dpb-peer         another host beyond the uplink (10.63.0.2/24), its eth0
                   with GRO on as a physical NIC has it
  dpb-wire         (wire part only) between dpbup0 and the peer: brokennic
                   forwards frames byte for byte between dpbnic0 (the
                   uplink's wire) and dpbnic1 (the peer's), completing no
                   checksum, as the txgbe path does in the field; there
                   the node masquerades the ptp pods' traffic to the peer

Run as root:  python3 e2e/bench/datapath.py --binary target/release/csum-offload
(`make bench-datapath` builds first). Everything it creates is removed on exit,
also on SIGINT/SIGTERM and when its time limit (--limit) is reached; a run that
was killed outright is cleaned up by the next run (under the lock).
"""

import argparse
import fcntl
import hashlib
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PREFIX = "dpb"
LOCK = "/run/dpb-datapath.lock"
CNI_DIR = "/usr/lib/cni"
CNI_VERSION = "1.0.0"
IPERF_PORT = 5201
WIRE_PORT = 5002

NS = {
    "node": "dpb-node",
    "pa": "dpb-pa",
    "pb": "dpb-pb",
    "pc": "dpb-pc",
    "pd": "dpb-pd",
    "peer": "dpb-peer",
    "wire": "dpb-wire",
}
UPLINK = "dpbup0"
BRIDGE = "dpbbr0"
NODE_IP = "10.63.0.1"
PEER_IP = "10.63.0.2"
BRIDGE_NET = "10.63.1.0/24"
PTP_NET = "10.63.2.0/24"
BRIDGE_PODS = ("pa", "pb")
PTP_PODS = ("pc", "pd")

# --- what is measured -------------------------------------------------------

# The uplink placement, by the product: `apply: "uplink"`. A value None
# removes that key of the base entry (see Lab.apply): the uplink placement
# needs detection, which hostDriver would skip. Detection starts at dpbup0,
# a veth, so the NIC it finds is dpbup0 itself, and the drivers table maps
# its driver "veth" to tx off; the pod veths stay as the kernel made them
# (check_state verifies both). Set it to None to measure the same kernel
# state made by `ethtool -K dpbup0 tx off` instead (a stand-in, labelled).
UPLINK_ENTRY = {"apply": "uplink", "hostDriver": None, "hostInterface": UPLINK, "drivers": {"veth": {"tx": False}}}


class Setting:
    """One row: the csum-offload entries ADDed after the main plugin, in
    chain order (each merged over the base entry), and the state the
    kernel must show afterwards (ends: container, host, uplink)."""

    def __init__(self, key, label, entries, state, wire_hypothesis, kind, stand_in=None):
        self.key = key
        self.label = label
        self.entries = entries
        self.state = state
        # What the kernel mechanics predict on the wire (True: correct). The
        # verdict is measured; a measurement that disagrees is reported as
        # UNEXPECTED and fails the run.
        self.wire_hypothesis = wire_hypothesis
        self.kind = kind  # reference | offered | candidate
        self.stand_in = stand_in  # ethtool -K arguments for the uplink
        # Set when csum-offload refuses a candidate's entries (a build that
        # rejects the combination): the row then measures the same kernel
        # state made with ethtool, and says so.
        self.refused = None


def uplink_setting():
    state = {"uplink": {"tx": "off", "tso": "off"}}
    if UPLINK_ENTRY is not None:
        return Setting("uplink", "apply: uplink", [UPLINK_ENTRY], state, True, "offered")
    return Setting(
        "uplink",
        "uplink (ethtool stand-in until apply: uplink lands)",
        [],
        state,
        True,
        "offered",
        stand_in=["tx", "off"],
    )


TXGBE = lambda **features: {"drivers": {"txgbe": features}}  # noqa: E731

SETTINGS = [
    Setting("untouched", "offload untouched (no csum-offload)", [], {}, False, "reference"),
    Setting(
        "both",
        "apply: both (default: tx off on both ends)",
        [{"apply": "both"}],
        {"container": {"tx": "off", "tso": "off"}, "host": {"tx": "off", "tso": "off"}},
        True,
        "offered",
    ),
    Setting(
        "container",
        "apply: container",
        [{"apply": "container"}],
        {"container": {"tx": "off", "tso": "off"}},
        True,
        "offered",
    ),
    Setting(
        "host",
        "apply: host",
        [{"apply": "host"}],
        {"host": {"tx": "off", "tso": "off"}},
        False,
        "offered",
    ),
    uplink_setting(),
    # Cheaper veth settings. GRO on the container end only merges what the
    # pod itself receives; GRO on a host end that forwards merges segments
    # into a CHECKSUM_PARTIAL packet again, so that one must fail the wire.
    Setting(
        "c-tx-gro",
        "candidate: container end tx off + gro on",
        [dict(apply="container", **TXGBE(tx=False, gro=True))],
        {"container": {"tx": "off", "tso": "off", "gro": "on"}},
        True,
        "candidate",
    ),
    Setting(
        "both-cgro",
        "candidate: both ends tx off + gro on the container end",
        [{"apply": "both"}, dict(apply="container", **TXGBE(gro=True))],
        {
            "container": {"tx": "off", "tso": "off", "gro": "on"},
            "host": {"tx": "off", "tso": "off"},
        },
        True,
        "candidate",
    ),
    Setting(
        "both-gl",
        "candidate: both ends tx off + gro on + rx-gro-list on",
        [dict(apply="both", **TXGBE(tx=False, gro=True, **{"rx-gro-list": True}))],
        {
            "container": {"tx": "off", "tso": "off", "gro": "on", "gro-list": "on"},
            "host": {"tx": "off", "tso": "off", "gro": "on", "gro-list": "on"},
        },
        True,
        "candidate",
    ),
    Setting(
        "cgro-hgl",
        "candidate: container end tx off + gro on; host end gro on + rx-gro-list on",
        [dict(apply="container", **TXGBE(tx=False, gro=True)),
         dict(apply="host", **TXGBE(gro=True, **{"rx-gro-list": True}))],
        {
            "container": {"tx": "off", "tso": "off", "gro": "on"},
            "host": {"gro": "on", "gro-list": "on"},
        },
        True,
        "candidate",
    ),
    Setting(
        "c-tx-hgro",
        "candidate: container end tx off; host end gro on",
        [dict(apply="container", **TXGBE(tx=False)), dict(apply="host", **TXGBE(gro=True))],
        {
            "container": {"tx": "off", "tso": "off"},
            "host": {"gro": "on"},
        },
        False,
        "candidate",
    ),
    Setting(
        "both-gro",
        "candidate: both ends tx off + gro on (host end too)",
        [dict(apply="both", **TXGBE(tx=False, gro=True))],
        {
            "container": {"tx": "off", "tso": "off", "gro": "on"},
            "host": {"tx": "off", "tso": "off", "gro": "on"},
        },
        False,
        "candidate",
    ),
]

# The kernel's state before anything is applied (a fresh veth).
DEFAULT_STATE = {"tx": "on", "tso": "on", "gro": "off", "gro-list": "off", "gso-list": "on"}
FEATURES = {
    "tx": "tx-checksum-ip-generic",
    "tso": "tx-tcp-segmentation",
    "gro": "generic-receive-offload",
    "gro-list": "rx-gro-list",
    "gso-list": "tx-gso-list",
}
# The uplink stands for a physical NIC: those do not take fraglist GSO
# packets (tx-gso-list is a software device's feature), so the kernel
# segments them before the "NIC", as it would before txgbe.
NIC_MODEL = {"gso-list": "off"}

# (key, label, client netns, server: a pod key or "peer")
TOPOLOGIES = [
    ("bridge", "pod to pod, one bridge", "pa", "pb"),
    ("ptp", "pod to pod, ptp routes", "pc", "pd"),
    ("pod-peer", "pod to a peer beyond the uplink", "pa", "peer"),
    ("host-pod", "host to pod", "node", "pa"),
    ("host-peer", "host to a peer beyond the uplink", "node", "peer"),
]

# --- process and cleanup bookkeeping ----------------------------------------


class Abort(Exception):
    pass


class Refused(Abort):
    """csum-offload refused an entry as invalid configuration (CNI code 7)."""


PROCS = []  # every long-running child (Popen), ended by pid at cleanup
# The csum-offload binary, once known: the uplink placement records the NIC's
# state in the host's /run/csum-offload/uplink-state.json, per netns; the
# node's entry is put back and forgotten before its netns goes.
BINARY = None
CREATED_NS = set()


def on_signal(signum, _frame):
    raise Abort(f"stopped by signal {signal.Signals(signum).name}")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(argv, check=True, timeout=30, **kw):
    try:
        out = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, **kw
        )
    except subprocess.TimeoutExpired:
        raise Abort(f"{' '.join(argv)}: no answer in {timeout} s")
    if check and out.returncode != 0:
        raise Abort(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def in_ns(ns, *argv):
    return ["nsenter", f"--net=/run/netns/{ns}", *argv]


def spawn(argv, logfile):
    f = open(logfile, "ab")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
    f.close()
    PROCS.append(p)
    return p


def stop(p, sig=signal.SIGTERM, wait=5):
    """Ends one child we started, by its pid."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    if p in PROCS:
        PROCS.remove(p)


def netns_inode(ns):
    try:
        return os.stat(f"/run/netns/{ns}").st_ino
    except OSError:
        return None


def pids_in_netns(inode):
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == inode:
                pids.append(int(pid))
        except OSError:
            pass
    return pids


def delete_netns(ns):
    """Deletes a dpb-* netns, first ending the processes inside it (only a
    run of this script starts processes in these namespaces)."""
    inode = netns_inode(ns)
    if inode is None:
        return
    if BINARY and ns == NS["node"]:
        with tempfile.TemporaryDirectory(prefix="dpb-restore.") as d:
            run(in_ns(ns, BINARY, "agent", "restore", "--no-proc", "--netns-dir", d,
                      "--state-file", os.path.join(d, "agent.jsonl")), check=False)
    for pid in pids_in_netns(inode):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    run(["ip", "netns", "del", ns], check=False)
    CREATED_NS.discard(ns)


def cleanup():
    for p in list(PROCS):
        try:
            stop(p, wait=2)
        except Exception:  # noqa: BLE001 - cleanup goes on
            pass
    for ns in list(CREATED_NS):
        delete_netns(ns)


def reap_stale():
    """Removes what a run that was killed outright left (under the lock):
    its namespaces and the processes in them, and its payload file (its
    logs stay)."""
    for d in os.listdir(tempfile.gettempdir()):
        stale = os.path.join(tempfile.gettempdir(), d, "payload")
        if d.startswith("dpb-datapath.") and os.path.isfile(stale):
            os.unlink(stale)
    out = run(["ip", "netns", "list"], check=False).stdout
    for line in out.splitlines():
        ns = line.split()[0] if line.split() else ""
        if ns.startswith(PREFIX + "-"):
            log(f"datapath: removing {ns}, left by an earlier run")
            delete_netns(ns)


def wait_until(what, pred, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise Abort(f"{what}: not within {seconds} s")


def listening(ns, port):
    out = run(in_ns(ns, "ss", "-Hltn", f"sport = :{port}"), check=False).stdout
    return bool(out.strip())


# --- the node ---------------------------------------------------------------


class Lab:
    """The node, its four pods and the peer. With wire=True the uplink goes
    to the peer through brokennic in dpb-wire instead of a direct veth."""

    def __init__(self, args, tmp, wire):
        self.args = args
        self.tmp = tmp
        self.wire = wire
        self.results = {}  # pod key -> the main plugin's CNI result
        self.ips = {"peer": PEER_IP}
        self.servers = []
        self.ipam = tempfile.mkdtemp(prefix="ipam-", dir=tmp)
        # csum-offload's diagnostics (its stderr: no logFile, which a
        # plugin may confine to /var/log).
        self.csum_log = os.path.join(tmp, "csum-offload.log")

    def ip(self, ns, *argv):
        run(["ip", "-n", NS[ns], *argv])

    def sysctl(self, ns, key, value):
        run(in_ns(NS[ns], "sh", "-c", f"echo {value} > /proc/sys/{key.replace('.', '/')}"))

    def build(self):
        names = ["node", "pa", "pb", "pc", "pd", "peer"] + (["wire"] if self.wire else [])
        for key in names:
            run(["ip", "netns", "add", NS[key]])
            CREATED_NS.add(NS[key])
            self.ip(key, "link", "set", "lo", "up")
        # The uplink and the peer.
        if self.wire:
            self.ip("node", "link", "add", UPLINK, "type", "veth", "peer", "name", "dpbnic0",
                    "netns", NS["wire"])
            self.ip("wire", "link", "add", "dpbnic1", "type", "veth", "peer", "name", "eth0",
                    "netns", NS["peer"])
            for dev in ("dpbnic0", "dpbnic1"):
                self.sysctl("wire", f"net.ipv6.conf.{dev}.disable_ipv6", 1)
                self.ip("wire", "link", "set", dev, "up")
        else:
            self.ip("node", "link", "add", UPLINK, "type", "veth", "peer", "name", "eth0",
                    "netns", NS["peer"])
        self.ip("node", "addr", "add", f"{NODE_IP}/24", "dev", UPLINK)
        self.ip("node", "link", "set", UPLINK, "up")
        run(in_ns(NS["node"], "ethtool", "-K", UPLINK, "tx-gso-list", "off"))
        self.ip("node", "route", "add", "default", "via", PEER_IP, "dev", UPLINK)
        self.sysctl("node", "net.ipv4.ip_forward", 1)
        self.ip("peer", "addr", "add", f"{PEER_IP}/24", "dev", "eth0")
        self.ip("peer", "link", "set", "eth0", "up")
        self.ip("peer", "route", "add", "10.63.0.0/16", "via", NODE_IP)
        # The peer stands for another host: its NIC merges what it receives
        # (GRO, on by default on physical NICs) and, behind the simulator,
        # sends complete checksums (a healthy NIC fills them in).
        run(in_ns(NS["peer"], "ethtool", "-K", "eth0", "gro", "on"))
        if self.wire:
            run(in_ns(NS["peer"], "ethtool", "-K", "eth0", "tx", "off"))
            # The ptp pods' traffic to the peer is masqueraded, as a node
            # NATs pod traffic to off-cluster hosts: the NAT rewrites
            # addresses, and with them the checksums, of what leaves.
            run(in_ns(NS["node"], "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", PTP_NET,
                      "-o", UPLINK, "-j", "MASQUERADE"))
        # The pods, wired by the reference plugins.
        for key in BRIDGE_PODS:
            self.add_pod(key, "bridge", {
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                "ipam": self.host_local(BRIDGE_NET, "10.63.1.1"),
            })
        for key in PTP_PODS:
            self.add_pod(key, "ptp", {
                "type": "ptp", "ipMasq": False, "ipam": self.host_local(PTP_NET, None),
            })

    def host_local(self, subnet, gateway):
        rng = {"subnet": subnet}
        if gateway:
            rng["gateway"] = gateway
        return {"type": "host-local", "dataDir": self.ipam, "ranges": [[rng]],
                "routes": [{"dst": "0.0.0.0/0"}]}

    def cni(self, binary, key, conf):
        """One CNI ADD for pod KEY, run from the node netns as a runtime does."""
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": f"dpb-{key}-0123456789",
            "CNI_NETNS": f"/run/netns/{NS[key]}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": CNI_DIR,
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        out = run(in_ns(NS["node"], binary), check=False, input=json.dumps(conf), env=env)
        if binary == self.args.binary and out.stderr:
            with open(self.csum_log, "a") as f:
                f.write(f"--- ADD {NS[key]} {json.dumps({k: v for k, v in conf.items() if k != 'prevResult'})}\n")
                f.write(out.stderr)
        if out.returncode != 0:
            why = f"{out.stdout.strip()} {out.stderr.strip()}"
            try:
                err = json.loads(out.stdout)
            except json.JSONDecodeError:
                err = {}
            # Refused: an invalid entry (7), or one that turns GRO on for a
            # host end of a fixed pair (100, "GRO is on"): the product will
            # not make that state.
            if binary == self.args.binary and isinstance(err, dict) and (
                err.get("code") == 7 or (err.get("code") == 100 and "GRO is on" in err.get("msg", ""))
            ):
                raise Refused(err.get("msg", why))
            raise Abort(f"{os.path.basename(binary)} ADD for {NS[key]} failed ({out.returncode}): {why}")
        return json.loads(out.stdout)

    def add_pod(self, key, net, main):
        conf = {"cniVersion": CNI_VERSION, "name": f"dpb-{net}", **main}
        result = self.cni(os.path.join(CNI_DIR, main["type"]), key, conf)
        self.results[key] = (net, result)
        self.ips[key] = result["ips"][0]["address"].split("/")[0]

    def apply(self, setting):
        """Runs csum-offload's entries of SETTING for every pod, in chain
        order, each with the prevResult the runtime would pass. A candidate
        (not an offered setting) that csum-offload refuses as invalid is
        made with ethtool instead, and marked so."""
        try:
            self.apply_entries(setting)
        except Refused as e:
            if setting.kind != "candidate":
                raise Abort(f"{setting.key}: csum-offload refused the entry: {e}")
            if setting.refused is None:
                setting.refused = str(e)
                setting.label += " (refused by csum-offload; made with ethtool -K)"
            self.make_state(setting)
        if setting.stand_in:
            run(in_ns(NS["node"], "ethtool", "-K", UPLINK, *setting.stand_in))

    def make_state(self, setting):
        """Sets every pod end to SETTING's state (the kernel default where
        the setting says nothing) with ethtool -K; TSO follows tx."""
        for key in self.results:
            for end, ns, dev in (("container", NS[key], "eth0"),
                                 ("host", NS["node"], self.host_end(key))):
                want = dict(DEFAULT_STATE, **setting.state.get(end, {}))
                argv = []
                for short in ("tx", "gro", "gro-list"):
                    argv += [FEATURES[short], want[short]]
                run(in_ns(ns, "ethtool", "-K", dev, *argv))

    def apply_entries(self, setting):
        for key, (net, result) in self.results.items():
            prev = result
            for entry in setting.entries:
                conf = {
                    "cniVersion": CNI_VERSION,
                    "name": f"dpb-{net}",
                    "type": "csum-offload",
                    "hostDriver": "txgbe",
                    "prevResult": prev,
                }
                conf.update(entry)
                # None in an entry removes the key (e.g. hostDriver).
                conf = {k: v for k, v in conf.items() if v is not None}
                out = self.cni(self.args.binary, key, conf)
                if out != prev:
                    raise Abort(f"csum-offload ADD for {NS[key]} changed the result: {out}")
                prev = out

    def host_end(self, key):
        """The pod's host-side veth, from the kernel's peer index (eth0@ifN)."""
        out = run(["ip", "-n", NS[key], "-o", "link", "show", "dev", "eth0"]).stdout
        m = re.match(r"\d+: eth0@if(\d+):", out)
        if not m:
            raise Abort(f"{NS[key]}: eth0 has no peer: {out}")
        for line in run(["ip", "-n", NS["node"], "-o", "link"]).stdout.splitlines():
            idx, name = line.split(": ")[:2]
            if idx == m.group(1):
                return name.split("@")[0]
        raise Abort(f"{NS[key]}: no interface {m.group(1)} in {NS['node']}")

    def features(self, ns, dev):
        out = run(in_ns(ns, "ethtool", "-k", dev)).stdout
        got = {}
        for short, name in FEATURES.items():
            m = re.search(rf"^\s*{name}: (on|off)", out, re.M)
            got[short] = m.group(1) if m else "?"
        return got

    def check_state(self, setting):
        """Reads every end back: what the setting must have made, and the
        kernel default everywhere else. Returns the state seen."""
        seen = {}
        ends = []
        for key in self.results:
            ends.append((f"{key}:container", "container", NS[key], "eth0"))
            ends.append((f"{key}:host", "host", NS["node"], self.host_end(key)))
        ends.append(("uplink", "uplink", NS["node"], UPLINK))
        wrong = []
        for label, end, ns, dev in ends:
            got = self.features(ns, dev)
            want = dict(DEFAULT_STATE, **(NIC_MODEL if end == "uplink" else {}))
            want.update(setting.state.get(end, {}))
            seen[label] = got
            for f, v in want.items():
                if got[f] != v:
                    wrong.append(f"{label} ({dev}) {FEATURES[f]} {got[f]}, want {v}")
        if wrong:
            raise Abort(f"{setting.key}: the kernel does not show the setting: " + "; ".join(wrong))
        return seen

    def start_servers(self):
        for key in ("pa", "pb", "pd", "peer"):
            p = spawn(in_ns(NS[key], "iperf3", "-s", "-p", str(IPERF_PORT)),
                      os.path.join(self.tmp, f"iperf3-server-{key}.log"))
            self.servers.append(p)
        for key in ("pa", "pb", "pd", "peer"):
            wait_until(f"iperf3 server in {NS[key]}", lambda k=key: listening(NS[k], IPERF_PORT), 10)

    def close(self):
        for p in self.servers:
            stop(p)
        self.servers = []
        for key in NS:
            delete_netns(NS[key])


# --- throughput -------------------------------------------------------------


def cpu_busy_ticks():
    """All cores' busy time so far (user, nice, system, irq, softirq), in
    clock ticks. Idle, iowait and steal (the hypervisor's) are not busy."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return user + nice + system + irq + softirq


def iperf(lab, client, server, seconds):
    argv = in_ns(NS[client], "iperf3", "-c", lab.ips[server], "-p", str(IPERF_PORT),
                 "-t", str(seconds), "-J", "--connect-timeout", "3000")
    out = run(argv, check=False, timeout=seconds + 20)
    try:
        doc = json.loads(out.stdout)
    except json.JSONDecodeError:
        doc = {"error": out.stderr.strip() or out.stdout.strip()[:200]}
    if out.returncode != 0 or "error" in doc:
        raise Abort(f"iperf3 {NS[client]} -> {NS[server] if server in NS else server}: "
                    f"{doc.get('error', out.returncode)}")
    return doc


def measure(lab, client, server, args):
    if args.warmup > 0:
        iperf(lab, client, server, args.warmup)
    # What the rest of the machine keeps busy, without our traffic: the
    # CPU figure below counts all cores, so others' work is in it too.
    ticks0, t0 = cpu_busy_ticks(), time.monotonic()
    time.sleep(0.5)
    bg = (cpu_busy_ticks() - ticks0) / os.sysconf("SC_CLK_TCK") / (
        (time.monotonic() - t0) * os.cpu_count())
    ticks0, t0 = cpu_busy_ticks(), time.monotonic()
    doc = iperf(lab, client, server, args.seconds)
    ticks1, t1 = cpu_busy_ticks(), time.monotonic()
    recv = doc["end"]["sum_received"]
    cpu_s = (ticks1 - ticks0) / os.sysconf("SC_CLK_TCK")
    gb = recv["bytes"] / 1e9
    return {
        "gbps": recv["bits_per_second"] / 1e9,
        "bytes": recv["bytes"],
        "cpu_s": cpu_s,
        "cpu_s_per_gb": cpu_s / gb if gb else float("inf"),
        "wall_s": t1 - t0,
        "cpu_util": cpu_s / ((t1 - t0) * os.cpu_count()),
        "background_util": bg,
        "retransmits": doc["end"]["sum_sent"].get("retransmits", 0),
    }


def throughput(args, tmp, settings, topologies):
    """Every setting in every topology, ROUNDS times (the setting order
    rotates per round so drift in machine load hits them alike)."""
    samples = {(s.key, t[0]): [] for s in settings for t in topologies}
    states = {}
    for r in range(args.rounds):
        order = settings[r % len(settings):] + settings[: r % len(settings)]
        for s in order:
            lab = Lab(args, tmp, wire=False)
            try:
                lab.build()
                lab.apply(s)
                states[s.key] = lab.check_state(s)
                lab.start_servers()
                for key, _label, client, server in topologies:
                    m = measure(lab, client, server, args)
                    samples[(s.key, key)].append(m)
                    log(f"  round {r + 1} {s.key:<10} {key:<10} {m['gbps']:6.2f} Gbit/s "
                        f"{m['cpu_s_per_gb']:6.3f} CPU s/GB  retr {m['retransmits']:<6} "
                        f"busy {m['cpu_util']:4.0%}, before it {m['background_util']:4.0%}")
            finally:
                lab.close()
    return samples, states


def summarize(samples, settings, topologies):
    table = {}
    for t in topologies:
        base = None
        for s in settings:
            runs = samples[(s.key, t[0])]
            row = {
                "gbps": statistics.median(m["gbps"] for m in runs),
                "cpu_s_per_gb": statistics.median(m["cpu_s_per_gb"] for m in runs),
                "cpu_util": statistics.median(m["cpu_util"] for m in runs),
                "retransmits": statistics.median(m["retransmits"] for m in runs),
                "runs": len(runs),
            }
            if s.key == "untouched":
                base = row
            if base:
                row["gbps_ratio"] = row["gbps"] / base["gbps"]
                row["cpu_ratio"] = row["cpu_s_per_gb"] / base["cpu_s_per_gb"]
            table[(s.key, t[0])] = row
    return table


# --- on the wire -------------------------------------------------------------


def read_counts(path, prefix):
    """The key=value counts of the line starting with PREFIX in a wire
    tool's summary, as numbers."""
    with open(path) as f:
        for line in f:
            if line.startswith(prefix):
                return {k: int(v) for k, v in
                        (kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
                        if v.isdigit()}
    raise Abort(f"{path}: no {prefix} line")


def transfer(lab, args, tmp, src, dst, tag, payload, digest, nat):
    """Sends PAYLOAD from pod SRC to DST (the peer, through brokennic, or
    another pod on the node) over TCP. wirecheck captures on SRC's host
    end meanwhile: there the node has the pod's segments after the host
    end's GRO. Returns the counts and what arrived."""
    files = {k: os.path.join(tmp, f"{k}-{tag}") for k in
             ("nic", "nic-ready", "cap", "cap-ready", "received")}
    me = os.path.abspath(__file__)
    host_end = lab.host_end(src)
    procs = []
    try:
        if dst == "peer":
            procs.append(spawn(in_ns(NS["wire"], os.path.join(args.wire_dir, "brokennic"),
                                     "--a", "dpbnic0", "--b", "dpbnic1", "--seconds", "60",
                                     "--summary", files["nic"], "--ready-file", files["nic-ready"]),
                               files["nic"] + ".log"))
            wait_until("brokennic", lambda: os.path.exists(files["nic-ready"]), 10)
        procs.append(spawn(in_ns(NS["node"], os.path.join(args.wire_dir, "wirecheck"),
                                 "--ifname", host_end, "--port", str(WIRE_PORT), "--seconds", "60",
                                 "--summary", files["cap"], "--ready-file", files["cap-ready"]),
                           files["cap"] + ".log"))
        wait_until("wirecheck", lambda: os.path.exists(files["cap-ready"]), 10)
        recv = spawn(in_ns(NS[dst], sys.executable, me, "_recv", "--port", str(WIRE_PORT),
                           "--accept-timeout", "20", "--idle-timeout", "5",
                           "--result", files["received"]),
                     files["received"] + ".log")
        wait_until("receiver", lambda: listening(NS[dst], WIRE_PORT), 10)
        t0 = time.monotonic()
        send = run(in_ns(NS[src], sys.executable, me, "_send", "--host", lab.ips[dst], "--port",
                         str(WIRE_PORT), "--file", payload, "--connect-timeout",
                         str(args.connect_timeout), "--timeout", "6"),
                   check=False, timeout=40)
        ms = (time.monotonic() - t0) * 1000
        if send.returncode == 0:
            try:
                recv.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        stop(recv)
    finally:
        for p in procs:
            stop(p, sig=signal.SIGINT)
    got = {"bytes": 0, "sha256": "", "from": ""}
    if os.path.exists(files["received"]):
        with open(files["received"]) as f:
            got = json.load(f)
    # The path must be the one named: masqueraded (the node's address) or
    # routed (the pod's own).
    want_from = NODE_IP if nat else lab.ips[src]
    if got["from"] and got["from"] != want_from:
        raise Abort(f"{tag}: the receiver saw {got['from']}, expected {want_from}")
    out = {
        "sender": "ok" if send.returncode == 0 else (send.stderr.strip().splitlines() or ["?"])[-1],
        "ms": round(ms),
        "bytes_arrived": got["bytes"],
        "intact": got["bytes"] == os.path.getsize(payload) and got["sha256"] == digest,
        "from": got["from"],
        # What the host end received from the pod (after its GRO, if on).
        "host_end": host_end,
        "host_in": read_counts(files["cap"], "in:"),
    }
    if dst == "peer":
        nic = read_counts(files["nic"], "a_to_b:")
        out["nic"] = nic
        out["correct"] = (out["intact"] and nic.get("partial", 0) == 0
                          and nic.get("bad", 0) == 0 and nic.get("valid", 0) > 0)
    else:
        out["correct"] = out["intact"]
    return out


# (key, sender pod, receiver, masqueraded): through the NIC first, then
# on the node.
WIRE_PATHS = [
    ("bridge-peer", "pa", "peer", False),
    ("ptp-peer", "pc", "peer", True),
    ("bridge-pod", "pa", "pb", False),
    ("ptp-pod", "pc", "pd", False),
]


def wire(args, tmp, settings):
    payload = os.path.join(tmp, "payload")
    with open(payload, "wb") as f:
        f.write(os.urandom(args.wire_bytes))
    with open(payload, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    out = {}
    try:
        for s in settings:
            out[s.key] = wire_setting(args, tmp, s, payload, digest)
    finally:
        os.unlink(payload)
    return out


def wire_setting(args, tmp, s, payload, digest):
    lab = Lab(args, tmp, wire=True)
    try:
        lab.build()
        lab.apply(s)
        lab.check_state(s)
        paths = {key: transfer(lab, args, tmp, src, dst, f"{s.key}-{key}", payload, digest, nat)
                 for key, src, dst, nat in WIRE_PATHS}
        correct = all(v["correct"] for v in paths.values())
        log(f"  wire {s.key:<10} " + "; ".join(
            f"{key}: " + (f"NIC {v['nic'].get('valid', 0)} valid "
                          f"{v['nic'].get('partial', 0)} partial, " if "nic" in v else "")
            + ("intact" if v["intact"] else "NOT intact")
            for key, v in paths.items()) + f" -> {'correct' if correct else 'NOT correct'}"
            + (f" (stand-in: ethtool -K {UPLINK} {' '.join(s.stand_in)}, not csum-offload)"
               if s.stand_in else "")
            + (" (refused by csum-offload; made with ethtool -K)" if s.refused else ""))
        return {"paths": paths, "correct": correct, "expected": correct == s.wire_hypothesis}
    finally:
        lab.close()


# --- the two ends of a wire transfer (run inside the pod / peer netns) -------


def recv_main(argv):
    p = argparse.ArgumentParser(prog="datapath.py _recv")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--accept-timeout", type=float, required=True)
    p.add_argument("--idle-timeout", type=float, required=True)
    p.add_argument("--result", required=True)
    a = p.parse_args(argv)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", a.port))
    srv.listen(1)
    srv.settimeout(a.accept_timeout)
    h, n, done, peer = hashlib.sha256(), 0, False, ""
    try:
        conn, addr = srv.accept()
        peer = addr[0]
        conn.settimeout(a.idle_timeout)
        while True:
            chunk = conn.recv(1 << 16)
            if not chunk:
                done = True
                break
            h.update(chunk)
            n += len(chunk)
    except (socket.timeout, OSError) as e:
        print(f"receiver: {e}", file=sys.stderr)
    with open(a.result + ".tmp", "w") as f:
        json.dump({"bytes": n, "sha256": h.hexdigest(), "eof": done, "from": peer}, f)
    os.rename(a.result + ".tmp", a.result)
    return 0 if done else 1


def send_main(argv):
    p = argparse.ArgumentParser(prog="datapath.py _send")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--connect-timeout", type=float, required=True)
    p.add_argument("--timeout", type=float, required=True)
    a = p.parse_args(argv)
    with open(a.file, "rb") as f:
        data = f.read()
    try:
        s = socket.create_connection((a.host, a.port), timeout=a.connect_timeout)
        s.settimeout(a.timeout)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        # The receiver closes once it has read to EOF: all data arrived.
        while s.recv(4096):
            pass
    except (socket.timeout, OSError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


# --- report -------------------------------------------------------------------


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fmt_ratio(x):
    return f"{x:.2f}" if x is not None else ""


def report(args, settings, topologies, table, wire_out, meta):
    lines = []
    say = lines.append
    say(f"Datapath cost, {meta['when']} at {meta['commit']}: kernel {meta['kernel']}, "
        f"{meta['cpus']} CPUs, iperf3 {meta['iperf3']}, one TCP stream, "
        f"{args.seconds} s per run after a {args.warmup} s warm-up, "
        f"{args.rounds} round(s) ({'medians' if args.rounds > 1 else 'single values'}), "
        f"load {meta['load_before']} before / {meta['load_after']} after.")
    if "background" in meta:
        b = meta["background"]
        say("")
        say(f"Other work on the machine (all cores busy, sampled for 0.5 s before each run): "
            f"median {b['median']:.0%}, max {b['max']:.0%}.")
    say("")
    if table:
        say("Throughput, Gbit/s (ratio to untouched):")
        say("")
        say("| setting | " + " | ".join(t[1] for t in topologies) + " | on the wire |")
        say("| --- | " + " | ".join("---:" for _ in topologies) + " | --- |")
        for s in settings:
            cells = []
            for t in topologies:
                row = table[(s.key, t[0])]
                cells.append(f"{row['gbps']:.2f} ({fmt_ratio(row.get('gbps_ratio'))})")
            say(f"| {s.label} | " + " | ".join(cells) + f" | {wire_cell(wire_out, s)} |")
        say("")
        say("CPU seconds (all cores, /proc/stat) per GB moved (ratio to untouched):")
        say("")
        say("| setting | " + " | ".join(t[1] for t in topologies) + " |")
        say("| --- | " + " | ".join("---:" for _ in topologies) + " |")
        for s in settings:
            cells = []
            for t in topologies:
                row = table[(s.key, t[0])]
                cells.append(f"{row['cpu_s_per_gb']:.3f} ({fmt_ratio(row.get('cpu_ratio'))})")
            say(f"| {s.label} | " + " | ".join(cells) + " |")
        say("")
    if table and wire_out:
        lines.extend(verdicts(settings, topologies, table, wire_out))
    if wire_out:
        say(f"On the wire: {args.wire_bytes} random bytes over TCP from a pod to the peer "
            "through the simulated broken NIC (brokennic), per setting. NIC: the TCP "
            "segments it got from the node (a frame above the MTU it cannot send on), by checksum (valid / partial), and the "
            "largest frame. Host end: what the sending pod's host-side veth received "
            "(wirecheck, after that end's GRO): segments, how many are above the MTU "
            "(TSO packets the pod sent, or segments that end's GRO merged), and how many "
            "the kernel marked CHECKSUM_PARTIAL. Then whether the data arrived intact "
            "(size and SHA-256), and the same transfer between two pods on the node:")
        say("")
        say("| setting | bridge pod to peer (routed) | ptp pod to peer (NAT) | pod to pod on the node "
            "(bridge, ptp) | verdict |")
        say("| --- | --- | --- | --- | --- |")
        for s in settings:
            w = wire_out.get(s.key)
            if not w:
                continue
            p = w["paths"]
            cells = [wire_peer_cell(p["bridge-peer"]), wire_peer_cell(p["ptp-peer"]),
                     f"{intact_text(p['bridge-pod'])}, {intact_text(p['ptp-pod'])}"]
            verdict = "**correct**" if w["correct"] else "**not correct**"
            if not w["expected"]:
                verdict += " (UNEXPECTED)"
            say(f"| {s.label} | " + " | ".join(cells) + f" | {verdict} |")
        say("")
    for s in settings:
        if s.stand_in:
            say(f"The {s.key} row is a stand-in, not the product: `ethtool -K {UPLINK} "
                f"{' '.join(s.stand_in)}` on the node's uplink, because UPLINK_ENTRY in "
                f"{os.path.basename(__file__)} is None (set it once csum-offload has "
                "`apply: \"uplink\"`). "
                "The other rows are applied by csum-offload's CNI ADD unless marked refused.")
            say("")
        if s.refused:
            say(f"The {s.key} row (a candidate, not an offered setting) was refused by this "
                f"csum-offload build: \"{s.refused[:300]}\". The row measures the same kernel "
                "state, made with ethtool -K on every pod end.")
            say("")
    return "\n".join(lines)


def verdicts(settings, topologies, table, wire_out):
    """The issue's goals, and the cheapest veth setting the wire proved,
    from this run's numbers."""
    out = []
    keys = {s.key for s in settings}
    topo = {t[0] for t in topologies}
    ratio = lambda k, t: table[(k, t)]["gbps_ratio"]  # noqa: E731
    if {"uplink", "both"} <= keys and {"bridge", "ptp", "pod-peer"} <= topo and "uplink" in wire_out:
        on_node = min(ratio("uplink", "bridge"), ratio("uplink", "ptp"))
        up, both = table[("uplink", "pod-peer")]["gbps"], table[("both", "pod-peer")]["gbps"]
        partial = sum(p["nic"].get("partial", 0) for p in wire_out["uplink"]["paths"].values()
                      if "nic" in p)
        out += [
            "Goals (uplink placement):",
            "",
            f"- on-node pod to pod at least 95% of untouched: bridge {ratio('uplink', 'bridge'):.0%}, "
            f"ptp {ratio('uplink', 'ptp'):.0%}: {'met' if on_node >= 0.95 else 'NOT met'}",
            f"- pod to off-node above the veth fix (apply: both): {up:.2f} against {both:.2f} Gbit/s: "
            f"{'met' if up > both else 'NOT met'}",
            f"- partial checksums reaching the simulated NIC: {partial}"
            f"{', data intact' if wire_out['uplink']['correct'] else ', NOT correct'}: "
            f"{'met' if partial == 0 and wire_out['uplink']['correct'] else 'NOT met'}",
            "",
        ]
    # Only what this csum-offload build can be configured to do.
    veth = [s for s in settings if s.kind != "reference" and s.key != "uplink"
            and not s.refused and wire_out.get(s.key, {}).get("correct")]
    if veth:
        out += ["Cheapest veth setting the wire check proved, per topology "
                "(highest throughput; lowest CPU per GB):", ""]
        for key, label, _c, _s in topologies:
            fast = max(veth, key=lambda s: table[(s.key, key)]["gbps"])
            lean = min(veth, key=lambda s: table[(s.key, key)]["cpu_s_per_gb"])
            out.append(f"- {label}: {fast.label} ({table[(fast.key, key)]['gbps']:.2f} Gbit/s, "
                       f"{ratio(fast.key, key):.2f} of untouched); {lean.label} "
                       f"({table[(lean.key, key)]['cpu_s_per_gb']:.3f} CPU s/GB)")
        out.append("")
    return out


def wire_cell(wire_out, s):
    w = wire_out.get(s.key) if wire_out else None
    if not w:
        return "not checked"
    return "correct" if w["correct"] else "**not correct**"


def intact_text(v):
    if v["intact"]:
        return f"intact ({v['ms']} ms)"
    return f"NOT intact ({v['bytes_arrived']} B arrived; sender: {v['sender']})"


def wire_peer_cell(v):
    nic, h = v["nic"], v["host_in"]
    too_big = f", {nic['send_errors']} too large to send" if nic.get("send_errors") else ""
    bad = f", {nic['bad']} bad" if nic.get("bad") else ""
    return (f"NIC: {nic.get('valid', 0)} valid / {nic.get('partial', 0)} partial{bad}, "
            f"max {nic.get('max_frame', 0)} B{too_big}; host end: {h.get('tcp', 0)} segments, "
            f"{h.get('large', 0)} above the MTU (max {h.get('max_frame', 0)} B), "
            f"{h.get('kernel_partial', 0)} marked partial; "
            f"{intact_text(v)}")


def meta_info():
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ver = run(["iperf3", "--version"], check=False).stdout.split()
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": (commit.stdout.strip() or "?") + ("+changes" if dirty.stdout.strip() else ""),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "iperf3": ver[1] if len(ver) > 1 else "?",
        "load_before": load(),
    }


# --- main -----------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default=os.path.join(REPO, "target/release/csum-offload"))
    p.add_argument("--wire-dir", default=os.path.join(REPO, "target/release"),
                   help="where brokennic is (cargo build --release -p csum-offload-wire)")
    p.add_argument("--seconds", type=int, default=3, help="measured iperf3 run (s)")
    p.add_argument("--warmup", type=int, default=1, help="discarded warm-up run (s), 0 for none")
    p.add_argument("--rounds", type=int, default=1, help="runs per cell; the table shows medians")
    p.add_argument("--only", choices=["throughput", "wire"], help="one part only")
    p.add_argument("--settings", help="comma-separated setting keys (default: all)")
    p.add_argument("--topologies", help="comma-separated topology keys (default: all)")
    p.add_argument("--wire-bytes", type=int, default=4 << 20)
    p.add_argument("--connect-timeout", type=float, default=4,
                   help="wire part: how long a sender tries to connect")
    p.add_argument("--limit", type=int,
                   help="hard time limit of the run (s); default: 300 plus 8 s per iperf3 cell")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, captures)")
    p.add_argument("--json", help="write every sample and the summary here")
    p.add_argument("--markdown", help="write the report tables here too")
    a = p.parse_args(argv)
    if not (1 <= a.seconds <= 60 and 0 <= a.warmup <= 10 and 1 <= a.rounds <= 20):
        p.error("--seconds 1..60, --warmup 0..10, --rounds 1..20")
    return a


def pick(items, csv, keyof, what):
    if not csv:
        return items
    keys = csv.split(",")
    unknown = [k for k in keys if k not in [keyof(i) for i in items]]
    if unknown:
        sys.exit(f"datapath: unknown {what} {unknown}; known: {[keyof(i) for i in items]}")
    return [i for i in items if keyof(i) in keys]


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("datapath: must run as root (netns, veth, AF_PACKET)")
    for tool in ("ip", "nsenter", "ethtool", "iperf3", "ss", "iptables"):
        if run(["sh", "-c", f"command -v {tool}"], check=False).returncode != 0:
            sys.exit(f"datapath: {tool} is missing; run: bash e2e/install-deps.sh")
    for plugin in ("bridge", "ptp", "host-local"):
        if not os.access(os.path.join(CNI_DIR, plugin), os.X_OK):
            sys.exit(f"datapath: {CNI_DIR}/{plugin} is missing (containernetworking-plugins)")
    args.binary = os.path.abspath(args.binary)
    global BINARY
    BINARY = args.binary
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"datapath: {args.binary} is missing; run: make build")
    settings = pick(SETTINGS, args.settings, lambda s: s.key, "setting")
    if "untouched" not in [s.key for s in settings]:
        settings = [SETTINGS[0]] + settings  # the reference every ratio needs
    topologies = pick(TOPOLOGIES, args.topologies, lambda t: t[0], "topology")
    do_wire = args.only != "throughput"
    for tool in ("brokennic", "wirecheck") if do_wire else ():
        if not os.access(os.path.join(args.wire_dir, tool), os.X_OK):
            sys.exit(f"datapath: {args.wire_dir}/{tool} is missing; run: make wire-tools")

    lock = open(LOCK, "w")
    deadline = time.monotonic() + 600
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                sys.exit(f"datapath: {LOCK} held by another run for 600 s")
            time.sleep(1)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, on_signal)
    if args.limit is None:
        cells = 0 if args.only == "wire" else len(settings) * len(topologies) * args.rounds
        args.limit = 300 + cells * (args.warmup + args.seconds + 4)
    signal.alarm(args.limit)
    tmp = tempfile.mkdtemp(prefix="dpb-datapath.")
    rc = 0
    try:
        reap_stale()
        meta = meta_info()
        log(f"datapath: load {meta['load_before']}, work dir {tmp}")
        table, wire_out, samples, states = {}, {}, {}, {}
        if do_wire:
            log("datapath: on the wire (brokennic as the uplink NIC)")
            wire_out = wire(args, tmp, settings)
        if args.only != "wire":
            log(f"datapath: throughput, {len(settings)} settings x {len(topologies)} topologies")
            samples, states = throughput(args, tmp, settings, topologies)
            table = summarize(samples, settings, topologies)
            bg = [m["background_util"] for runs in samples.values() for m in runs]
            meta["background"] = {"median": statistics.median(bg), "max": max(bg)}
        meta["load_after"] = load()
        text = report(args, settings, topologies, table, wire_out, meta)
        print(text)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(text + "\n")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({
                    "meta": meta, "args": vars(args),
                    "settings": {s.key: s.label for s in settings},
                    "refused": {s.key: s.refused for s in settings if s.refused},
                    "samples": {f"{k[0]}/{k[1]}": v for k, v in samples.items()},
                    "table": {f"{k[0]}/{k[1]}": v for k, v in table.items()},
                    "states": states, "wire": wire_out,
                }, f, indent=1)
        unexpected = [k for k, w in wire_out.items() if not w["expected"]]
        if unexpected:
            log(f"datapath: the wire verdict differs from the kernel's mechanics for {unexpected}")
            rc = 1
    except Abort as e:
        log(f"datapath: {e}")
        rc = 1
    finally:
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        cleanup()
        if rc == 0 and not args.keep:
            subprocess.run(["rm", "-rf", "--one-file-system", tmp])
        else:
            log(f"datapath: logs kept in {tmp}")
    return rc


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_recv":
        sys.exit(recv_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "_send":
        sys.exit(send_main(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
