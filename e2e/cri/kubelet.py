"""Kubelet's part, for one node: reads the manifests, translates a pod spec
into CRI requests the way kubelet does, and runs the pod (volumes,
sandbox, containers, readiness probes through ExecSync, deletion with the
grace period).

The translator knows an explicit set of fields (HANDLED_* below). Any
other field in a manifest fails the test with its path, so a manifest
change cannot go untested silently: handle the new field here (and test
it), then add it to the set.
"""

import json
import os
import platform
import re
import shutil
import threading
import time
import uuid

import yaml
from cri_api.v1 import api_pb2 as pb

# --- the explicit list of handled fields ------------------------------------

LEAF = None  # any value; the translator reads and checks it

HANDLED_SECURITY_CONTEXT = {
    "runAsUser": LEAF,
    "runAsGroup": LEAF,
    "runAsNonRoot": LEAF,
    "seccompProfile": {"type": LEAF},
}
HANDLED_CONTAINER = {
    "name": LEAF,
    "image": LEAF,
    "imagePullPolicy": LEAF,
    "command": LEAF,
    "args": LEAF,
    "env": [{"name": LEAF, "value": LEAF, "valueFrom": {"fieldRef": {"fieldPath": LEAF, "apiVersion": LEAF}}}],
    "readinessProbe": {
        "exec": {"command": LEAF},
        "initialDelaySeconds": LEAF,
        "periodSeconds": LEAF,
        "timeoutSeconds": LEAF,
        "failureThreshold": LEAF,
        "successThreshold": LEAF,
    },
    "resources": {
        "requests": {"cpu": LEAF, "memory": LEAF},
        "limits": {"cpu": LEAF, "memory": LEAF},
    },
    "securityContext": {
        **HANDLED_SECURITY_CONTEXT,
        "privileged": LEAF,
        "allowPrivilegeEscalation": LEAF,
        "readOnlyRootFilesystem": LEAF,
        "capabilities": {"drop": LEAF, "add": LEAF},
    },
    "volumeMounts": [{"name": LEAF, "mountPath": LEAF, "readOnly": LEAF, "mountPropagation": LEAF}],
}
# kubelet's mapping of mountPropagation to the CRI's.
PROPAGATION = {
    None: "PROPAGATION_PRIVATE",
    "None": "PROPAGATION_PRIVATE",
    "HostToContainer": "PROPAGATION_HOST_TO_CONTAINER",
    "Bidirectional": "PROPAGATION_BIDIRECTIONAL",
}
NODE_SELECTOR_TERM = {"matchExpressions": [{"key": LEAF, "operator": LEAF, "values": LEAF}]}
HANDLED_POD_SPEC = {
    "serviceAccountName": LEAF,
    "automountServiceAccountToken": LEAF,
    "hostNetwork": LEAF,
    "priorityClassName": LEAF,
    "tolerations": LEAF,
    "terminationGracePeriodSeconds": LEAF,
    "restartPolicy": LEAF,
    "nodeSelector": LEAF,
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [NODE_SELECTOR_TERM]},
            # A preference cannot keep a pod off the only node.
            "preferredDuringSchedulingIgnoredDuringExecution": LEAF,
        }
    },
    "securityContext": HANDLED_SECURITY_CONTEXT,
    "containers": [HANDLED_CONTAINER],
    "volumes": [
        {
            "name": LEAF,
            "hostPath": {"path": LEAF, "type": LEAF},
            "configMap": {"name": LEAF, "defaultMode": LEAF},
        }
    ],
}
HANDLED_METADATA = {"name": LEAF, "namespace": LEAF, "labels": LEAF, "annotations": LEAF}
HANDLED_DAEMONSET = {
    "apiVersion": LEAF,
    "kind": LEAF,
    "metadata": HANDLED_METADATA,
    "spec": {
        "selector": {"matchLabels": LEAF},
        "updateStrategy": {"type": LEAF, "rollingUpdate": {"maxSurge": LEAF, "maxUnavailable": LEAF}},
        "template": {"metadata": {"labels": LEAF, "annotations": LEAF}, "spec": HANDLED_POD_SPEC},
    },
}
HANDLED_POD = {"apiVersion": LEAF, "kind": LEAF, "metadata": HANDLED_METADATA, "spec": HANDLED_POD_SPEC}
HANDLED_CONFIGMAP = {"apiVersion": LEAF, "kind": LEAF, "metadata": HANDLED_METADATA, "data": LEAF}
HANDLED_KUSTOMIZATION = {"apiVersion": LEAF, "kind": LEAF, "resources": LEAF}
# Kinds that exist in manifests/ but mean nothing to a node's kubelet.
CLUSTER_ONLY_KINDS = {"ServiceAccount", "NetworkPolicy"}


class Unhandled(Exception):
    """A manifest uses something this translator does not implement."""


class NotSchedulable(Exception):
    """The pod's nodeSelector or affinity excludes this node."""


def unhandled_fields(obj, handled, path=""):
    """Paths of OBJ's fields outside the HANDLED tree."""
    if handled is LEAF:
        return []
    if isinstance(handled, list):
        if not isinstance(obj, list):
            return [f"{path} (expected a list)"]
        out = []
        for i, item in enumerate(obj):
            out += unhandled_fields(item, handled[0], f"{path}[{i}]")
        return out
    if not isinstance(obj, dict):
        return [f"{path} (expected an object)"]
    out = []
    for key, value in obj.items():
        sub = f"{path}.{key}" if path else key
        if key not in handled:
            out.append(sub)
        else:
            out += unhandled_fields(value, handled[key], sub)
    return out


def require_handled(obj, handled, what):
    bad = unhandled_fields(obj, handled)
    if bad:
        raise Unhandled(f"{what}: field(s) the CRI translator does not handle: {', '.join(bad)}")


# --- manifests ---------------------------------------------------------------


def load_manifests(directory):
    """{kind: [objects]} from the files kustomization.yaml lists, each
    checked against the handled fields."""
    kust = yaml.safe_load(open(os.path.join(directory, "kustomization.yaml")))
    require_handled(kust, HANDLED_KUSTOMIZATION, "kustomization.yaml")
    objects = {}
    for name in kust["resources"]:
        for doc in yaml.safe_load_all(open(os.path.join(directory, name))):
            if doc is None:
                continue
            kind = doc["kind"]
            if kind == "DaemonSet":
                require_handled(doc, HANDLED_DAEMONSET, f"{name} DaemonSet")
            elif kind == "ConfigMap":
                require_handled(doc, HANDLED_CONFIGMAP, f"{name} ConfigMap")
            elif kind not in CLUSTER_ONLY_KINDS:
                raise Unhandled(f"{name}: kind {kind} is not handled by the CRI translator")
            objects.setdefault(kind, []).append(doc)
    return objects


# --- quantities, as the API server parses them --------------------------------

_MEM = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def milli_cpu(q):
    q = str(q)
    return int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)


def mem_bytes(q):
    q = str(q)
    for suffix in sorted(_MEM, key=len, reverse=True):
        if q.endswith(suffix):
            return int(float(q[: -len(suffix)]) * _MEM[suffix])
    return int(q)


# --- the node ------------------------------------------------------------------

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
NODE_NAME = "e2ecri-node"
NODE_LABELS = {"kubernetes.io/os": "linux", "kubernetes.io/arch": ARCH, "kubernetes.io/hostname": NODE_NAME}
# The downward API's fields this kubelet fills in (env valueFrom.fieldRef);
# any other is refused.
FIELD_REFS = {"spec.nodeName": NODE_NAME}


def env_value(container, e):
    """An env entry's value: literal, or a downward-API field kubelet fills in."""
    if "valueFrom" not in e:
        return e.get("value", "")
    path = (e["valueFrom"].get("fieldRef") or {}).get("fieldPath")
    if path not in FIELD_REFS:
        raise Unhandled(f"container {container}: env {e['name']}: valueFrom {e['valueFrom']} is not a field this kubelet fills in ({', '.join(FIELD_REFS)})")
    return FIELD_REFS[path]


def _match_expression(expr, labels):
    key, op, values = expr["key"], expr["operator"], expr.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        if key not in labels:
            return False
        a, b = int(labels[key]), int(values[0])
        return a > b if op == "Gt" else a < b
    raise Unhandled(f"node affinity operator {op}")


def check_schedulable(spec, labels=None):
    """Raises NotSchedulable if nodeSelector or required node affinity
    excludes a node with LABELS (this node's by default)."""
    labels = NODE_LABELS if labels is None else labels
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != str(value):
            raise NotSchedulable(f"nodeSelector {key}={value} does not match this node ({key}={labels.get(key)})")
    req = spec.get("affinity", {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    if req:
        terms = req["nodeSelectorTerms"]
        if not any(all(_match_expression(e, labels) for e in t.get("matchExpressions", [])) for t in terms):
            raise NotSchedulable(f"required node affinity {json.dumps(terms)} does not match this node {labels}")


def memory_capacity():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


# kubelet's defaults (pkg/securitycontext): paths masked and read-only in
# every unprivileged container with procMount Default.
MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
CRITICAL_PRIORITY_CLASSES = {"system-node-critical", "system-cluster-critical"}


def oom_score_adj(spec, container):
    """kubelet's qos policy: critical pods and Guaranteed pods -997,
    BestEffort 1000, Burstable scaled by the memory request."""
    if spec.get("priorityClassName") in CRITICAL_PRIORITY_CLASSES:
        return -997
    res = [c.get("resources", {}) for c in spec["containers"]]
    if all(not r.get("requests") and not r.get("limits") for r in res):
        return 1000
    guaranteed = all(
        r.get("limits", {}).get(k) is not None
        and (r.get("requests", {}).get(k) is None or r["requests"][k] == r["limits"][k])
        for r in res
        for k in ("cpu", "memory")
    )
    if guaranteed:
        return -997
    request = mem_bytes(container.get("resources", {}).get("requests", {}).get("memory", 0))
    adj = 1000 - (1000 * request) // memory_capacity()
    return max(2, min(adj, 999))


def _seccomp(sc):
    kind = (sc.get("seccompProfile") or {}).get("type")
    if kind is None:
        return None
    if kind == "RuntimeDefault":
        return pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault), "runtime/default"
    if kind == "Unconfined":
        return pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined), "unconfined"
    raise Unhandled(f"seccompProfile type {kind}")


def expand(value, env):
    """$(VAR) references in command and args, as kubelet expands them."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


# --- a pod on this node --------------------------------------------------------


# RunPodSandbox calls that succeeded in this process (the leak case
# checks containerd's log against it).
SANDBOXES_STARTED = 0
_started_lock = threading.Lock()


class Probe(threading.Thread):
    """A readinessProbe (exec), run through ExecSync on its period, with
    kubelet's thresholds. `results` keeps every run."""

    def __init__(self, cri, cid, spec, name):
        super().__init__(daemon=True, name=f"probe-{name}")
        self.cri, self.cid = cri, cid
        self.command = spec["exec"]["command"]
        self.initial = spec.get("initialDelaySeconds", 0)
        self.period = spec.get("periodSeconds", 10)
        self.timeout = spec.get("timeoutSeconds", 1)
        self.failure_threshold = spec.get("failureThreshold", 3)
        self.success_threshold = spec.get("successThreshold", 1)
        self.ready = False
        self.results = []  # (monotonic time, exit code, output)
        self.stopping = threading.Event()
        self.changed = threading.Condition()

    def run(self):
        if self.stopping.wait(self.initial):
            return
        successes = failures = 0
        while not self.stopping.is_set():
            try:
                code, out, err = self.cri.exec_sync(self.cid, self.command, self.timeout)
                output = (out + err).strip()
            except Exception as e:  # a runtime error is a probe failure, as in kubelet
                code, output = -1, f"probe error: {e}"
            with self.changed:
                self.results.append((time.monotonic(), code, output))
                if code == 0:
                    successes, failures = successes + 1, 0
                    if successes >= self.success_threshold:
                        self.ready = True
                else:
                    successes, failures = 0, failures + 1
                    if failures >= self.failure_threshold:
                        self.ready = False
                self.changed.notify_all()
            if self.stopping.wait(self.period):
                return

    def wait_results(self, n, seconds):
        """Waits until N probe runs happened; returns them."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.results) >= n, timeout=seconds)
            if len(self.results) < n:
                raise TimeoutError(f"only {len(self.results)} probe runs after {seconds} s")
            return list(self.results)


class Pod:
    """One pod, run as kubelet runs it. SPEC is the pod spec (a Pod's
    .spec or a DaemonSet's .spec.template.spec), METADATA its metadata;
    CONFIGMAPS {name: ConfigMap object} backs configMap volumes."""

    def __init__(self, cri, metadata, spec, configmaps=None, images=None, name=None):
        self.cri = cri
        self.spec = spec
        self.uid = str(uuid.uuid4())
        self.name = name or metadata["name"]
        self.namespace = metadata.get("namespace", "default")
        self.labels = dict(metadata.get("labels") or {})
        self.annotations = dict(metadata.get("annotations") or {})
        self.configmaps = configmaps or {}
        # Image overrides {container name: image}, as a new template would carry.
        self.images = images or {}
        self.dir = f"/var/lib/kubelet/pods/{self.uid}"
        self.log_dir = f"/var/log/pods/{self.namespace}_{self.name}_{self.uid}"
        self.cgroup_parent = f"/{os.environ.get('CGROUP_ROOT', 'e2ecri')}/pod{self.uid}"
        self.sandbox_id = None
        self.sandbox_config = None
        self.containers = {}  # name -> container id
        self.probes = {}  # name -> Probe
        self.stopped = {}  # name -> (exit code, seconds StopContainer took)
        self.volume_paths = {}
        self._validate()

    # --- translation ---------------------------------------------------------

    def _validate(self):
        require_handled(self.spec, HANDLED_POD_SPEC, f"pod {self.name}")
        spec = self.spec
        if spec.get("automountServiceAccountToken", True):
            raise Unhandled("automountServiceAccountToken is not false: this kubelet projects no token")
        if spec.get("restartPolicy", "Always") != "Always":
            raise Unhandled(f"restartPolicy {spec['restartPolicy']}")
        check_schedulable(spec)
        for c in spec["containers"]:
            if c.get("imagePullPolicy", "IfNotPresent") not in ("IfNotPresent", "Never"):
                raise Unhandled(f"container {c['name']}: imagePullPolicy {c['imagePullPolicy']} would pull; nothing may be pulled here")
            for e in c.get("env", []):
                env_value(c["name"], e)
            for m in c.get("volumeMounts", []):
                if not any(v["name"] == m["name"] for v in spec.get("volumes", [])):
                    raise Unhandled(f"container {c['name']}: volumeMount {m['name']} has no volume")
        for v in spec.get("volumes", []):
            kinds = [k for k in v if k != "name"]
            if len(kinds) != 1:
                raise Unhandled(f"volume {v['name']}: {kinds}")
            if "hostPath" in v and v["hostPath"].get("type", "") not in ("", "Directory", "DirectoryOrCreate"):
                raise Unhandled(f"volume {v['name']}: hostPath type {v['hostPath']['type']}")

    def _sandbox_config(self):
        spec = self.spec
        host_network = bool(spec.get("hostNetwork"))
        psc = spec.get("securityContext") or {}
        sc = pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(
                network=pb.NODE if host_network else pb.POD, pid=pb.CONTAINER, ipc=pb.POD
            ),
            privileged=any((c.get("securityContext") or {}).get("privileged") for c in spec["containers"]),
        )
        if "runAsUser" in psc:
            sc.run_as_user.value = psc["runAsUser"]
        if "runAsGroup" in psc:
            sc.run_as_group.value = psc["runAsGroup"]
        seccomp = _seccomp(psc)
        if seccomp:
            sc.seccomp.CopyFrom(seccomp[0])
            sc.seccomp_profile_path = seccomp[1]
        labels = {
            **self.labels,
            "io.kubernetes.pod.name": self.name,
            "io.kubernetes.pod.namespace": self.namespace,
            "io.kubernetes.pod.uid": self.uid,
        }
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=self.name, namespace=self.namespace, uid=self.uid, attempt=0),
            # runc refuses a hostname in the host's UTS namespace, and
            # kubelet sends none for hostNetwork pods.
            hostname="" if host_network else self.name,
            log_directory=self.log_dir,
            labels=labels,
            annotations=self.annotations,
            linux=pb.LinuxPodSandboxConfig(cgroup_parent=self.cgroup_parent, security_context=sc),
        )

    def _container_config(self, c, image_ref):
        spec = self.spec
        env = {e["name"]: env_value(c["name"], e) for e in c.get("env", [])}
        psc = spec.get("securityContext") or {}
        csc = c.get("securityContext") or {}
        merged = {**psc, **{k: v for k, v in csc.items() if k in HANDLED_SECURITY_CONTEXT}}
        sc = pb.LinuxContainerSecurityContext(
            namespace_options=pb.NamespaceOption(
                network=pb.NODE if spec.get("hostNetwork") else pb.POD, pid=pb.CONTAINER, ipc=pb.POD
            ),
            privileged=bool(csc.get("privileged")),
            readonly_rootfs=bool(csc.get("readOnlyRootFilesystem")),
            # kubelet: no_new_privs unless privilege escalation is allowed.
            no_new_privs=csc.get("allowPrivilegeEscalation") is False and not csc.get("privileged"),
            capabilities=pb.Capability(
                add_capabilities=(csc.get("capabilities") or {}).get("add", []),
                drop_capabilities=(csc.get("capabilities") or {}).get("drop", []),
            ),
        )
        if not csc.get("privileged"):
            sc.masked_paths.extend(MASKED_PATHS)
            sc.readonly_paths.extend(READONLY_PATHS)
        if "runAsUser" in merged:
            sc.run_as_user.value = merged["runAsUser"]
        if "runAsGroup" in merged:
            sc.run_as_group.value = merged["runAsGroup"]
        if merged.get("runAsNonRoot") and merged.get("runAsUser", 0) == 0:
            raise Unhandled(f"container {c['name']}: runAsNonRoot with uid 0 (kubelet refuses to start it)")
        seccomp = _seccomp(merged)
        if seccomp:
            sc.seccomp.CopyFrom(seccomp[0])
            sc.seccomp_profile_path = seccomp[1]
        res = c.get("resources") or {}
        limits, requests = res.get("limits", {}), res.get("requests", {})
        resources = pb.LinuxContainerResources(oom_score_adj=oom_score_adj(spec, c))
        cpu_request = requests.get("cpu", limits.get("cpu"))
        if cpu_request is not None:
            resources.cpu_shares = max(2, milli_cpu(cpu_request) * 1024 // 1000)
        if "cpu" in limits:
            resources.cpu_period = 100000
            resources.cpu_quota = max(1000, milli_cpu(limits["cpu"]) * 100000 // 1000)
        if "memory" in limits:
            resources.memory_limit_in_bytes = mem_bytes(limits["memory"])
        mounts = []
        for m in c.get("volumeMounts", []):
            vol = next(v for v in spec["volumes"] if v["name"] == m["name"])
            read_only = bool(m.get("readOnly")) or "configMap" in vol
            propagation = m.get("mountPropagation")
            if propagation not in PROPAGATION:
                raise Unhandled(f"mountPropagation {propagation!r} of {c['name']}")
            mounts.append(
                pb.Mount(
                    container_path=m["mountPath"],
                    host_path=self.volume_paths[vol["name"]],
                    readonly=read_only,
                    propagation=getattr(pb, PROPAGATION[propagation]),
                )
            )
        # kubelet's termination message file (terminationMessagePath).
        term = f"{self.dir}/containers/{c['name']}/{uuid.uuid4().hex[:8]}"
        os.makedirs(os.path.dirname(term), exist_ok=True)
        open(term, "w").close()
        mounts.append(pb.Mount(container_path="/dev/termination-log", host_path=term))
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=c["name"], attempt=0),
            image=pb.ImageSpec(image=image_ref),
            command=[expand(x, env) for x in c.get("command", [])],
            args=[expand(x, env) for x in c.get("args", [])],
            envs=[pb.KeyValue(key=k, value=v) for k, v in env.items()],
            mounts=mounts,
            labels={
                "io.kubernetes.container.name": c["name"],
                "io.kubernetes.pod.name": self.name,
                "io.kubernetes.pod.namespace": self.namespace,
                "io.kubernetes.pod.uid": self.uid,
            },
            log_path=f"{c['name']}/0.log",
            linux=pb.LinuxContainerConfig(resources=resources, security_context=sc),
        )

    # --- volumes ---------------------------------------------------------------

    def _setup_volumes(self):
        for v in self.spec.get("volumes", []):
            if "hostPath" in v:
                path, kind = v["hostPath"]["path"], v["hostPath"].get("type", "")
                if kind == "DirectoryOrCreate" and not os.path.exists(path):
                    os.makedirs(path, mode=0o755)
                if kind in ("Directory", "DirectoryOrCreate") and not os.path.isdir(path):
                    raise RuntimeError(f"hostPath {path} is not a directory")
                self.volume_paths[v["name"]] = path
            else:
                cm_name = v["configMap"]["name"]
                if cm_name not in self.configmaps:
                    raise RuntimeError(f"ConfigMap {cm_name} not found (the pod would stay ContainerCreating)")
                path = f"{self.dir}/volumes/kubernetes.io~configmap/{v['name']}"
                os.makedirs(path, mode=0o755)
                write_atomic(path, self.configmaps[cm_name]["data"], v["configMap"].get("defaultMode", 0o644))
                self.volume_paths[v["name"]] = path

    def update_configmap(self, cm):
        """The kubelet's sync of a changed ConfigMap into every volume of
        this pod that uses it."""
        self.configmaps[cm["metadata"]["name"]] = cm
        for v in self.spec.get("volumes", []):
            if "configMap" in v and v["configMap"]["name"] == cm["metadata"]["name"]:
                write_atomic(self.volume_paths[v["name"]], cm["data"], v["configMap"].get("defaultMode", 0o644))

    # --- lifecycle -------------------------------------------------------------

    def start(self, containers=True):
        """Volumes, RunPodSandbox, then each container created and started
        (in order), with its probe. CONTAINERS=False runs the sandbox only
        (enough for a pod's network)."""
        image_refs = {}
        for c in self.spec["containers"] if containers else []:
            ref = self.images.get(c["name"], c["image"])
            img = self.cri.image_status(ref)
            if img is None:
                raise RuntimeError(f"image {ref} is not on the node and may not be pulled (ErrImageNeverPull)")
            image_refs[c["name"]] = img.id
        self._setup_volumes()
        self.sandbox_config = self._sandbox_config()
        os.makedirs(self.log_dir, exist_ok=True)
        self.sandbox_id = self.cri.run_pod_sandbox(self.sandbox_config)
        with _started_lock:
            global SANDBOXES_STARTED
            SANDBOXES_STARTED += 1
        for c in self.spec["containers"] if containers else []:
            config = self._container_config(c, image_refs[c["name"]])
            os.makedirs(os.path.join(self.log_dir, c["name"]), exist_ok=True)
            cid = self.cri.create_container(self.sandbox_id, config, self.sandbox_config)
            self.containers[c["name"]] = cid
            self.cri.start_container(cid)
            if "readinessProbe" in c:
                probe = Probe(self.cri, cid, c["readinessProbe"], f"{self.name}-{c['name']}")
                self.probes[c["name"]] = probe
                probe.start()
        return self

    def running(self, name):
        st, _ = self.cri.container_status(self.containers[name])
        return st.state == pb.CONTAINER_RUNNING

    def ready(self):
        """kubelet's Ready condition: every container running and every
        readiness probe passing."""
        return all(self.running(n) for n in self.containers) and all(p.ready for p in self.probes.values())

    def log(self, name):
        path = os.path.join(self.log_dir, name, "0.log")
        return open(path).read() if os.path.exists(path) else ""

    def netns(self):
        """The pod's network namespace path, from the runtime's spec."""
        _, info = self.cri.sandbox_status(self.sandbox_id)
        for ns in info["runtimeSpec"]["linux"]["namespaces"]:
            if ns["type"] == "network":
                return ns.get("path") or f"/proc/{info['pid']}/ns/net"
        raise RuntimeError("sandbox has no network namespace entry")

    def ip(self):
        st, _ = self.cri.sandbox_status(self.sandbox_id)
        return st.network.ip

    def container_info(self, name):
        return self.cri.container_status(self.containers[name])[1]

    def delete(self):
        """Pod deletion: probes stop, every container gets StopContainer
        with the grace period (in parallel, as kubelet kills them), then
        the sandbox is stopped and removed, the pod's volumes and its pod
        cgroup go (kubelet's housekeeping)."""
        grace = self.spec.get("terminationGracePeriodSeconds", 30)
        for p in self.probes.values():
            p.stopping.set()
        threads = []
        for name, cid in self.containers.items():
            def stop(name=name, cid=cid):
                t0 = time.monotonic()
                self.cri.stop_container(cid, grace)
                st, _ = self.cri.container_status(cid)
                self.stopped[name] = (st.exit_code, time.monotonic() - t0)
            t = threading.Thread(target=stop)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(grace + 90)
        for p in self.probes.values():
            p.join(30)
        if self.sandbox_id:
            self.cri.stop_pod_sandbox(self.sandbox_id)
            self.cri.remove_pod_sandbox(self.sandbox_id)
        shutil.rmtree(self.dir, ignore_errors=True)
        remove_pod_cgroup(self.cgroup_parent)
        return self.stopped


def write_atomic(path, data, mode):
    """kubelet's AtomicWriter: the payload goes into a new timestamped
    directory, `..data` is swapped to it by one rename, each key is a
    symlink through `..data`, and the old directory is removed."""
    ts = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + uuid.uuid4().hex[:9]
    new = os.path.join(path, ts)
    os.mkdir(new, 0o755)
    for key, value in data.items():
        with open(os.path.join(new, key), "w") as f:
            f.write(value)
        os.chmod(os.path.join(new, key), mode)
    data_link = os.path.join(path, "..data")
    old = os.readlink(data_link) if os.path.islink(data_link) else None
    tmp = os.path.join(path, "..data_tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(ts, tmp)
    os.rename(tmp, data_link)
    for key in data:
        link = os.path.join(path, key)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..data", key), link)
    if old:
        shutil.rmtree(os.path.join(path, old))


def remove_pod_cgroup(parent):
    """rmdir of the pod cgroup in every hierarchy; fails (returns the
    paths) if a container cgroup or process is still in it."""
    left = []
    for root in ["/sys/fs/cgroup/" + h for h in os.listdir("/sys/fs/cgroup")]:
        d = root + parent
        if os.path.isdir(d):
            try:
                os.rmdir(d)
            except OSError:
                left.append(d)
    return left
