"""The submitter against a fake raylet (leases) and fake workers (connections)."""
import asyncio

from ray_common.ids import JobID, ObjectID, TaskID, WorkerID
from ray_common.protocol import common_pb2, core_worker_pb2, node_manager_pb2

from ray_core import exceptions
from ray_core._private import serialization
from ray_core._private.memory_store import MemoryStore
from ray_core._private.normal_task_submitter import NormalTaskSubmitter
from ray_core._private.task_manager import PendingTask, TaskManager

JOB = JobID.from_int(1)
DRIVER = TaskID.for_driver_task(JOB)
GRANTED = node_manager_pb2.RequestWorkerLeaseReply.GRANTED


class FakeRaylet:
    def __init__(self, capacity):
        self.raylet_address = "fake:1"
        self.capacity = capacity
        self.requests = 0
        self.returned = []
        self.cancelled = []
        self.pending = {}
        self._free = asyncio.Semaphore(capacity)

    async def cancel_worker_lease(self, lease_id, raylet_address=None):
        self.cancelled.append(lease_id)
        self.pending[lease_id].cancel()
        return True

    async def request_worker_lease(self, spec, deps, lease_id=b"", **kwargs):
        self.requests += 1
        acquire = asyncio.ensure_future(self._free.acquire())
        self.pending[lease_id] = acquire
        try:
            await acquire
        except asyncio.CancelledError:
            return node_manager_pb2.RequestWorkerLeaseReply(
                status=node_manager_pb2.RequestWorkerLeaseReply.CANCELED)
        finally:
            self.pending.pop(lease_id, None)
        worker_id = WorkerID.from_random().binary()
        return node_manager_pb2.RequestWorkerLeaseReply(
            status=GRANTED, lease_id=worker_id[:8],
            worker_address=common_pb2.Address(worker_id=worker_id, ip_address="x", port=1))

    async def return_worker(self, lease_id, worker_id, disconnect=False, reason="",
                            raylet_address=None):
        self.returned.append((lease_id, disconnect))
        self._free.release()


class FakeConn:
    """Executes each pushed task (doubling its inlined int) and replies on the loop."""

    def __init__(self, on_replies, on_lost, crash_first=False, max_calls=0):
        self.on_replies, self.on_lost = on_replies, on_lost
        self.closed = False
        self.max_inflight_seen = 0
        self.crash_first = crash_first
        self.pushed = 0
        self.max_calls = max_calls
        self.calls = 0

    def can_write_now(self):
        return False            # no socket: push_now leaves these tasks to the io loop

    def send_batch(self, batch):
        self.pushed += len(batch.requests)
        self.max_inflight_seen = max(self.max_inflight_seen, len(batch.requests))
        if self.crash_first:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.on_lost, self, None)
            return
        replies = core_worker_pb2.PushTaskReplyBatch()
        for req in batch.requests:
            if self.max_calls and self.calls >= self.max_calls:
                break                     # retired: the rest of the batch is never run
            self.calls += 1
            x = serialization.deserialize(req.task_spec.args[0].inlined.data, b"P")
            rep = replies.replies.add(task_id=req.task_spec.task_id)
            rep.worker_exiting = self.max_calls and self.calls == self.max_calls
            ret = rep.return_objects.add(object_id=ObjectID.from_index(
                TaskID(req.task_spec.task_id), 1).binary())
            ret.object.data = serialization.serialize(2 * x).to_bytes()
            ret.object.metadata = b"P"
        asyncio.get_running_loop().call_later(0.001, self.on_replies, self, replies)

    def close(self):
        self.closed = True


def make_task(i, spec_cpu=1.0):
    task_id = TaskID.for_normal_task(JOB, DRIVER, i)
    spec = common_pb2.TaskSpec(task_id=task_id.binary(), num_returns=1)
    spec.required_resources["CPU"] = spec_cpu
    arg = spec.args.add(is_inlined=True)
    arg.inlined.data = serialization.serialize(i).to_bytes()
    arg.inlined.metadata = b"P"
    return PendingTask(spec, task_id, [ObjectID.from_index(task_id, 1)], [], 3, False, "f")


def run(coro):
    return asyncio.run(coro)


def harness(capacity=2, crash_first_n=0, max_calls=0):
    store = MemoryStore()
    raylet = FakeRaylet(capacity)
    conns = []
    submitter = None

    def resubmit(task):
        submitter.submit(task)

    tm = TaskManager(store, resubmit, lambda oid: True)

    async def connect(address, on_replies, on_lost):
        conn = FakeConn(on_replies, on_lost, crash_first=len(conns) < crash_first_n,
                        max_calls=max_calls)
        conns.append(conn)
        return conn

    async def cancel_remote(*a):
        pass

    submitter = NormalTaskSubmitter(tm, raylet, connect, cancel_remote, JOB.binary())
    return store, raylet, conns, tm, submitter


async def wait_all(store, tasks, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not all(store.contains(t.return_ids[0]) for t in tasks):
        assert asyncio.get_running_loop().time() < deadline, "tasks did not finish"
        await asyncio.sleep(0.005)


async def run_doubling_tasks(n, store, tm, submitter):
    """Submit n tasks that double their argument; check every value once all are done."""
    tasks = [make_task(i) for i in range(n)]
    for t in tasks:
        tm.add_pending(t)
        submitter.submit(t)
    await wait_all(store, tasks)
    assert [value(store, t) for t in tasks] == [2 * i for i in range(n)]
    return tasks


def value(store, task):
    obj = store.get_if_exists(task.return_ids[0])
    return serialization.deserialize(obj.data, obj.metadata)


def test_many_tasks_reuse_few_leases_with_pipelining():
    async def main():
        store, raylet, conns, tm, submitter = harness(capacity=2)
        tasks = await run_doubling_tasks(500, store, tm, submitter)
        assert len(conns) <= 2          # leases reused, not one per task
        assert raylet.requests <= 3     # at most one outstanding request per key at a time
        await asyncio.sleep(0.4)        # idle linger, then the workers go back
        assert submitter.num_leased_workers() == 0 and len(raylet.returned) == len(conns)
        await submitter.close()
    run(main())


def test_spread_tasks_ask_for_several_workers_at_once():
    """A SPREAD backlog has up to max_pending_lease_requests_spread requests out (the
    raylets send them to different nodes), one task per worker; the first request
    carries the backlog, the others only themselves. Other keys ask one at a time."""
    async def main():
        store, raylet, conns, tm, submitter = harness(capacity=3)
        seen = []
        request = raylet.request_worker_lease

        async def recording(spec, deps, lease_id=b"", **kwargs):
            seen.append((spec.scheduling_strategy.WhichOneof("strategy"),
                         kwargs["backlog_size"]))
            return await request(spec, deps, lease_id=lease_id, **kwargs)

        raylet.request_worker_lease = recording
        tasks = [make_task(i) for i in range(6)]
        for task in tasks:
            task.spec.scheduling_strategy.spread_scheduling_strategy.SetInParent()
            tm.add_pending(task)
            submitter.submit(task)
        await asyncio.sleep(0)
        assert sorted(backlog for _, backlog in seen) == [1] * 5 + [6]
        await wait_all(store, tasks)
        assert max(conn.max_inflight_seen for conn in conns) <= 1 and len(conns) == 3
        seen.clear()
        plain = [make_task(i) for i in range(100, 106)]
        for task in plain:
            tm.add_pending(task)
            submitter.submit(task)
        await asyncio.sleep(0)
        assert len(seen) == 1
        await wait_all(store, plain)
        await submitter.close()
    run(main())


def test_worker_death_retries_on_new_lease():
    async def main():
        store, raylet, conns, tm, submitter = harness(capacity=1, crash_first_n=1)
        task = make_task(7)
        tm.add_pending(task)
        submitter.submit(task)
        await wait_all(store, [task])
        assert value(store, task) == 14 and task.attempt == 1
        assert raylet.returned[0][1] is True   # the dead worker was disconnected
        await submitter.close()
    run(main())


def test_worker_death_without_retries_fails_with_worker_crashed():
    async def main():
        store, raylet, conns, tm, submitter = harness(capacity=1, crash_first_n=5)
        task = make_task(3)
        task.retries_left = 0
        tm.add_pending(task)
        submitter.submit(task)
        await wait_all(store, [task])
        assert isinstance(value(store, task), exceptions.WorkerCrashedError)
        await submitter.close()
    run(main())


def test_cancel_of_queued_task():
    async def main():
        store, raylet, conns, tm, submitter = harness(capacity=0)
        task = make_task(1)
        tm.add_pending(task)
        submitter.submit(task)
        await asyncio.sleep(0.01)
        submitter.cancel(task, force=False, recursive=True)
        await wait_all(store, [task])
        assert isinstance(value(store, task), exceptions.TaskCancelledError)
        await asyncio.sleep(0.01)
        assert len(raylet.cancelled) == 1 and not raylet.pending  # the lease request withdrawn
        assert not submitter._keys[task.key].leasing
        await submitter.close()
    run(main())


def test_retiring_workers_leftovers_run_elsewhere_without_retries():
    async def main():
        store, raylet, conns, tm, submitter = harness(capacity=1, max_calls=3)
        tasks = await run_doubling_tasks(40, store, tm, submitter)
        assert all(t.attempt == 0 for t in tasks)       # re-queued, not retried
        assert len(conns) >= 14 and all(c.calls <= 3 for c in conns)
        await submitter.close()
    run(main())


def _socket_worker(sock, gate):
    """A worker at the far end of a real socket: doubles each task's int argument (a
    bytes argument counts as its length) and replies; after its first reply it reads
    nothing more until `gate` is set."""
    from ray_core._private import task_transport
    buffer = bytearray()
    replied = 0
    while True:
        if replied == 1:
            gate.wait()
        data = sock.recv(1 << 16)
        if not data:
            return
        buffer += data
        for kind, payload in task_transport._split_frames(buffer):
            batch = core_worker_pb2.PushTaskBatch.FromString(payload)
            replies = core_worker_pb2.PushTaskReplyBatch()
            for req in batch.requests:
                x = serialization.deserialize(req.task_spec.args[0].inlined.data, b"P")
                rep = replies.replies.add(task_id=req.task_spec.task_id)
                ret = rep.return_objects.add(object_id=ObjectID.from_index(
                    TaskID(req.task_spec.task_id), 1).binary())
                ret.object.data = serialization.serialize(2 * (x if isinstance(x, int)
                                                               else len(x))).to_bytes()
                ret.object.metadata = b"P"
            sock.sendall(task_transport.encode_frame(task_transport.KIND_REPLY,
                                                     replies.SerializeToString()))
            replied += 1


def test_push_now_from_another_thread_keeps_frames_whole_when_the_socket_is_full():
    """push_now writes from the caller's thread; a write the socket cannot take whole
    leaves its tail to the io loop, and nothing else reaches that worker before it."""
    import socket
    import threading
    from ray_core._private.task_transport import TaskConnection

    async def main():
        store, raylet, conns, tm, submitter = harness(capacity=1)
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        gate = threading.Event()
        worker = threading.Thread(target=_socket_worker, args=(theirs, gate), daemon=True)
        worker.start()

        async def connect(address, on_replies, on_lost):
            _, conn = await loop.create_unix_connection(
                lambda: TaskConnection(on_replies, on_lost), sock=ours)
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            return conn

        submitter._connect = connect
        first = make_task(0)
        tm.add_pending(first)
        submitter.submit(first)        # leases the worker through the io loop
        await wait_all(store, [first])
        big = make_task(1)
        big.spec.args[0].inlined.data = serialization.serialize(b"x" * (1 << 20)).to_bytes()
        small = make_task(2)
        for task in (big, small):
            tm.add_pending(task)
        assert await loop.run_in_executor(None, submitter.push_now, big)
        (leased,) = [w for state in submitter._keys.values() for w in state.workers]
        assert not leased.conn.can_write_now()                # the socket took a part
        # The big frame's tail waits for the io loop: the next task must not cut in.
        assert not await loop.run_in_executor(None, submitter.push_now, small)
        submitter.submit(small)
        gate.set()
        await wait_all(store, [first, big, small])
        assert [value(store, t) for t in (first, big, small)] == [0, 2 << 20, 4]
        await submitter.close()        # closes our end: the worker reads its end
        worker.join(5)
        theirs.close()
    run(main())
