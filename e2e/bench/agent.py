#!/usr/bin/env python3
"""The node agent's costs, measured (never asserted):

- a full pass over N existing pairs (`agent --once`), changing them and
  when they are already set;
- the daemon's time to fix a new pair: from the kernel's event for the
  container end leaving the host netns (what a runtime does when it
  starts a container) to the agent's first feature change on the host
  end, both timestamped by `ip -ts monitor link`;
- the daemon's CPU per new pair, and while idle.

Everything runs in network namespaces this script creates (`agb-*`) and
deletes, even when interrupted. Run as root:
    python3 e2e/bench/agent.py --binary target/release/csum-offload
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HOST = "agb-host"


def sh(*cmd, netns=None, check=True, **kw):
    if netns:
        cmd = ("ip", "netns", "exec", netns) + cmd
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def ip_batch(lines, netns=None):
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-force", "-batch", "-"]
    subprocess.run(cmd, input="\n".join(lines) + "\n", check=True, text=True,
                   capture_output=True)


def cleanup(pairs):
    names = [HOST] + [f"agb-p{i}" for i in range(pairs)]
    subprocess.run(["ip", "-force", "-batch", "-"], text=True, capture_output=True,
                   input="\n".join(f"netns del {n}" for n in names) + "\n")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/csum-offload")
    ap.add_argument("--pairs", type=int, default=500)
    ap.add_argument("--new", type=int, default=100)
    ap.add_argument("--idle", type=float, default=60.0)
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    total = args.pairs + args.new
    cleanup(total)
    work = tempfile.mkdtemp(prefix="agb-")
    config = os.path.join(work, "agent.json")
    with open(config, "w") as f:
        json.dump({"hostDriver": "txgbe"}, f)
    state = os.path.join(work, "state", "agent.jsonl")
    daemon = monitor = None
    try:
        # N pods, each a netns with a veth pair to the host.
        ip_batch([f"netns add {HOST}"] + [f"netns add agb-p{i}" for i in range(args.pairs)])
        ip_batch(["link set lo up"] + [
            f"link add agbh{i} type veth peer name eth0 netns agb-p{i}"
            for i in range(args.pairs)], netns=HOST)
        load = open("/proc/loadavg").read().split()[:3]
        print(f"agent bench: {args.pairs} existing pairs, {args.new} new ones, "
              f"load {' '.join(load)}, {os.cpu_count()} CPUs")
        rows = []
        for what in ("changing every pair", "every pair already set"):
            t0 = time.monotonic()
            out = sh(binary, "agent", "--once", "--config", config, "--state-file", state,
                     netns=HOST).stdout
            ms = (time.monotonic() - t0) * 1000
            summary = out.strip().splitlines()[-1]
            rows.append((f"--once over {args.pairs} pairs, {what}", f"{ms:.0f} ms",
                         f"{ms * 1000 / args.pairs:.0f} µs per pair", summary))
        # The daemon, watched by ip monitor with kernel timestamps.
        # Line-buffered, so nothing is lost when it is stopped.
        monitor = subprocess.Popen(["ip", "netns", "exec", HOST, "stdbuf", "-oL", "ip", "-ts",
                                    "monitor", "link"], stdout=subprocess.PIPE, text=True)
        log = open(os.path.join(work, "agent.log"), "w")
        daemon = subprocess.Popen(["ip", "netns", "exec", HOST, binary, "agent", "--config", config,
                                   "--state-file", state, "--resync", "0"], stderr=log)
        deadline = time.monotonic() + 10
        while "watching container veth pairs" not in open(log.name).read():
            if time.monotonic() > deadline:
                sys.exit("the agent did not start")
            time.sleep(0.05)
        # ip netns exec execs the agent: same pid.
        agent_pid = daemon.pid
        time.sleep(0.5)
        cpu0 = cpu_seconds(agent_pid)
        for i in range(args.pairs, total):
            # As a runtime does it: a new netns, both ends in the host, then
            # one moved into it.
            ip_batch([f"netns add agb-p{i}"])
            ip_batch([f"link add agbh{i} type veth peer name agbt{i}",
                      f"link set agbt{i} netns agb-p{i}"], netns=HOST)
            time.sleep(0.02)
        time.sleep(1.0)
        cpu1 = cpu_seconds(agent_pid)
        time.sleep(args.idle)
        cpu2 = cpu_seconds(agent_pid)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=5)
        monitor.send_signal(signal.SIGTERM)
        lines = monitor.communicate(timeout=5)[0].splitlines()
        # ip -ts: "[2026-12-02T08:00:00.123456] ..." then the message.
        stamp = re.compile(r"^\[(\d{4}-\d\d-\d\dT[\d:.]+)\]\s*(.*)$")
        moved, fixed = {}, {}
        for line in lines:
            m = stamp.match(line)
            if not m:
                continue
            t = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + \
                float("0." + m.group(1)[20:])
            text = m.group(2)
            # The container end leaving the host netns (the only way this
            # script deletes one; "new-netnsid" is on the message's next line).
            n = re.match(r"Deleted \d+: agbt(\d+)@", text)
            if n:
                moved.setdefault(int(n.group(1)), t)
            n = re.search(r": agbh(\d+)@", text)
            if n and "FEATURE CHANGE" in text:
                fixed.setdefault(int(n.group(1)), t)
        latencies = [(fixed[i] - moved[i]) * 1000 for i in moved if i in fixed and fixed[i] >= moved[i]]
        seen = sum(1 for i in range(args.pairs, total)
                   if "off" in sh("ethtool", "-k", f"agbh{i}", netns=HOST).stdout.split(
                       "tx-checksum-ip-generic:")[1].split("\n")[0])
        rows.append((f"new pair -> first feature change (ip -ts monitor), {len(latencies)} of {args.new}",
                     f"median {statistics.median(latencies):.2f} ms" if latencies else "n/a",
                     f"p99 {percentile(latencies, 99):.2f} ms, max {max(latencies):.2f} ms" if latencies else "",
                     f"{seen} of {args.new} host ends off at the end"))
        # (ip monitor itself may miss events of a burst; the count says so.)
        rows.append(("daemon CPU per new pair", f"{(cpu1 - cpu0) * 1000 / args.new:.2f} ms",
                     f"{(cpu1 - cpu0):.2f} s for {args.new}", ""))
        rows.append((f"daemon CPU idle over {args.idle:.0f} s", f"{(cpu2 - cpu1) * 1000:.0f} ms",
                     f"{(cpu2 - cpu1) * 100 / args.idle:.2f} % of a CPU", ""))
        width = max(len(r[0]) for r in rows)
        for r in rows:
            print(f"  {r[0]:<{width}}  {r[1]:>16}  {r[2]}  {r[3]}".rstrip())
    finally:
        for p in (daemon, monitor):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        cleanup(total)
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
