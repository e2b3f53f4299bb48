"""A head that heals itself (ray_gcs/supervisor.py), as an operator meets it: a CLI-started
head whose GCS (or private Redis) is SIGKILLed comes back on its address with every
table; one on in-memory storage says plainly that the cluster is over, and its
processes exit."""
import glob
import os
import signal

import psutil
import pytest

from ray_core.node import read_current_cluster, read_token
from tests.cli.conftest import child_env, cli, run_driver, running
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)

MAKE_SERVICE = """
import sys, ray_core as ray
ray.init(address="auto", _temp_dir=sys.argv[1])

@ray.remote
class Service:
    def ping(self):
        return "pong"

svc = Service.options(name="svc", namespace="ops", lifetime="detached").remote()
print("MADE", ray.get(svc.ping.remote(), timeout=60))
"""

USE_SERVICE = """
import sys, time, ray_core as ray
started = time.monotonic()
ray.init(address="auto", _temp_dir=sys.argv[1])
svc = ray.get_actor("svc", namespace="ops")
print("ANSWER", ray.get(svc.ping.remote(), timeout=60), time.monotonic() - started)
"""


def _record(temp_dir):
    from ray_core.node import read_records
    [(_path, record)] = read_records(temp_dir)
    return record


def _pid(temp_dir, name):
    from ray_core.node import read_records
    return next(e["pid"] for _path, record in read_records(temp_dir) if record["head"]
                for e in record["processes"] if e["name"] == name)


def _gone(pid) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:    # reaped between any two looks: gone too
        return True


def _kill(pid):
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _gone(pid), f"pid {pid} gone")


def _driver(code, temp_dir):
    result = run_driver(code, temp_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_a_killed_gcs_comes_back_with_its_tables_twice(temp_dir):
    cli("start", "--head", "--port", "0", "--num-cpus", "2", "--storage", "redis",
        temp_dir=temp_dir)
    assert "MADE pong" in _driver(MAKE_SERVICE, temp_dir)
    for _ in range(2):
        old = _pid(temp_dir, "gcs_server")
        _kill(old)
        assert "ANSWER pong" in _driver(USE_SERVICE, temp_dir)
        assert _pid(temp_dir, "gcs_server") != old
    log = open(os.path.join(_record(temp_dir)["session_dir"], "logs",
                            "gcs_supervisor.log")).read()
    assert log.count("Restarting it on port") == 2 and "killed by SIGKILL" in log
    assert "Stopped 1 node(s)" in cli("stop", temp_dir=temp_dir).stdout


def test_a_killed_redis_comes_back_from_its_file(temp_dir):
    cli("start", "--head", "--port", "0", "--num-cpus", "2", "--storage", "redis",
        temp_dir=temp_dir)
    assert "MADE pong" in _driver(MAKE_SERVICE, temp_dir)
    old_redis = _pid(temp_dir, "redis")
    _kill(old_redis)
    wait_for(lambda: _pid(temp_dir, "redis") != old_redis, "redis-server restarted")
    _kill(_pid(temp_dir, "gcs_server"))      # the new GCS reads the restarted Redis
    assert "ANSWER pong" in _driver(USE_SERVICE, temp_dir)
    pids = {e["pid"] for e in _record(temp_dir)["processes"]}
    cli("stop", temp_dir=temp_dir)
    wait_for(lambda: not running(pids), "every process of the head stopped")


def _node_pids(temp_dir, head):
    from ray_core.node import read_records
    return [e["pid"] for _path, record in read_records(temp_dir) if record["head"] == head
            for e in record["processes"] if e["name"] != "gcs_server"]


def test_an_in_memory_gcs_that_dies_ends_the_cluster_plainly(temp_dir, other_temp_dir):
    cli("start", "--head", "--port", "0", "--num-cpus", "1", temp_dir=temp_dir)
    address = read_current_cluster(temp_dir)["gcs_address"]
    token = read_token(read_current_cluster(temp_dir)["session_dir"])
    # A node of this machine (it sees the supervisor's note), and one as if on another
    # machine (its own temp dir: it finds out when the GCS stops answering).
    cli("start", "--address", address, "--num-cpus", "1", temp_dir=temp_dir)
    far = other_temp_dir
    cli("start", "--address", address, "--num-cpus", "1", "--auth-token", token,
        temp_dir=far, env=child_env(RAY_CORE_GCS_RPC_SERVER_RECONNECT_TIMEOUT_S="2"))
    node_pids = _node_pids(temp_dir, True) + _node_pids(temp_dir, False) + \
        _node_pids(far, False)
    _kill(_pid(temp_dir, "gcs_server"))
    wait_for(lambda: not running(node_pids), "every node's raylet, log monitor and the "
             "head's supervisor to exit", timeout=30)
    status = cli("status", temp_dir=temp_dir, check=False)
    assert status.returncode == 1
    assert "died" in status.stderr and "state in memory" in status.stderr, status.stderr
    driver = run_driver(USE_SERVICE, temp_dir)
    assert driver.returncode != 0 and "state in memory" in driver.stderr, driver.stderr[-2000:]
    assert "Stopped" in cli("stop", temp_dir=temp_dir).stdout or \
        "No ray_core processes" in cli("stop", temp_dir=temp_dir).stdout
    assert not glob.glob(os.path.join(temp_dir, "nodes", "*.json"))
    cli("stop", temp_dir=far)
