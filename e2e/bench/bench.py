#!/usr/bin/env python3
"""ADD latency of csum-offload against Debian's reference `tuning` plugin.

Every command is run the way a container runtime runs a CNI plugin: a
fresh process, CNI_* variables in the environment, the network config on
stdin, stdout captured. Three commands alternate in one run, in a shuffled
order each round so machine noise hits them alike:

  floor   a static no-op binary built here (reads stdin to EOF, exits 0):
          what spawning any process from this harness costs
  tuning  /usr/lib/cni/tuning ADD setting one sysctl on the pod's interface
  csum    csum-offload ADD with the txgbe policy (hostDriver: txgbe) on both
          veth ends, after the harness turned TX checksum back on, so every
          timed ADD really changes the features ("changing"); the ADD right
          after it finds them already off ("already set")

plus csum-offload CHECK, DEL and VERSION, an ADD that detects the host NIC
itself (no hostDriver: default route -> macvlan -> veth uplink), and tuning
CHECK and DEL, for context.
The net ratio is (csum - floor) / (tuning - floor) on the medians.
--reference LABEL=PATH adds another tuning build (e.g. the plugins v1.10.0
tuning from e2e/tools) with the same config in the rotation, and a second
ratio against it.

Footprint: size of the binary, peak RSS of one ADD (/usr/bin/time), the
syscalls of one ADD (strace -c -f).

The harness moves itself into a private network namespace first (the
"host"), so the real host's interfaces are never touched; the pod netns is
a named one under /run/netns, deleted on exit. No traffic is sent.
"""

import argparse
import ctypes
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CLONE_NEWNET = 0x40000000
HOST_IF = "csobh0"
POD_IF = "eth0"
CONTAINER_ID = "bench0123456789abcdef"
CNI_VERSION = "1.0.0"  # the newest version tuning 1.1.1 speaks
TX_FEATURE = "tx-checksum-ip-generic"


def sh(*argv, check=True):
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and out.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed: {out.stderr.strip()}")
    return out.stdout


def enter_private_netns():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        sys.exit(f"bench: unshare(CLONE_NEWNET): {os.strerror(err)} (run as root)")
    sh("ip", "link", "set", "lo", "up")


class Lab:
    """A pod netns with a veth pair into the harness's private host netns."""

    def __init__(self):
        self.pod = f"csob-{os.getpid()}"
        self.netns = f"/run/netns/{self.pod}"
        sh("ip", "netns", "add", self.pod)
        sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", POD_IF, "netns", self.pod)
        sh("ip", "link", "set", HOST_IF, "up")
        sh("ip", "-n", self.pod, "link", "set", POD_IF, "up")
        # An uplink for the auto-detection case: a default route through a
        # macvlan on a veth whose far end is parked in a third netns, so
        # detection follows a real stacked device down to a driver ("veth").
        self.far = f"{self.pod}-far"
        sh("ip", "netns", "add", self.far)
        sh("ip", "link", "add", "csobup0", "type", "veth", "peer", "name", "far0", "netns", self.far)
        sh("ip", "link", "set", "csobup0", "up")
        sh("ip", "link", "add", "csobmv0", "link", "csobup0", "type", "macvlan", "mode", "bridge")
        sh("ip", "addr", "add", "10.254.0.2/24", "dev", "csobmv0")
        sh("ip", "link", "set", "csobmv0", "up")
        sh("ip", "route", "add", "default", "via", "10.254.0.1", "dev", "csobmv0")

    def close(self):
        sh("ip", "netns", "del", self.pod, check=False)
        sh("ip", "netns", "del", self.far, check=False)

    def ethtool(self, side, *args):
        if side == "host":
            return sh("ethtool", *args)
        return sh("nsenter", f"--net={self.netns}", "ethtool", *args)

    def reset_tx_on(self):
        self.ethtool("host", "-K", HOST_IF, "tx", "on")
        self.ethtool("pod", "-K", POD_IF, "tx", "on")

    def tx_state(self):
        """The TX checksum feature on (pod end, host end), e.g. ("off", "off")."""
        def value(out):
            m = re.search(rf"^\s*{TX_FEATURE}: (\w+)", out, re.M)
            return m.group(1) if m else "?"
        return (value(self.ethtool("pod", "-k", POD_IF)), value(self.ethtool("host", "-k", HOST_IF)))


def prev_result(netns):
    """What ptp/bridge + host-local hand to the next plugin of the chain."""
    return {
        "cniVersion": CNI_VERSION,
        "interfaces": [
            {"name": HOST_IF, "mac": "aa:bb:cc:dd:ee:01"},
            {"name": POD_IF, "mac": "aa:bb:cc:dd:ee:02", "sandbox": netns},
        ],
        "ips": [{"address": "10.250.0.2/24", "gateway": "10.250.0.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.250.0.1"}],
        "dns": {"nameservers": ["10.250.0.1"]},
    }


def build_noop(tmp):
    out = os.path.join(tmp, "noop")
    sh("cc", "-static", "-O2", "-s", "-o", out, os.path.join(HERE, "noop.c"))
    return out


def env_for(command, netns):
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": CONTAINER_ID,
        "CNI_NETNS": netns,
        "CNI_IFNAME": POD_IF,
        "CNI_PATH": "/usr/lib/cni",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }


class Stderr:
    """Where the plugins' stderr goes. libcni (containerd, CRI-O) captures a
    plugin's stdout but passes its own stderr straight through, so the
    harness does the same: stderr is a file, read back after each run
    (outside the timing) to check what the plugin logged."""

    fd = None

    @classmethod
    def open(cls, path):
        cls.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)

    @classmethod
    def mark(cls):
        return os.lseek(cls.fd, 0, os.SEEK_END)

    @classmethod
    def since(cls, mark):
        end = os.lseek(cls.fd, 0, os.SEEK_END)
        return os.pread(cls.fd, end - mark, mark)


class Run:
    def __init__(self, status, stdout, stderr, rusage):
        self.returncode = os.waitstatus_to_exitcode(status)
        self.stdout = stdout
        self.stderr = stderr
        self.rusage = rusage


def timed(argv, env, stdin):
    """One run the way a runtime does it, with as little harness in the
    timing as possible: the config already sits in the stdin pipe (it is
    far below the pipe's 64 KiB), stdout goes to a memfd read afterwards,
    and the clock covers posix_spawn to wait4. wait4 also gives the child's
    own rusage (peak RSS, CPU time)."""
    r, w = os.pipe()
    os.write(w, stdin)
    os.close(w)
    out = os.memfd_create("stdout")
    mark = Stderr.mark()
    actions = [(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, Stderr.fd, 2)]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, rusage = os.wait4(pid, 0)
    t1 = time.perf_counter_ns()
    os.close(r)
    size = os.lseek(out, 0, os.SEEK_END)
    stdout = os.pread(out, size, 0)
    os.close(out)
    return (t1 - t0) / 1e6, Run(status, stdout, Stderr.since(mark), rusage)


def expect(name, p, want_stdout=None):
    if p.returncode != 0:
        sys.exit(f"bench: {name} exited {p.returncode}: {p.stdout!r} {p.stderr!r}")
    if want_stdout is not None and json.loads(p.stdout) != want_stdout:
        sys.exit(f"bench: {name} printed {p.stdout!r}, expected the prevResult")


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}"


class Runner:
    def __init__(self, args, lab, noop):
        self.lab = lab
        prev = prev_result(lab.netns)
        self.prev = prev
        base = {"cniVersion": CNI_VERSION, "name": "bench"}
        self.cso = args.binary
        self.cso_conf = json.dumps({**base, "type": "csum-offload", "hostDriver": "txgbe", "prevResult": prev}).encode()
        self.cso_del = json.dumps({**base, "type": "csum-offload", "hostDriver": "txgbe"}).encode()
        # No hostDriver: the NIC is detected on every ADD, as in a default
        # install; the policy names the uplink's driver so it applies.
        self.cso_detect = json.dumps({**base, "type": "csum-offload", "drivers": {"veth": {"tx": False}},
                                      "prevResult": prev}).encode()
        self.tuning = args.tuning
        self.sysctl = f"net.ipv4.conf.{POD_IF}.rp_filter"
        self.tuning_conf = [
            json.dumps({**base, "type": "tuning", "sysctl": {self.sysctl: v}, "prevResult": prev}).encode()
            for v in ("1", "2")
        ]
        self.tuning_del = [
            json.dumps({**base, "type": "tuning", "sysctl": {self.sysctl: v}}).encode() for v in ("1", "2")
        ]
        self.noop = noop
        self.samples = {k: [] for k in (
            "floor", "tuning ADD", "csum ADD changing", "csum ADD already set",
            "csum CHECK", "csum DEL", "csum VERSION", "csum ADD detect changing",
            "tuning CHECK", "tuning DEL")}
        self.candidates = args.candidate or []
        for label, _ in self.candidates:
            self.samples[f"{label} ADD changing"] = []
        self.references = args.reference or []
        for label, _ in self.references:
            for verb in ("ADD", "CHECK", "DEL"):
                self.samples[f"{label} {verb}"] = []
        self.usage = {}
        self.round = 0

    def add(self, key, ms, run, record):
        if record:
            self.samples[key].append(ms)
            # ru_maxrss is no use here: posix_spawn's child runs in the
            # harness's memory until exec, so it reports Python's RSS.
            self.usage.setdefault(key, []).append(run.rusage.ru_minflt)

    def unit_floor(self, record):
        ms, p = timed([self.noop], env_for("ADD", self.lab.netns), self.cso_conf)
        expect("noop", p)
        self.add("floor", ms, p, record)

    def unit_tuning(self, record, label="tuning", path=None):
        v = self.round % 2
        netns = self.lab.netns
        path = path or self.tuning
        ms, p = timed([path], env_for("ADD", netns), self.tuning_conf[v])
        expect(f"{label} ADD", p)
        self.add(f"{label} ADD", ms, p, record)
        ms, p = timed([path], env_for("CHECK", netns), self.tuning_conf[v])
        expect(f"{label} CHECK", p)
        self.add(f"{label} CHECK", ms, p, record)
        ms, p = timed([path], env_for("DEL", netns), self.tuning_del[v])
        expect(f"{label} DEL", p)
        self.add(f"{label} DEL", ms, p, record)

    def unit_reference(self, label, path):
        return lambda record: self.unit_tuning(record, label, path)

    def unit_csum(self, record):
        netns = self.lab.netns
        self.lab.reset_tx_on()
        ms, p = timed([self.cso], env_for("ADD", netns), self.cso_conf)
        expect("csum-offload ADD", p, self.prev)
        if p.stderr.count(b"; changed: [tx-") != 2:
            sys.exit(f"bench: the 'changing' ADD did not change both ends: {p.stderr!r}")
        self.add("csum ADD changing", ms, p, record)
        ms, p = timed([self.cso], env_for("ADD", netns), self.cso_conf)
        expect("csum-offload ADD (already set)", p, self.prev)
        if p.stderr.count(b"; changed: [];") != 2:
            sys.exit(f"bench: the 'already set' ADD changed something: {p.stderr!r}")
        self.add("csum ADD already set", ms, p, record)
        ms, p = timed([self.cso], env_for("CHECK", netns), self.cso_conf)
        expect("csum-offload CHECK", p)
        self.add("csum CHECK", ms, p, record)
        ms, p = timed([self.cso], env_for("DEL", netns), self.cso_del)
        expect("csum-offload DEL", p)
        self.add("csum DEL", ms, p, record)
        # VERSION touches no netns: the binary's own start-up and exit cost.
        ms, p = timed([self.cso], env_for("VERSION", netns), self.cso_del)
        expect("csum-offload VERSION", p)
        self.add("csum VERSION", ms, p, record)
        # The same with auto-detection (default route -> macvlan -> veth).
        self.lab.reset_tx_on()
        ms, p = timed([self.cso], env_for("ADD", netns), self.cso_detect)
        expect("csum-offload ADD (detect)", p, self.prev)
        if p.stderr.count(b"; changed: [tx-") != 2:
            sys.exit(f"bench: the auto-detect ADD did not change both ends: {p.stderr!r}")
        self.add("csum ADD detect changing", ms, p, record)
        if self.round % 50 == 0 and self.lab.tx_state() != ("off", "off"):
            sys.exit(f"bench: TX checksum not off after ADD: {self.lab.tx_state()}")

    def unit_candidate(self, label, path):
        def unit(record):
            self.lab.reset_tx_on()
            ms, p = timed([path], env_for("ADD", self.lab.netns), self.cso_conf)
            expect(f"{label} ADD", p, self.prev)
            if p.stderr.count(b"; changed: [tx-") != 2:
                sys.exit(f"bench: {label}: the 'changing' ADD did not change both ends: {p.stderr!r}")
            self.add(f"{label} ADD changing", ms, p, record)
        return unit

    def run(self, warmup, iterations, rng):
        units = [self.unit_floor, self.unit_tuning, self.unit_csum]
        units += [self.unit_candidate(label, path) for label, path in self.candidates]
        units += [self.unit_reference(label, path) for label, path in self.references]
        for i in range(warmup + iterations):
            self.round = i
            rng.shuffle(units)
            for unit in units:
                unit(i >= warmup)


def stats(values):
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": pct(values, 0.95),
        "min": min(values),
        "mean": statistics.fmean(values),
    }


def footprint(args, runner, tmp):
    """Peak RSS and syscalls of one ADD each, after a reset (changing case)."""
    lab = runner.lab
    env = env_for("ADD", lab.netns)
    out = {"size_bytes": os.path.getsize(args.binary)}
    file_out = sh("file", "-b", args.binary, check=False) if shutil.which("file") else ""
    out["file"] = file_out.strip()

    def peak_rss(argv, stdin, reset):
        values = []
        for _ in range(5):
            if reset:
                lab.reset_tx_on()
            p = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], input=stdin, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            expect(argv[0], p)
            values.append(int(p.stderr.decode().strip().splitlines()[-1]))
        return statistics.median(values)

    def syscalls(argv, stdin, reset):
        if reset:
            lab.reset_tx_on()
        trace = os.path.join(tmp, "strace.out")
        p = subprocess.run(["strace", "-f", "-c", "-o", trace, *argv], input=stdin, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        expect(argv[0], p)
        with open(trace) as f:
            text = f.read()
        m = re.search(r"^\S+\s+\S+\s+\S+\s+(\d+)\s+(\d+)?\s*total$", text, re.M)
        return int(m.group(1)) if m else None

    if os.path.exists("/usr/bin/time"):
        out["peak_rss_kib"] = {
            "csum ADD": peak_rss([args.binary], runner.cso_conf, True),
            "tuning ADD": peak_rss([runner.tuning], runner.tuning_conf[0], False),
            "floor": peak_rss([runner.noop], runner.cso_conf, False),
        }
        for label, path in runner.references:
            out["peak_rss_kib"][f"{label} ADD"] = peak_rss([path], runner.tuning_conf[0], False)
    if shutil.which("strace"):
        out["syscalls"] = {
            "csum ADD": syscalls([args.binary], runner.cso_conf, True),
            "tuning ADD": syscalls([runner.tuning], runner.tuning_conf[0], False),
            "floor": syscalls([runner.noop], runner.cso_conf, False),
        }
        for label, path in runner.references:
            out["syscalls"][f"{label} ADD"] = syscalls([path], runner.tuning_conf[0], False)
        if args.strace_detail:
            lab.reset_tx_on()
            subprocess.run(["strace", "-f", "-tt", "-T", "-o", args.strace_detail, args.binary],
                           input=runner.cso_conf, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return out


def report(results):
    s = results["latency_ms"]
    print(f"\nmachine: {results['machine']}")
    print(f"load average: before {results['load_before']}, after {results['load_after']}")
    print(f"{results['iterations']} iterations per command after {results['warmup']} warm-up rounds\n")
    # faults: median minor page faults of each run (wait4's rusage).
    print(f"{'command':26} {'median ms':>10} {'p95 ms':>10} {'min ms':>10} {'net median':>11} {'faults':>7}")
    floor = s["floor"]["median"]
    for name, v in s.items():
        net = "" if name == "floor" else f"{v['median'] - floor:.3f}"
        print(f"{name:26} {v['median']:10.3f} {v['p95']:10.3f} {v['min']:10.3f} {net:>11} {v['minflt']:7.0f}")
    print()
    for case in ("changing", "already set"):
        print(f"net ratio (csum ADD {case} - floor) / (tuning ADD - floor): {results['ratio'][case]:.3f}")
        for label, r in results.get("ratio_vs", {}).items():
            print(f"net ratio (csum ADD {case} - floor) / ({label} ADD - floor): {r[case]:.3f}")
    fp = results.get("footprint", {})
    if fp:
        print(f"\nbinary: {fp['size_bytes']} bytes ({fp['size_bytes'] / 1048576:.2f} MiB); {fp['file']}")
        for key in ("peak_rss_kib", "syscalls"):
            if key in fp:
                print(f"{key}: " + ", ".join(f"{k} {v}" for k, v in fp[key].items()))


def candidate(text):
    label, sep, path = text.partition("=")
    if not sep or not label or not os.access(path, os.X_OK):
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH of an executable, got {text!r}")
    return label, os.path.abspath(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(REPO, "target/release/csum-offload"))
    ap.add_argument("--tuning", default="/usr/lib/cni/tuning")
    ap.add_argument("--reference", action="append", type=candidate, metavar="LABEL=PATH",
                    help="another tuning build in the rotation (ADD, CHECK, DEL), with its own ratio")
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--no-footprint", action="store_true")
    ap.add_argument("--strace-detail", help="write strace -f -tt -T of one ADD here")
    ap.add_argument("--candidate", action="append", type=candidate, metavar="LABEL=PATH",
                    help="another csum-offload build whose changing ADD joins the rotation (A/B of an optimisation)")
    args = ap.parse_args()
    args.binary = os.path.abspath(args.binary)
    if os.geteuid() != 0:
        sys.exit("bench: must run as root (netns, veth, ethtool)")
    for path in (args.binary, args.tuning):
        if not os.access(path, os.X_OK):
            sys.exit(f"bench: {path} is not an executable (make build; apt-get install containernetworking-plugins)")
    for tool in ("ip", "ethtool", "nsenter", "cc"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found")

    with tempfile.TemporaryDirectory(prefix="csob-") as tmp:
        noop = build_noop(tmp)
        Stderr.open(os.path.join(tmp, "stderr.log"))
        enter_private_netns()
        lab = Lab()
        try:
            runner = Runner(args, lab, noop)
            before = load()
            started = time.monotonic()
            runner.run(args.warmup, args.iterations, random.Random(args.seed))
            elapsed = time.monotonic() - started
            after = load()
            lat = {k: stats(v) for k, v in runner.samples.items()}
            for k, v in runner.usage.items():
                lat[k]["minflt"] = statistics.median(v)
            floor = lat["floor"]["median"]
            tuning_net = lat["tuning ADD"]["median"] - floor
            results = {
                "machine": machine(),
                "binary": args.binary,
                "tuning": args.tuning,
                "iterations": args.iterations,
                "warmup": args.warmup,
                "seconds": round(elapsed, 1),
                "load_before": before,
                "load_after": after,
                "latency_ms": lat,
                "ratio": {
                    "changing": (lat["csum ADD changing"]["median"] - floor) / tuning_net,
                    "already set": (lat["csum ADD already set"]["median"] - floor) / tuning_net,
                },
            }
            results["ratio_vs"] = {
                label: {case: (lat[f"csum ADD {case}"]["median"] - floor) / (lat[f"{label} ADD"]["median"] - floor)
                        for case in ("changing", "already set")}
                for label, _ in (args.reference or [])
            }
            if not args.no_footprint:
                results["footprint"] = footprint(args, runner, tmp)
        finally:
            lab.close()
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
