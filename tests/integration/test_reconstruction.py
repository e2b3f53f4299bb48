"""Lineage reconstruction on a two-node cluster (one machine, distinct session dirs): a
task's 50 MB result lost with its node is rebuilt by re-running the task; what cannot be
rebuilt raises ObjectLostError / OwnerDiedError naming the object and why."""
import os
import time

import numpy as np
import pytest

import ray_core as ray
from ray_core._private import worker as worker_mod
from ray_core.node import new_session_dir
from ray_core.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tests.integration.conftest import shut_down_cleanly

FAST_HEALTH_CHECKS = {"health_check_initial_delay_ms": 200, "health_check_period_ms": 200,
                      "health_check_timeout_ms": 500, "health_check_failure_threshold": 2}


@pytest.fixture
def two_nodes(own_temp_dir):
    """A head node (the driver's) and a second node that the test may kill."""
    from ray_raylet.launcher import start_raylet
    with shut_down_cleanly():
        ray.init(num_cpus=1, object_store_memory=200 * 1024 ** 2, _temp_dir=own_temp_dir,
                 _system_config=FAST_HEALTH_CHECKS)
        node = worker_mod.global_worker().node
        second_session = new_session_dir(own_temp_dir)
        proc, info = start_raylet(node.gcs_address, second_session, num_cpus=1,
                                  object_store_memory=200 * 1024 ** 2, env=node.child_env())
        try:
            yield proc, info, own_temp_dir
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@ray.remote
def fifty_mb(seed, runs_dir):
    with open(os.path.join(runs_dir, f"run-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    return np.full(50 * 1024 ** 2 // 8, seed, dtype=np.int64)


@ray.remote
def put_inside():
    return [ray.put(np.full(1_000_000, 4))]


def _runs_dir(temp_dir):
    """Each run of a task leaves a file here, to count how often it ran."""
    runs = os.path.join(temp_dir, "runs")
    os.makedirs(runs)
    return runs


def _on(info, soft=True):
    return NodeAffinitySchedulingStrategy(info["node_id"], soft=soft)


def _kill(proc):
    proc.kill()
    proc.wait()


def _wait_until_dead(info, timeout=30.0):
    deadline = time.monotonic() + timeout
    while any(n["NodeID"] == info["node_id"] and n["Alive"] for n in ray.nodes()):
        assert time.monotonic() < deadline, "the GCS never marked the killed node dead"
        time.sleep(0.1)


def _primary_node(ref):
    core = worker_mod.global_worker().core_worker
    ray.wait([ref])
    return core.memory_store.get_if_exists(ref.object_id()).plasma_node.hex()


def test_lost_task_result_is_rebuilt_by_rerunning_the_task(two_nodes):
    proc, info, temp_dir = two_nodes
    runs = _runs_dir(temp_dir)
    ref = fifty_mb.options(scheduling_strategy=_on(info)).remote(11, runs)
    assert _primary_node(ref) == info["node_id"]
    _kill(proc)
    value = ray.get(ref, timeout=120)
    assert value.shape == (50 * 1024 ** 2 // 8,) and value[0] == 11 and value[-1] == 11
    assert len(os.listdir(runs)) == 2
    core = worker_mod.global_worker().core_worker
    assert core.lifetime.num_reconstructions >= 1


def test_non_retriable_and_put_objects_raise_object_lost(two_nodes):
    proc, info, temp_dir = two_nodes
    runs = _runs_dir(temp_dir)
    once = fifty_mb.options(scheduling_strategy=_on(info), max_retries=0).remote(3, runs)
    assert _primary_node(once) == info["node_id"]
    [inner] = ray.get(put_inside.options(scheduling_strategy=_on(info)).remote())
    # A put whose only copy is on the second node, owned by an actor on the head: it
    # outlives the task that made it, not the node that stores it.
    head = ray.get_runtime_context().get_node_id()
    owner = Owner.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)
                          ).remote()
    [put_ref] = ray.get(put_for.options(scheduling_strategy=_on(info, soft=False)).remote(owner))
    assert ray.get(owner.owns.remote([put_ref]))

    _kill(proc)
    _wait_until_dead(info)
    with pytest.raises(ray.exceptions.ObjectLostError) as lost_task:
        ray.get(once, timeout=60)
    assert once.hex() in str(lost_task.value) and "max_retries=0" in str(lost_task.value)
    with pytest.raises(ray.exceptions.ObjectLostError) as lost_put:
        ray.get(put_ref, timeout=60)
    assert put_ref.hex() in str(lost_put.value) and "put()" in str(lost_put.value)
    assert "died" in str(lost_put.value)
    with pytest.raises(ray.exceptions.OwnerDiedError) as owner_died:
        ray.get(inner, timeout=60)
    assert inner.hex() in str(owner_died.value)


@ray.remote(num_cpus=0)
class Owner:
    def owns(self, refs):
        from ray_core._private import worker
        core = worker.global_worker().core_worker
        return core.reference_counter.is_owned(refs[0].object_id())


@ray.remote
def put_for(owner):
    return [ray.put(np.full(2_000_000, 8), _owner=owner)]


@ray.remote
def plus_one(array, runs_dir):
    with open(os.path.join(runs_dir, f"plus-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    return array + 1


def test_lost_arguments_are_rebuilt_first(two_nodes):
    proc, info, temp_dir = two_nodes
    runs = _runs_dir(temp_dir)
    first = fifty_mb.options(scheduling_strategy=_on(info)).remote(5, runs)
    second = plus_one.options(scheduling_strategy=_on(info)).remote(first, runs)
    assert _primary_node(second) == info["node_id"] == _primary_node(first)
    del first                          # only second's lineage keeps it now
    _kill(proc)
    value = ray.get(second, timeout=120)
    assert value[0] == 6 and value[-1] == 6
    names = sorted(os.listdir(runs))
    assert len([n for n in names if n.startswith("run-")]) == 2
    assert len([n for n in names if n.startswith("plus-")]) == 2


@ray.remote
def first_value(array):
    return int(array[0])


def test_a_borrower_that_cannot_fetch_has_the_owner_rebuild_it(two_nodes):
    proc, info, temp_dir = two_nodes
    runs = _runs_dir(temp_dir)
    lost = fifty_mb.options(scheduling_strategy=_on(info)).remote(7, runs)
    assert _primary_node(lost) == info["node_id"]
    _kill(proc)
    # The task (on the head node) borrows the ref: its fetch fails, it tells the owner,
    # which re-runs fifty_mb and answers with the new copy.
    assert ray.get(first_value.remote(lost), timeout=120) == 7
    assert len(os.listdir(runs)) == 2


@ray.remote
def eighty_mb(seed):
    return np.full(80 * 1024 ** 2 // 8, seed, dtype=np.int64)


def test_an_object_spilled_on_another_node_is_restored_there_and_pulled(two_nodes):
    proc, info, _ = two_nodes
    # Three 80 MB returns on the second node's 200 MB store: the first ones spill there.
    refs = [eighty_mb.options(scheduling_strategy=_on(info, soft=False)).remote(i)
            for i in range(3)]
    ray.wait(refs, num_returns=3, fetch_local=False, timeout=60)
    stats = [n for n in ray.internal.node_memory_stats() if n["node_id"] == info["node_id"]][0]
    assert stats["total_spilled_bytes"] >= 80 * 1024 ** 2
    for i, ref in enumerate(refs):
        value = ray.get(ref, timeout=60)
        assert value[0] == i and value[-1] == i
        del value
    stats = [n for n in ray.internal.node_memory_stats() if n["node_id"] == info["node_id"]][0]
    assert stats["total_restored_bytes"] >= 80 * 1024 ** 2


@ray.remote
def keep_on_node(holder):
    import builtins
    builtins._reconstruction_kept = holder
    return 1


def test_borrowers_on_a_dead_node_release_what_they_held(two_nodes):
    proc, info, _ = two_nodes
    core = worker_mod.global_worker().core_worker
    ref = ray.put(np.full(300_000, 2))
    object_id = ref.object_id()
    assert ray.get(keep_on_node.options(scheduling_strategy=_on(info, soft=False))
                   .remote([ref])) == 1
    del ref
    core.reference_counter.flush()
    assert core.reference_counter.borrowers(object_id)
    _kill(proc)
    deadline = time.monotonic() + 30
    while core.memory_store.contains(object_id):
        core.reference_counter.flush()
        assert time.monotonic() < deadline, "the dead node's borrower still holds the object"
        time.sleep(0.1)
