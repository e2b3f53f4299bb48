"""ray_core.util.state.explain(id) on a real 2-node cluster: a case per cause a task, an
object or an actor waits for. Every wait is a gate file the test opens, never a timer."""
import functools
import os
import signal
import time

import pytest

import ray_core as ray
from ray_core.util import state
from ray_core.util.placement_group import placement_group, remove_placement_group
from ray_core.util.scheduling_strategies import (NodeAffinitySchedulingStrategy,
                                                 PlacementGroupSchedulingStrategy)

from tests.integration.conftest import run_script
from tests import waiting

pytestmark = pytest.mark.timeout(180)
# State arrives in batches, and this machine is shared: generous deadlines, never timers.
wait_for = functools.partial(waiting.wait_for, timeout=90)


@ray.remote
def wait_gate(gate):
    while not os.path.exists(gate):
        time.sleep(0.05)
    return "opened"


@ray.remote
def echo(x):
    return x


@ray.remote(max_restarts=1)
class Phoenix:
    """Its second incarnation's constructor waits for the gate: RESTARTING until then."""

    def __init__(self, marker, gate):
        if os.path.exists(marker):
            while not os.path.exists(gate):
                time.sleep(0.05)
        open(marker, "w").close()

    def pid(self):
        return os.getpid()


@ray.remote
class Maker:
    def make(self):
        return [ray.put("made by the actor")]


def _says(id_hex, *words, timeout=90):
    """explain(id) once it says every one of `words` (events arrive in batches)."""
    def ready():
        text = state.explain(id_hex)
        return all(w in text for w in words) and text
    return wait_for(ready, f"explain({id_hex}) to say {words}", timeout=timeout)


def test_finished_failed_and_bad_ids(two_nodes):
    ref = echo.remote(1)
    ray.get(ref)
    text = _says(ref.task_id().hex(), "is FINISHED", "it ran on worker pid")
    assert "echo" in text
    with pytest.raises(ValueError, match="not a hex id"):
        state.explain("zz")
    with pytest.raises(ValueError, match="task id .48 hex digits"):
        state.explain("ab" * 5)


def test_a_dependency_not_ready_and_its_owner(two_nodes, tmp_path):
    gate = str(tmp_path / "gate")
    first = wait_gate.remote(gate)
    second = echo.remote(first)
    text = _says(second.task_id().hex(), "waits for 1 of its argument(s)", first.hex(),
                 "is running on worker pid")
    assert "says its owner, worker" in text and "PENDING_ARGS_AVAIL" in text, text
    open(gate, "w").close()
    assert ray.get(second, timeout=60) == "opened"


def test_busy_resources_name_each_nodes_free_ones(two_nodes, tmp_path):
    cluster, far = two_nodes
    gate = str(tmp_path / "gate")
    holder = wait_gate.options(resources={"far": 1}).remote(gate)
    wait_for(lambda: (state.get_task(holder.task_id().hex()) or {}).get("state") == "RUNNING",
             "the holder running")
    ref = echo.options(resources={"far": 2}).remote(2)
    text = _says(ref.task_id().hex(), "waiting for resources: it needs", "far: 2",
                 "free of")
    assert f"node {far.node_id[:12]} has" in text, text
    open(gate, "w").close()
    assert ray.get(ref, timeout=60) == 2 and ray.get(holder) == "opened"


def test_infeasible(two_nodes):
    ref = echo.options(num_cpus=64).remote(3)
    text = _says(ref.task_id().hex(), "infeasible: it needs {CPU: 64}")
    assert "which no node of the cluster has" in text
    ray.cancel(ref)


def test_placement_group_not_ready(two_nodes):
    group = placement_group([{"CPU": 64}], name="too_big")
    ref = echo.options(scheduling_strategy=PlacementGroupSchedulingStrategy(group)).remote(4)
    _says(ref.task_id().hex(), f"placement group {group.id.hex()} (too_big), which is not "
          f"ready: PENDING")
    ray.cancel(ref)
    remove_placement_group(group)


def test_actor_restarting(two_nodes, tmp_path):
    gate = str(tmp_path / "gate")
    actor = Phoenix.remote(str(tmp_path / "marker"), gate)
    pid = ray.get(actor.pid.remote())
    actor_id = actor._actor_id.hex()
    os.kill(pid, signal.SIGKILL)
    text = _says(actor_id, "is RESTARTING", "restart 1 of 1")
    assert "Phoenix" in text, text
    open(gate, "w").close()
    wait_for(lambda: "is ALIVE" in state.explain(actor_id), "the actor ALIVE again")
    assert ray.get(actor.pid.remote(), timeout=60) != pid
    ray.kill(actor)


def test_actor_that_cannot_be_placed(two_nodes):
    actor = Phoenix.options(num_cpus=64).remote("/nonexistent/marker", "/nonexistent/gate")
    _says(actor._actor_id.hex(), "PENDING_CREATION", "infeasible: it asks for {CPU: 64}",
          "which no node of the cluster has")
    ray.kill(actor)


def test_a_spilled_object(two_nodes):
    refs = [ray.put(bytes(40 << 20)) for _ in range(4)]    # 160 MB into a 100 MB store

    def spilled():
        return [t for t in (state.explain(r.hex()) for r in refs)
                if "spilled to disk on node" in t]
    text = wait_for(spilled, "an object spilled")[0]
    assert "restored into the object store when it is read" in text
    assert "ready, 41943" in text, text
    del refs


@ray.remote(resources={"far": 1})
def make_far(size):
    return bytes(size)


@ray.remote
def length(value):
    return len(value)


def test_an_object_being_transferred(two_nodes):
    """A task on the head needs an object in the far node's store while the far raylet,
    which serves the transfer, is stopped (SIGSTOP): the head's pull waits, and says so."""
    cluster, far = two_nodes
    big = make_far.remote(8 << 20)
    ray.wait([big], timeout=60)
    on_head = NodeAffinitySchedulingStrategy(cluster.head_node.node_id, soft=False)
    os.kill(far.raylet_proc.pid, signal.SIGSTOP)
    try:
        ref = length.options(scheduling_strategy=on_head).remote(big)
        text = _says(big.hex(), "being transferred to node "
                     f"{cluster.head_node.node_id[:12]}", "a pull is in progress")
    finally:
        os.kill(far.raylet_proc.pid, signal.SIGCONT)
    assert ray.get(ref, timeout=60) == 8 << 20, text


def test_an_object_whose_owner_died(two_nodes):
    maker = Maker.remote()
    [inner] = ray.get(maker.make.remote())
    assert "ready" in _says(inner.hex(), "says its owner")
    ray.kill(maker)
    text = _says(inner.hex(), "is dead", "OwnerDiedError")
    assert "its owner, worker" in text, text


def test_a_task_waiting_for_its_worker_to_start(short_temp_dir, tmp_path):
    gate = str(tmp_path / "gate")
    result = run_script(f"""
        import os
        os.environ["RAY_CORE_TEST_WORKER_GATE"] = {gate!r}
        import ray_core as ray
        from ray_core.util import state
        from tests.waiting import wait_for
        ray.init(num_cpus=1, _temp_dir={short_temp_dir!r},
                 _system_config={{"worker_prestart_on_driver": False,
                                  "task_events_report_interval_ms": 100,
                                  "worker_entry_module": "tests.integration.gated_worker"}})

        @ray.remote
        def one():
            return 1

        ref = one.remote()
        print("EXPLAIN", wait_for(lambda: "a worker process is starting" in (
            text := state.explain(ref.task_id().hex())) and text, "the worker starting",
            timeout=60))
        open({gate!r}, "w").close()
        print("RESULT", ray.get(ref, timeout=60))
        ray.shutdown()
    """)
    assert "RESULT 1" in result.stdout, result.stderr[-3000:]
    assert "PENDING_NODE_ASSIGNMENT" in result.stdout, result.stdout
