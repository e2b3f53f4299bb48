"""The WorkerPool with real worker processes (tests/raylet/leasable_worker.py).

A bare NodeManagerService that only forwards RegisterWorker stands in for the raylet.
"""
import asyncio
import json
import os
import signal
import time

import pytest

from ray_common import rpc
from ray_common.protocol import node_manager_pb2, node_manager_pb2_grpc
from ray_raylet.worker_pool import WorkerPool, WorkerStartError, WorkerState
from tests.raylet.cluster import TEST_WORKER


class RegisterOnly(node_manager_pb2_grpc.NodeManagerServiceServicer):
    def __init__(self):
        self.pool = None

    async def RegisterWorker(self, request, context):
        try:
            self.pool.register(request.worker_id, request.pid, request.port, request.ip_address,
                               request.job_id, False)
        except KeyError as e:
            return node_manager_pb2.RegisterWorkerReply(success=False, failure_message=str(e))
        return node_manager_pb2.RegisterWorkerReply(success=True)


@pytest.fixture
def pool(tmp_path, monkeypatch, system_config):
    monkeypatch.setenv("RAY_CORE_WORKER_ENTRY_MODULE", TEST_WORKER)
    system_config({"idle_worker_killing_time_threshold_ms": 300,
                   "worker_register_timeout_seconds": 30})
    exits = []
    servicer = RegisterOnly()

    async def make():
        server, port = await rpc.start_server(
            [(node_manager_pb2_grpc.add_NodeManagerServiceServicer_to_server, servicer)],
            port=0, host="127.0.0.1")
        p = WorkerPool(node_id=b"\x01" * 28, node_ip="127.0.0.1",
                       raylet_address=f"127.0.0.1:{port}", gcs_address="127.0.0.1:1",
                       object_store_socket="/nonexistent", session_dir=str(tmp_path),
                       num_cpus=1, on_worker_exit=exits.append)
        servicer.pool = p
        p.start()
        return server, p

    server, p = rpc.run_sync(make())
    p.exits = exits
    yield p
    rpc.run_sync(p.shutdown())
    rpc.run_sync(server.stop(None))
    leftover = [w.pid for w in list(p.workers.values()) if _alive(w.pid)]
    assert not leftover, f"workers left running: {leftover}"


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_start_register_reuse_per_job_and_reap(pool):
    job_a, job_b = b"\x01\0\0\0", b"\x02\0\0\0"
    first = rpc.run_sync(pool.pop_worker(job_a))
    assert first.state is WorkerState.LEASED and first.port > 0
    _wait(lambda: open(first.log_prefix + ".out").read().endswith("\n"))
    out = open(first.log_prefix + ".out").read()
    assert json.loads(out.splitlines()[0])["job_id"] == job_a.hex()
    rpc.run_sync(_call(pool.push_worker, first))
    again = rpc.run_sync(pool.pop_worker(job_a))
    assert again is first and pool.num_started == 1  # reused for the same job
    other = rpc.run_sync(pool.pop_worker(job_b))
    assert other is not first and pool.num_started == 2  # another job gets its own worker
    rpc.run_sync(_call(pool.push_worker, first))
    rpc.run_sync(_call(pool.push_worker, other))
    # Soft limit is num_cpus=1: the older idle worker is reaped after the idle threshold.
    _wait(lambda: len(pool.workers) == 1)
    assert list(pool.workers.values())[0] is other
    assert pool.exits and pool.exits[0] is first and first.exit_intended


def test_worker_death_is_seen_at_once(pool):
    worker = rpc.run_sync(pool.pop_worker(b""))
    os.kill(worker.pid, signal.SIGKILL)
    _wait(lambda: pool.exits)
    assert pool.exits[0] is worker and worker.exit_code == -signal.SIGKILL
    assert not worker.exit_intended and worker.state is WorkerState.DEAD


def test_a_worker_that_cannot_start_fails_with_its_log(pool, monkeypatch):
    monkeypatch.setenv("RAY_CORE_WORKER_ENTRY_MODULE", "tests.raylet.no_such_module")
    with pytest.raises(WorkerStartError, match=r"exited with code 1 before registering; see .*\.err"):
        rpc.run_sync(pool.pop_worker(b""))


def test_startup_concurrency_is_limited(pool):
    async def two():
        return await asyncio.gather(pool.pop_worker(b"\x01\0\0\0"), pool.pop_worker(b"\x02\0\0\0"))
    starts = []
    original = pool._start_worker

    def recording(job_id, env, *worker_env):
        starts.append(sum(w.state is WorkerState.STARTING for w in pool.workers.values()))
        return original(job_id, env, *worker_env)
    pool._start_worker = recording
    workers = rpc.run_sync(two())
    assert len({w.worker_id for w in workers}) == 2
    assert starts == [0, 0]  # num_cpus=1: the second started only after the first registered


async def _call(fn, *args):
    return fn(*args)
