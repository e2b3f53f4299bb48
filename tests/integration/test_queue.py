"""ray_core.util.queue.Queue on a real cluster: FIFO across tasks, blocking with
timeouts inside the actor, batches all-or-nothing, async use, shutdown."""
import asyncio
import time

import pytest

import ray_core as ray
from ray_core.util.queue import Empty, Full, Queue

pytestmark = pytest.mark.timeout(120)


@ray.remote(num_cpus=0.25)
def producer(q, items):
    for item in items:
        q.put(item)
    return len(items)


@ray.remote(num_cpus=0.25)
def consumer(q, count):
    return [q.get(timeout=30) for _ in range(count)]


def test_items_pass_between_tasks_in_order(cluster):
    q = Queue()
    try:
        assert q.empty() and len(q) == 0
        got = consumer.remote(q, 20)                 # waits inside the actor
        assert ray.get(producer.remote(q, list(range(20)))) == 20
        assert ray.get(got, timeout=60) == list(range(20))
        q.put_nowait_batch(["a", "b", "c"])
        assert q.qsize() == 3 and q.get_nowait() == "a"
        assert q.get_nowait_batch(2) == ["b", "c"]
    finally:
        q.shutdown()


def test_bounds_timeouts_and_batches(cluster):
    q = Queue(maxsize=2)
    try:
        q.put(1)
        q.put(2)
        assert q.full()
        with pytest.raises(Full):
            q.put_nowait(3)
        started = time.monotonic()
        with pytest.raises(Full, match="within 0.3s"):
            q.put(3, timeout=0.3)
        assert time.monotonic() - started >= 0.25
        with pytest.raises(Full, match="do not fit"):
            q.put_nowait_batch([3])
        assert [q.get(), q.get()] == [1, 2]
        with pytest.raises(Empty):
            q.get(block=False)
        with pytest.raises(Empty, match="within 0.2s"):
            q.get(timeout=0.2)
        with pytest.raises(Empty, match="2 items asked for"):
            q.get_nowait_batch(2)
        with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
            q.get(timeout=-1)
        with pytest.raises(ValueError, match="maxsize must be a non-negative int"):
            Queue(maxsize=-1)
    finally:
        q.shutdown(force=True)
    with pytest.raises(RuntimeError, match="shut down"):
        q.put(1)


def test_async_put_and_get(cluster):
    q = Queue()

    async def roundtrip():
        await q.put_async("x")
        return await q.get_async(timeout=10)

    try:
        assert asyncio.run(roundtrip()) == "x"
    finally:
        q.shutdown()
