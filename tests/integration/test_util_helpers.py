"""ray_core.util's helpers on a real cluster: as_completed, map_unordered,
list_named_actors, get_node_ip_address."""
import time

import pytest

import ray_core as ray
from ray_core.exceptions import GetTimeoutError

pytestmark = pytest.mark.timeout(120)


@ray.remote(num_cpus=0.25)
def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


@ray.remote(num_cpus=0.25)
def slowly(x, seconds):
    time.sleep(seconds)   # a function of its own: not pipelined onto sleep_then's worker
    return x


@ray.remote(num_cpus=0.25)
def square(x):
    return x * x


@ray.remote
class Named:
    def ping(self):
        return "pong"


def test_as_completed_yields_the_quick_results_first(cluster):
    refs = [slowly.remote(0, 2.0)] + [sleep_then.remote(i, 0.0) for i in range(1, 4)]
    results = list(ray.util.as_completed(refs, chunk_size=1))
    assert sorted(results) == [0, 1, 2, 3] and results[-1] == 0
    refs = [square.remote(i) for i in range(5)]
    got = list(ray.util.as_completed(refs, chunk_size=2, yield_obj_refs=True))
    assert sorted(got, key=lambda r: r.hex()) == sorted(refs, key=lambda r: r.hex())
    with pytest.raises(GetTimeoutError, match="none of 1 pending refs finished within 0.2s"):
        list(ray.util.as_completed([sleep_then.remote(0, 5.0)], timeout=0.2))
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        list(ray.util.as_completed(refs, chunk_size=0))
    with pytest.raises(ValueError, match="pass chunk_size, not num_returns"):
        list(ray.util.as_completed(refs, num_returns=2))


def test_map_unordered_applies_the_function_to_every_item(cluster):
    assert sorted(ray.util.map_unordered(square, range(50), backpressure_size=4,
                                         chunk_size=2)) == [i * i for i in range(50)]
    assert sorted(ray.util.map_unordered(square, range(5), backpressure_size=None)) == [
        0, 1, 4, 9, 16]
    with pytest.raises(ValueError, match="backpressure_size must be positive"):
        list(ray.util.map_unordered(square, range(5), backpressure_size=0))


def test_list_named_actors_and_node_ip(cluster):
    actor = Named.options(name="listed").remote()
    other = Named.options(name="elsewhere", namespace="other_ns").remote()
    assert ray.get([actor.ping.remote(), other.ping.remote()]) == ["pong", "pong"]
    assert "listed" in ray.util.list_named_actors()
    assert "elsewhere" not in ray.util.list_named_actors()
    everywhere = ray.util.list_named_actors(all_namespaces=True)
    assert {"name": "elsewhere", "namespace": "other_ns"} in everywhere
    ray.kill(actor)
    ray.kill(other)
    head = [n for n in ray.nodes() if n["Alive"]][0]
    assert ray.util.get_node_ip_address() == head["NodeManagerAddress"]


class Handle:
    """Unpicklable as it is (a lock inside)."""

    def __init__(self, name):
        import threading
        self.name = name
        self.lock = threading.Lock()


@ray.remote(num_cpus=0.25)
def name_of(handle):
    return handle.name


def test_a_registered_serializer_carries_a_class_into_tasks(cluster):
    with pytest.raises(TypeError, match="argument 0 of name_of.remote.*Handle object"):
        name_of.remote(Handle("h"))
    ray.util.register_serializer(Handle, serializer=lambda h: h.name,
                                 deserializer=lambda name: Handle(name + " (rebuilt)"))
    try:
        # The worker registered nothing: the deserializer travels with the value.
        assert ray.get(name_of.remote(Handle("h")), timeout=30) == "h (rebuilt)"
        assert ray.get(ray.put(Handle("p"))).name == "p (rebuilt)"
    finally:
        ray.util.deregister_serializer(Handle)
