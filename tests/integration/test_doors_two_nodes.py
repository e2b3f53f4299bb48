"""The doors on a 2-node Cluster: a Pool's processes, joblib's batches and Dask's tasks
run on both nodes."""
import numpy as np
import pytest

import ray_core as ray
from ray_core.cluster_utils import Cluster
from ray_core.util.multiprocessing import Pool

from tests.integration.conftest import shut_down_cleanly

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def two_nodes(short_temp_dir):
    with shut_down_cleanly():
        cluster = Cluster(initialize_head=True, temp_dir=short_temp_dir, shutdown_at_exit=False,
                          head_node_args={"num_cpus": 2, "object_store_memory": 100 << 20})
        try:
            cluster.add_node(num_cpus=2, object_store_memory=100 << 20)
            cluster.connect()
            yield {n.node_id for n in cluster.list_all_nodes()}
        finally:
            ray.shutdown()
            cluster.shutdown()


def node_of(_):
    return ray.get_runtime_context().get_node_id()


def test_a_pool_spreads_over_both_nodes(two_nodes):
    with Pool(2) as p:
        assert set(p.map(node_of, range(20), chunksize=1)) == two_nodes


def test_joblib_batches_run_on_both_nodes(two_nodes):
    joblib = pytest.importorskip("joblib")
    from ray_core.util.joblib import register_ray
    register_ray()
    with joblib.parallel_backend("ray"):
        nodes = joblib.Parallel(n_jobs=-1, batch_size=1)(
            joblib.delayed(node_of)(i) for i in range(20))
    assert set(nodes) == two_nodes


def test_a_dask_graph_over_two_nodes_equals_the_threaded_schedulers(two_nodes):
    da = pytest.importorskip("dask.array")
    from ray_core.util.dask import ray_dask_get
    x = da.random.RandomState(7).random((800, 800), chunks=(200, 200))
    y = (x @ x.T).sum(axis=1)
    # a whole node's CPUs a task: two at a time run on two nodes, and their chunks
    # travel between the nodes' object stores
    assert np.allclose(y.compute(scheduler=ray_dask_get, ray_remote_args={"num_cpus": 2}),
                       y.compute(scheduler="threads"))
