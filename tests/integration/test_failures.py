"""Failures end to end: worker crashes and retries, cancel, retry_exceptions."""
import os
import time

import pytest

import ray_core as ray
from ray_core import exceptions

# A hang fails this file's test fast instead of eating the suite's budget.
pytestmark = pytest.mark.timeout(120)


def _bump(path):
    """Count attempts in a file (each attempt runs in a fresh worker process)."""
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        return len(f.read())


def test_worker_exit_twice_then_success_with_retries(cluster, tmp_path):
    counter = str(tmp_path / "attempts")

    @ray.remote(max_retries=3)
    def flaky(path):
        if _bump(path) <= 2:
            os._exit(1)
        return "survived"

    assert ray.get(flaky.remote(counter)) == "survived"
    assert open(counter).read() == "xxx"


def test_worker_exit_without_retries_is_worker_crashed(cluster):
    @ray.remote(max_retries=0)
    def die():
        os._exit(1)

    with pytest.raises(exceptions.WorkerCrashedError):
        ray.get(die.remote())


def test_default_max_retries_is_three(cluster, tmp_path):
    counter = str(tmp_path / "attempts")

    @ray.remote
    def always_dies(path):
        _bump(path)
        os._exit(1)

    with pytest.raises(exceptions.WorkerCrashedError):
        ray.get(always_dies.remote(counter))
    assert open(counter).read() == "xxxx"


def test_retry_exceptions(cluster, tmp_path):
    counter = str(tmp_path / "attempts")

    @ray.remote(max_retries=2, retry_exceptions=[KeyError])
    def shaky(path):
        if _bump(path) < 3:
            raise KeyError("transient")
        return "ok"

    assert ray.get(shaky.remote(counter)) == "ok"

    @ray.remote(max_retries=2, retry_exceptions=[KeyError])
    def wrong_kind():
        raise ValueError("not retried")

    with pytest.raises(ValueError):
        ray.get(wrong_kind.remote())


@ray.remote
def block(seconds):
    time.sleep(seconds)
    return seconds


def test_cancel_queued_task(cluster, tmp_path):
    @ray.remote
    def hold(path, seconds):
        open(path, "w").close()          # tell the test this task holds its CPU now
        time.sleep(seconds)
        return seconds

    # Fill both CPUs, then queue one more and cancel it before it can run.
    marks = [str(tmp_path / f"running{i}") for i in range(2)]
    busy = [hold.remote(mark, 2) for mark in marks]
    deadline = time.time() + 30
    while not all(os.path.exists(m) for m in marks) and time.time() < deadline:
        time.sleep(0.02)
    queued = block.options(num_cpus=2).remote(0)
    time.sleep(0.2)
    ray.cancel(queued)
    with pytest.raises(exceptions.TaskCancelledError):
        ray.get(queued, timeout=30)
    assert ray.get(busy) == [2, 2]


def test_cancel_running_task(cluster):
    @ray.remote
    def spin():
        while True:
            time.sleep(0.01)

    ref = spin.remote()
    time.sleep(1.0)
    ray.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        ray.get(ref, timeout=30)
    ref = spin.remote()
    time.sleep(1.0)
    ray.cancel(ref, force=True)
    with pytest.raises(exceptions.TaskCancelledError):
        ray.get(ref, timeout=30)
    # The cluster still runs tasks afterwards.
    assert ray.get(block.remote(0)) == 0


def test_infeasible_then_cancel_does_not_hang(cluster):
    ref = block.options(resources={"no_such_thing": 1}).remote(0)
    ready, _ = ray.wait([ref], timeout=0.5)
    assert ready == []
    ray.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        ray.get(ref, timeout=30)


def test_object_owned_by_a_dead_worker_raises_owner_died(cluster):
    import signal

    @ray.remote
    def make():
        return [ray.put("owned by this worker")], os.getpid()

    [ref], pid = ray.get(make.remote())
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(exceptions.OwnerDiedError) as info:
        ray.get(ref, timeout=30)
    assert isinstance(info.value, exceptions.ObjectLostError)
    assert ref.hex() in str(info.value)


def test_cancel_interrupts_blocking_calls_and_children(cluster):
    @ray.remote
    def child():
        time.sleep(60)

    @ray.remote
    def parent():
        return ray.get(child.remote())

    ref = parent.remote()
    time.sleep(1.0)
    ray.cancel(ref)                       # recursive by default
    with pytest.raises(exceptions.TaskCancelledError):
        ray.get(ref, timeout=30)
    # Both CPUs come back: the sleeping child was cancelled too (else one of these
    # would wait behind its 60 s sleep and the get would time out).
    assert ray.get([block.remote(0.5) for _ in range(2)], timeout=30) == [0.5, 0.5]


@ray.remote(max_retries=1)
def sealed_then_killed(path):
    """Its first run seals its own return in plasma, then dies before replying (as a
    worker SIGKILLed at that moment would); the retry finds the copy already there."""
    import numpy as np
    from ray_common.ids import ObjectID
    from ray_core._private import serialization, worker
    value = np.full(1024 ** 2, 3, dtype=np.uint8)
    if _bump(path) == 1:
        core = worker.global_worker().core_worker
        return_id = ObjectID.from_index(core.current_task_id, 1)
        core.plasma_objects.write(return_id, serialization.serialize(value))
        os._exit(1)
    return value


def test_a_retry_whose_return_an_earlier_run_sealed(cluster, tmp_path):
    value = ray.get(sealed_then_killed.remote(str(tmp_path / "attempts")), timeout=60)
    assert value.shape == (1024 ** 2,) and value[0] == 3


@ray.remote(max_retries=1)
def _step(action, arg):
    """One function (one scheduling key), so every call after the first finds a warm
    worker and leaves straight from the calling thread (NormalTaskSubmitter.push_now)."""
    if action == "pid":
        return os.getpid()
    if action == "exit_once" and _bump(arg) == 1:
        os._exit(1)
    if action == "sleep":
        time.sleep(arg)
    return action


def test_tasks_pushed_from_the_calling_thread_outlive_their_worker(cluster, tmp_path):
    from tests.waiting import wait_for
    counter = str(tmp_path / "attempts")
    for _ in range(5):
        assert ray.get(_step.remote("warm", None)) == "warm"
    # The worker exits in the middle of a sync loop: the task is retried elsewhere.
    assert ray.get(_step.remote("exit_once", counter)) == "exit_once"
    assert open(counter).read() == "xx"
    # SIGKILL of the worker while a pushed task runs on it.
    pid = ray.get(_step.remote("pid", None))
    sleeping = _step.remote("sleep", 2.0)
    time.sleep(0.5)
    os.kill(pid, 9)
    assert ray.get(sleeping, timeout=60) == "sleep"
    # Without retries the caller gets WorkerCrashedError, and the next call runs.
    pid = ray.get(_step.remote("pid", None))
    doomed = _step.options(max_retries=0).remote("sleep", 5.0)
    time.sleep(0.5)
    os.kill(pid, 9)
    with pytest.raises(exceptions.WorkerCrashedError):
        ray.get(doomed, timeout=60)
    assert [ray.get(_step.remote("after", None)) for _ in range(3)] == ["after"] * 3
    wait_for(lambda: ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"],
             "every CPU free again after the killed workers", timeout=30)
