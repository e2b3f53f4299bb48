"""A lease belongs to its owner: when the owner dies, every raylet that granted it a lease
takes the lease back (the leased worker is killed, its resources are free again), for
every kind of owner (actor, task worker, driver) and whichever node the lease is on."""
import os
import time

import pytest

import ray_core as ray
from ray_core import exceptions

from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)


def _all_free(expected_cpus: float):
    return ray.available_resources().get("CPU", 0) == expected_cpus


@ray.remote
def small(x):
    return x


@ray.remote
def sleeper(seconds):
    time.sleep(seconds)
    return seconds


def test_killed_actor_gives_back_the_leases_it_owned(cluster):
    @ray.remote(num_cpus=0)
    class Submitter:
        def run(self, n):
            return sum(ray.get([small.remote(i) for i in range(n)]))

    actor = Submitter.remote()
    assert ray.get(actor.run.remote(2000)) == sum(range(2000))
    ray.kill(actor)
    wait_for(lambda: _all_free(2), "both CPUs back after the actor that leased them died",
             timeout=10)
    assert ray.get(small.remote(5), timeout=30) == 5


def test_actor_killed_while_its_tasks_run_frees_their_workers(cluster):
    @ray.remote(num_cpus=0)
    class Submitter:
        def start(self):
            self.refs = [sleeper.remote(600) for _ in range(4)]
            return True

    actor = Submitter.remote()
    assert ray.get(actor.start.remote())
    wait_for(lambda: ray.available_resources().get("CPU", 0) == 0, "the sleepers to run")
    ray.kill(actor)
    wait_for(lambda: _all_free(2), "both CPUs back after the owner of the sleepers died",
             timeout=10)
    assert ray.get(small.remote(6), timeout=30) == 6


def test_task_that_exits_gives_back_its_subtasks_leases(cluster):
    @ray.remote(num_cpus=0, max_retries=0)
    def parent():
        refs = [sleeper.remote(0.01) for _ in range(200)]
        ray.get(refs[:5])
        os._exit(1)

    with pytest.raises(exceptions.WorkerCrashedError):
        ray.get(parent.remote(), timeout=60)
    wait_for(lambda: _all_free(2), "both CPUs back after the parent task died", timeout=10)
    assert ray.get(small.remote(7), timeout=30) == 7
