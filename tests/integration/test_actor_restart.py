"""Actor restarts with task retries, and calls in flight on a dropped connection: every
call runs once, in order, or fails with the documented error -- never a hang."""
import os
import socket

import pytest

import ray_core as ray
from ray_core import exceptions
from ray_core._private import worker

from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)


@ray.remote(max_restarts=4, max_task_retries=-1)
class ExitsAfterTen:
    """Ray's actor fault tolerance example: each incarnation answers 10 calls and dies
    on the 11th."""

    def __init__(self):
        self.counter = 0

    def increment_and_possibly_fail(self):
        if self.counter == 10:
            os._exit(0)
        self.counter += 1
        return self.counter


def test_restarts_with_unlimited_task_retries(cluster):
    """The call that kills an incarnation is retried on the next (not an error): 50 calls
    succeed across 4 restarts; every call after the last one raises RayActorError."""
    actor = ExitsAfterTen.remote()
    results = [ray.get(actor.increment_and_possibly_fail.remote(), timeout=60)
               for _ in range(50)]
    assert results == list(range(1, 11)) * 5
    for _ in range(10):
        with pytest.raises(exceptions.RayActorError):
            ray.get(actor.increment_and_possibly_fail.remote(), timeout=60)
    wait_for(lambda: ray.available_resources().get("CPU") == 2, "the actor's CPU back")


@ray.remote
class Recorder:
    def __init__(self):
        self.calls = []

    def record(self, i):
        self.calls.append(i)
        return i

    def calls_seen(self):
        return self.calls


def _drop_connection(actor):
    """Cut this driver's connection to the actor under the submitter's feet (as a network
    fault would): the calls in flight are then in doubt."""
    core = worker.global_worker().core_worker
    submitter = core.actor_submitter
    done = []

    def cut():
        state = submitter._actors.get(actor._actor_id)
        if state is not None and state.conn is not None and not state.conn.closed:
            state.conn.transport.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
            done.append(True)
        else:
            done.append(False)

    core.loop.call_soon_threadsafe(cut)
    wait_for(lambda: done, "the cut on the io loop")
    return done[0]


@pytest.mark.parametrize("concurrency", [1, 4], ids=["plain", "threaded"])
def test_calls_in_flight_on_a_dropped_connection_run_once(cluster, concurrency):
    actor = Recorder.options(max_concurrency=concurrency).remote()
    assert ray.get(actor.record.remote(-1)) == -1
    refs = []
    cuts = 0
    for round_ in range(5):
        refs += [actor.record.remote(round_ * 100 + i) for i in range(100)]
        cuts += _drop_connection(actor)
    assert cuts >= 1
    assert ray.get(refs, timeout=60) == [r * 100 + i for r in range(5) for i in range(100)]
    seen = ray.get(actor.calls_seen.remote(), timeout=60)
    expected = [-1] + [r * 100 + i for r in range(5) for i in range(100)]
    # One call at a time runs them in sequence order; threads may finish them in any.
    assert seen == expected if concurrency == 1 else sorted(seen) == sorted(expected)
