"""A Pool whose processes die or are ended under a map: the map raises a clear error or
finishes, never hangs, and afterwards every CPU of the cluster is free again and the
next task runs. Each test owns the whole 2-CPU cluster."""
import os
import signal as signals
import time

import psutil
import pytest

import ray_core as ray
from ray_core.exceptions import RayActorError
from ray_core.util.multiprocessing import Pool

from tests.integration.signal_actor import SignalActor
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)
T = 60


def wait_for_signal(signal):
    ray.get(signal.wait.remote(os.getpid()), timeout=T)
    return "done"


def hold_a_cpu(signal):
    """Say it runs, then hold its CPU (a process blocked in ray.get lends its CPU back)
    until the pool is terminated."""
    signal.wait.remote(os.getpid())
    time.sleep(10 * T)


def sqr(x):
    return x * x


@ray.remote
def one():
    return 1


@pytest.fixture
def signal(cluster):
    """A SignalActor; afterwards the cluster must be whole again: both CPUs free and a
    task runs."""
    actor = SignalActor.remote()
    yield actor
    ray.kill(actor)
    wait_for(lambda: ray.available_resources().get("CPU") == 2, "every CPU free again")
    assert ray.get(one.remote(), timeout=T) == 1


def running_pids(signal, count):
    """The pids of the pool processes once `count` items wait on `signal`."""
    return wait_for(lambda: set(ray.get(signal.waiters.remote())) if
                    len(ray.get(signal.waiters.remote())) >= count else None,
                    f"{count} items running")


def test_a_process_sigkilled_mid_map_fails_the_map_clearly(signal):
    with Pool(2) as p:
        result = p.map_async(wait_for_signal, [signal] * 6, chunksize=1)
        victim, *_ = running_pids(signal, 2)
        os.kill(victim, signals.SIGKILL)
        with pytest.raises(RayActorError, match="PoolActor .* died unexpectedly"):
            result.get(T)
        ray.get(signal.send.remote(), timeout=T)
        assert p.map(sqr, range(8)) == [x * x for x in range(8)]    # a fresh process


def test_imap_goes_on_past_a_chunk_whose_process_was_sigkilled(signal):
    with Pool(2) as p:
        it = p.imap_unordered(wait_for_signal, [signal] * 4)
        victim, *_ = running_pids(signal, 2)
        os.kill(victim, signals.SIGKILL)
        wait_for(lambda: not psutil.pid_exists(victim), "the killed process gone")
        ray.get(signal.send.remote(), timeout=T)
        outcomes = []
        for _ in range(4):
            try:
                outcomes.append(it.next(T))
            except RayActorError:
                outcomes.append("died")
        # the chunks on the killed process (one running, the next queued) fail; the rest run
        assert outcomes.count("died") >= 1 and outcomes.count("done") >= 2
        assert len(outcomes) == 4


def test_terminate_mid_map_frees_every_cpu(signal):
    p = Pool(2)
    result = p.map_async(hold_a_cpu, [signal] * 10, chunksize=1)
    pids = running_pids(signal, 2)
    wait_for(lambda: ray.available_resources().get("CPU", 0) == 0, "both CPUs taken")
    p.terminate()
    p.join(T)
    with pytest.raises(RuntimeError, match="terminated"):
        result.get(T)
    wait_for(lambda: not any(psutil.pid_exists(pid) for pid in pids),
             "the pool's processes gone")
