"""ObjectRef as a future (issue 16), where asyncio and concurrent.futures code already
waits: ref.future() is a concurrent.futures.Future (as_completed, wait, callbacks), and a
ref is awaitable (await, asyncio.gather, asyncio.wrap_future) in a driver and in an async
actor, for refs it owns and refs it borrowed. Errors are instances of the task's own
exception class."""
import asyncio
import concurrent.futures

import pytest

import ray_core as ray

from tests.integration.signal_actor import SignalActor

pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(120)]
T = 60


@ray.remote
def square(x):
    return x * x


@ray.remote
def held(signal, x):
    ray.get(signal.wait.remote(), timeout=T)
    return x


class Oops(KeyError):
    pass


@ray.remote
def fail():
    raise Oops("from the task")


def test_future_is_a_concurrent_future_with_callbacks():
    future = square.remote(7).future()
    assert isinstance(future, concurrent.futures.Future)
    seen = concurrent.futures.Future()
    future.add_done_callback(lambda f: seen.set_result(f.result()))
    assert future.result(timeout=T) == 49 and seen.result(timeout=T) == 49


def test_as_completed_yields_the_finished_first():
    signal = SignalActor.remote()
    slow = held.remote(signal, "slow").future()
    quick = [square.remote(i).future() for i in range(5)]
    done = concurrent.futures.as_completed([slow] + quick, timeout=T)
    assert sorted(next(done).result() for _ in quick) == [0, 1, 4, 9, 16]
    assert not slow.done()
    ray.get(signal.send.remote(), timeout=T)
    assert next(done).result() == "slow"
    finished, _ = concurrent.futures.wait([fail.remote().future()], timeout=T)
    with pytest.raises(Oops, match="from the task"):
        finished.pop().result()


def test_await_gather_and_wrap_future_in_a_driver():
    async def main():
        one = await square.remote(3)
        many = await asyncio.gather(*(square.remote(i) for i in range(4)))
        wrapped = await asyncio.wrap_future(square.remote(5).future())
        with pytest.raises(Oops):
            await fail.remote()
        errors = await asyncio.gather(fail.remote(), square.remote(2), return_exceptions=True)
        return one, many, wrapped, [isinstance(errors[0], Oops), errors[1]]

    assert asyncio.run(main()) == (9, [0, 1, 4, 9], 25, [True, 4])


@ray.remote(num_cpus=0)
class Awaiter:
    """An async actor that awaits refs: those its own calls make, and borrowed ones."""

    async def own(self, n):
        first = await square.remote(n)
        rest = await asyncio.gather(*(square.remote(i) for i in range(n)))
        wrapped = await asyncio.wrap_future(square.remote(n + 1).future())
        return first, rest, wrapped

    async def borrowed(self, refs):
        return await asyncio.gather(*refs)

    async def error_type(self):
        try:
            await fail.remote()
        except Oops as e:       # a RayTaskError that is also an Oops, as in Ray
            return str(e)

    async def while_others_run(self, signal):
        """Awaiting a ref does not block the actor's loop: other calls run meanwhile."""
        return await held.remote(signal, "released")

    async def release(self, signal):
        await signal.send.remote()
        return "sent"


def test_await_in_an_async_actor():
    actor = Awaiter.remote()
    assert ray.get(actor.own.remote(3), timeout=T) == (9, [0, 1, 4], 16)
    refs = [square.remote(i) for i in range(3)]
    assert ray.get(actor.borrowed.remote(refs), timeout=T) == [0, 1, 4]
    assert ray.get(actor.error_type.remote(), timeout=T) .endswith("'from the task'")
    signal = SignalActor.remote()
    waiting = actor.while_others_run.remote(signal)
    assert ray.get(actor.release.remote(signal), timeout=T) == "sent"
    assert ray.get(waiting, timeout=T) == "released"
    ray.kill(actor)
    ray.kill(signal)
