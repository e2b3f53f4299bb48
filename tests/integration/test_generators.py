"""Streaming generator tasks on a real cluster: items as they are made, errors, large
items through plasma, a worker crash with retries, async iteration, nested use."""
import asyncio
import os
import time

import numpy as np
import pytest

import ray_core as ray
from ray_core.exceptions import GetTimeoutError, RayTaskError

pytestmark = pytest.mark.timeout(120)


@ray.remote
def count_to(n, pause=0.0):
    for i in range(n):
        time.sleep(pause)
        yield i


@ray.remote
def fails_after(n):
    for i in range(n):
        yield i
    raise KeyError("out of items")


@ray.remote
def big_items(n, size):
    for i in range(n):
        yield np.full(size, i, dtype=np.int64)


@ray.remote(max_retries=1)
def crashes_once(marker, n):
    for i in range(n):
        if i == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        yield i


@ray.remote
def count_after_first(n, go_file):
    """Yields 0, then the rest only once `go_file` exists (the caller's go-ahead)."""
    yield 0
    deadline = time.monotonic() + 60
    while not os.path.exists(go_file) and time.monotonic() < deadline:
        time.sleep(0.01)
    yield from range(1, n)


@ray.remote
def sum_of_stream(n):
    return sum(ray.get(ref) for ref in count_to.remote(n))


def test_items_arrive_while_the_task_still_runs(cluster, tmp_path):
    go_file = str(tmp_path / "go")
    stream = count_after_first.remote(3, go_file)
    assert ray.get(next(stream), timeout=60) == 0
    # The task cannot end before the go-ahead: the first item came while it ran.
    assert ray.wait([stream.completed()], timeout=0)[0] == [] and not stream.is_finished()
    open(go_file, "w").close()
    assert [ray.get(ref, timeout=60) for ref in stream] == [1, 2]
    assert stream.is_finished() and ray.get(stream.completed()) == 3
    assert list(count_to.remote(0)) == []
    with pytest.raises(ValueError, match="got ObjectRefGenerator"):
        ray.get(count_to.remote(1))
    with pytest.raises(TypeError, match="ObjectRefGenerator stays in the process"):
        ray.put(count_to.remote(1))


def test_an_error_ends_the_stream_after_the_items_before_it(cluster):
    stream = fails_after.remote(2)
    assert [ray.get(next(stream)), ray.get(next(stream))] == [0, 1]
    last = next(stream)
    with pytest.raises(KeyError, match="out of items") as info:
        ray.get(last)
    assert isinstance(info.value, RayTaskError)
    with pytest.raises(StopIteration):
        next(stream)


def test_streaming_is_refused_for_a_plain_function_where_it_is_set():
    # As in Ray: at the decorator (or .options()), not when the task runs.
    def not_a_generator():
        return 3

    with pytest.raises(ValueError, match="only be used with generator functions"):
        ray.remote(num_returns="streaming")(not_a_generator)
    with pytest.raises(ValueError, match="'dynamic' can only be used with generator"):
        ray.remote(not_a_generator).options(num_returns="dynamic")

    class Actor:
        @ray.method(num_returns="streaming")
        def not_a_generator(self):
            return 3

    with pytest.raises(ValueError, match="Actor.not_a_generator is not one"):
        ray.remote(Actor)


def test_streaming_is_refused_for_a_plain_actor_method_per_call(cluster):
    @ray.remote
    class Actor:
        def plain(self):
            return 3

        def counting(self):
            yield 1

    actor = Actor.remote()
    with pytest.raises(ValueError, match="method plain is not one"):
        actor.plain.options(num_returns="streaming")
    assert ray.get(actor.counting.options(num_returns=1).remote()) == 1
    assert ray.get(actor.plain.options(num_returns=1).remote()) == 3


def test_large_items_travel_through_plasma(cluster):
    arrays = [ray.get(ref) for ref in big_items.remote(3, 1_000_000)]
    assert [int(a[0]) for a in arrays] == [0, 1, 2] and arrays[2].nbytes == 8_000_000


def test_a_crashed_worker_reruns_the_generator_without_repeating_items(cluster, tmp_path):
    stream = crashes_once.remote(str(tmp_path / "crashed"), 5)
    assert [ray.get(ref) for ref in stream] == [0, 1, 2, 3, 4]


def test_async_iteration_and_timeouts(cluster):
    async def collect():
        return [await ref async for ref in count_to.remote(4)]

    assert asyncio.run(collect()) == [0, 1, 2, 3]
    slow = count_to.remote(1, 3.0)
    with pytest.raises(GetTimeoutError, match="item 0 of generator task"):
        slow.next_ready(timeout=0.2)
    assert ray.get(slow.next_ready(timeout=30)) == 0


def test_a_task_can_consume_a_stream(cluster):
    assert ray.get(sum_of_stream.remote(10), timeout=60) == 45


def test_items_nobody_took_are_freed_with_the_generator(cluster):
    from ray_core._private.generator_streams import item_id
    core = ray._private.worker.global_worker().core_worker
    stream = big_items.remote(3, 100_000)       # plasma items
    first = next(stream)
    ray.get(stream.completed())
    ids = [item_id(first.task_id(), k) for k in range(3)] + [stream.completed().object_id()]
    assert all(core.memory_store.contains(i) for i in ids)
    del stream, first
    deadline = time.monotonic() + 10
    while any(core.memory_store.contains(i) for i in ids):
        core.reference_counter.flush()
        assert time.monotonic() < deadline, "items outlived their generator"
        time.sleep(0.05)


@ray.remote(num_returns=1)
def yields(n):
    yield from range(n)


def test_cancel_a_stream(cluster):
    stream = count_to.remote(100, 0.2)
    assert ray.get(next(stream)) == 0
    ray.cancel(stream)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        for ref in stream:
            ray.get(ref)


def test_a_generator_with_one_return_gives_its_one_value(cluster):
    # As in Ray: the generator's yielded values are the returns, one here.
    assert ray.get(yields.remote(1)) == 0
    with pytest.raises(RayTaskError, match="num_returns=1 but yielded more values"):
        ray.get(yields.remote(2))
    with pytest.raises(RayTaskError, match="num_returns=1 but yielded 0 values"):
        ray.get(yields.remote(0))


@ray.remote
class Producer:
    def __init__(self):
        self.made = 0

    def produce(self, n):
        for _ in range(n):
            self.made += 1
            yield self.made

    def total(self):
        return self.made


@ray.remote
class AsyncProducer:
    async def ping(self):
        return "pong"

    async def produce(self, n):
        for i in range(n):
            await asyncio.sleep(0.01)
            yield i

    def produce_plainly(self, n):
        yield from range(n)


@ray.remote
async def async_count_to(n):
    for i in range(n):
        await asyncio.sleep(0.01)
        yield i


def test_actor_methods_stream_too(cluster):
    producer = Producer.remote()
    assert [ray.get(ref) for ref in producer.produce.remote(3)] == [1, 2, 3]
    assert [ray.get(ref) for ref in producer.produce.remote(2)] == [4, 5]
    assert ray.get(producer.total.remote()) == 5
    async_producer = AsyncProducer.remote()
    assert [ray.get(ref) for ref in async_producer.produce.remote(3)] == [0, 1, 2]
    assert [ray.get(ref) for ref in async_producer.produce_plainly.remote(2)] == [0, 1]
    assert ray.get(async_producer.ping.remote()) == "pong"
    assert [ray.get(ref) for ref in async_count_to.remote(3)] == [0, 1, 2]


def test_wait_treats_a_generator_as_ready_when_next_would_not_block(cluster):
    slow = count_to.remote(2, 1.0)
    quick = count_to.remote(2)
    plain = square_later.remote(3)
    ready, pending = ray.wait([slow, quick, plain], num_returns=2, timeout=30)
    assert ready == [quick, plain] and pending == [slow]
    ready, pending = ray.wait([slow], timeout=0.1)
    assert ready == [] and pending == [slow]
    assert ray.wait([slow], timeout=30)[0] == [slow] and ray.get(next(slow)) == 0
    for _ in quick:
        pass
    assert ray.wait([quick], timeout=0)[0] == [quick]      # finished: next() returns at once


@ray.remote
def square_later(x):
    return x * x
