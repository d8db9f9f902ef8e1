#!/usr/bin/env python3
"""Differential test: `uninstall --remove-binary` keeps the binary while a
config the runtime would load still names the plugin, judged by libcni.

For each directory of a small corpus, `csum-offload uninstall
--remove-binary` runs on it with a copy of the binary in a bin dir; then
`confdir-referee --all` (libcni itself) says which files of the directory
load and which of them run a plugin of type csum-offload. They agree when
the binary is still there exactly when such a file is left. The corpus has
cases of both outcomes, so the comparison can fail either way. Prints one
line per case and "N agree, N disagree"; exits 1 on a disagreement.

uninstall also puts back uplink NICs from the node agent's record; as
root it runs in a private network namespace so that it cannot touch this
machine's NICs.

  python3 e2e/libcni/binary_rule.py --binary target/release/csum-offload --referee BIN/confdir-referee [PATTERN...]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

PTP = {"type": "ptp", "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"}}
OURS = {"type": "csum-offload", "managedBy": "csum-offload-installer"}
HAND = {"type": "csum-offload"}


def conflist(name="net", plugins=None, **extra):
    return json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": plugins or [PTP], **extra}).encode()


# name -> list of (path, bytes)
CORPUS = {
    "empty-dir": [],
    "managed-entry-only": [("10-a.conflist", conflist(plugins=[PTP, OURS]))],
    "hand-written-entry": [("10-a.conflist", conflist(plugins=[PTP, HAND]))],
    "second-file-names-it": [("10-a.conflist", conflist("a")), ("20-b.conflist", conflist("b", plugins=[PTP, HAND]))],
    "second-file-fails-to-load": [("10-a.conflist", conflist("a")),
                                  ("20-b.conflist", json.dumps({"plugins": [PTP, HAND]}).encode())],
    "invalid-json-mentions-it": [("10-a.conflist", b'{"plugins":[{"type":"csum-offload"}]')],
    "conf-sorted-type-is-ours": [("10-a.conf", b'{"cniVersion":"0.3.1","name":"a","type":"csum-offload","Type":"bridge"}')],
    "conf-sorted-type-is-not": [("10-a.conf", b'{"cniVersion":"0.3.1","name":"a","Type":"csum-offload","type":"bridge"}')],
    "json-extension": [("10-a.json", b'{"cniVersion":"0.3.1","name":"a","type":"csum-offload"}')],
    "backup-extension": [("10-a.conflist", conflist()), ("10-a.conflist.bak", conflist(plugins=[PTP, HAND]))],
    "plugin-dir": [("10-a.conflist", conflist("net")), ("net/90-x.conf", json.dumps(HAND).encode())],
    "plugin-dir-inlined-only": [("10-a.conflist", conflist("net", loadOnlyInlinedPlugins=True)),
                                ("net/90-x.conf", json.dumps(HAND).encode())],
}


def build(root, case):
    d = os.path.join(root, "net.d")
    os.makedirs(d)
    for name, content in CORPUS[case]:
        p = os.path.join(d, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(content)
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--referee", required=True)
    ap.add_argument("patterns", nargs="*")
    a = ap.parse_args()
    isolate = ["unshare", "--net"] if os.geteuid() == 0 else []
    agree = disagree = 0
    outcomes = set()
    for case in CORPUS:
        if a.patterns and not any(p in case for p in a.patterns):
            continue
        with tempfile.TemporaryDirectory(prefix="lcni-binrule-") as tmp:
            d = build(tmp, case)
            bindir = os.path.join(tmp, "bin")
            os.makedirs(bindir)
            shutil.copy2(a.binary, os.path.join(bindir, "csum-offload"))
            try:
                p = subprocess.run(isolate + [a.binary, "uninstall", "--remove-binary", "--cni-conf-dir", d,
                                              "--cni-bin-dir", bindir, "--log-level", "warn"],
                                   capture_output=True, timeout=20)
                rc, out, err = p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
            except subprocess.TimeoutExpired:
                rc, out, err = "timeout", "", ""
            kept = os.path.exists(os.path.join(bindir, "csum-offload"))
            r = subprocess.run([a.referee, "--all", d], capture_output=True, timeout=30)
            try:
                files = json.loads(r.stdout)["all"]
            except (ValueError, KeyError):
                print(f"ERROR    {case}: referee said {r.stdout!r} {r.stderr!r}")
                disagree += 1
                continue
            naming = [f["file"] for f in files if f.get("namesPlugin")]
            # Plugins in <name>/*.conf count too: the referee's list holds
            # them (libcni 1.3 appends them to the conflist's plugins).
            ok = rc == 0 and kept == bool(naming)
            outcomes.add(kept)
            agree += ok
            disagree += not ok
            print(f"{'agree   ' if ok else 'DISAGREE'} {case}: libcni loads "
                  f"{[(f['file'], f.get('plugins')) for f in files if f.get('loads')]}; "
                  f"installer (exit {rc}) {'kept' if kept else 'removed'} the binary")
            if not ok:
                print(f"         installer stdout: {out[-300:]}")
                print(f"         installer stderr: {err[-400:]}")
    if not a.patterns and outcomes != {True, False}:
        print("FAIL     the corpus must have cases where the binary stays and cases where it goes")
        disagree += 1
    print(f"{agree} agree, {disagree} disagree")
    sys.exit(1 if disagree else 0)


if __name__ == "__main__":
    main()
