"""`ray_core start/status/stop` through subprocess calls, as an operator runs them."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from tests.cli.conftest import (child_env, cli, recorded_pids, run_driver, running,
                                shm_files_of)

DRIVER = """
import sys, ray_core as ray
ray.init(address=None if sys.argv[1] == "none" else sys.argv[1], _temp_dir=sys.argv[2])

@ray.remote(resources={"second": 1})
def on_second(x):
    print("hello from the second node", x)
    return ray.get_runtime_context().get_node_id()

@ray.remote
def plain(x):
    return x + 1

print("RESULT", ray.get(plain.remote(1)), ray.get(on_second.remote(7)))
ray.shutdown()
"""


def _gcs_address(temp_dir):
    with open(os.path.join(temp_dir, "ray_current_cluster")) as f:
        return json.load(f)["gcs_address"]


def _wait_gone(pids, timeout=10.0):
    deadline = time.monotonic() + timeout
    while running(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running(pids)


@pytest.fixture(scope="module")
def cli_cluster(module_temp_dir):
    """A head and a second node (resource "second") started by the CLI."""
    cli("start", "--head", "--port", "0", "--num-cpus", "1", temp_dir=module_temp_dir)
    address = _gcs_address(module_temp_dir)
    cli("start", "--address", address, "--num-cpus", "1", "--resources", '{"second": 1}',
        temp_dir=module_temp_dir)
    yield module_temp_dir, address
    cli("stop", temp_dir=module_temp_dir)


@pytest.mark.parametrize("args, message", [
    ([], "a command is required"),
    (["start"], "one of the arguments --head --address is required"),
    (["start", "--head", "--num-cpus", "-2"], "--num-cpus: must be >= 0"),
    (["start", "--head", "--resources", "{bad"], "--resources: not JSON"),
    (["start", "--address", "nohost"], "--address: expected HOST:PORT"),
    (["start", "--head", "--port", "70000"], "--port: a port is 0-65535"),
    (["stop", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_print_one_error_line_and_usage(args, message):
    result = cli(*args, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert message in lines[0], result.stderr
    assert lines[1].startswith("usage: ray_core"), result.stderr


def test_port_in_use_names_the_port(temp_dir):
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = held.getsockname()[1]
        result = cli("start", "--head", "--port", str(port), temp_dir=temp_dir, check=False)
    assert result.returncode == 1
    assert f"port {port} is in use" in result.stderr and "--port" in result.stderr
    assert not recorded_pids(temp_dir)


def test_start_status_stop_leaves_nothing(temp_dir):
    out = cli("start", "--head", "--port", "0", "--num-cpus", "2", temp_dir=temp_dir).stdout
    address = _gcs_address(temp_dir)
    assert f"cluster address: {address}" in out and 'init(address="auto")' in out
    session = os.path.realpath(os.path.join(temp_dir, "session_latest"))
    token_file = os.path.join(session, "auth_token")
    assert os.stat(token_file).st_mode & 0o777 == 0o600
    pids = recorded_pids(temp_dir)
    assert len(running(pids)) >= 4      # GCS, raylet, its plasma store, log monitor
    shm = shm_files_of(pids)
    status = cli("status", temp_dir=temp_dir).stdout
    assert "Nodes: 1 alive, 0 dead" in status and "CPU 0/2" in status, status
    assert sorted(os.listdir(os.path.join(session, "logs")))  # one file per process
    for name in ("gcs_server.log", "raylet.log", "plasma_store.log", "log_monitor.log"):
        assert os.path.exists(os.path.join(session, "logs", name)), name

    result = cli("stop", temp_dir=temp_dir)
    assert "Stopped 1 node(s)" in result.stdout
    assert not running(pids)
    ps = psutil.process_iter(["cmdline"])
    assert not [p.pid for p in ps if temp_dir in " ".join(p.info["cmdline"] or [])]
    assert not [path for path in shm if os.path.exists(path)]
    assert os.listdir(os.path.join(session, "sockets")) == []
    assert not os.path.exists(os.path.join(temp_dir, "ray_current_cluster"))
    assert "No ray_core processes" in cli("stop", temp_dir=temp_dir).stdout


SPILLER = """
import os, sys, numpy as np, ray_core as ray
ray.init(address="auto", _temp_dir=sys.argv[1])
held = [ray.put(np.full(12 * 1024 ** 2, i, dtype=np.uint8)) for i in range(8)]
print("SPILLED", sum(len(files) for _, _, files in os.walk(sys.argv[2])), flush=True)
sys.stdin.read()
"""


def test_stop_after_a_crash_removes_the_spill_files(temp_dir):
    """A raylet SIGKILLed while objects were spilled leaves their files (in a spill
    folder set for that node only); `stop` knows the folder and removes them."""
    spill_root = os.path.join(temp_dir, "elsewhere")
    env = child_env(RAY_CORE_OBJECT_SPILLING_DIRECTORY=spill_root)
    cli("start", "--head", "--port", "0", "--num-cpus", "1", "--object-store-memory",
        str(40 * 1024 ** 2), temp_dir=temp_dir, env=env)
    pids = recorded_pids(temp_dir)
    driver = subprocess.Popen([sys.executable, "-c", SPILLER, temp_dir, spill_root],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=child_env())
    try:
        line = driver.stdout.readline().split()
        assert line[0] == "SPILLED" and int(line[1]) >= 1, line
        from ray_core.node import read_records
        [(_path, record)] = read_records(temp_dir)
        raylet = next(e["pid"] for e in record["processes"] if e["name"] == "raylet")
        os.kill(raylet, signal.SIGKILL)
        assert any(files for _, _, files in os.walk(spill_root))
    finally:
        driver.kill()
        driver.wait()
    cli("stop", temp_dir=temp_dir)
    assert not _wait_gone(pids, timeout=5)
    assert not any(files for _, _, files in os.walk(spill_root))


def test_disable_auth_warns(temp_dir):
    result = cli("start", "--head", "--port", "0", "--disable-auth", "--num-cpus", "1",
                 temp_dir=temp_dir)
    assert "authentication is disabled" in result.stderr
    session = os.path.realpath(os.path.join(temp_dir, "session_latest"))
    assert not os.path.exists(os.path.join(session, "auth_token"))
    driver = run_driver(DRIVER.replace('resources={"second": 1}', "num_cpus=1"),
                        "auto", temp_dir)
    assert driver.returncode == 0 and "RESULT 2" in driver.stdout, driver.stderr
    # A token from the environment is not used against a cluster without auth.
    driver = run_driver(DRIVER.replace('resources={"second": 1}', "num_cpus=1"), "auto",
                        temp_dir, env=child_env(RAY_CORE_AUTH_TOKEN="f" * 32))
    assert driver.returncode == 0 and "RESULT 2" in driver.stdout, driver.stderr
    cli("start", "--address", _gcs_address(temp_dir), "--num-cpus", "1", "--auth-token",
        "f" * 32, temp_dir=temp_dir)
    assert "Nodes: 2 alive" in cli("status", temp_dir=temp_dir).stdout
    cli("stop", temp_dir=temp_dir)


def test_status_shows_both_nodes(cli_cluster):
    temp_dir, address = cli_cluster
    out = cli("status", temp_dir=temp_dir).stdout
    assert f"cluster at {address}" in out and "Nodes: 2 alive, 0 dead" in out, out
    assert "second 0/1" in out and "CPU 0/2" in out, out


def test_auto_address_driver_runs_tasks_on_both_nodes(cli_cluster):
    temp_dir, _address = cli_cluster
    result = run_driver(DRIVER, "auto", temp_dir)
    assert result.returncode == 0, result.stderr
    assert "RESULT 2" in result.stdout
    assert ", ip=127.0.0.1) hello from the second node 7" in result.stdout
    line = next(l for l in result.stdout.splitlines() if "hello from" in l)
    assert line.startswith("(pid=")


def test_init_without_address_joins_the_cli_cluster(cli_cluster):
    temp_dir, _address = cli_cluster
    result = run_driver(DRIVER, "none", temp_dir)   # as Ray: the running local cluster
    assert result.returncode == 0 and "RESULT 2" in result.stdout, result.stderr


def test_address_from_environment(cli_cluster):
    temp_dir, address = cli_cluster
    result = run_driver(DRIVER, "auto", temp_dir,
                        env=child_env(RAY_CORE_ADDRESS=address))
    assert result.returncode == 0 and "RESULT 2" in result.stdout, result.stderr


def test_wrong_token_is_refused_and_the_cluster_keeps_serving(cli_cluster, temp_dir):
    cluster_temp_dir, address = cli_cluster
    wrong = run_driver(DRIVER, address, cluster_temp_dir,
                       env=child_env(RAY_CORE_AUTH_TOKEN="0" * 32))
    assert wrong.returncode != 0
    assert "wrong cluster token" in wrong.stderr, wrong.stderr[-2000:]
    # A driver that has no token (not this machine's cluster dir, nothing in env).
    missing = run_driver(DRIVER, address, temp_dir)
    assert missing.returncode != 0 and "no cluster token" in missing.stderr
    joined = cli("start", "--address", address, "--auth-token", "0" * 32, "--num-cpus", "1",
                 temp_dir=temp_dir, check=False)
    assert joined.returncode == 1 and "wrong cluster token" in joined.stderr
    right = run_driver(DRIVER, address, cluster_temp_dir)
    assert right.returncode == 0 and "RESULT 2" in right.stdout, right.stderr


@pytest.mark.timeout(30)
def test_wrong_address_fails_naming_it():
    import ray_core as ray
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        ray.init(address=f"127.0.0.1:{port}")
    assert not ray.is_initialized()


def test_head_with_private_redis_storage(temp_dir):
    cli("start", "--head", "--port", "0", "--storage", "redis", "--num-cpus", "1",
        temp_dir=temp_dir)
    from ray_core.node import read_records
    names = {e["name"] for _p, r in read_records(temp_dir) for e in r["processes"]}
    assert {"redis", "gcs_server", "raylet", "log_monitor"} <= names
    pids = recorded_pids(temp_dir)
    driver = run_driver(DRIVER.replace('resources={"second": 1}', "num_cpus=1"),
                        "auto", temp_dir)
    assert driver.returncode == 0 and "RESULT 2" in driver.stdout, driver.stderr
    cli("stop", temp_dir=temp_dir)
    assert not running(pids)


def test_block_stays_until_interrupted_then_stops_the_node(temp_dir):
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "ray_core", "start", "--head", "--port", "0",
                             "--num-cpus", "1", "--block", "--temp-dir", temp_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())
    try:
        for line in proc.stdout:
            if "stop this machine's nodes" in line:
                break
        pids = recorded_pids(temp_dir)
        assert running(pids) and proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    assert not running(pids)
    assert not os.path.exists(os.path.join(temp_dir, "ray_current_cluster"))


def test_memory_prints_the_object_store_summary(cli_cluster):
    temp_dir, _address = cli_cluster
    out = cli("memory", "--stats-only", temp_dir=temp_dir).stdout
    assert "Object store by node" in out and out.count("plasma") == 2, out


def test_auto_address_of_a_crashed_cluster_says_so(temp_dir):
    cli("start", "--head", "--port", "0", "--num-cpus", "1", temp_dir=temp_dir)
    address = _gcs_address(temp_dir)
    from ray_core.node import read_records
    for _path, record in read_records(temp_dir):
        for entry in record["processes"]:
            os.kill(entry["pid"], signal.SIGKILL)
    result = run_driver(DRIVER, "auto", temp_dir)
    assert result.returncode != 0
    assert f"({address}) is no longer running" in result.stderr, result.stderr[-2000:]
    assert "No ray_core processes were running" in cli("stop", temp_dir=temp_dir).stdout
    assert not os.path.exists(os.path.join(temp_dir, "ray_current_cluster"))
