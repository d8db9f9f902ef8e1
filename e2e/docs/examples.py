#!/usr/bin/env python3
"""make docs-examples: every command output the docs show is the real
command's, run again here (docs/testing.md, "Doc examples").

A ```console block whose lines hold output (any line that is not a
`# command`) must be marked by the HTML comment right above its fence:

    <!-- example: lab=node before="csum-offload agent --once --config agent.json" -->

The checker builds that lab (network namespaces named below, a veth
uplink with IPv4 and IPv6 default routes, two pods), copies
e2e/docs/fixtures/ into a scratch dir, and runs the block's commands
there, in order, in one shell inside the lab node's netns and a private
mount namespace whose /run and /var/log are fresh tmpfs (so the agent's
journal and locks never touch the host's /run/csum-offload, nor a logFile
the host's /var/log; /run/netns is bound in) and whose /etc/hosts is a
copy. `before` commands run first, unshown.
Each command's stdout and stderr must equal the lines the block shows
after it, once volatile parts (MAC addresses, the kernel release) are
masked in both; a line `…` stands for any number of lines. An unmarked
block with output, an unknown lab, or a mismatch fails the run.

Needs root. Usage: examples.py [--binary DIR] [FILE...] (default: README.md
and docs/*.md).
"""

import argparse
import difflib
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "e2e", "docs", "fixtures")
NODE, WIRE, PODS = "docs-node", "docs-wire", ("agt-p1", "agt-p2")
MARK = re.compile(r"^<!-- example:(.*)-->\s*$")
MASKS = [
    (re.compile(r"\b([0-9a-f]{2}:){5}[0-9a-f]{2}\b"), "MAC"),
    (re.compile(r"^(kernel: )\S+$"), r"\1KERNEL"),
]
# Every shell the checker starts is bounded; a command that hangs fails.
BLOCK_TIMEOUT = 60


def sh(script, check=True):
    return subprocess.run(
        ["sh", "-ec", script], check=check, timeout=30, capture_output=True, text=True
    )


def teardown():
    for ns in (NODE, WIRE) + PODS:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


# The labs. Creation order fixes the ifindexes the docs show: in the node,
# lo 1, up0 2, ah1 3, ah2 4; in each pod, lo 1, eth0 2.
def lab_node():
    sh(f"""
    for ns in {NODE} {WIRE} {' '.join(PODS)}; do ip netns add $ns; ip -n $ns link set lo up; done
    ip -n {NODE} link add up0 type veth peer name gw0 netns {WIRE}
    ip -n {NODE} addr add 10.250.0.2/24 dev up0
    ip -n {NODE} -6 addr add fd00:250::2/64 dev up0 nodad
    ip -n {WIRE} addr add 10.250.0.1/24 dev gw0
    ip -n {WIRE} -6 addr add fd00:250::1/64 dev gw0 nodad
    ip -n {NODE} link set up0 up
    ip -n {WIRE} link set gw0 up
    ip -n {NODE} route add default via 10.250.0.1
    ip -n {NODE} -6 route add default via fd00:250::1 dev up0 metric 1024
    i=1
    for pod in {' '.join(PODS)}; do
        ip -n {NODE} link add ah$i type veth peer name eth0 netns $pod
        ip -n {NODE} link set ah$i up
        ip -n $pod link set eth0 up
        i=$((i + 1))
    done
    """)


# A multipath default route over a macvlan on the veth uplink and over a
# vxlan device (docs/configuration.md, "Several NICs: false wins").
def lab_multipath():
    sh(f"""
    for ns in {NODE} {WIRE}; do ip netns add $ns; ip -n $ns link set lo up; done
    ip -n {NODE} link add up0 type veth peer name gw0 netns {WIRE}
    ip -n {NODE} link set up0 up
    ip -n {WIRE} link set gw0 up
    ip -n {NODE} link add mv0 link up0 type macvlan mode bridge
    ip -n {NODE} addr add 10.250.0.2/24 dev mv0
    ip -n {NODE} link set mv0 up
    ip -n {NODE} link add vx1 type vxlan id 42 dstport 4789
    ip -n {NODE} addr add 10.251.0.2/24 dev vx1
    ip -n {NODE} link set vx1 up
    ip -n {NODE} route add default nexthop via 10.250.0.1 dev mv0 nexthop via 10.251.0.1 dev vx1
    """)


LABS = {"node": lab_node, "multipath": lab_multipath}


def blocks(path):
    """Yields (line number, mark or None, [lines]) for each console block."""
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```console":
            mark = MARK.match(lines[i - 1]) if i > 0 else None
            start = i + 1
            j = start
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            yield start, (mark.group(1).strip() if mark else None), lines[start:j]
            i = j
        i += 1


def commands(body):
    """[(command, [expected lines])] from a block's lines."""
    out = []
    for line in body:
        if line.startswith("# "):
            # A trailing "   # note" is the docs' comment, not the command's.
            out.append((re.sub(r"\s{2,}# .*$", "", line[2:]).strip(), []))
        elif out:
            out[-1][1].append(line)
        else:
            out.append((None, [line]))
    return out


def mask(line):
    for pattern, repl in MASKS:
        line = pattern.sub(repl, line)
    return line.rstrip()


def matches(expected, actual):
    """Whether actual fits expected, where an expected line "…" takes any
    number of actual lines (a cut the docs make)."""
    expected = [mask(line) for line in expected]
    actual = [mask(line) for line in actual]

    def fit(e, a):
        if e == len(expected):
            return a == len(actual)
        if expected[e].strip() == "…":
            return any(fit(e + 1, k) for k in range(a, len(actual) + 1))
        return a < len(actual) and expected[e] == actual[a] and fit(e + 1, a + 1)

    return fit(0, 0)


def run_block(work, bindir, before, cmds):
    """Runs the commands in the lab; returns [(rc, output lines)]."""
    script = [
        "set -u",
        # ip netns exec gave this shell its own mount namespace; a fresh
        # /run (with the netns bound in) and a copy of /etc/hosts stay in it.
        "t=$(mktemp -d)",
        'mount -t tmpfs -o mode=755 docs-run "$t"',
        'mkdir "$t/netns"',
        'mount --rbind /run/netns "$t/netns"',
        'mount --move "$t" /run',
        f"mount --bind {shlex.quote(work)}/hosts /etc/hosts",
        # A logFile the examples name lands here, not in the host's /var/log.
        "mount -t tmpfs docs-log /var/log",
        f"export PATH={shlex.quote(bindir)}:$PATH",
        f"cd {shlex.quote(work)}",
    ]
    for cmd in before:
        script.append(f"( {cmd} ) >/dev/null 2>&1 </dev/null || echo \"@@before failed ($?): \"{shlex.quote(cmd)}")
    for n, cmd in enumerate(cmds):
        script.append(f"echo '@@cmd {n}'")
        script.append(f"( {cmd} ) 2>&1 </dev/null; echo \"@@rc $?\"")
    proc = subprocess.run(
        ["ip", "netns", "exec", NODE, "sh", "-c", "\n".join(script)],
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"lab shell exited {proc.returncode}: {proc.stderr.strip()}")
    results, current = [], None
    for line in proc.stdout.split("\n"):
        if line.startswith("@@before failed"):
            raise RuntimeError(line[2:])
        if line.startswith("@@cmd "):
            current = []
        elif line.startswith("@@rc ") and current is not None:
            results.append((int(line[5:]), current))
            current = None
        elif current is not None:
            current.append(line)
    if len(results) != len(cmds):
        raise RuntimeError(f"ran {len(results)} of {len(cmds)} commands: {proc.stderr.strip()}")
    return results


def check(path, start, mark, body, bindir):
    where = f"{os.path.relpath(path, REPO) if start else path}:{start}"
    attrs = dict(a.split("=", 1) for a in shlex.split(mark))
    lab = attrs.pop("lab", None)
    before = [c for c in attrs.pop("before", "").split(";") if c.strip()]
    if attrs or lab not in LABS:
        return [f"{where}: bad mark {mark!r}: needs lab= one of {sorted(LABS)}, and only before="]
    cmds = commands(body)
    if cmds and cmds[0][0] is None:
        return [f"{where}: output before the first command"]
    teardown()
    LABS[lab]()
    work = tempfile.mkdtemp(prefix="csum-docs.")
    try:
        for name in os.listdir(FIXTURES):
            shutil.copy(os.path.join(FIXTURES, name), work)
        shutil.copy("/etc/hosts", os.path.join(work, "hosts"))
        results = run_block(work, bindir, before, [c for c, _ in cmds])
    finally:
        teardown()
        shutil.rmtree(work)
    problems = []
    for (cmd, expected), (rc, actual) in zip(cmds, results):
        while actual and actual[-1] == "":
            actual.pop()
        if not matches(expected, actual):
            diff = difflib.unified_diff(
                [mask(x) for x in expected], [mask(x) for x in actual],
                "docs", f"real (exit {rc})", lineterm="",
            )
            problems.append(f"{where}: `{cmd}` prints otherwise:\n" + "\n".join(diff))
    print(f"  {where}: lab {lab}, {len(cmds)} command(s): {'ok' if not problems else 'DIFFERS'}")
    return problems


def control(bindir):
    """The negative control: the matcher and a lab run must tell a wrong
    line from a right one, or every "ok" above would mean nothing."""
    assert matches(["a", "…", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "…"], ["a"])
    assert not matches(["a", "…", "d"], ["a", "b", "c"])
    assert not matches(["a", "b"], ["a", "b", "c"])
    assert matches(["kernel: 1.2.3-x"], ["kernel: 6.18.44-fc-v1272"])
    wrong = ["# csum-offload detect", "uplink: up0 (veth) (from IPv4 default route (metric 0))"]
    problems = check("(control)", 0, "lab=node", wrong, bindir)
    if len(problems) != 1:
        sys.exit(f"docs-examples: the control (a wrong line) was not caught: {problems}")
    print("  the control (a block with a wrong line) differs, as it must")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release"),
                    help="dir holding csum-offload (default target/release)")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("docs-examples: needs root (network namespaces)")
    if not os.access(os.path.join(args.binary, "csum-offload"), os.X_OK):
        sys.exit(f"docs-examples: no csum-offload in {args.binary} (make build)")
    files = args.files or [os.path.join(REPO, "README.md")] + sorted(
        glob.glob(os.path.join(REPO, "docs", "*.md")))
    problems, checked = [], 0
    control(os.path.abspath(args.binary))
    try:
        for path in files:
            for start, mark, body in blocks(path):
                shows_output = any(not line.startswith("# ") for line in body)
                if mark is None:
                    if shows_output:
                        problems.append(
                            f"{os.path.relpath(path, REPO)}:{start}: a console block with output "
                            "and no <!-- example: ... --> mark: its output cannot be checked")
                    continue
                try:
                    problems += check(path, start, mark, body, os.path.abspath(args.binary))
                except (RuntimeError, subprocess.SubprocessError) as e:
                    problems.append(f"{os.path.relpath(path, REPO)}:{start}: could not run: {e}")
                checked += 1
    finally:
        teardown()
    for p in problems:
        print(p)
    if checked == 0:
        problems.append("no example was checked")
    print(f"docs-examples: {checked} block(s) checked, {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
