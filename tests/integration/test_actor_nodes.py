"""Actors across two raylets: placement by strategy, and what a node's death does to them."""
import time

import pytest

import ray_core as ray
from ray_core._private import worker as worker_mod
from ray_core.exceptions import ActorDiedError, RayActorError
from ray_core.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(90)


@ray.remote
class Where:
    def node(self):
        return ray.get_runtime_context().get_node_id()


def test_actor_placement_and_node_death(fast_health_cluster):
    cluster = fast_health_cluster
    from ray_raylet.launcher import start_raylet
    node = worker_mod.global_worker().node
    proc, info = start_raylet(node.gcs_address, node.session_dir, num_cpus=1,
                              env=node.child_env())
    try:
        second = info["node_id"]
        on_second = NodeAffinitySchedulingStrategy(second, soft=True)
        survivor = Where.options(scheduling_strategy=on_second, max_restarts=1).remote()
        mortal = Where.options(scheduling_strategy=on_second).remote()
        assert ray.get([survivor.node.remote(), mortal.node.remote()]) == [second, second]
        head = Where.remote()
        assert ray.get(head.node.remote()) == cluster["node_id"]
    finally:
        proc.terminate()        # the raylet leaves the cluster; the GCS marks its node dead
        proc.wait()
    with pytest.raises(ActorDiedError, match=f"node it ran on \\({second}\\) died"):
        ray.get(mortal.node.remote(), timeout=30)
    deadline = time.monotonic() + 30
    while True:     # restarted on the node that is left
        try:
            assert ray.get(survivor.node.remote(), timeout=30) == cluster["node_id"]
            break
        except (RayActorError, ray.exceptions.ActorUnavailableError):
            assert time.monotonic() < deadline
            time.sleep(0.1)
