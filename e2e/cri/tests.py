"""The CRI suite's cases. This process plays kubelet on one node: it runs
the DaemonSet's pod from manifests/ and workload pods through containerd's
CRI plugin (kubelet.py), and checks what a node operator would check.

One function per case (@case); each starts from a node with the primary
CNI's conflist only, and ends with every pod deleted and nothing leaked.
Run by run.sh inside the node's namespaces:

    tests.py [--list] [PATTERN...]

E2E_CRI_SKIP="PATTERN..." leaves out the cases whose name contains one.
"""

import copy
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import yaml  # noqa: E402

import kubelet  # noqa: E402
import node  # noqa: E402
from cri import Cri, wait_until  # noqa: E402

WORK = os.environ.get("WORK", "")
REPO = os.environ.get("REPO", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))
PROJECT_IMAGE = os.environ.get("PROJECT_IMAGE", "")
NEXT_IMAGE = os.environ.get("NEXT_IMAGE", "")
# The plugin's logFile must be under /var/log; /var/log is an overlay of
# the run's (lib.sh), so nothing lands on the host.
CSUM_LOG = "/var/log/csum-offload-e2ecri/csum-offload.log"
# What the target behaviour on a node without a default route says.
DETECTION_FAILED = "host NIC detection failed on this node"

CASES = []


def case(fn):
    CASES.append((fn.__name__.replace("test_", "").replace("_", "-"), fn))
    return fn


class Failed(Exception):
    pass


class Ctx:
    """What a case uses: the CRI client, the manifests, the NetworkReady
    sampler, its notes and failures, the pods it started."""

    def __init__(self, cri, network_ready):
        self.cri = cri
        self.network_ready = network_ready
        self.notes = []
        self.failures = []
        self.pods = []
        self.log = open(f"{WORK}/logs/tests.log", "a") if WORK else sys.stderr

    def note(self, msg):
        self.notes.append(msg)
        print(f"  {msg}", file=self.log, flush=True)

    def expect(self, cond, msg):
        """A check: a false COND fails the case (which goes on)."""
        if not cond:
            self.failures.append(msg)
            print(f"  FAIL: {msg}", file=self.log, flush=True)
        return cond

    def require(self, cond, msg):
        """A check the rest of the case depends on."""
        if not self.expect(cond, msg):
            raise Failed(msg)

    def debug(self, msg):
        print(f"    {msg}", file=self.log, flush=True)

    # --- the DaemonSet --------------------------------------------------------

    def manifests(self):
        return kubelet.load_manifests(os.path.join(REPO, "manifests"))

    def configmap(self, patch=None):
        """The manifests' ConfigMap; PATCH (dict) is merged into its entry,
        as an overlay would patch config.json."""
        (cm,) = self.manifests()["ConfigMap"]
        cm = copy.deepcopy(cm)
        if patch is not None:
            entry = json.loads(cm["data"]["config.json"])
            entry.update(patch)
            cm["data"]["config.json"] = json.dumps(entry, indent=2) + "\n"
        return cm

    def daemonset(self):
        (ds,) = self.manifests()["DaemonSet"]
        return ds

    def installer(self, cm, image=None):
        """The DaemonSet's pod, started (not yet ready)."""
        ds = self.daemonset()
        tmpl = ds["spec"]["template"]
        meta = dict(tmpl["metadata"], namespace=ds["metadata"]["namespace"])
        name = f"{ds['metadata']['name']}-{''.join(random.choices('bcdfghjklmnpqrstvwxz2456789', k=5))}"
        # A new image tag replaces the project image in every container
        # that runs it, as a new template would.
        project = tmpl["spec"]["containers"][0]["image"]
        images = {c["name"]: image for c in tmpl["spec"]["containers"] if c["image"] == project} if image else None
        pod = kubelet.Pod(self.cri, meta, tmpl["spec"], {cm["metadata"]["name"]: cm}, images, name=name)
        self.pods.append(pod)
        return pod.start()

    def installer_ready(self, cm, image=None, seconds=30):
        pod = self.installer(cm, image)
        t0 = time.monotonic()
        try:
            wait_until(f"{pod.name} Ready", pod.ready, seconds, 0.2)
        except TimeoutError:
            probes = [r for p in pod.probes.values() for r in p.results]
            self.debug(f"{pod.name} log:\n{pod_log(pod)}")
            raise Failed(f"{pod.name} not Ready after {seconds} s; probe runs: {probes}")
        return pod, time.monotonic() - t0

    # --- workloads -----------------------------------------------------------------

    def workload(self, name, containers=True):
        tmpl = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "workload.yaml")))
        kubelet.require_handled(tmpl, kubelet.HANDLED_POD, "workload.yaml")
        pod = kubelet.Pod(self.cri, tmpl["metadata"], tmpl["spec"], name=name)
        self.pods.append(pod)
        return pod.start(containers)

    def delete(self, pod):
        if pod in self.pods:
            self.pods.remove(pod)
        return pod.delete()

    def cleanup(self):
        """Deletes every pod of the case, then anything the runtime still
        lists, empties the conf dir and checks nothing leaked."""
        for pod in list(self.pods):
            try:
                self.delete(pod)
            except Exception as e:
                self.expect(False, f"deleting {pod.name}: {short_error(e)}")
        for sb in self.cri.list_sandboxes():
            self.expect(False, f"sandbox {sb.metadata.name} still listed by the runtime after the case")
            self.cri.stop_pod_sandbox(sb.id)
            self.cri.remove_pod_sandbox(sb.id)
        node.clear_conf_dir()
        try:
            inv = wait_until("no leftovers", lambda: leftovers() or None, 10, 0.2)
        except TimeoutError:
            inv = {k: v for k, v in node.inventory(WORK).items() if v}
            self.expect(False, f"left behind after the case: {inv}")
        else:
            self.debug(f"nothing left: {inv}")


def leftovers():
    inv = node.inventory(WORK)
    return None if any(inv.values()) else inv


def short_error(e):
    """A runtime error's message on one line (gRPC errors: their details)."""
    details = getattr(e, "details", None)
    text = details() if callable(details) else str(e)
    return " ".join(str(text).split())


def pod_log(pod):
    return "\n".join(f"[{n}] {pod.log(n)}" for n in pod.containers)


def ready_window(ctx, t0, t1=None):
    """NetworkReady samples between T0 and T1: (count, [not-ready samples])."""
    samples = ctx.network_ready.since(t0, t1)
    return len(samples), [(round(t - t0, 3), v) for t, v in samples if v[0] is not True]


def expect_network_ready(ctx, t0, what):
    n, bad = ready_window(ctx, t0)
    ctx.expect(n >= 5, f"{what}: only {n} NetworkReady samples")
    ctx.expect(not bad, f"{what}: NetworkReady false in {len(bad)} of {n} samples: {bad[:5]}")
    return f"NetworkReady true in all {n} samples" if not bad else f"NetworkReady false in {len(bad)} of {n}"


def csum_log():
    try:
        return open(CSUM_LOG).read()
    except OSError:
        return ""


def expect_offload(ctx, pod, want_pod, want_node, what=""):
    p, h, peer = node.offload_of(pod)
    ctx.expect(p == want_pod, f"{pod.name}{what}: eth0 tx-checksumming {p}, want {want_pod}")
    ctx.expect(h == want_node, f"{pod.name}{what}: node end {peer} tx-checksumming {h}, want {want_node}")
    ctx.debug(f"{pod.name}: eth0 {p}, node end {peer} {h}")
    return p, h


def txgbe_configmap(ctx, extra=None):
    """The shipped ConfigMap with the node's NIC named txgbe (so TX
    checksum goes off) and the plugin's log in the work dir."""
    return ctx.configmap({"hostDriver": "txgbe", "logFile": CSUM_LOG, "logLevel": "debug", **(extra or {})})


def expect_entry_matches(ctx, cm):
    want = json.loads(cm["data"]["config.json"])
    got = node.entries()
    ctx.require(got is not None, f"{node.PRIMARY} is not readable JSON")
    ctx.require(len(got) == 1, f"{node.PRIMARY} has {len(got)} csum-offload entries, want 1")
    entry = {k: v for k, v in got[0].items() if k != "type"}
    # The installer marks the entries it writes (docs/install.md).
    want = dict(want, managedBy="csum-offload-installer")
    ctx.expect(entry == want, f"the entry {entry} is not the ConfigMap's {want} with the installer's mark")
    plugins = json.load(open(os.path.join(node.CONF_DIR, node.PRIMARY)))["plugins"]
    ctx.expect(plugins[-1].get("type") == "csum-offload", "the entry is not the last plugin")


def proc_status(pid):
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        fields[k] = v.strip()
    return fields


def root_mount_options(pid):
    for line in open(f"/proc/{pid}/mountinfo"):
        parts = line.split()
        if parts[4] == "/":
            return parts[5].split(",")
    return []


def cgroup_value(path, controller, name):
    try:
        return open(f"/sys/fs/cgroup/{controller}{path}/{name}").read().strip()
    except OSError as e:
        return f"unreadable ({e.strerror})"


class Churn(threading.Thread):
    """Starts sandbox-only workload pods one after another (their network
    is all that matters here), checks each one's offload state right
    away, and deletes it. Bounded by count and by the stop event."""

    def __init__(self, ctx, prefix, limit=200):
        super().__init__(daemon=True, name=f"churn-{prefix}")
        self.ctx, self.prefix, self.limit = ctx, prefix, limit
        self.results = []  # (t started, t sandbox up, name, pod end, node end, error)
        self.stopping = threading.Event()

    def run(self):
        for i in range(self.limit):
            if self.stopping.is_set():
                return
            name = f"{self.prefix}-{i}"
            t0 = time.monotonic()
            pod = None
            try:
                pod = kubelet.Pod(self.ctx.cri, {"name": name, "namespace": "default"}, self.ctx_spec(), name=name)
                pod.start(containers=False)
                t1 = time.monotonic()
                p, h, _ = node.offload_of(pod)
                self.results.append((t0, t1, name, p, h, None))
            except Exception as e:
                self.results.append((t0, time.monotonic(), name, None, None, short_error(e)))
            finally:
                if pod and pod.sandbox_id:
                    try:
                        pod.delete()
                    except Exception as e:
                        self.results.append((t0, time.monotonic(), name, None, None, f"delete: {short_error(e)}"))

    def ctx_spec(self):
        return yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "workload.yaml")))["spec"]

    def stop(self):
        self.stopping.set()
        self.join(60)


# --- cases ---------------------------------------------------------------------------


@case
def test_translator(ctx):
    """The translator reads the real manifests, and refuses what it does
    not handle: the checks that keep a manifest change from going
    untested."""
    objs = ctx.manifests()
    ds = ctx.daemonset()
    spec = ds["spec"]["template"]["spec"]
    pod = kubelet.Pod(ctx.cri, ds["spec"]["template"]["metadata"] | {"name": "x"}, spec, {})
    ctx.note(f"manifests/: {', '.join(f'{len(v)} {k}' for k, v in sorted(objs.items()))}; every DaemonSet field is handled")
    # The downward API's spec.nodeName (NODE_NAME, for per-node probe
    # paths) is filled in with this node's name, as kubelet does.
    for c in spec["containers"]:
        for e in c.get("env", []):
            if "valueFrom" in e:
                got = kubelet.env_value(c["name"], e)
                ctx.expect(got == kubelet.NODE_NAME, f"container {c['name']}: env {e['name']} is {got!r}, want {kubelet.NODE_NAME!r}")
                ctx.note(f"container {c['name']}: env {e['name']} from {e['valueFrom']['fieldRef']['fieldPath']} = {got}")

    def refused(mutate, exc, what):
        s = copy.deepcopy(spec)
        mutate(s)
        try:
            kubelet.Pod(ctx.cri, {"name": "x"}, s, {})
        except exc as e:
            ctx.debug(f"{what}: {e}")
            return True
        ctx.expect(False, f"the translator accepted {what}")
        return False

    controls = [
        (lambda s: s.__setitem__("initContainers", []), kubelet.Unhandled, "initContainers"),
        (lambda s: s["containers"][0].__setitem__("startupProbe", {}), kubelet.Unhandled, "a startupProbe"),
        (lambda s: s["containers"][0]["env"].append({"name": "X", "valueFrom": {}}), kubelet.Unhandled, "env valueFrom without a field"),
        (lambda s: s["containers"][0]["env"].append({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}), kubelet.Unhandled, "env valueFrom status.podIP"),
        (lambda s: s["containers"][0]["env"].append({"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}), kubelet.Unhandled, "env valueFrom secretKeyRef"),
        (lambda s: s.__setitem__("nodeSelector", {"kubernetes.io/arch": "arm64"}), kubelet.NotSchedulable, "nodeSelector arch=arm64"),
        (lambda s: s.__setitem__("nodeSelector", {"kubernetes.io/os": "windows"}), kubelet.NotSchedulable, "nodeSelector os=windows"),
        (
            lambda s: s.__setitem__("affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64", "ppc64le"]}]}]}}}),
            kubelet.NotSchedulable, "required affinity arch In [arm64, ppc64le]",
        ),
        (
            lambda s: s.__setitem__("affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}]}}}),
            kubelet.Unhandled, "affinity matchFields",
        ),
        (lambda s: s.__setitem__("affinity", {"podAntiAffinity": {}}), kubelet.Unhandled, "podAntiAffinity"),
        (lambda s: s["containers"][0].__setitem__("imagePullPolicy", "Always"), kubelet.Unhandled, "imagePullPolicy Always"),
        (lambda s: s["volumes"].append({"name": "s", "secret": {"secretName": "x"}}), kubelet.Unhandled, "a secret volume"),
        (lambda s: s.__setitem__("automountServiceAccountToken", True), kubelet.Unhandled, "a mounted token"),
        (lambda s: s["containers"].append(copy.deepcopy(s["containers"][0]) | {"name": "agent", "ports": []}), kubelet.Unhandled, "a second container with ports"),
    ]
    n = sum(refused(*c) for c in controls)
    ctx.note(f"{n} of {len(controls)} planted changes refused (unknown fields, arch/os selectors, affinity, pulls, tokens)")
    # What does match this node must be accepted, or the controls above
    # could pass by refusing everything.
    ok = copy.deepcopy(spec)
    ok["nodeSelector"] = {"kubernetes.io/os": "linux", "kubernetes.io/arch": kubelet.ARCH}
    ok["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]},
        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": [kubelet.ARCH]},
                              {"key": "kubernetes.io/os", "operator": "NotIn", "values": ["windows"]}]}]}}}
    ok["containers"].append(copy.deepcopy(ok["containers"][0]) | {"name": "agent"})
    try:
        kubelet.Pod(ctx.cri, {"name": "x"}, ok, {})
        ctx.note(f"accepted: nodeSelector os=linux arch={kubelet.ARCH}, a matching affinity term, a second container")
    except Exception as e:
        ctx.expect(False, f"the translator refused a spec that matches this node: {e}")
    bad_kust = {"apiVersion": "v1", "kind": "Kustomization", "resources": [], "images": []}
    ctx.expect(bool(kubelet.unhandled_fields(bad_kust, kubelet.HANDLED_KUSTOMIZATION)), "a kustomization with images: passed")
    del pod


@case
def test_cri_facts(ctx):
    """What containerd 1.6's CRI does with the conf dir, measured (these
    are the runtime's facts the docs rely on; only the first two are
    asserted, because the NetworkReady checks of the other cases depend
    on them)."""

    def ready_after(seconds):
        time.sleep(seconds)
        return ctx.cri.network_ready()

    node.clear_conf_dir()
    ready, why = wait_until("NetworkReady false with an empty conf dir",
                            lambda: (lambda r: r if r[0] is False else None)(ctx.cri.network_ready()), 10)
    ctx.note(f"empty conf dir: NetworkReady false ({why[:90]})")
    staging = os.path.join(node.CONF_DIR, "e2ecri-staging")
    os.mkdir(staging)
    node.write_primary("rename", name="e2ecri-staging/" + node.PRIMARY)
    os.rename(os.path.join(staging, node.PRIMARY), os.path.join(node.CONF_DIR, node.PRIMARY))
    moved = ready_after(2)[0]
    os.chmod(os.path.join(node.CONF_DIR, node.PRIMARY), 0o600)
    chmodded = ready_after(1)[0]
    node.write_primary("inplace")
    t0 = time.monotonic()
    wait_until("NetworkReady true after a write", lambda: ctx.cri.network_ready()[0], 10, 0.05)
    written = time.monotonic() - t0
    ctx.note(f"fact: conflist moved in from another directory: NetworkReady {str(moved).lower()} 2 s later; after chmod: {str(chmodded).lower()}; "
             f"after a write in place: true within {written * 1000:.0f} ms")
    os.rmdir(staging)
    os.unlink(os.path.join(node.CONF_DIR, node.PRIMARY))
    removed = ready_after(1)[0]
    with open(os.path.join(node.CONF_DIR, node.PRIMARY), "w") as f:
        f.write('{"cniVersion": "1.0.0", "name": "e2ecri-bridge", "plugins": [')
    half = ready_after(1)
    node.write_primary("rename")
    renamed = ready_after(1)[0]
    ctx.note(f"fact: after the conflist is removed: NetworkReady {str(removed).lower()}; a half-written (invalid) file: "
             f"{str(half[0]).lower()} ({half[1][:90]}); replaced by rename: {str(renamed).lower()}")
    ctx.expect(renamed is True, "NetworkReady not true after a valid conflist was renamed into place")


@case
def test_pause_image(ctx):
    """The pause image built from source is a sandbox's PID 1 and ends on
    SIGTERM; a PID 1 without a handler ignores it (the control), which is
    why the pause program needs one."""
    node.write_primary()
    pod = ctx.workload("e2ecri-pause", containers=False)
    _, info = ctx.cri.sandbox_status(pod.sandbox_id)
    pid = info["pid"]
    ctx.expect(info.get("image") == os.environ.get("PAUSE_IMAGE"), f"sandbox image {info.get('image')}")
    ctx.expect(proc_status(pid)["NSpid"].split()[-1] == "1", f"pause is not PID 1 of its namespace: {proc_status(pid)['NSpid']}")
    # RunPodSandbox can return while runc's init (a Go program that
    # catches everything) has not yet exec'ed /pause, or before pause
    # installed its handlers: a SIGTERM then is lost or ignored.
    first = (open(f"/proc/{pid}/comm").read().strip(), proc_status(pid)["SigCgt"])
    catches = wait_until_quiet(lambda: open(f"/proc/{pid}/comm").read().strip() == "pause" and catches_sigterm(pid), 5)
    ctx.debug(f"right after RunPodSandbox the sandbox's pid 1 was {first[0]!r} (SigCgt {first[1]})")
    ctx.expect(catches, f"the pause process does not catch SIGTERM (SigCgt {proc_status(pid)['SigCgt']})")
    os.kill(pid, signal.SIGTERM)
    gone = wait_until_quiet(lambda: not os.path.exists(f"/proc/{pid}") or proc_status(pid)["State"].startswith("Z"), 5)
    if not gone:
        st = proc_status(pid)
        ctx.debug(f"pause after SIGTERM: " + ", ".join(f"{k} {st.get(k)}" for k in ("State", "SigBlk", "SigPnd", "ShdPnd", "SigIgn", "SigCgt")))
    ctx.expect(gone, "the pause process ignored SIGTERM")
    if gone:
        state = wait_until_quiet(lambda: ctx.cri.sandbox_status(pod.sandbox_id)[0].state == 1, 5)  # SANDBOX_NOTREADY
        ctx.expect(state, "the sandbox is not NOTREADY after its pause process ended")
    spec = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "workload.yaml")))["spec"]
    spec["containers"][0]["command"] = ["/bin/sleep", "60"]
    control = kubelet.Pod(ctx.cri, {"name": "e2ecri-nohandler"}, spec, name="e2ecri-nohandler")
    ctx.pods.append(control)
    control.start()
    cpid = control.container_info("main")["pid"]
    ctx.require(wait_until_quiet(lambda: open(f"/proc/{cpid}/comm").read().strip() == "sleep", 5), "control: sleep never started")
    ctx.expect(not catches_sigterm(cpid), "control: busybox sleep catches SIGTERM")
    os.kill(cpid, signal.SIGTERM)
    time.sleep(1)
    alive = os.path.exists(f"/proc/{cpid}") and not proc_status(cpid)["State"].startswith("Z")
    ctx.expect(alive, "control: a PID 1 without a SIGTERM handler ended on SIGTERM (the pause check proves nothing)")
    os.kill(cpid, signal.SIGKILL)
    ctx.note(f"pause ({os.environ.get('PAUSE_IMAGE')}, static, FROM scratch) is PID 1 of the sandbox, catches SIGTERM "
             f"and {'exited' if gone else 'did NOT exit'} on it; control: busybox sleep as PID 1 {'ignored' if alive else 'did not ignore'} SIGTERM")


def catches_sigterm(pid):
    return bool(int(proc_status(pid)["SigCgt"], 16) & (1 << (signal.SIGTERM - 1)))


def wait_until_quiet(predicate, seconds):
    try:
        return wait_until("condition", predicate, seconds, 0.05)
    except TimeoutError:
        return False


@case
def test_install(ctx):
    """The DaemonSet's pod, run as kubelet runs it: the installer adds the
    entry, turns Ready through its readiness probe, and runs with the
    securityContext and resources of the manifest; its agent container
    gives a pod from before the DaemonSet the policy."""
    node.write_primary()
    before = ctx.workload("e2ecri-before")
    p, h = expect_offload(ctx, before, "on", "on", " (before the DaemonSet)")
    ctx.note(f"negative control: a pod started before the DaemonSet has tx-checksumming {p}/{h} (pod/node end)")
    t0 = time.monotonic()
    cm = txgbe_configmap(ctx)
    pod, secs = ctx.installer_ready(cm)
    expect_entry_matches(ctx, cm)
    ctx.expect(open(f"{node.BIN_DIR}/csum-offload", "rb").read() == open(os.environ["PLUGIN_BIN"], "rb").read(),
               "the binary in /opt/cni/bin is not the image's")
    probes = pod.probes["install"].results
    ctx.note(f"{pod.name} Ready {secs:.1f} s after RunPodSandbox; readiness probe (ExecSync) {probes[-1][1]}: {probes[-1][2][:80]}; "
             f"{node.PRIMARY} ends with the ConfigMap's entry; binary in {node.BIN_DIR}")
    # What the runtime applied, read from the kernel.
    c = next(c for c in pod.spec["containers"] if c["name"] == "install")
    info = pod.container_info("install")
    st = proc_status(info["pid"])
    ro = "ro" in root_mount_options(info["pid"])
    cg = info["runtimeSpec"]["linux"]["cgroupsPath"]
    mem = cgroup_value(cg, "memory", "memory.limit_in_bytes")
    quota = cgroup_value(cg, "cpu", "cpu.cfs_quota_us")
    shares = cgroup_value(cg, "cpu", "cpu.shares")
    ctx.expect(st["Uid"].split()[0] == str(pod.spec["securityContext"]["runAsUser"]), f"uid {st['Uid']}")
    ctx.expect(st["CapEff"] == st["CapPrm"] == st["CapBnd"] == "0000000000000000", f"capabilities {st['CapEff']}/{st['CapBnd']}, want none (drop ALL)")
    ctx.expect(st["NoNewPrivs"] == "1", f"NoNewPrivs {st['NoNewPrivs']} (allowPrivilegeEscalation false)")
    ctx.expect(st["Seccomp"] == "2", f"Seccomp mode {st['Seccomp']}, want 2 (RuntimeDefault filter)")
    ctx.expect(ro, "the root filesystem is writable (readOnlyRootFilesystem)")
    ctx.expect(mem == str(kubelet.mem_bytes(c["resources"]["limits"]["memory"])), f"memory.limit_in_bytes {mem}")
    ctx.expect(quota == str(kubelet.milli_cpu(c["resources"]["limits"]["cpu"]) * 100), f"cpu.cfs_quota_us {quota}")
    ctx.expect(shares == str(max(2, kubelet.milli_cpu(c["resources"]["requests"]["cpu"]) * 1024 // 1000)), f"cpu.shares {shares}")
    same_netns = os.stat(f"/proc/{info['pid']}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    ctx.expect(same_netns, "the installer is not in the node's network namespace (hostNetwork)")
    cst = ctx.cri.container_status(pod.containers["install"])[0]
    ctx.expect(cst.image_ref == ctx.cri.image_status(PROJECT_IMAGE).id, f"the installer runs image {cst.image.image} ({cst.image_ref}), not {PROJECT_IMAGE}")
    oom = open(f"/proc/{info['pid']}/oom_score_adj").read().strip()
    ctx.note(f"installer process (image {PROJECT_IMAGE.split('/')[-1]} built by buildah from the Dockerfile, node netns): uid {st['Uid'].split()[0]}, CapEff {st['CapEff']}, NoNewPrivs {st['NoNewPrivs']}, Seccomp {st['Seccomp']}, "
             f"root {'ro' if ro else 'rw'}, memory limit {mem}, cfs quota {quota}, shares {shares}, oom_score_adj {oom} "
             f"(kubelet asks -997; restrict_oom_score_adj clamps)")
    # Negative control: the same reads on a workload container show the
    # defaults, so they do see what the runtime applied.
    w = proc_status(before.container_info("main")["pid"])
    ctx.expect(w["CapEff"] != "0000000000000000" and w["NoNewPrivs"] == "0" and w["Seccomp"] == "0",
               f"workload container: CapEff {w['CapEff']} NoNewPrivs {w['NoNewPrivs']} Seccomp {w['Seccomp']}")
    ctx.note(f"negative control: a workload container without a securityContext reads CapEff {w['CapEff']}, NoNewPrivs {w['NoNewPrivs']}, Seccomp {w['Seccomp']}")
    after = ctx.workload("e2ecri-after", containers=False)
    expect_offload(ctx, after, "off", "off")
    # The pod from before the DaemonSet: the plugin never sees it; the
    # agent container of the same pod gives it the policy.
    try:
        wait_until("the agent fixing the earlier pod", lambda: node.offload_of(before)[:2] == ("off", "off"), 20, 0.1)
    except TimeoutError:
        pass
    expect_offload(ctx, before, "off", "off", " (created before the DaemonSet, fixed by the agent container)")
    agent_log = pod.log("agent")
    ctx.expect("changed container eth0" in agent_log, f"the agent's log does not say it changed the earlier pod:\n{agent_log[-600:]}")
    ainfo = pod.container_info("agent")
    ast = proc_status(ainfo["pid"])
    # NET_ADMIN (12), SYS_ADMIN (21), NET_BROADCAST (11): 0x201800.
    ctx.expect(ast["CapEff"] == ast["CapBnd"] == "0000000000201800", f"agent capabilities {ast['CapEff']}/{ast['CapBnd']}, want NET_ADMIN, SYS_ADMIN, NET_BROADCAST only")
    ctx.expect(ast["NoNewPrivs"] == "1" and ast["Seccomp"] == "2", f"agent NoNewPrivs {ast['NoNewPrivs']} Seccomp {ast['Seccomp']}")
    ctx.expect("ro" in root_mount_options(ainfo["pid"]), "the agent's root filesystem is writable")
    ctx.expect("no CAP_NET_BROADCAST" not in agent_log, "the agent container lacks CAP_NET_BROADCAST: drift inside pods is found by polling only")
    ctx.note(f"a pod started after: tx-checksumming off on both veth ends (the plugin); the pod from before: off/off too, set by the agent container "
             f"(CapEff {ast['CapEff']}, NoNewPrivs {ast['NoNewPrivs']}, Seccomp {ast['Seccomp']}, root ro, /run/netns HostToContainer)")
    # containerd writes the container's stderr to the pod's log path in
    # the CRI log format, which is what `kubectl logs` reads.
    logs = pod.log("install")
    lines = [l for l in logs.splitlines() if " stderr F " in l and "csum-offload" in l]
    ctx.expect(bool(lines), f"no installer line in {pod.log_dir}/install/0.log (CRI log format)")
    ctx.note(f"installer's log ({len(lines)} lines in {pod.log_dir.split('/')[-1][:40]}.../install/0.log), last: {lines[-1].split(' F ', 1)[1][:110] if lines else None!r}")
    ctx.debug(f"installer log:\n{logs}")
    ctx.note(expect_network_ready(ctx, t0, "install"))


@case
def test_workload_tcp(ctx):
    """Two workload pods through RunPodSandbox (bridge + host-local in
    10.61.1.0/24): both veth ends of each have TX checksum off, and 1 MiB
    crosses from one to the other over TCP intact."""
    node.write_primary()
    ctx.installer_ready(txgbe_configmap(ctx))
    a, b = ctx.workload("e2ecri-tcp-a"), ctx.workload("e2ecri-tcp-b")
    for pod in (a, b):
        expect_offload(ctx, pod, "off", "off")
    ip_b = b.ip()
    ctx.require(ip_b.startswith("10.61.1."), f"pod IP {ip_b} outside 10.61.1.0/24")
    # Negative control of the leak checks: with pods running, the same
    # inventory sees every kind of thing a pod holds.
    inv = node.inventory(WORK)
    empty = [k for k, v in inv.items() if not v]
    ctx.expect(not empty, f"the leak inventory sees no {empty} while 2 pods and the installer run: it would miss leaks")
    ctx.note("negative control: with pods running the leak inventory sees " + ", ".join(f"{len(v)} {k}" for k, v in inv.items()))
    server = {}

    def serve():
        server["r"] = ctx.cri.exec_sync(b.containers["main"], ["/bin/sh", "-c", "mkfifo /tmp/h; nc -l -p 5001 <> /tmp/h | sha256sum"], 30)

    t = threading.Thread(target=serve)
    t.start()
    wait_until("the server listening", lambda: "5001" in node.sh("nsenter", f"--net={b.netns()}", "ss", "-Hltn"), 10)
    code, out, err = ctx.cri.exec_sync(a.containers["main"], ["/bin/sh", "-c",
                                       f"head -c 1048576 /dev/urandom > /tmp/p && sha256sum < /tmp/p && nc -w 5 {ip_b} 5001 < /tmp/p"], 30)
    t.join(40)
    ctx.require(code == 0, f"client exit {code}: {err}")
    sent = out.split()[0] if out else ""
    got = server.get("r", (None, "", ""))[1].split()[0] if server.get("r") else ""
    ctx.expect(sent and sent == got, f"sha256 sent {sent}, received {got}")
    ctx.note(f"TCP {a.name} -> {b.name} ({ip_b}:5001): 1048576 bytes, sha256 {got[:16]}... intact; both veth ends of both pods tx off")
    # DEL, as the runtime calls it for a pod with the entry.
    sid = a.sandbox_id[:12]
    ctx.delete(a)
    dels = len(re.findall(rf"DEL {sid} ", csum_log()))
    ctx.note(f"fact: deleting a pod ran csum-offload's DEL {dels} times (StopPodSandbox, then RemovePodSandbox)")


@case
def test_rewrite(ctx):
    """The primary CNI rewrites its conflist without the entry while pods
    keep starting: the installer puts the entry back each time, every pod
    starts, every pod started after a repair has the policy, and
    NetworkReady stays true across the rename rewrites."""
    node.write_primary()
    ctx.installer_ready(txgbe_configmap(ctx))
    churn = Churn(ctx, "e2ecri-rw")
    entry_samples = node.Sampler(node.entry_count, 0.01, "entries")
    entry_samples.start()
    t0 = time.monotonic()
    churn.start()
    windows, gaps = [], []
    for i, how in enumerate(["rename", "rename", "rename", "inplace"]):
        time.sleep(1.0)
        tw = time.monotonic()
        node.write_primary(how)
        try:
            wait_until("the entry back", lambda: node.entry_count() == 1, 15, 0.01)
        except TimeoutError:
            ctx.expect(False, f"rewrite {i + 1} ({how}): the entry did not come back within 15 s")
        tr = time.monotonic()
        windows.append((tw, tr, how))
        gaps.append(f"{how} {1000 * (tr - tw):.0f} ms")
    time.sleep(1.5)
    churn.stop()
    entry_samples.stop()
    t1 = time.monotonic()
    started = [r for r in churn.results if r[5] is None]
    errors = [r for r in churn.results if r[5] is not None]
    ctx.expect(not errors, f"{len(errors)} pods failed: {[r[5][:120] for r in errors[:3]]}")
    # A pod whose sandbox came up after the last repair began must have
    # the policy; one that overlapped a window may not (reported).
    margin = 0.5  # containerd reloads on the event; allow its lag
    in_window, bad = 0, []
    for t_start, t_up, name, p, h, _ in started:
        overlaps = any(t_start <= tr + margin and t_up >= tw for tw, tr, _ in windows)
        if (p, h) != ("off", "off"):
            if overlaps:
                in_window += 1
            else:
                bad.append((name, p, h))
    ctx.expect(not bad, f"pods outside any rewrite window without the policy: {bad[:5]}")
    ctx.expect(len(started) >= 5, f"only {len(started)} pods started during the rewrites")
    ctx.note(f"4 rewrites (3 rename, 1 in place), entry back after: {', '.join(gaps)}; {len(started)} pods started meanwhile, "
             f"{len(started) - in_window - len(bad)} with tx off on both ends, {in_window} without (each overlapped a rewrite window)")
    # NetworkReady: asserted until the in-place rewrite began (a writer in
    # place can expose a half-written file to containerd), reported after.
    n, false = ready_window(ctx, t0, windows[-1][0])
    ctx.expect(n >= 5 and not false, f"NetworkReady false in {len(false)} of {n} samples during the rename rewrites: {false[:5]}")
    n2, false2 = ready_window(ctx, windows[-1][0], t1)
    ctx.note(f"NetworkReady true in all {n} samples during the rename rewrites; during the in-place rewrite: {n2 - len(false2)} of {n2} true")
    counts = sorted({v for _, v in entry_samples.samples})
    ctx.debug(f"entry counts seen: {counts}")


@case
def test_configmap_update(ctx):
    """A ConfigMap change, delivered the way kubelet delivers it (new
    timestamped dir, `..data` swapped by rename), reaches the entry and
    new pods; existing pods keep what their ADD set."""
    node.write_primary()
    cm = txgbe_configmap(ctx)
    pod, _ = ctx.installer_ready(cm)
    first = ctx.workload("e2ecri-cm-1", containers=False)
    expect_offload(ctx, first, "off", "off")
    t0 = time.monotonic()
    new = txgbe_configmap(ctx, {"apply": "container"})
    pod.update_configmap(new)
    vol = pod.volume_paths["config"]
    layout = sorted(os.listdir(vol))
    ctx.expect("..data" in layout and os.path.islink(os.path.join(vol, "config.json")), f"volume layout {layout}")
    try:
        wait_until("the new entry", lambda: (node.entries() or [{}])[0].get("apply") == "container", 30, 0.05)
    except TimeoutError:
        raise Failed(f"the entry did not change within 30 s: {node.entries()}")
    took = time.monotonic() - t0
    expect_entry_matches(ctx, new)
    # The agent container reads the same file: a pod started before it
    # reloads gets the old policy from it (docs/agent.md#kubernetes).
    try:
        wait_until("the agent applying the new config", lambda: "changed; applying it" in pod.log("agent"), 10, 0.05)
    except TimeoutError:
        raise Failed(f"the agent did not reload the ConfigMap within 10 s:\n{pod.log('agent')[-600:]}")
    agent_took = time.monotonic() - t0
    second = ctx.workload("e2ecri-cm-2", containers=False)
    expect_offload(ctx, second, "off", "on", " (apply: container)")
    expect_offload(ctx, first, "off", "off", " (created before the change)")
    wait_until("Ready with the new entry", pod.ready, 15, 0.2)
    ctx.note(f"ConfigMap apply both -> container (..data swap; volume {', '.join(layout)}): entry updated {took * 1000:.0f} ms later, the agent's config {agent_took * 1000:.0f} ms; "
             f"a new pod: eth0 off, node end on; the earlier pod keeps off/off; installer Ready")
    ctx.note(expect_network_ready(ctx, t0, "ConfigMap update"))
    # An invalid edit: the installer keeps the previous entry and the
    # readiness probe turns the pod unready (failureThreshold x period):
    # the negative control of the readiness checks above.
    t1 = time.monotonic()
    pod.update_configmap(txgbe_configmap(ctx, {"apply": "pod"}))
    probe = pod.probes["install"]
    try:
        wait_until("the installer unready", lambda: not pod.ready(), (probe.failure_threshold + 1) * probe.period + 5, 0.2)
    except TimeoutError:
        ctx.expect(False, "the installer stayed Ready with an invalid ConfigMap")
    unready = time.monotonic() - t1
    ctx.expect((node.entries() or [{}])[0].get("apply") == "container", f"the invalid edit changed the entry: {node.entries()}")
    ctx.expect("keeping the previous config" in pod.log("agent"), f"the agent did not refuse the invalid ConfigMap:\n{pod.log('agent')[-600:]}")
    last = probe.results[-1]
    third = ctx.workload("e2ecri-cm-3", containers=False)
    expect_offload(ctx, third, "off", "on", " (invalid ConfigMap: last valid entry)")
    ctx.note(f"invalid ConfigMap (apply: pod): entry kept, installer unready {unready:.1f} s later (probe exit {last[1]}: {last[2][:90]!r}); new pods keep the last valid policy; the agent logs the error and keeps it too")


@case
def test_upgrade(ctx):
    """The DaemonSet's surge update (maxSurge: the new pod beside the old,
    then the old deleted), with a new image tag: pods started all along
    get the policy, the entry is there in every sample, NetworkReady stays
    true."""
    strategy = ctx.daemonset()["spec"].get("updateStrategy", {})
    surge = strategy.get("rollingUpdate", {}).get("maxSurge", 0)
    ctx.require(strategy.get("type") == "RollingUpdate" and surge not in (0, "0", "0%"),
                f"updateStrategy {strategy}: this case runs the surge order; update it for the new strategy")
    node.write_primary()
    cm = txgbe_configmap(ctx)
    old, _ = ctx.installer_ready(cm, PROJECT_IMAGE)
    entry_samples = node.Sampler(node.entry_count, 0.01, "entries")
    churn = Churn(ctx, "e2ecri-up")
    t0 = time.monotonic()
    entry_samples.start()
    churn.start()
    time.sleep(1.0)
    new, secs = ctx.installer_ready(cm, NEXT_IMAGE)
    time.sleep(1.0)
    stopped = ctx.delete(old)
    time.sleep(1.5)
    churn.stop()
    entry_samples.stop()
    code, took = stopped["install"]
    grace = old.spec.get("terminationGracePeriodSeconds", 30)
    ctx.expect(code == 0, f"the old installer exited {code} on SIGTERM")
    ctx.expect(took < grace, f"the old installer took {took:.1f} s to stop (grace {grace} s): it was killed")
    counts = [v for _, v in entry_samples.samples]
    bad = [v for v in counts if v != 1]
    ctx.expect(len(counts) > 50 and not bad, f"entry count not 1 in {len(bad)} of {len(counts)} samples: {sorted(set(bad))}")
    started = [r for r in churn.results if r[5] is None]
    errors = [r for r in churn.results if r[5] is not None]
    missing = [r[2] for r in started if (r[3], r[4]) != ("off", "off")]
    ctx.expect(not errors, f"{len(errors)} pods failed: {[r[5][:120] for r in errors[:3]]}")
    ctx.expect(len(started) >= 5 and not missing, f"{len(missing)} of {len(started)} pods started during the upgrade lack the policy: {missing[:5]}")
    ctx.expect(new.ready(), "the new installer is not Ready after the old one stopped")
    # The new pod's agent waited for the old one's lock, then took over.
    try:
        wait_until("the new agent taking over", lambda: "taking over" in new.log("agent"), 10, 0.1)
    except TimeoutError:
        pass
    new_agent = new.log("agent")
    ctx.expect("waiting for it to stop" in new_agent and "taking over" in new_agent,
               f"the new agent did not wait for the old one and take over:\n{new_agent[-600:]}")
    state = ctx.cri.container_status(new.containers["agent"])[0].state
    ctx.expect(state == 1, f"the new agent container is in state {state}, not running (CONTAINER_RUNNING = 1)")
    expect_entry_matches(ctx, cm)
    img = ctx.cri.container_status(new.containers["install"])[0].image_ref
    old_log = old.log("install")
    ctx.debug(f"old installer log:\n{old_log}")
    ctx.note(f"surge to {NEXT_IMAGE.split('/')[-1]} (Ready {secs:.1f} s after start), old pod stopped by SIGTERM in {took:.2f} s, exit {code}; "
             f"entry present once in all {len(counts)} samples; {len(started)} pods started during it, all tx off on both ends; the new pod runs {NEXT_IMAGE} ({img[:19]}...)")
    ctx.note(expect_network_ready(ctx, t0, "upgrade"))


@case
def test_uninstall(ctx):
    """Deleting the DaemonSet's pod (SIGTERM, grace period) takes the
    entry out and keeps the binary; later pods are untouched; pods made
    with the entry still delete cleanly; NetworkReady stays true."""
    node.write_primary()
    pod, _ = ctx.installer_ready(txgbe_configmap(ctx))
    with_entry = ctx.workload("e2ecri-un-1", containers=False)
    expect_offload(ctx, with_entry, "off", "off")
    t0 = time.monotonic()
    stopped = ctx.delete(pod)
    code, took = stopped["install"]
    ctx.expect(code == 0, f"the installer exited {code} on SIGTERM")
    ctx.expect(took < pod.spec.get("terminationGracePeriodSeconds", 30), f"the installer needed {took:.1f} s: it was killed")
    ctx.expect(node.entry_count() == 0, f"{node.entry_count()} entries left after the DaemonSet's pod was deleted")
    conf = json.load(open(os.path.join(node.CONF_DIR, node.PRIMARY)))
    ctx.expect(conf == node.primary_conflist(), "the primary conflist is not the primary CNI's own after removal")
    ctx.expect(os.path.exists(f"{node.BIN_DIR}/csum-offload"), "the binary was removed (pods made with it could not be deleted)")
    time.sleep(0.5)  # containerd reloads on the rename
    later = ctx.workload("e2ecri-un-2", containers=False)
    expect_offload(ctx, later, "on", "on", " (after uninstall)")
    sid = later.sandbox_id[:12]
    ctx.expect(f"ADD {sid}" not in csum_log(), "csum-offload ran for a pod created after the uninstall")
    wid = with_entry.sandbox_id[:12]
    ctx.delete(with_entry)
    dels = len(re.findall(rf"DEL {wid} ", csum_log()))
    ctx.note(f"installer stopped by SIGTERM in {took:.2f} s, exit {code}: entry gone, primary conflist as the primary wrote it, binary kept; "
             f"a later pod untouched (on/on, no csum-offload call); a pod made with the entry deleted cleanly "
             f"(csum-offload's DEL ran {dels} times: DEL uses the conflist loaded now)")
    ctx.note(expect_network_ready(ctx, t0, "uninstall"))


@case
def test_no_default_route(ctx):
    """On a node whose netns has no
    default route and a config without hostDriver, a pod still starts
    (ADD passes prevResult through, changes nothing, warns), and the
    installer's readiness probe fails saying why the node is not covered."""
    route = node.sh("ip", "route", "show", "default").strip()
    ctx.require(route, "the node has no default route to remove")
    node.sh("ip", "route", "del", "default")
    try:
        node.write_primary()
        cm = ctx.configmap({"logFile": CSUM_LOG, "logLevel": "debug"})  # the shipped entry, no hostDriver
        pod = ctx.installer(cm)
        runs = pod.probes["install"].wait_results(1, 20)
        ctx.note(f"entry in {node.PRIMARY} after the first probe: {node.entry_count()}")
        code, out = runs[0][1], runs[0][2]
        ctx.expect(code != 0, f"the readiness probe passed on a node without a default route: {out[:160]}")
        ctx.expect(DETECTION_FAILED in out, f"the probe's output lacks '{DETECTION_FAILED}': {out[:200]!r}")
        ctx.expect(not pod.ready(), "the installer is Ready on a node where detection fails")
        ctx.note(f"readiness probe without a default route: exit {code}: {out[:140]!r}")
        try:
            w = ctx.workload("e2ecri-noroute", containers=False)
        except Exception as e:
            ctx.expect(False, f"a pod did not start on a node without a default route: {short_error(e)[:300]}")
        else:
            expect_offload(ctx, w, "on", "on", " (no default route)")
            sid = w.sandbox_id[:12]
            warns = [l for l in csum_log().splitlines() if f"ADD {sid}" in l and " WARN " in l]
            ctx.expect(bool(warns), f"no warning in csum-offload's log for ADD {sid}")
            ctx.note(f"a pod started, tx unchanged (on/on); warning: {warns[0][:160] if warns else None!r}")
    finally:
        node.sh("ip", "route", "add", *route.split())


@case
def test_uplink_placement(ctx):
    """apply "uplink" through the DaemonSet: the node's NIC (e2ecri-up0,
    a veth: driver "veth" mapped to tx off) gets the settings, pods' veths
    keep their offload, the NIC's original state is in the node's record,
    and deleting the DaemonSet's pod (the last agent on the node) puts the
    NIC back."""
    uplink, record = "e2ecri-up0", "/run/csum-offload/uplink-state.json"
    ctx.require(node.tx_checksumming(None, uplink) == "on", f"{uplink} does not start with tx-checksumming on")
    node.write_primary()
    cm = ctx.configmap({"apply": "uplink", "drivers": {"veth": {"tx": False}}, "logFile": CSUM_LOG, "logLevel": "debug"})
    t0 = time.monotonic()
    pod, _ = ctx.installer_ready(cm)
    # The agent container sets the NIC at its start, before any pod.
    try:
        wait_until("the agent setting the uplink", lambda: node.tx_checksumming(None, uplink) == "off", 15, 0.1)
    except TimeoutError:
        raise Failed(f"{uplink} still has tx-checksumming on; agent log:\n{pod.log('agent')[-600:]}")
    set_after = time.monotonic() - t0
    w = ctx.workload("e2ecri-uplink", containers=False)
    expect_offload(ctx, w, "on", "on", " (apply uplink: the pod's veth is left alone)")
    recs = [r for r in json.load(open(record)) if r["name"] == uplink]
    ctx.expect(len(recs) == 1 and recs[0]["features"].get("tx-checksum-ip-generic") is True,
               f"{record} does not hold {uplink}'s original state: {recs}")
    agent_log = pod.log("agent")
    ctx.expect(f"uplink NIC {uplink}: -> tx off" in agent_log, f"the agent's log does not say it set {uplink}:\n{agent_log[-600:]}")
    stopped = ctx.delete(pod)
    ctx.expect(stopped.get("agent", (None,))[0] == 0, f"the agent exited {stopped.get('agent')} on SIGTERM")
    ctx.expect(node.tx_checksumming(None, uplink) == "on", f"{uplink} was not put back when the DaemonSet's pod was deleted")
    ctx.expect(not os.path.exists(record) or not [r for r in json.load(open(record)) if r["name"] == uplink],
               f"{record} still holds {uplink} after the restore")
    ctx.expect(node.entry_count() == 0, "the entry is still there after the DaemonSet's pod was deleted")
    ctx.note(f"apply uplink: {uplink} tx off {set_after:.1f} s after the DaemonSet pod started (set by its agent container), "
             f"a pod's veth on/on, original state recorded; pod deleted: the last agent put {uplink} back (on), record emptied, entry removed")
    ctx.delete(w)


@case
def test_leaks(ctx):
    """After every case: no sandbox or container left in the runtime, no
    image pulled, nothing on the node (veths, netns, IP allocations, libcni
    cache, shims, cgroups)."""
    ctx.expect(not ctx.cri.list_sandboxes() and not ctx.cri.list_containers(), "the runtime still lists pods or containers")
    inv = node.inventory(WORK)
    ctx.expect(not any(inv.values()), f"left on the node: { {k: v for k, v in inv.items() if v} }")
    log = open(f"{WORK}/logs/containerd.log").read()
    pulls = re.findall(r'PullImage "[^"]*"', log)
    ctx.expect(not pulls, f"containerd pulled: {pulls[:3]}")
    sandboxes = len(re.findall(r"RunPodSandbox for &PodSandboxMetadata", log))
    # The no-pull check reads the right log only if that log shows the
    # sandboxes this run started.
    ctx.expect(sandboxes >= kubelet.SANDBOXES_STARTED,
               f"containerd's log shows {sandboxes} RunPodSandbox calls, this run made {kubelet.SANDBOXES_STARTED}: is it this runtime's log?")
    ctx.note(f"runtime empty, node clean ({', '.join(inv)}: none); containerd's log: {sandboxes} RunPodSandbox "
             f"(this run started {kubelet.SANDBOXES_STARTED}), no PullImage")


# --- the runner ------------------------------------------------------------------------


def main(argv):
    if argv[:1] == ["--list"]:
        for name, _ in CASES:
            print(name)
        return 0
    skip = os.environ.get("E2E_CRI_SKIP", "").split()
    selected = [(n, f) for n, f in CASES if not argv or any(p in n for p in argv)]
    skipped = [n for n, _ in selected if any(p in n for p in skip)]
    selected = [(n, f) for n, f in selected if n not in skipped]
    if not selected:
        print(f"e2e-cri: no case matches {argv}", file=sys.stderr)
        return 2
    cri = Cri(os.environ["SOCK"])
    v = cri.version()
    print(f"e2e-cri: CRI {v.runtime_api_version} from {v.runtime_name} {v.runtime_version}")
    network_ready = node.Sampler(lambda: cri.network_ready(), 0.05, "NetworkReady")
    network_ready.start()
    passed, failed, failed_names = 0, 0, []
    for name, fn in selected:
        ctx = Ctx(cri, network_ready)
        print(f"== {name}", file=ctx.log, flush=True)
        t0 = time.monotonic()
        try:
            fn(ctx)
        except Failed as e:
            # Every way out of a case by Failed is a failure of the case,
            # recorded once (require() has already).
            if str(e) not in ctx.failures:
                ctx.failures.append(str(e))
        except Exception:
            ctx.failures.append(traceback.format_exc().strip().splitlines()[-1])
            print(traceback.format_exc(), file=ctx.log, flush=True)
        try:
            ctx.cleanup()
        except Exception:
            ctx.failures.append("cleanup: " + traceback.format_exc().strip().splitlines()[-1])
            print(traceback.format_exc(), file=ctx.log, flush=True)
        secs = time.monotonic() - t0
        if ctx.failures:
            failed += 1
            failed_names.append(name)
            print(f"FAIL {name} ({secs:.1f}s)")
        else:
            passed += 1
            print(f"ok   {name} ({secs:.1f}s)")
        for n in ctx.notes:
            print(f"       {n}")
        for f in ctx.failures:
            print(f"       FAIL: {f}")
    network_ready.stop()
    values = [v for _, v in network_ready.samples]
    print(f"\ne2e-cri: NetworkReady sampled {len(values)} times over the run, {sum(1 for v in values if v[0] is True)} true "
          "(false only where a case empties the conf dir: cri-facts, and between cases)")
    if failed_names:
        print(f"e2e-cri: failed: {' '.join(failed_names)}")
    if skipped:
        print(f"e2e-cri: skipped (E2E_CRI_SKIP): {' '.join(skipped)}")
    print(f"e2e-cri: {passed} passed, {failed} failed" + (f", {len(skipped)} skipped" if skipped else ""))
    cri.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
