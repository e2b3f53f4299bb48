"""Lease reclamation across nodes: an owner on one node dies, the raylet of another node
takes back the leases it granted it (told by the GCS's worker failure channel)."""
import os
import time

import pytest

import ray_core as ray
from ray_core import exceptions
from ray_core.cluster_utils import Cluster

from tests.integration.conftest import shut_down_cleanly, sigkilled_driver
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)


@ray.remote
def sleeper(seconds):
    time.sleep(seconds)
    return seconds


@pytest.fixture
def two_nodes(own_temp_dir):
    """A head with 1 CPU and the resource 'near', a worker node with 2 CPUs and 'far'."""
    with shut_down_cleanly():
        cluster = Cluster(initialize_head=True, temp_dir=own_temp_dir,
                          head_node_args={"num_cpus": 1, "resources": {"near": 1},
                                          "object_store_memory": 100 << 20})
        try:
            cluster.add_node(num_cpus=2, resources={"far": 2},
                             object_store_memory=100 << 20)
            cluster.connect()
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


def _far_free():
    return ray.available_resources().get("far", 0) == 2


def test_owner_on_another_node_dies_its_leases_there_are_reclaimed(two_nodes):
    @ray.remote(num_cpus=0, max_retries=0)
    def parent():
        [sleeper.options(resources={"far": 1}).remote(600) for _ in range(2)]
        time.sleep(1.0)     # the leases are granted on the other node
        os._exit(1)

    with pytest.raises(exceptions.WorkerCrashedError):
        ray.get(parent.options(resources={"near": 1}).remote(), timeout=60)
    wait_for(_far_free, "the far node's resources back after the remote owner died",
             timeout=10)
    assert ray.get(sleeper.options(resources={"far": 1}).remote(0), timeout=30) == 0


def test_sigkilled_driver_gives_back_leases_on_every_node(two_nodes):
    script = f"""
        import sys, time
        import ray_core as ray
        ray.init(address={two_nodes.address!r}, _temp_dir={two_nodes._temp_dir!r})

        @ray.remote(resources={{"far": 1}})
        def hold():
            time.sleep(600)

        refs = [hold.remote() for _ in range(2)]
        while ray.available_resources().get("far", 0) != 0:
            time.sleep(0.05)
        print("holding", flush=True)
        time.sleep(600)
    """
    with sigkilled_driver(script, "holding"):
        pass
    wait_for(_far_free, "the far node's resources back after the driver was SIGKILLed",
             timeout=10)
    assert ray.get(sleeper.options(resources={"far": 1}).remote(0), timeout=30) == 0


def test_spread_tasks_finish_when_a_node_dies_with_their_leases_out(own_temp_dir):
    """SPREAD keeps several lease requests out at once, some spilled to another node: a
    node SIGKILLed while they are out and while its workers run tasks costs retries, not
    tasks; every task ends with its value and the CPUs left are all free again."""
    with shut_down_cleanly():
        cluster = Cluster(initialize_head=True, temp_dir=own_temp_dir,
                          head_node_args={"num_cpus": 1, "object_store_memory": 100 << 20})
        try:
            doomed = cluster.add_node(num_cpus=1, object_store_memory=100 << 20)
            cluster.add_node(num_cpus=1, object_store_memory=100 << 20)
            cluster.connect()

            @ray.remote(num_cpus=1, scheduling_strategy="SPREAD", max_retries=5)
            def spread(i):
                time.sleep(0.05)
                return i

            refs = [spread.remote(i) for i in range(120)]
            ray.get(refs[:3], timeout=60)       # workers are up, more leases are out
            cluster.remove_node(doomed, allow_graceful=False)
            assert ray.get(refs, timeout=120) == list(range(120))
            wait_for(lambda: ray.available_resources().get("CPU", 0) ==
                     ray.cluster_resources().get("CPU", -1) == 2,
                     "the two CPUs left free again", timeout=30)
            assert ray.get(spread.remote(7), timeout=30) == 7
        finally:
            ray.shutdown()
            cluster.shutdown()
