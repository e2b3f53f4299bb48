"""Two hosts as two network namespaces joined by a veth pair: a head in one, a node in
the other, and a task pinned to the second node that reads a 100 MB object made on the
first. The addresses (10.231.7.1/.2) exist only inside the namespaces this test makes."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.cli.conftest import child_env, recorded_pids, running

HEAD_IP, NODE_IP = "10.231.7.1", "10.231.7.2"
STORE = str(400 * 1024 ** 2)

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="network namespaces (ip netns) need root")

DRIVER = """
import sys, numpy as np, ray_core as ray
from ray_core.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address="auto", _temp_dir=sys.argv[1])
second = next(n["NodeID"] for n in ray.nodes() if n["NodeManagerAddress"] == sys.argv[2])
data = ray.put(np.arange(100 * 1024 ** 2 // 8, dtype=np.int64))   # 100 MB, on the head

@ray.remote(scheduling_strategy=NodeAffinitySchedulingStrategy(second, soft=False))
def read(array):
    print("reading", array.nbytes, "bytes")
    return ray.get_runtime_context().get_node_id(), int(array.sum()), array.nbytes

node_id, total, nbytes = ray.get(read.remote(data))
n = 100 * 1024 ** 2 // 8
print("RESULT", node_id == second, total == n * (n - 1) // 2, nbytes)
ray.shutdown()
"""


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def hosts():
    if shutil.which("ip") is None:
        pytest.fail("the `ip` command (iproute2) is missing: `make test-setup` installs it")
    tag = f"{os.getpid() % 100000}"
    ns_a, ns_b = f"rc{tag}a", f"rc{tag}b"
    veth_a, veth_b = f"rcv{tag}a", f"rcv{tag}b"
    temp_a = tempfile.mkdtemp(prefix="rcn_", dir="/tmp")
    temp_b = tempfile.mkdtemp(prefix="rcn_", dir="/tmp")
    made = []
    try:
        for ns in (ns_a, ns_b):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        _ip("link", "set", veth_a, "netns", ns_a)
        _ip("link", "set", veth_b, "netns", ns_b)
        for ns, veth, addr in ((ns_a, veth_a, HEAD_IP), (ns_b, veth_b, NODE_IP)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", veth)
            _ip("-n", ns, "link", "set", veth, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield (ns_a, temp_a), (ns_b, temp_b)
    finally:
        from ray_core.node import stop_recorded
        for temp in (temp_b, temp_a):
            stop_recorded(temp, force=True)
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(temp_a, ignore_errors=True)
        shutil.rmtree(temp_b, ignore_errors=True)


def _in(ns, *command, env=None, timeout=120):
    return subprocess.run(["ip", "netns", "exec", ns, *command], capture_output=True,
                          text=True, timeout=timeout, env=env or child_env())


def test_task_on_second_host_reads_object_from_first(hosts):
    (ns_a, temp_a), (ns_b, temp_b) = hosts
    cli = [sys.executable, "-m", "ray_core", "start"]
    head = _in(ns_a, *cli, "--head", "--port", "0", "--node-ip-address", HEAD_IP,
               "--num-cpus", "1", "--object-store-memory", STORE, "--temp-dir", temp_a)
    assert head.returncode == 0, head.stderr
    with open(os.path.join(temp_a, "ray_current_cluster")) as f:
        current = json.load(f)
    address = current["gcs_address"]
    assert address.startswith(HEAD_IP + ":")
    with open(os.path.join(current["session_dir"], "auth_token")) as f:
        token = f.read().strip()
    # The second host has its own temp dir, so it knows the token only if told.
    refused = _in(ns_b, *cli, "--address", address, "--temp-dir", temp_b)
    assert refused.returncode == 1 and "no cluster token" in refused.stderr, refused.stderr
    node = _in(ns_b, *cli, "--address", address, "--node-ip-address", NODE_IP,
               "--auth-token", token, "--num-cpus", "1", "--object-store-memory", STORE,
               "--temp-dir", temp_b)
    assert node.returncode == 0, node.stderr
    driver = _in(ns_a, sys.executable, "-c", DRIVER, temp_a, NODE_IP)
    assert driver.returncode == 0, driver.stderr[-3000:]
    assert f"RESULT True True {100 * 1024 ** 2}" in driver.stdout, driver.stdout
    assert f", ip={NODE_IP}) reading {100 * 1024 ** 2} bytes" in driver.stdout

    pids = recorded_pids(temp_a) | recorded_pids(temp_b)
    for temp in (temp_b, temp_a):
        stop = subprocess.run([sys.executable, "-m", "ray_core", "stop", "--temp-dir", temp],
                              capture_output=True, text=True, env=child_env())
        assert stop.returncode == 0, stop.stderr
    assert not running(pids)
