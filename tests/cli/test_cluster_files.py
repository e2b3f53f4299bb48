"""`ray_core up / exec / down` with a cluster file, the command provider, and the
autoscaler's part of `ray_core status`: each through the real CLI."""
import glob
import os
import shutil
import sys
import textwrap

import pytest

from ray_core.node import read_records
from tests.cli.conftest import cli, recorded_pids, running
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(240)

PYTHON = sys.executable


def cluster_file(path, provider, **extra):
    text = textwrap.dedent(f"""\
        cluster_name: filetest
        max_workers: 2
        idle_timeout_minutes: {extra.pop("idle", 0.05)}
        provider: {provider}
        head_node_type: head
        available_node_types:
          head: {{resources: {{CPU: 1}}}}
          w:
            resources: {{CPU: 1, wres: 1}}
            object_store_memory: 104857600
            min_workers: {extra.pop("min_workers", 0)}
            max_workers: 2
        """)
    for key, value in extra.items():
        text += f"{key}: {value}\n"
    with open(path, "w") as f:
        f.write(text)
    return path


DRIVER = """
import ray_core as ray
ray.init()
@ray.remote(resources={"wres": 1})
def where():
    return ray.get_runtime_context().get_node_id()
print("ran on", ray.get(where.remote()), "of", sum(n["Alive"] for n in ray.nodes()), "nodes")
"""


def test_up_exec_status_down(temp_dir, tmp_path):
    path = cluster_file(str(tmp_path / "cluster.yaml"), "{type: local}", min_workers=1,
                        setup_commands=f"['touch {tmp_path}/setup_ran']")
    (tmp_path / "job.py").write_text(DRIVER)
    up = cli("up", path, "--port", "0", temp_dir=temp_dir)
    assert "Cluster filetest is up" in up.stdout
    assert os.path.exists(tmp_path / "setup_ran")
    # min_workers: one w node comes without any demand.
    wait_for(lambda: len(read_records(temp_dir)) == 2, "the min_workers node", timeout=60)
    run = cli("exec", path, f"{PYTHON} {tmp_path}/job.py", temp_dir=temp_dir)
    assert "of 2 nodes" in run.stdout, run.stdout + run.stderr
    status = cli("status", temp_dir=temp_dir).stdout
    assert "Autoscaler (filetest" in status and "running: 1 w" in status, status
    failed = cli("exec", path, "exit 7", temp_dir=temp_dir, check=False)
    assert failed.returncode == 7
    pids = recorded_pids(temp_dir)
    down = cli("down", path, temp_dir=temp_dir)
    assert "Cluster filetest is down: 1 launched node(s) ended" in down.stdout, down.stdout
    wait_for(lambda: not running(pids), "every process of the cluster to exit")
    assert read_records(temp_dir) == []


def test_stop_ends_the_autoscaler_before_its_nodes(temp_dir, tmp_path):
    path = cluster_file(str(tmp_path / "cluster.yaml"), "{type: local}", min_workers=2)
    cli("up", path, "--port", "0", temp_dir=temp_dir)
    wait_for(lambda: len(read_records(temp_dir)) == 3, "the two min_workers nodes", timeout=90)
    pids = recorded_pids(temp_dir)
    cli("stop", temp_dir=temp_dir)
    wait_for(lambda: not running(pids), "every process to exit")
    assert read_records(temp_dir) == [], "the autoscaler launched a node during stop"


def test_the_command_provider_runs_the_file_lines_per_node(temp_dir, tmp_path):
    nodes_root = str(tmp_path / "nodes")
    os.makedirs(nodes_root)
    # Each node is started as on another machine: its own temp dir, via the CLI.
    short = f"/tmp/rcx_{os.getpid()}_"
    provider = ("{type: command, "
                f"start_command: '{PYTHON} -m ray_core start --address {{head_address}} "
                f"--temp-dir {short}{{launch_id}} {{node_args}} && "
                f"echo {{launch_id}} >> {nodes_root}/started', "
                f"stop_command: '{PYTHON} -m ray_core stop --temp-dir {short}{{launch_id}} "
                f"&& rm -rf {short}{{launch_id}}'}}")
    path = cluster_file(str(tmp_path / "cluster.yaml"), provider)
    (tmp_path / "job.py").write_text(DRIVER)
    try:
        cli("up", path, "--port", "0", temp_dir=temp_dir)
        run = cli("exec", path, f"{PYTHON} {tmp_path}/job.py", temp_dir=temp_dir)
        assert "of 2 nodes" in run.stdout, run.stdout + run.stderr
        started = open(f"{nodes_root}/started").read().split()
        assert len(started) == 1
        # Idle after the driver: ended through stop_command, which removes its temp dir.
        wait_for(lambda: not os.path.exists(short + started[0]),
                 "the idle node to be ended by stop_command", timeout=60)
    finally:
        cli("down", path, temp_dir=temp_dir)
        for leftover in glob.glob(short + "*"):
            cli("stop", temp_dir=leftover, check=False)
            shutil.rmtree(leftover, ignore_errors=True)


def test_a_bad_cluster_file_fails_up_naming_the_key(temp_dir, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("cluster_name: x\nprovider: {type: local}\nhead_node_type: head\n"
                    "available_node_types: {head: {resources: {CPU: 1}, max_worker: 1}}\n")
    result = cli("up", str(path), temp_dir=temp_dir, check=False)
    assert result.returncode == 1
    assert f"{path}:4: available_node_types.head.max_worker: unknown key(s) ['max_worker']" \
        in result.stderr, result.stderr
    assert read_records(temp_dir) == []
