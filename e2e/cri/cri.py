"""A thin CRI v1 client over containerd's gRPC socket.

The stubs are the runtime.v1 ones of kubernetes/cri-api, as generated in
PyPI's container-runtime-interface-api (pinned in requirements.txt). Every
call has a deadline, so a hung runtime fails the case instead of the run.
"""

import json
import time

import grpc
from cri_api.v1 import api_pb2 as pb
from cri_api.v1 import api_pb2_grpc as rpc

DEADLINE = 60


class Cri:
    def __init__(self, socket):
        self.channel = grpc.insecure_channel("unix://" + socket)
        grpc.channel_ready_future(self.channel).result(timeout=20)
        self.rt = rpc.RuntimeServiceStub(self.channel)
        self.img = rpc.ImageServiceStub(self.channel)

    def close(self):
        self.channel.close()

    # --- runtime ---------------------------------------------------------

    def version(self):
        return self.rt.Version(pb.VersionRequest(version="v1"), timeout=DEADLINE)

    def conditions(self):
        """{condition type: (status, reason, message)} from Status."""
        st = self.rt.Status(pb.StatusRequest(), timeout=10)
        return {c.type: (c.status, c.reason, c.message) for c in st.status.conditions}

    def network_ready(self):
        status, reason, message = self.conditions()["NetworkReady"]
        return status, (reason + ": " + message) if not status else ""

    def run_pod_sandbox(self, config):
        return self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=DEADLINE).pod_sandbox_id

    def stop_pod_sandbox(self, sid):
        self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=DEADLINE)

    def remove_pod_sandbox(self, sid):
        self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=DEADLINE)

    def sandbox_status(self, sid):
        """(PodSandboxStatus, verbose info dict)."""
        r = self.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True), timeout=DEADLINE)
        return r.status, json.loads(r.info.get("info", "{}"))

    def list_sandboxes(self):
        return list(self.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=DEADLINE).items)

    def create_container(self, sid, config, sandbox_config):
        r = self.rt.CreateContainer(
            pb.CreateContainerRequest(pod_sandbox_id=sid, config=config, sandbox_config=sandbox_config),
            timeout=DEADLINE,
        )
        return r.container_id

    def start_container(self, cid):
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=DEADLINE)

    def stop_container(self, cid, grace):
        # containerd waits up to `grace` seconds after the stop signal.
        self.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=grace), timeout=grace + DEADLINE)

    def remove_container(self, cid):
        self.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=DEADLINE)

    def container_status(self, cid):
        """(ContainerStatus, verbose info dict)."""
        r = self.rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=True), timeout=DEADLINE)
        return r.status, json.loads(r.info.get("info", "{}"))

    def list_containers(self):
        return list(self.rt.ListContainers(pb.ListContainersRequest(), timeout=DEADLINE).containers)

    def exec_sync(self, cid, cmd, timeout):
        """(exit code, stdout, stderr) of CMD in the container; the runtime
        kills it after TIMEOUT seconds."""
        r = self.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout), timeout=timeout + DEADLINE)
        return r.exit_code, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

    # --- images ------------------------------------------------------------

    def image_status(self, ref):
        """The image if the runtime has it locally, else None. Never pulls."""
        r = self.img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)), timeout=DEADLINE)
        return r.image if r.image.id else None


def wait_until(what, predicate, seconds, interval=0.1):
    """Polls PREDICATE until it returns something truthy (returned), at most
    SECONDS; raises TimeoutError naming WHAT."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(interval)
