"""Raylet: lease grant+return round trips, and object transfer between two raylets.

References measured in the same run: a trivial unary gRPC round trip (HealthCheck) to the
same raylet, and a plain localhost TCP copy of the same bytes the object transfer moves
(into a fresh buffer, as the first pull of an object writes into fresh plasma pages).
Starts a GCS and two raylets (with the raylet tests' stand-in worker) and stops them.
"""
import os
import shutil
import socket
import tempfile
import threading
import time

from ray_common import rpc
from ray_common.protocol import common_pb2, node_manager_pb2 as nm, node_manager_pb2_grpc
from ray_gcs.launcher import start_gcs
from ray_plasma.client import PlasmaClient
from ray_raylet.launcher import start_raylet

TEST_WORKER = "tests.raylet.leasable_worker"
LEASE_ROUNDS = 300
OBJECT_BYTES = 128 * 1024 ** 2
OBJECT_COUNT = 3


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


async def _pull(address, object_id, node_id):
    stub = rpc.stub(node_manager_pb2_grpc.NodeManagerServiceStub, address)
    request = nm.PullObjectsRequest(object_refs=[common_pb2.ObjectReference(object_id=object_id)])
    request.locations.add(object_id=object_id, node_ids=[node_id])
    start = time.perf_counter()
    reply = await stub.PullObjects(request, timeout=120)
    assert reply.success, reply
    return time.perf_counter() - start


def _socket_copy_seconds(data: bytes) -> float:
    """Send `data` over a localhost TCP connection into a preallocated buffer."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    received = bytearray(len(data))
    done = threading.Event()

    def receive():
        conn, _ = server.accept()
        view = memoryview(received)
        got = 0
        while got < len(data):
            got += conn.recv_into(view[got:])
        conn.close()
        done.set()

    thread = threading.Thread(target=receive)
    thread.start()
    client = socket.create_connection(server.getsockname())
    start = time.perf_counter()
    client.sendall(data)
    done.wait()
    elapsed = time.perf_counter() - start
    client.close()
    thread.join()
    server.close()
    assert received == data
    return elapsed


def run():
    root = tempfile.mkdtemp(prefix="rlb", dir="/tmp")
    procs = []
    env = dict(os.environ, RAY_CORE_WORKER_ENTRY_MODULE=TEST_WORKER)
    try:
        gcs_proc, gcs_address = start_gcs(os.path.join(root, "gcs"))
        procs.append(gcs_proc)
        raylets = []
        for i in range(2):
            proc, info = start_raylet(gcs_address, os.path.join(root, f"n{i}"), num_cpus=1,
                                      object_store_memory=(OBJECT_COUNT + 1) * OBJECT_BYTES,
                                      env=env)
            procs.append(proc)
            raylets.append(info)
        holder, puller = raylets
        lease_rate, unary_rate = rpc.run_sync(_lease_rounds(holder["raylet_address"],
                                                            LEASE_ROUNDS))
        data = os.urandom(OBJECT_BYTES)
        client = PlasmaClient(holder["object_store_socket"])
        ids = [os.urandom(28) for _ in range(OBJECT_COUNT)]
        for object_id in ids:
            client.create(object_id, len(data))[:] = data
            client.seal(object_id)
        client.disconnect()
        pull = lambda object_id: rpc.run_sync(_pull(  # noqa: E731
            puller["raylet_address"], object_id, bytes.fromhex(holder["node_id"])))
        pull_seconds = min(pull(object_id) for object_id in ids)
        # Steady state: the copy lands in pages an earlier copy of that size touched.
        local = PlasmaClient(puller["object_store_socket"])
        warm_seconds = []
        for object_id in ids:
            local.delete([object_id])
            warm_seconds.append(pull(object_id))
        local.disconnect()
        socket_seconds = min(_socket_copy_seconds(data) for _ in range(OBJECT_COUNT))
        gb = OBJECT_BYTES / 1e9
        return [
            ("lease grant+return round trips (1 client)", lease_rate, "leases/s",
             unary_rate, "unary rpc/s"),
            (f"object pull between raylets ({OBJECT_BYTES >> 20} MB)", gb / pull_seconds, "GB/s",
             gb / socket_seconds, "socket GB/s"),
            (f"object pull into already-touched pages ({OBJECT_BYTES >> 20} MB)",
             gb / min(warm_seconds), "GB/s", gb / socket_seconds, "socket GB/s"),
        ]
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
