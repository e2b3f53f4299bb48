"""cluster_utils.Cluster: three nodes on one machine, spread tasks, removing a node."""
import time

import pytest

import ray_core as ray
from ray_core.cluster_utils import Cluster
from tests.cli.conftest import running

STORE_BYTES = 100 * 1024 ** 2


@pytest.fixture
def cluster(temp_dir):
    c = Cluster(initialize_head=True, shutdown_at_exit=False,
                head_node_args={"num_cpus": 1, "object_store_memory": STORE_BYTES,
                                "_temp_dir": temp_dir})
    try:
        yield c
    finally:
        c.shutdown()


@ray.remote(scheduling_strategy="SPREAD")
def where(i):
    print("spread task", i)
    time.sleep(0.2)   # long enough that one lease cannot run them all in turn
    return ray.get_runtime_context().get_node_id()


def test_three_nodes_run_spread_tasks_on_all(cluster, capfd):
    second = cluster.add_node(num_cpus=1, object_store_memory=STORE_BYTES)
    cluster.add_node(num_cpus=1, object_store_memory=STORE_BYTES, resources={"third": 1})
    cluster.wait_for_nodes()
    cluster.connect()
    assert len([n for n in ray.nodes() if n["Alive"]]) == 3
    assert ray.cluster_resources()["CPU"] == 3
    node_ids = set(ray.get([where.remote(i) for i in range(9)]))
    assert node_ids == {n.node_id for n in cluster.list_all_nodes()}

    pids = [second.raylet_proc.pid]
    cluster.remove_node(second)
    cluster.wait_for_nodes()
    assert not running(pids)
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    assert set(ray.get([where.remote(i) for i in range(6)])) <= \
        {n.node_id for n in cluster.list_all_nodes()}
    ray.shutdown()
    cluster.connected = False
    assert "spread task" in capfd.readouterr().out


def test_add_node_rejects_unknown_arguments(cluster):
    with pytest.raises(ValueError, match="num_cpu"):
        cluster.add_node(num_cpu=1)
