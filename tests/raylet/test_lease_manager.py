"""LeaseManager unit tests: queueing, grants, returns, spillback, infeasible, blocked CPU.

A fake pool hands out fake workers at once; the real pool is tested with processes.
"""
import asyncio

import pytest

from ray_common.protocol import common_pb2, node_manager_pb2
from ray_raylet.lease_manager import LeaseManager
from ray_raylet.resources import NodeResources
from ray_raylet.worker_pool import Worker, WorkerStartError

Reply = node_manager_pb2.RequestWorkerLeaseReply
LOCAL, REMOTE = b"\x01" * 28, b"\x02" * 28


class FakePool:
    def __init__(self, fail=False):
        self.fail = fail
        self.popped, self.pushed, self.killed = [], [], []

    async def pop_worker(self, job_id, env=None, runtime_env=None):
        if self.fail:
            raise WorkerStartError("worker exited with code 1 before registering")
        worker = Worker(bytes([len(self.popped) + 1]) * 28)
        worker.pid, worker.port, worker.ip_address = 1000 + len(self.popped), 5000, "127.0.0.1"
        worker.env = env
        self.popped.append(worker)
        return worker

    def push_worker(self, worker):
        self.pushed.append(worker)

    def kill(self, worker, reason, force=False):
        self.killed.append(worker)


def request(lease_id, cpus=1.0, grant_or_reject=False, strategy=None, **extra):
    spec = common_pb2.TaskSpec(task_id=lease_id.ljust(24, b"\0"), job_id=b"\x01\0\0\0",
                               required_resources={"CPU": cpus, **extra})
    if strategy is not None:
        spec.scheduling_strategy.CopyFrom(strategy)
    return node_manager_pb2.RequestWorkerLeaseRequest(resource_spec=spec, lease_id=lease_id,
                                                      grant_or_reject=grant_or_reject)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def manager(total=None, pool=None, warnings=None, gpu_ids=None):
    return LeaseManager(node_id=LOCAL, local=NodeResources(total or {"CPU": 2}, track_instances=True),
                        pool=pool or FakePool(),
                        warn_infeasible=(lambda msg, job: warnings.append(msg))
                        if warnings is not None else None, gpu_ids=gpu_ids)


def test_grant_queue_and_grant_on_return():
    async def body():
        m = manager()
        first = await m.request_lease(request(b"a", 1.5))
        assert first.status == Reply.GRANTED and first.worker_pid == 1000
        assert first.worker_address.node_id == LOCAL and first.worker_address.port == 5000
        second = asyncio.ensure_future(m.request_lease(request(b"b", 1.0)))
        await asyncio.sleep(0.05)
        assert not second.done() and len(m.queue) == 1  # only 0.5 CPU left
        assert m.return_worker(b"a", first.worker_address.worker_id, False)
        assert (await second).status == Reply.GRANTED
        assert m.local.available_floats()["CPU"] == 1.0
        assert not m.return_worker(b"a", first.worker_address.worker_id, False)  # twice: no-op
    run(body())


def test_fractional_and_custom_resources_are_held_until_return():
    async def body():
        m = manager({"CPU": 1, "accel": 2})
        replies = [await m.request_lease(request(bytes([i]), 0.5, accel=1)) for i in range(2)]
        assert all(r.status == Reply.GRANTED for r in replies)
        assert m.local.available_floats() == {"CPU": 0.0, "accel": 0.0}
        mapping = {e.name: list(e.quantities) for e in replies[0].resource_mapping}
        assert mapping == {"CPU": [0.5], "accel": [1.0]}
        third = asyncio.ensure_future(m.request_lease(request(b"c", 0.5)))
        await asyncio.sleep(0.05)
        assert not third.done()
        m.return_worker(bytes([0]), b"", True)
        assert (await third).status == Reply.GRANTED
        assert len(m.pool.killed) == 1
    run(body())


def test_gpu_ids_become_cuda_visible_devices():
    async def body():
        m = manager({"CPU": 4, "GPU": 2}, gpu_ids=[4, 6])
        reply = await m.request_lease(request(b"g", 1, GPU=1))
        gpu = [e for e in reply.resource_mapping if e.name == "GPU"][0]
        assert list(gpu.instance_ids) == [4]
        assert m.pool.popped[0].env == {"CUDA_VISIBLE_DEVICES": "4"}
    run(body())


def test_spillback_to_a_node_with_room_and_estimate():
    async def body():
        m = manager({"CPU": 1})
        address = common_pb2.Address(node_id=REMOTE, ip_address="127.0.0.2", port=7000)
        m.update_node(REMOTE, address, {"CPU": 4}, {"CPU": 4})
        assert (await m.request_lease(request(b"a"))).status == Reply.GRANTED
        spilled = await m.request_lease(request(b"b"))
        assert spilled.status == Reply.SPILLBACK
        assert spilled.retry_at_raylet_address.port == 7000
        assert m.remote[REMOTE].available_floats()["CPU"] == 3.0
        # A request spilled here with grant_or_reject waits locally instead of spilling again.
        local_only = asyncio.ensure_future(m.request_lease(request(b"c", grant_or_reject=True)))
        await asyncio.sleep(0.05)
        assert not local_only.done()
        m.return_worker(b"a", b"", False)
        assert (await local_only).status == Reply.GRANTED
        rejected = await m.request_lease(request(b"d", 8, grant_or_reject=True))
        assert rejected.status == Reply.REJECTED
    run(body())


def test_infeasible_warns_once_and_is_granted_when_a_fitting_node_joins():
    async def body():
        warnings = []
        m = manager({"CPU": 1}, warnings=warnings)
        waiting = [asyncio.ensure_future(m.request_lease(request(bytes([i]), 1, accel=1)))
                   for i in range(2)]
        await asyncio.sleep(0.05)
        assert len(m.infeasible) == 2 and len(warnings) == 1
        assert "cannot be scheduled right now: requires {CPU: 1, accel: 1}" in warnings[0]
        load = m.resource_load()
        assert load[0].num_infeasible_requests_queued == 2
        m.update_node(REMOTE, common_pb2.Address(node_id=REMOTE, ip_address="h", port=1),
                      {"CPU": 2, "accel": 2}, {"CPU": 2, "accel": 2})
        replies = await asyncio.gather(*waiting)
        assert [r.status for r in replies] == [Reply.SPILLBACK] * 2
    run(body())


def test_cancel_queued_request_and_failed_worker_start():
    async def body():
        m = manager({"CPU": 1})
        await m.request_lease(request(b"a"))
        queued = asyncio.ensure_future(m.request_lease(request(b"b")))
        await asyncio.sleep(0.05)
        assert m.cancel(b"b")
        assert (await queued).status == Reply.CANCELED
        assert not m.cancel(b"a")  # granted: not cancelable
        broken = manager({"CPU": 1}, pool=FakePool(fail=True))
        reply = await broken.request_lease(request(b"x"))
        assert reply.status == Reply.FAILED and "before registering" in reply.failure_message
        assert broken.local.available_floats()["CPU"] == 1.0
        bad = await broken.request_lease(request(b"y", -1))
        assert bad.status == Reply.FAILED and "negative" in bad.failure_message
    run(body())


def test_blocked_worker_lends_its_cpu():
    async def body():
        m = manager({"CPU": 1})
        first = await m.request_lease(request(b"a"))
        worker_id = first.worker_address.worker_id
        second = asyncio.ensure_future(m.request_lease(request(b"b")))
        await asyncio.sleep(0.05)
        m.worker_blocked(worker_id, True)
        assert (await second).status == Reply.GRANTED
        m.worker_blocked(worker_id, False)
        assert m.local.available_floats()["CPU"] == -1.0
        m.return_worker(b"a", worker_id, False)
        m.return_worker(b"b", b"", False)
        assert m.local.available_floats()["CPU"] == 1.0
    run(body())


def test_worker_death_frees_its_lease():
    async def body():
        m = manager({"CPU": 1})
        await m.request_lease(request(b"a"))
        worker = m.pool.popped[0]
        worker.lease_id = b"a"
        lease = m.worker_died(worker)
        assert lease.lease_id == b"a" and not m.leases
        assert m.local.available_floats()["CPU"] == 1.0
    run(body())


@pytest.mark.parametrize("soft", [False, True])
def test_hard_affinity_to_a_dead_node_fails(soft):
    async def body():
        m = manager()
        strategy = common_pb2.SchedulingStrategy(
            node_affinity_scheduling_strategy=common_pb2.NodeAffinitySchedulingStrategy(
                node_id=b"\x07" * 28, soft=soft))
        reply = await m.request_lease(request(b"a", strategy=strategy))
        assert reply.status == (Reply.GRANTED if soft else Reply.FAILED)
    run(body())
