#!/usr/bin/env python3
"""Fuzz run of the differential test: generated conf dirs, judged by libcni.

Each dir is random but plausible: one to five entries named with the
ordering edges libcni meets (byte order of digits and letters, dotfiles,
same stems, upper-case and backup extensions, names that are not UTF-8),
holding network configs with the JSON that Go reads its own way
(duplicate and case-variant keys, a BOM, huge numbers, escapes, trailing
bytes, truncation), `cniVersion`/`cniVersions` of every shape, plugin
lists with and without csum-offload (ours, marked or hand-written), string
and number `disableCheck`/`disableGC`, and beside the files symlinks (in
the dir, out of it, dangling, looping, to a directory), directories,
empty and unreadable files and, rarely, a FIFO. Each dir goes through
confdir.py's compare(): the installer's choice under containerd's rule
against confdir-referee (go-cni and libcni), which file and what is read
from it after the edit.

Seeded and reproducible: the run prints its seed, and dir N of seed S is
the same on every machine (`--seed S --only N` runs it alone). A
disagreement is saved as a reproducer in CORPUS's form
(`--save DIR`/fuzz-S-N.py), which `confdir.py --cases FILE` runs again.
Bounded in count (`--count`) and time (`--seconds`); exits 1 on a
disagreement, or if it covered fewer than `--min` dirs.

  python3 e2e/libcni/confdir_fuzz.py --binary BIN --referee REF [--seed S] [--count N] [--seconds T]
"""
import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import confdir  # noqa: E402  (the comparison itself, shared with the corpus)

VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", "1.0", "1", "", "2.0.0", "9.9.9", "1.0.0.0",
            "v1.0.0", "+1.0.0", "-1.0.0", "01.0.0", "1.x.0", " 1.0.0"]
TYPES = ["ptp", "bridge", "macvlan", "portmap", "tuning", "csum-offload", "multus", "", "PTP"]
BOOLISH = ["true", "false", '"true"', '"TRUE"', '"True"', '"false"', '"False"', '"yes"', '"1"', '"t"',
           "1", "0", "null", '""', "[]", "{}"]
BIG = ["1e400", "-1e400", "123456789012345678901234567890", "1.7976931348623157e308", "-0", "0.0000001e-400",
       "18446744073709551616", "9007199254740993"]
STRINGS = ['"net"', '"a\\u00e9"', '"\\ud800"', '"\\ud83d\\ude00"', '"tab\\there"', '"x\\/y"', '""',
           '"caf\udcc3\udca9"', '"bad\udcff"', '"\\u0000"']


class Gen:
    """Random conf dirs from one seed (one random.Random per dir)."""

    def __init__(self, rnd):
        self.r = rnd
        # How messy this dir is: scales every odd value and corruption, so
        # that a run has many dirs whose file loads (and is edited) as well
        # as many that fail in one place.
        self.mess = rnd.choice([0.1, 0.3, 0.6, 1.0, 1.5])

    def chance(self, p):
        return self.r.random() < p

    def bad(self, p):
        return self.r.random() < p * self.mess

    def pick(self, xs):
        return self.r.choice(xs)

    # --- JSON text, written by hand so that keys can repeat and vary ---
    def key(self, k):
        """A key as written: mostly as libcni spells it, sometimes in
        another case (Go matches struct fields case-insensitively)."""
        if self.bad(0.12):
            k = self.pick([k.upper(), k.capitalize(), k.lower(), k[0].upper() + k[1:]])
        if self.bad(0.03):
            k = "".join("\\u%04x" % ord(c) if self.chance(0.3) else c for c in k)
        return '"' + k + '"'

    def obj(self, members):
        """members: [(key, value text)]; duplicates some, shuffles a little."""
        ms = list(members)
        if ms and self.bad(0.12):
            k, _ = self.pick(ms)
            ms.insert(self.r.randrange(len(ms) + 1), (k, self.value_for(k)))
        if self.bad(0.1):
            ms.append((self.pick(["x", "ipMasq", "mtu", "big"]), self.pick(BIG + STRINGS)))
        if self.chance(0.2):
            self.r.shuffle(ms)
        sep = self.pick([",", ", ", ",\n  "])
        return "{" + sep.join(f"{self.key(k)}:{self.pick(['', ' '])}{v}" for k, v in ms) + "}"

    def value_for(self, k):
        if k == "cniVersion":
            return self.version()
        if k == "type":
            return self.type_()
        if k == "name":
            return self.pick(STRINGS + ['"net"', '"other"', "7", "null"])
        if k in ("disableCheck", "disableGC"):
            return self.pick(BOOLISH)
        return self.pick(BIG + STRINGS)

    def version(self):
        if self.bad(0.08):
            return self.pick(["1", "1.0", "null", "true", "[]"] + BIG[:2])
        return json.dumps(self.pick(VERSIONS[:5] * 4 + VERSIONS))

    def versions(self):
        if self.bad(0.1):
            return self.pick(['"1.0.0"', "null", "[1]", "{}", "[]"])
        return json.dumps([self.pick(VERSIONS[:5] * 3 + VERSIONS) for _ in range(self.r.randrange(0, 4))])

    def type_(self):
        if self.bad(0.05):
            return self.pick(["7", "null", "true", '["ptp"]'])
        return json.dumps(self.pick(TYPES))

    def plugin(self):
        if self.bad(0.04):
            return self.pick(["1", "null", '"ptp"', "[]"])
        t = self.pick(TYPES)
        ms = []
        if not self.bad(0.05):
            ms.append(("type", json.dumps(t) if not self.bad(0.04) else self.type_()))
        if t == "csum-offload" and self.chance(0.6):
            ms.append(("managedBy", '"csum-offload-installer"'))
        if t in ("ptp", "bridge", "macvlan") and self.chance(0.7):
            ms.append(("ipam", '{"type":"host-local","subnet":"10.9.0.0/24"}'))
        if t == "portmap" and self.chance(0.5):
            ms.append(("capabilities", '{"portMappings":true}'))
        if self.bad(0.08):
            ms.append(("cniVersion", self.version()))
        if self.bad(0.05):
            ms.append(("name", self.value_for("name")))
        return self.obj(ms)

    def conflist(self):
        ms = []
        if not self.bad(0.05):
            ms.append(("cniVersion", self.version()))
        if self.chance(0.15):
            ms.append(("cniVersions", self.versions()))
        if not self.bad(0.05):
            ms.append(("name", self.pick(['"net"', '"k8s-pod-network"', '"other"'] * 3 + STRINGS + ["7", "null"])))
        if self.chance(0.15):
            ms.append(("disableCheck", self.pick(BOOLISH)))
        if self.chance(0.15):
            ms.append(("disableGC", self.pick(BOOLISH)))
        if self.bad(0.05):
            ms.append(("loadOnlyInlinedPlugins", self.pick(BOOLISH)))
        if not self.bad(0.05):
            if self.bad(0.05):
                plugins = self.pick(["null", "{}", '"ptp"', "[]"])
            else:
                plugins = "[" + ",".join(self.plugin() for _ in range(self.r.randrange(1, 4))) + "]"
            ms.append(("plugins", plugins))
        return self.obj(ms)

    def single(self):
        ms = [("cniVersion", self.version())] if not self.bad(0.05) else []
        if not self.bad(0.05):
            ms.append(("name", self.pick(['"single"', '"net"'] * 3 + STRINGS)))
        if not self.bad(0.08):
            ms.append(("type", self.type_()))
        if self.chance(0.5):
            ms.append(("ipam", '{"type":"host-local","subnet":"10.9.0.0/24"}'))
        if self.bad(0.1):
            ms.append(("disableCheck", self.pick(BOOLISH)))
        return self.obj(ms)

    def text(self, ext):
        """A config's bytes: mostly the kind its extension calls for."""
        body = self.conflist() if (ext == ".conflist") != self.bad(0.1) else self.single()
        b = body.encode("utf-8", "surrogateescape")
        if self.bad(0.05):
            b = b"\xef\xbb\xbf" + b
        if self.bad(0.1):
            b = self.pick([b" \n", b"\n", b"\t"]) + b + self.pick([b"", b"\n", b" \r\n"])
        if self.bad(0.06):
            b = b + self.pick([b" x", b"}", b"{}", b",", b"\x00", b"// c"])
        if self.bad(0.05):
            b = b[:self.r.randrange(len(b))]
        if self.bad(0.02):
            b = self.pick([b"", b" ", b"\n", b"null", b"[]", b"{}", b'"x"', b"{,}", b"{'a':1}", b"NaN"])
        if self.bad(0.01):
            depth = self.pick([9999, 10001])
            b = b'{"cniVersion":"1.0.0","name":"deep","type":"ptp","x":' + b"[" * depth + b"]" * depth + b"}"
        return b

    # --- names and entries ---
    def name(self, taken):
        for _ in range(20):
            if taken and self.chance(0.15):
                # The same stem under another extension.
                stem = self.pick(sorted(taken)).rsplit(".", 1)[0]
            else:
                prefix = self.pick(["00", "05", "10", "10", "9", "99", "100", "1", "", "-", "_", "A", "a", "Z",
                                    "~", " ", "\xe9", "\udcff", "\udcc3", "0"])
                stem = prefix + self.pick(["-net", "-a", "-b", "net", "", "-\udcfe", ".x", "-cni", "_b"])
            ext = self.pick([".conflist"] * 6 + [".conf"] * 4 + [".json"] * 2 +
                            [".CONFLIST", ".conf.bak", ".conflist~", ".yaml", "", ".conflist.tmp"])
            n = stem + ext
            if n and n not in (".", "..") and "/" not in n and n not in taken:
                return n
        return None

    def entries(self):
        out, taken = [], set()
        for _ in range(self.r.choice([1, 1, 2, 2, 2, 3, 3, 4, 5])):
            n = self.name(taken)
            if n is None:
                continue
            taken.add(n)
            ext = "." + n.rsplit(".", 1)[1] if "." in n else ""
            k = self.r.random()
            if k < 0.78:
                content = self.text(ext)
            elif k < 0.82:
                content = self.pick([b"", b"  \n"])
            elif k < 0.87:
                others = [o for o in taken if o != n]
                target = self.pick(others + ["../outside/real.conflist", "nowhere.conflist", "../outside",
                                             n, "/nonexistent/x.conflist"])
                content = ("symlink", target)
            elif k < 0.90:
                content = ("dir",)
            elif k < 0.977:
                content = ("unreadable", self.text(ext))
            elif k < 0.98:
                # Rare: reading a FIFO first costs the referee its 5 s bound.
                content = ("fifo",)
            else:
                content = self.text(".conflist")
            out.append((n, content))
        if self.chance(0.12):
            # A network's plugin dir, which libcni 1.3 reads after the list.
            net = self.pick(["net", "other", "k8s-pod-network", "a\u00e9"])
            for i in range(self.r.randrange(1, 3)):
                body = self.single() if not self.bad(0.2) else self.pick(["", "{", '{"name":"x"}'])
                out.append((f"{net}/{i}{self.pick(['0-p.conf', '-q.conf', '.json'])}", body.encode("utf-8", "surrogateescape")))
        return out


def dir_for(seed, n):
    """Dir N of a run: its own generator, so that it does not depend on the
    dirs before it."""
    return Gen(random.Random(f"{seed}:{n}")).entries()


def reproducer(seed, n, entries, lines):
    body = "".join(f"    {e!r},\n" for e in entries)
    # The evidence as comments, escaped (it quotes file bytes and logs).
    why = "".join(f"# {ascii(ln)[1:-1]}\n" for ln in lines)
    return (f"# confdir_fuzz.py --seed {seed} --only {n}: a disagreement, in CORPUS's form.\n"
            f"# Run it again: python3 e2e/libcni/confdir.py --binary BIN --referee REF --cases THIS_FILE\n"
            f"{why}{{\n  {f'fuzz-{seed}-{n}'!r}: [\n{body}  ],\n}}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--referee", required=True)
    ap.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    ap.add_argument("--count", type=int, default=300, help="dirs at most")
    ap.add_argument("--seconds", type=float, default=50, help="stop starting dirs after this long")
    ap.add_argument("--min", type=int, default=0, help="fail if fewer dirs were covered")
    ap.add_argument("--only", type=int, action="append", default=[], help="run dir N of the seed alone")
    ap.add_argument("--save", default="target/confdir-fuzz", help="where reproducers go")
    ap.add_argument("--runtime", default="containerd",
                    help="the installer's rule; crio is the negative control (confdir.sh): the generated dirs "
                         "must include ones where CRI-O's rule and go-cni disagree")
    ap.add_argument("--print", action="store_true", help="print each dir's entries, run nothing")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every dir's evidence, not only disagreements")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "big")
    print(f"confdir fuzz: seed {seed} (again: --seed {seed}), up to {a.count} dirs in {a.seconds:g} s", flush=True)
    start = time.monotonic()
    agree = disagree = files = 0
    kinds = {}
    numbers = a.only or range(a.count)
    for n in numbers:
        if time.monotonic() - start > a.seconds:
            break
        entries = dir_for(seed, n)
        if a.print:
            print(n, entries)
            continue
        files += len(entries)
        ok, lines = confdir.compare(f"fuzz-{seed}-{n}", entries, a.binary, a.referee, a.runtime)
        # What the referee found, for the summary: which outcome each dir had.
        kind = "loads nothing" if "containerd loads nothing" in lines[0] else "loads a file"
        kinds[kind] = kinds.get(kind, 0) + 1
        if ok:
            agree += 1
            if a.only or a.verbose:
                print("\n".join(lines))
            continue
        disagree += 1
        print("\n".join(lines))
        if a.runtime != "containerd":
            continue  # the control: disagreements are expected, not saved
        os.makedirs(a.save, exist_ok=True)
        path = os.path.join(a.save, f"fuzz-{seed}-{n}.py")
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(reproducer(seed, n, entries, lines))
        print(f"         reproducer: {path}")
    took = time.monotonic() - start
    covered = agree + disagree
    print(f"confdir fuzz: seed {seed}: {covered} dirs ({files} entries; {kinds}) in {took:.1f} s")
    if covered < a.min:
        print(f"FAIL     only {covered} dirs in {a.seconds:g} s, fewer than --min {a.min}")
        disagree += 1
    print(f"{agree} passed, {disagree} failed")
    sys.exit(1 if disagree else 0)


if __name__ == "__main__":
    main()
