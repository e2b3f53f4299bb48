"""A real little cluster for raylet tests: one GCS, raylets added on demand, test workers.

Everything it starts is stopped by `shutdown()` (the fixture's finalizer), pass or fail,
and it checks that no worker or plasma store outlived its raylet.
"""
import os
import shutil
import subprocess
import tempfile

import psutil

from ray_common import rpc
from ray_common.protocol import common_pb2, node_manager_pb2 as nm, node_manager_pb2_grpc
from ray_gcs.client import GcsClient
from ray_gcs.launcher import start_gcs
from ray_raylet.launcher import start_raylet
from tests.waiting import wait_for  # noqa: F401  (re-exported to tests)

TEST_WORKER = "tests.raylet.leasable_worker"
Reply = nm.RequestWorkerLeaseReply




class Raylet:
    """A started raylet: its process, info and a blocking client."""

    def __init__(self, proc, info, session_dir):
        self.proc = proc
        self.info = info
        self.session_dir = session_dir
        self.address = info["raylet_address"]
        self.node_id = bytes.fromhex(info["node_id"])
        self.log_file = info["log_file"]

    def call(self, method, request, timeout=60.0):
        async def go():
            stub = rpc.stub(node_manager_pb2_grpc.NodeManagerServiceStub, self.address)
            return await getattr(stub, method)(request, timeout=timeout)
        return rpc.run_sync(go())

    def spawn(self, method, request, timeout=60.0):
        """Start a call without waiting; returns a concurrent.futures.Future."""
        async def go():
            stub = rpc.stub(node_manager_pb2_grpc.NodeManagerServiceStub, self.address)
            return await getattr(stub, method)(request, timeout=timeout)
        return rpc.spawn(go())

    def lease(self, resources=None, lease_id=None, grant_or_reject=False, dependencies=(),
              wait=True, job_id=b"\x01\0\0\0", strategy=None):
        lease_id = lease_id or os.urandom(28)
        spec = common_pb2.TaskSpec(task_id=os.urandom(24), job_id=job_id,
                                   required_resources=resources or {"CPU": 1})
        if strategy is not None:
            spec.scheduling_strategy.CopyFrom(strategy)
        request = nm.RequestWorkerLeaseRequest(resource_spec=spec, lease_id=lease_id,
                                               grant_or_reject=grant_or_reject,
                                               dependencies=list(dependencies))
        return (self.call if wait else self.spawn)("RequestWorkerLease", request)

    def return_worker(self, reply, disconnect=False):
        self.call("ReturnWorker", nm.ReturnWorkerRequest(
            lease_id=reply.lease_id, worker_id=reply.worker_address.worker_id,
            disconnect_worker=disconnect))

    def stats(self):
        return self.call("GetNodeStats", nm.GetNodeStatsRequest())

    def log(self):
        with open(self.log_file) as f:
            return f.read()

    def descendants(self):
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []


class Cluster:
    def __init__(self, gcs_env=None):
        # Short: plasma socket paths live under it and Unix socket paths are short.
        self.root = tempfile.mkdtemp(prefix="rl", dir="/tmp")
        self.gcs_proc, self.gcs_address = start_gcs(os.path.join(self.root, "gcs"), env=gcs_env)
        self.gcs = GcsClient(self.gcs_address)
        self.raylets = []
        self.env = dict(os.environ, RAY_CORE_WORKER_ENTRY_MODULE=TEST_WORKER)

    def add_raylet(self, num_cpus=1, resources=None, object_store_memory=64 * 1024 ** 2,
                   num_gpus=0, env=None):
        session_dir = os.path.join(self.root, f"n{len(self.raylets)}")
        proc, info = start_raylet(self.gcs_address, session_dir, num_cpus=num_cpus,
                                  num_gpus=num_gpus, resources=resources,
                                  object_store_memory=object_store_memory,
                                  env=dict(self.env, **(env or {})))
        raylet = Raylet(proc, info, session_dir)
        self.raylets.append(raylet)
        return raylet

    def shutdown(self):
        leftovers = []
        for raylet in self.raylets:
            children = raylet.descendants()
            if raylet.proc.poll() is None:
                raylet.proc.terminate()
                try:
                    raylet.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    raylet.proc.kill()
                    raylet.proc.wait()
            gone, alive = psutil.wait_procs(children, timeout=10)
            for proc in alive:
                leftovers.append(proc.pid)
                proc.kill()
        if self.gcs_proc.poll() is None:
            self.gcs_proc.terminate()
            try:
                self.gcs_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.gcs_proc.kill()
                self.gcs_proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
        assert not leftovers, f"processes outlived their raylet: {leftovers}"
