"""A get() that waits long says why, once, on the terminal: one line per object naming
where it is -- a case per cause."""
import os
import signal
import time

import psutil
import pytest

import ray_core as ray
from ray_core import exceptions

from tests.integration.conftest import run_script, shut_down_cleanly
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)
WARN_S = 0.5


@pytest.fixture(scope="module")
def hang_cluster(short_temp_dir):
    with shut_down_cleanly():
        yield ray.init(num_cpus=2, object_store_memory=100 * 1024 ** 2,
                       _temp_dir=short_temp_dir,
                       _system_config={"get_hang_warning_s": WARN_S})


@ray.remote
def sleeper(seconds):
    time.sleep(seconds)
    return seconds


@ray.remote
def echo(x):
    return x


def _report(capsys, ref, timeout=WARN_S + 2.5):
    """What a get of `ref` that times out printed about it."""
    capsys.readouterr()
    with pytest.raises(exceptions.GetTimeoutError):
        ray.get(ref, timeout=timeout)
    err = capsys.readouterr().err
    assert err.count("get() has waited") == 1, err
    assert ref.hex() in err, err
    return err


def test_an_infeasible_task(hang_cluster, capsys):
    ref = echo.options(num_cpus=64).remote(1)
    err = _report(capsys, ref)
    assert "infeasible: it needs {CPU: 64}" in err, err
    ray.cancel(ref)


def _stop(refs):
    for ref in refs:
        ray.cancel(ref, force=True)


def test_a_task_waiting_for_busy_resources(hang_cluster, capsys):
    busy = [sleeper.remote(600) for _ in range(2)]
    wait_for(lambda: ray.available_resources().get("CPU", 0) == 0, "both sleepers running")
    ref = echo.options(num_cpus=2).remote(2)
    err = _report(capsys, ref)
    assert "waiting for resources: it needs {CPU: 2}" in err and "free of {CPU: 2}" in err, err
    _stop(busy)
    assert ray.get(ref, timeout=30) == 2


def test_a_running_task_and_one_waiting_for_its_argument(hang_cluster, capsys):
    first = sleeper.remote(600)
    wait_for(lambda: ray.available_resources().get("CPU", 0) == 1, "the sleeper running")
    second = echo.remote(first)
    err = _report(capsys, second)
    assert "waits for 1 of its argument(s)" in err and first.hex() in err, err
    assert "is running on worker pid" in err, err
    _stop([first])


@ray.remote
class Slow:
    def nap(self, seconds):
        time.sleep(seconds)
        return seconds

    def pid(self):
        return os.getpid()

    def make(self):
        return [ray.put("inner value")]


def test_an_actor_call_behind_a_busy_actor(hang_cluster, capsys):
    actor = Slow.remote()
    ray.get(actor.pid.remote(), timeout=60)     # alive: the next call is sent at once
    first = actor.nap.remote(600)
    err = _report(capsys, first)
    assert "was sent to actor Slow" in err, err
    ray.kill(actor)


def test_an_actor_that_cannot_be_placed(hang_cluster, capsys):
    actor = Slow.options(num_cpus=16).remote()
    err = _report(capsys, actor.nap.remote(0))
    assert "the actor is PENDING_CREATION" in err, err
    ray.kill(actor)


def test_an_object_whose_owner_does_not_answer(hang_cluster, capsys):
    actor = Slow.remote()
    pid = ray.get(actor.pid.remote())
    [inner] = ray.get(actor.make.remote())
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED,
                 "the owner stopped")
        err = _report(capsys, inner, timeout=WARN_S + 4)
        assert "does not answer" in err and "its owner, worker" in err, err
    finally:
        os.kill(pid, signal.SIGCONT)
    assert ray.get(inner, timeout=30) == "inner value"
    ray.kill(actor)


def test_a_task_waiting_for_its_worker_to_start(short_temp_dir):
    result = run_script(f"""
        import ray_core as ray
        ray.init(num_cpus=1, _temp_dir={short_temp_dir!r},
                 _system_config={{"get_hang_warning_s": {WARN_S},
                                  "worker_prestart_on_driver": False,
                                  "worker_entry_module": "tests.integration.slow_worker"}})

        @ray.remote
        def one():
            return 1

        print("RESULT", ray.get(one.remote(), timeout=60))
        ray.shutdown()
    """)
    assert "RESULT 1" in result.stdout, result.stderr[-3000:]
    assert "a worker process is starting for it" in result.stderr, result.stderr[-3000:]


def test_the_cluster_is_whole_after_the_hangs(hang_cluster):
    wait_for(lambda: ray.available_resources().get("CPU") == 2, "every CPU free again")
    assert ray.get(echo.remote("next"), timeout=30) == "next"


def test_a_short_get_says_nothing(hang_cluster, capsys):
    capsys.readouterr()
    assert ray.get(ray.put(5), timeout=30) == 5
    ref = sleeper.remote(600)
    with pytest.raises(exceptions.GetTimeoutError):
        ray.get(ref, timeout=WARN_S / 2)        # gives up before the report is due
    assert "has waited" not in capsys.readouterr().err
    _stop([ref])
