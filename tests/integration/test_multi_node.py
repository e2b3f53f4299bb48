"""Two raylets on one machine: spillback, pushes over TCP, objects across nodes."""
import collections
import threading
import time

import numpy as np
import psutil
import pytest

import ray_core as ray
from ray_common.config import config
from ray_core._private import worker as worker_mod
from tests.waiting import wait_for

# A hang fails this file's test fast instead of eating the suite's budget.
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def two_nodes(cluster):
    from ray_raylet.launcher import start_raylet
    node = worker_mod.global_worker().node
    proc, info = start_raylet(node.gcs_address, node.session_dir, num_cpus=1,
                              resources={"second": 1}, env=node.child_env())
    info["proc"] = proc
    try:
        yield cluster, info
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()


@ray.remote(resources={"second": 1})
def on_second(x):
    return ray.get_runtime_context().get_node_id(), x * 2


@ray.remote(resources={"second": 1})
def big_on_second(n):
    return np.full(n, 7, dtype=np.int64)


@ray.remote
def total(a):
    return int(a.sum())


def test_task_spills_to_the_node_with_the_resource(two_nodes):
    cluster, info = two_nodes
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    node_id, value = ray.get(on_second.remote(21))
    assert value == 42 and node_id == info["node_id"] != cluster["node_id"]
    assert ray.get([on_second.remote(i) for i in range(20)])[-1][1] == 38


def test_large_objects_move_between_nodes(two_nodes):
    ref = big_on_second.remote(1_000_000)           # sealed in the second node's plasma
    array = ray.get(ref)                             # pulled to the head node
    assert array.shape == (1_000_000,) and array[0] == 7
    assert ray.get(total.remote(ref)) == 7_000_000   # used by a task on the head node
    local = ray.put(np.ones(500_000, dtype=np.int64))

    @ray.remote(resources={"second": 1})
    def remote_total(a):
        return int(a.sum())

    assert ray.get(remote_total.remote(local)) == 500_000


def test_node_affinity_strategy(two_nodes):
    from ray_core.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    cluster, info = two_nodes

    @ray.remote
    def where():
        return ray.get_runtime_context().get_node_id()

    for target in (info["node_id"], cluster["node_id"]):
        strategy = NodeAffinitySchedulingStrategy(target, soft=False)
        assert ray.get(where.options(scheduling_strategy=strategy).remote()) == target


def test_spread_tasks_run_on_every_node_even_when_short(two_nodes):
    """As in Ray: a backlog of SPREAD tasks gets workers on every node, also when each
    task is short enough that the first workers leased could run them all (pipelined
    on them, the tasks all ran on the first node)."""
    cluster, info = two_nodes

    @ray.remote(num_cpus=1, scheduling_strategy="SPREAD")
    def where():
        time.sleep(0.003)
        return ray.get_runtime_context().get_node_id()

    counts = collections.Counter(ray.get([where.remote() for _ in range(2000)]))
    assert set(counts) == {info["node_id"], cluster["node_id"]}, counts
    wait_for(lambda: ray.available_resources().get("CPU") == ray.cluster_resources()["CPU"],
             "every CPU free again")


def test_a_stalled_transfer_is_reported(two_nodes, capsys, monkeypatch):
    """A get that waits for an object coming from another node says which node."""
    _cluster, info = two_nodes
    ref = big_on_second.remote(1_000_000)
    ray.wait([ref], fetch_local=False)          # sealed on the second node, not pulled
    monkeypatch.setitem(config._system_config, "get_hang_warning_s", 0.5)
    source = psutil.Process(info["proc"].pid)   # its raylet serves the transfer
    capsys.readouterr()
    source.suspend()
    resume = threading.Timer(2.5, source.resume)
    resume.start()
    try:
        array = ray.get(ref, timeout=60)
    finally:
        resume.cancel()
        source.resume()
    assert array[0] == 7
    err = capsys.readouterr().err
    assert "being transferred" in err and f"from node {info['node_id'][:12]}" in err, err


def test_object_on_a_dead_node_is_lost_not_hung(two_nodes):
    from ray_core import exceptions
    cluster, info = two_nodes
    # max_retries=0: not rebuilt by lineage (its only node, with the "second" resource, dies).
    ref = big_on_second.options(max_retries=0).remote(1_000_000)
    ready, _ = ray.wait([ref], timeout=60, fetch_local=False)
    assert ready == [ref]
    info["proc"].kill()                  # the second node dies with the only copy
    info["proc"].wait()
    with pytest.raises(exceptions.ObjectLostError):
        ray.get(ref, timeout=60)

