"""What the tests read and change on the node: the primary CNI's conflist,
offload state of veth ends, background samplers, leak inventory.

The test process runs in the node's network and mount namespace (run.sh),
so the node's links, /etc/cni/net.d and /var/lib/cni are its own.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import threading
import time

CONF_DIR = "/etc/cni/net.d"
BIN_DIR = "/opt/cni/bin"
CNI_CACHE = "/var/lib/cni/results"
HOST_LOCAL_DIR = "/var/lib/cni/networks"
NET_NAME = "e2ecri-bridge"
BRIDGE = "e2ecribr0"
SUBNET = "10.61.1.0/24"
PRIMARY = "10-e2ecri-bridge.conflist"


def sh(*cmd, check=True, timeout=30):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


# --- the primary CNI ---------------------------------------------------------


def primary_conflist():
    """The conflist the bridge 'primary CNI' writes (no csum-offload)."""
    return {
        "cniVersion": "1.0.0",
        "name": NET_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET, "gateway": "10.61.1.1"}]]},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def write_primary(how="rename", name=PRIMARY):
    """Writes the primary's conflist as primary CNIs do: `rename` (temp file
    in the same dir, then rename: kindnet, Calico), or `inplace`
    (truncate and write the file itself: flannel's cp)."""
    text = json.dumps(primary_conflist(), indent=2) + "\n"
    path = os.path.join(CONF_DIR, name)
    if how == "rename":
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.e2ecri-tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, path)
    elif how == "inplace":
        with open(path, "w") as f:
            f.write(text)
    else:
        raise ValueError(how)


def clear_conf_dir():
    for f in os.listdir(CONF_DIR):
        path = os.path.join(CONF_DIR, f)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def entries(name=PRIMARY):
    """csum-offload entries in the primary conflist (None: unreadable)."""
    try:
        conf = json.load(open(os.path.join(CONF_DIR, name)))
    except (OSError, ValueError):
        return None
    return [p for p in conf.get("plugins", []) if p.get("type") == "csum-offload"]


def entry_count(name=PRIMARY):
    e = entries(name)
    return -1 if e is None else len(e)


# --- veth ends -----------------------------------------------------------------


def tx_checksumming(netns, ifname):
    """ethtool -k's tx-checksumming (on/off) of IFNAME in NETNS (None: the
    node's own netns)."""
    cmd = ["ethtool", "-k", ifname]
    if netns:
        cmd = ["nsenter", f"--net={netns}"] + cmd
    out = sh(*cmd)
    m = re.search(r"^tx-checksumming: (\w+)", out, re.M)
    if not m:
        raise RuntimeError(f"no tx-checksumming in ethtool -k {ifname}")
    return m.group(1)


def host_peer(netns):
    """The node-side end of the pod's eth0, from the kernel's peer index
    (eth0@ifN), not from the plugin under test."""
    out = sh("nsenter", f"--net={netns}", "ip", "-o", "link", "show", "dev", "eth0")
    m = re.match(r"\d+: eth0@if(\d+):", out)
    if not m:
        raise RuntimeError(f"eth0 in {netns} is not a veth: {out}")
    for line in sh("ip", "-o", "link", "show").splitlines():
        idx, name = line.split(": ")[:2]
        if idx == m.group(1):
            return name.split("@")[0]
    raise RuntimeError(f"no link with index {m.group(1)} on the node")


def offload_of(pod):
    """(pod end, node end, node end's name) tx-checksumming of a pod."""
    ns = pod.netns()
    peer = host_peer(ns)
    return tx_checksumming(ns, "eth0"), tx_checksumming(None, peer), peer


# --- samplers ----------------------------------------------------------------------


class Sampler(threading.Thread):
    """Calls FN every INTERVAL seconds until stopped; keeps (time, value)."""

    def __init__(self, fn, interval, name):
        super().__init__(daemon=True, name=name)
        self.fn, self.interval = fn, interval
        self.samples = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        # Bounded: at most 20 minutes of samples.
        end = time.monotonic() + 1200
        while not self.stopping.is_set() and time.monotonic() < end:
            try:
                value = self.fn()
            except Exception as e:
                value = ("error", str(e))
            with self.lock:
                self.samples.append((time.monotonic(), value))
            self.stopping.wait(self.interval)

    def since(self, t0, t1=None):
        with self.lock:
            return [(t, v) for t, v in self.samples if t >= t0 and (t1 is None or t <= t1)]

    def stop(self):
        self.stopping.set()
        self.join(10)


# --- leaks -------------------------------------------------------------------------


def inventory(work):
    """What pods leave behind on the node when they are gone."""
    veths = [l.split(": ")[1].split("@")[0] for l in sh("ip", "-o", "link", "show", "type", "veth").splitlines()]
    return {
        "veths": sorted(v for v in veths if not v.startswith("e2ecri-up")),
        "netns": sorted(os.path.basename(p) for p in glob.glob("/run/netns/cni-*")),
        "ip allocations": sorted(
            p[len(HOST_LOCAL_DIR) + 1:]
            for p in glob.glob(f"{HOST_LOCAL_DIR}/*/*")
            if not os.path.basename(p).startswith(("last_reserved_ip", "lock"))
        ),
        "libcni cache": sorted(os.path.basename(p) for p in glob.glob(f"{CNI_CACHE}/*")),
        "shims": sorted(shim_pids(work)),
        "pod processes": sorted(cgroup_pids()),
        "cgroups": sorted(
            d for d in glob.glob(f"/sys/fs/cgroup/*/{os.environ.get('CGROUP_ROOT', 'e2ecri')}/*")
            if os.path.isdir(d)
        ),
    }


def shim_pids(work):
    out = []
    for f in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            cmd = open(f, "rb").read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and work.encode() in b" ".join(cmd):
            out.append(f.split("/")[2])
    return out


def cgroup_pids():
    """Processes in the suite's pod cgroups (containers and pause)."""
    root = os.environ.get("CGROUP_ROOT", "e2ecri")
    out = []
    for f in glob.glob("/proc/[0-9]*/cgroup"):
        try:
            if f":/{root}/" in open(f).read():
                out.append(f.split("/")[2])
        except OSError:
            continue
    return out
