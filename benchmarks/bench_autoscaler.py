"""How long work that fits no node waits for the autoscaler: from `.remote()` of a task
needing a resource only a node type of the cluster file has, to that task running on the
node launched for it. The reference, measured in the same run, is an operator doing the
same by hand: `Cluster.add_node` of that node type, then the same task, timed from the
add_node call (the least a launch can cost). Best of 3, fresh clusters each time.
"""
import shutil
import tempfile
import time

import ray_core as ray
from ray_core.cluster_utils import AutoscalingCluster, Cluster

REPEATS = 3
BIG = {"resources": {"CPU": 1, "big": 1}, "max_workers": 1,
       "object_store_memory": 100 * 1024 ** 2}


@ray.remote(resources={"big": 1})
def started_at():
    return time.time()


def _autoscaled() -> float:
    temp_dir = tempfile.mkdtemp(prefix="rcb_", dir="/tmp")
    cluster = AutoscalingCluster({"CPU": 1}, {"big": dict(BIG)})
    try:
        cluster.start(temp_dir=temp_dir)
        ray.init(address=cluster.address, _temp_dir=temp_dir)
        submitted = time.time()
        return ray.get(started_at.remote()) - submitted
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _by_hand() -> float:
    temp_dir = tempfile.mkdtemp(prefix="rcb_", dir="/tmp")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1},
                      temp_dir=temp_dir)
    try:
        cluster.connect()
        asked = time.time()
        cluster.add_node(num_cpus=1, resources={"big": 1},
                         object_store_memory=BIG["object_store_memory"])
        return ray.get(started_at.remote()) - asked
    finally:
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def run():
    autoscaled = min(_autoscaled() for _ in range(REPEATS))
    by_hand = min(_by_hand() for _ in range(REPEATS))
    return [("pending demand to its task running on a launched node", autoscaled * 1000,
             "ms", by_hand * 1000, "ms add_node by hand")]


if __name__ == "__main__":
    for row in run():
        print(row)
