"""Fixed-point resource arithmetic, GPU instances and the node's total resource map."""
import pytest

from ray_common.protocol import common_pb2
from ray_raylet import machine
from ray_raylet.resources import (RESOURCE_UNIT, NodeResources, cuda_visible_devices,
                                  demand_set, describe, fixed_set)


def test_fractional_grants_and_returns_do_not_drift():
    node = NodeResources({"CPU": 1})
    demand = demand_set({"CPU": 0.1})
    for _ in range(1000):
        held = [node.allocate(demand) for _ in range(10)]
        assert all(held)
        assert node.allocate(demand) is None  # exactly full after ten tenths
        for allocation in held:
            node.release(allocation)
    assert node.available == {"CPU": RESOURCE_UNIT}


def test_custom_resources_fit_and_feasibility():
    node = NodeResources({"CPU": 2, "accel": 1})
    assert node.is_feasible(demand_set({"accel": 1, "CPU": 1}))
    assert not node.is_feasible(demand_set({"accel": 2}))
    assert not node.is_feasible(demand_set({"other": 0.5}))
    held = node.allocate(demand_set({"accel": 0.5}))
    assert node.available_floats()["accel"] == 0.5
    assert node.allocate(demand_set({"accel": 0.75})) is None
    node.release(held)
    assert node.available_floats()["accel"] == 1.0


def test_gpu_instances_whole_and_fractional():
    node = NodeResources({"GPU": 3}, track_instances=True)
    half = node.allocate(demand_set({"GPU": 0.5}))
    assert half.instance_ids("GPU") == [0]
    other_half = node.allocate(demand_set({"GPU": 0.5}))
    assert other_half.instance_ids("GPU") == [0]  # packs fractions onto one GPU
    two = node.allocate(demand_set({"GPU": 2}))
    assert sorted(two.instance_ids("GPU")) == [1, 2]
    assert node.allocate(demand_set({"GPU": 0.1})) is None
    node.release(half)
    assert node.allocate(demand_set({"GPU": 1})) is None  # GPU 0 is only half free
    node.release(other_half)
    assert node.allocate(demand_set({"GPU": 1})).instance_ids("GPU") == [0]


def test_cuda_visible_devices_from_resource_mapping():
    mapping = [common_pb2.ResourceAllocation(name="CPU", quantities=[1.0]),
               common_pb2.ResourceAllocation(name="GPU", instance_ids=[2, 3],
                                             quantities=[1.0, 1.0])]
    assert cuda_visible_devices(mapping) == "2,3"
    assert cuda_visible_devices(mapping[:1]) is None


@pytest.mark.parametrize("bad, words", [({"CPU": -1}, "negative"), ({"CPU": "x"}, "number"),
                                        ({"GPU": 1.5}, "whole"), ({"": 1}, "non-empty")])
def test_bad_requests_say_what_is_wrong(bad, words):
    with pytest.raises(ValueError, match=words):
        demand_set(bad)


def test_describe_and_zero_amounts():
    assert fixed_set({"CPU": 0, "GPU": 1}) == {"GPU": RESOURCE_UNIT}
    assert describe(fixed_set({"CPU": 0.5, "GPU": 1})) == "{CPU: 0.5, GPU: 1}"


def test_blocked_cpu_is_lent_and_taken_back():
    node = NodeResources({"CPU": 1})
    held = node.allocate(demand_set({"CPU": 1}))
    lent = node.release_part(held, "CPU")
    assert node.available_floats()["CPU"] == 1.0
    other = node.allocate(demand_set({"CPU": 1}))
    node.acquire_forced("CPU", lent)
    assert node.available_floats()["CPU"] == -1.0  # oversubscribed until one returns
    node.release(other)
    node.release(held)
    assert node.available_floats()["CPU"] == 1.0


def test_total_resources_of_a_node(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    gpu_ids = machine.detect_gpu_ids()
    assert gpu_ids == [2, 5]
    total = machine.total_resources("10.0.0.7", 4, None, '{"accel": 2}', 10 ** 9, gpu_ids)
    assert total["CPU"] == 4 and total["GPU"] == 2 and total["accel"] == 2
    assert total["node:10.0.0.7"] == 1 and total["object_store_memory"] == 10 ** 9
    assert "node:__internal_head__" not in total
    head = machine.total_resources("10.0.0.7", 4, None, None, 10 ** 9, gpu_ids, head=True)
    assert head["node:__internal_head__"] == 1      # Ray's resource of the head node
    with pytest.raises(ValueError, match="JSON"):
        machine.total_resources("10.0.0.7", 1, 0, "{oops", 1, [])
    with pytest.raises(ValueError, match="CPU"):
        machine.total_resources("10.0.0.7", 1, 0, '{"CPU": 3}', 1, [])
