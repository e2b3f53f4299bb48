"""The chaos cluster: a head (GCS on Redis, so it can be killed and restarted) and two
worker nodes, with fast health checks; what it started is gone when a test ends, and
the test fails if a process, socket, shared-memory file or spill file is left."""
import os
import shutil
import tempfile

import psutil
import pytest

import ray_core as ray
from ray_core.cluster_utils import Cluster

from tests.chaos.load import NODE_CPUS, STORE_BYTES

# The health checks and retries of every process the cluster starts (they inherit it).
FAST_FAILURE_DETECTION = {
    "RAY_CORE_HEALTH_CHECK_INITIAL_DELAY_MS": "0",
    "RAY_CORE_HEALTH_CHECK_PERIOD_MS": "300",
    "RAY_CORE_HEALTH_CHECK_TIMEOUT_MS": "1000",
    "RAY_CORE_HEALTH_CHECK_FAILURE_THRESHOLD": "3",
    "RAY_CORE_WORKER_EXIT_GRACE_MS": "500",
}


def _leftovers(temp_dir, shm_before):
    found = []
    for path in (os.path.join(d, f) for d, _, files in os.walk(temp_dir) for f in files):
        parts = path.split(os.sep)
        if "sockets" in parts or "spill" in parts:
            found.append(path)
    found += [f"/dev/shm/{name}" for name in set(os.listdir("/dev/shm")) - shm_before
              if "ray" in name or "plasma" in name]
    return found


def _still_running(before):
    """The descendants this test started that still run once those exiting are gone
    (`before`: pids of descendants other fixtures had started)."""
    procs = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    _gone, alive = psutil.wait_procs(procs, timeout=5)
    out = []
    for proc in alive:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.append((proc, " ".join(proc.cmdline())))
        except psutil.Error:
            pass
    return out


@pytest.fixture
def chaos_cluster(monkeypatch):
    for name, value in FAST_FAILURE_DETECTION.items():
        monkeypatch.setenv(name, value)
    temp_dir = tempfile.mkdtemp(prefix="rch_", dir="/tmp")
    shm_before = set(os.listdir("/dev/shm"))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    cluster = None
    try:
        cluster = Cluster(initialize_head=True, temp_dir=temp_dir, shutdown_at_exit=False,
                          head_node_args={"num_cpus": 1, "storage": "redis",
                                          "object_store_memory": STORE_BYTES})
        for _ in range(2):
            cluster.add_node(num_cpus=NODE_CPUS, resources={"worker_node": NODE_CPUS},
                             object_store_memory=STORE_BYTES)
        cluster.connect()
        yield cluster
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        left = _still_running(before)
        for proc, _ in left:
            try:
                proc.kill()
            except psutil.Error:
                pass
        files = _leftovers(temp_dir, shm_before)
        if not os.environ.get("RAY_CORE_CHAOS_KEEP"):   # the logs, to read after a failure
            shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"processes left after shutdown: {[line for _, line in left]}"
        assert not files, f"files left after shutdown: {files}"
