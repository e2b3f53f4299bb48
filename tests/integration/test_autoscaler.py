"""The autoscaler on real processes: an AutoscalingCluster whose head launches nodes as
local processes for the demand that waits, and ends them when idle."""
import json
import os
import signal
import time

import numpy as np
import pytest

import ray_core as ray
from ray_core.autoscaler import KV_NAMESPACE, STATUS_KEY
from ray_core.autoscaler.node_provider import NODE_TYPE_LABEL
from ray_core.autoscaler.sdk import request_resources
from ray_core.cluster_utils import AutoscalingCluster
from ray_core.node import read_records
from ray_core.util.placement_group import placement_group, remove_placement_group
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(240)

IDLE_MINUTES = 0.05     # 3 s


@pytest.fixture
def autoscaling(own_temp_dir):
    """start(head_resources, worker_node_types, **cluster file keys): the cluster, with
    this process connected. Afterwards every node it launched is gone."""
    started = []

    def start(head_resources, worker_node_types, **keys):
        keys.setdefault("idle_timeout_minutes", IDLE_MINUTES)
        for spec in worker_node_types.values():
            spec.setdefault("object_store_memory", 100 * 1024 ** 2)
        cluster = AutoscalingCluster(head_resources, worker_node_types, **keys)
        started.append(cluster)
        cluster.start(temp_dir=own_temp_dir)
        ray.init(address=cluster.address, _temp_dir=own_temp_dir)
        return cluster

    yield start
    ray.shutdown()
    for cluster in started:
        cluster.shutdown()
    assert read_records(own_temp_dir) == [], "a node outlived the cluster's shutdown"


def status() -> dict:
    from ray_core._private import worker
    raw = worker.global_worker().core_worker.gcs.sync.kv_get(STATUS_KEY,
                                                             namespace=KV_NAMESPACE)
    return json.loads(raw) if raw else {}


@ray.remote
def where():
    return ray.get_runtime_context().get_node_id()


def test_tasks_needing_a_resource_start_a_node_of_that_type_which_ends_when_idle(autoscaling):
    autoscaling({"CPU": 1}, {
        "plain": {"resources": {"CPU": 1}, "max_workers": 2},
        "big": {"resources": {"CPU": 1, "big": 1}, "max_workers": 1}})
    nodes = ray.get([where.options(resources={"big": 1}).remote() for _ in range(20)])
    assert len(set(nodes)) == 1
    big = next(n for n in ray.nodes() if n["NodeID"] == nodes[0])
    assert big["Labels"][NODE_TYPE_LABEL] == "big"
    assert status()["launched_total"] == 1        # only the type that has `big`
    wait_for(lambda: not any(n["Alive"] and n["NodeID"] == nodes[0] for n in ray.nodes()),
             "the idle big node to be ended", timeout=60)
    assert "big" not in ray.cluster_resources()
    assert ray.get(where.remote()) != nodes[0]     # the head still runs tasks


def test_max_workers_is_respected(autoscaling):
    autoscaling({"CPU": 0}, {"w": {"resources": {"CPU": 1}, "max_workers": 2}})

    @ray.remote(num_cpus=0)
    class Gate:
        def __init__(self):
            self.open = False

        def release(self):
            self.open = True

        def is_open(self):
            return self.open

    @ray.remote(num_cpus=1)
    def hold(gate):
        while not ray.get(gate.is_open.remote()):
            time.sleep(0.05)
        return ray.get_runtime_context().get_node_id()

    gate = Gate.remote()
    refs = [hold.remote(gate) for _ in range(8)]
    # Two nodes run two of the tasks; the six others wait, and the autoscaler says the
    # limit holds them rather than launching a third node.
    wait_for(lambda: status().get("capped") and status().get("running") == {"w": 2},
             "two running nodes and the rest of the demand held at max_workers", timeout=90)
    assert status()["launched_total"] == 2
    gate.release.remote()
    assert len(ray.get(refs, timeout=60)) == 8
    assert status()["launched_total"] == 2
    assert sum(1 for n in ray.nodes() if n["Alive"]) <= 3


def test_objects_on_an_idle_node_move_before_it_ends(autoscaling):
    autoscaling({"CPU": 1}, {"big": {"resources": {"CPU": 1, "big": 1}, "max_workers": 1}})

    @ray.remote(resources={"big": 1}, num_returns=3)
    def make():
        return (np.arange(1_000_000, dtype=np.int64), np.ones(500_000),
                ray.get_runtime_context().get_node_id())

    # Only the node id comes to the driver: the arrays' one copy is on the big node.
    array_ref, ones, node_ref = make.remote()
    big_node = ray.get(node_ref)
    ray.wait([array_ref, ones], num_returns=2, fetch_local=False)
    # The node is idle but holds the primary copies: they move to the head, then it ends.
    wait_for(lambda: not any(n["Alive"] and n["NodeID"] == big_node for n in ray.nodes()),
             "the idle node to hand over its objects and end", timeout=90)
    assert ray.get(array_ref, timeout=30).sum() == sum(range(1_000_000))
    assert ray.get(ones, timeout=30).sum() == 500_000


def test_a_placement_group_that_needs_two_nodes_starts_two(autoscaling):
    autoscaling({"CPU": 0}, {"w": {"resources": {"CPU": 1}, "max_workers": 3}})
    group = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert group.wait(timeout_seconds=90)
    assert status()["launched_total"] == 2
    remove_placement_group(group)
    wait_for(lambda: sum(1 for n in ray.nodes() if n["Alive"]) == 1,
             "both nodes to be ended once the group is gone", timeout=60)


def test_a_shape_no_type_has_is_reported_and_starts_nothing(autoscaling):
    autoscaling({"CPU": 1}, {"w": {"resources": {"CPU": 1}, "max_workers": 2}})
    stuck = where.options(resources={"accel": 1}).remote()
    wait_for(lambda: status().get("infeasible"), "the autoscaler to report the shape")
    assert status()["infeasible"] == [{"shape": {"CPU": 1.0, "accel": 1.0}, "count": 1}]
    assert status()["launched_total"] == 0
    ray.cancel(stuck)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(stuck, timeout=30)
    assert ray.get(where.remote(), timeout=30)     # resources are free; work goes on


def test_request_resources_scales_up_before_the_load_and_back_down(autoscaling):
    autoscaling({"CPU": 1}, {"w": {"resources": {"CPU": 2}, "max_workers": 2}})
    request_resources(num_cpus=3)
    wait_for(lambda: ray.cluster_resources().get("CPU") == 3.0, "3 CPUs in the cluster",
             timeout=60)
    request_resources()                              # cleared: the node may go
    wait_for(lambda: ray.cluster_resources().get("CPU") == 1.0,
             "the idle node to be ended after the request was cleared", timeout=60)


def test_a_launched_node_killed_midway_is_replaced_and_the_work_finishes(autoscaling,
                                                                        own_temp_dir):
    autoscaling({"CPU": 0}, {"w": {"resources": {"CPU": 1}, "max_workers": 1}})

    @ray.remote(num_cpus=1, max_retries=3)
    def slow(i):
        time.sleep(0.3)
        return ray.get_runtime_context().get_node_id()

    first = ray.get(slow.remote(0), timeout=90)
    refs = [slow.remote(i) for i in range(10)]
    raylet = next(e["pid"] for _p, r in read_records(own_temp_dir)
                  if r.get("node_id") == first for e in r["processes"] if e["name"] == "raylet")
    os.kill(raylet, signal.SIGKILL)
    nodes = ray.get(refs, timeout=120)
    assert first not in nodes[-1:]                   # the last ran on the replacement
    assert status()["launched_total"] == 2


def test_a_failing_launch_is_reported_and_backs_off(autoscaling, own_temp_dir):
    cluster = autoscaling({"CPU": 1}, {"w": {"resources": {"CPU": 1, "w": 1},
                                             "max_workers": 1}},
                          worker_setup_commands=["echo no quota >&2; exit 3"])
    stuck = where.options(resources={"w": 1}).remote()
    wait_for(lambda: status().get("failures"), "the failed launch in the status")
    failure = status()["failures"][0]
    assert failure["node_type"] == "w" and "exited with 3" in failure["message"] and \
        "no quota" in failure["message"]
    ray.cancel(stuck)
    assert ray.get(where.remote(), timeout=30)
    assert cluster.head_node is not None


def test_a_killed_autoscaler_is_restarted_and_adopts_the_nodes_it_launched(autoscaling,
                                                                            own_temp_dir):
    autoscaling({"CPU": 1}, {"w": {"resources": {"CPU": 1, "w": 1}, "max_workers": 1}},
                idle_timeout_minutes=10)
    first = ray.get(where.options(resources={"w": 1}).remote(), timeout=90)

    def autoscaler_pid():
        return next((e["pid"] for _p, r in read_records(own_temp_dir) if r.get("head")
                     for e in r["processes"] if e["name"] == "autoscaler"), 0)
    old = autoscaler_pid()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: autoscaler_pid() not in (0, old), "the supervisor to restart it")
    killed_at = time.time()
    wait_for(lambda: status().get("updated_at", 0) > killed_at + 1,
             "the new autoscaler's first updates")
    # The new one found the node through the provider's file: no second launch.
    assert status()["running"] == {"w": 1} and status()["launched_total"] == 0
    assert ray.get(where.options(resources={"w": 1}).remote(), timeout=30) == first
