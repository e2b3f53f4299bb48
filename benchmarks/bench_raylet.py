"""Raylet: lease grant+return round trips (object transfers: bench_transfer.py).

Reference measured in the same run: a trivial unary gRPC round trip (HealthCheck) to the
same raylet. Starts a GCS and a raylet (with the raylet tests' stand-in worker) and stops
them.
"""
import os
import shutil
import tempfile
import time

from ray_common import rpc
from ray_common.protocol import common_pb2, node_manager_pb2 as nm, node_manager_pb2_grpc
from ray_gcs.launcher import start_gcs
from ray_raylet.launcher import start_raylet

TEST_WORKER = "tests.raylet.leasable_worker"
LEASE_ROUNDS = 300


async def _lease_rounds(address, rounds):
    stub = rpc.stub(node_manager_pb2_grpc.NodeManagerServiceStub, address)
    spec = common_pb2.TaskSpec(job_id=b"\x01\0\0\0", required_resources={"CPU": 1})
    first = await stub.RequestWorkerLease(nm.RequestWorkerLeaseRequest(resource_spec=spec))
    await stub.ReturnWorker(nm.ReturnWorkerRequest(lease_id=first.lease_id))
    start = time.perf_counter()
    for i in range(rounds):
        spec.task_id = i.to_bytes(24, "little")
        reply = await stub.RequestWorkerLease(nm.RequestWorkerLeaseRequest(resource_spec=spec))
        assert reply.status == nm.RequestWorkerLeaseReply.GRANTED, reply
        await stub.ReturnWorker(nm.ReturnWorkerRequest(
            lease_id=reply.lease_id, worker_id=reply.worker_address.worker_id))
    lease_rate = rounds / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(rounds):
        await stub.HealthCheck(nm.HealthCheckRequest())
    unary_rate = rounds / (time.perf_counter() - start)
    return lease_rate, unary_rate


def run():
    root = tempfile.mkdtemp(prefix="rlb", dir="/tmp")
    procs = []
    env = dict(os.environ, RAY_CORE_WORKER_ENTRY_MODULE=TEST_WORKER)
    try:
        gcs_proc, gcs_address = start_gcs(os.path.join(root, "gcs"))
        procs.append(gcs_proc)
        proc, raylet = start_raylet(gcs_address, os.path.join(root, "n0"), num_cpus=1,
                                    env=env)
        procs.append(proc)
        lease_rate, unary_rate = rpc.run_sync(_lease_rounds(raylet["raylet_address"],
                                                            LEASE_ROUNDS))
        return [("lease grant+return round trips (1 client)", lease_rate, "leases/s",
                 unary_rate, "unary rpc/s")]
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(30)
            except Exception:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)
