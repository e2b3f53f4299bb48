"""The state commands of the CLI (list, get, summary, logs, timeline, stack, explain)
against a 2-node cluster that `ray_core start` made, as an operator runs them."""
import functools
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import yaml

from tests.cli.conftest import child_env, cli, run_driver
from tests import waiting

pytestmark = pytest.mark.timeout(300)
# State arrives in batches, and this machine is shared: generous deadlines, never timers.
wait_for = functools.partial(waiting.wait_for, timeout=90)
FAST_EVENTS = {"RAY_CORE_TASK_EVENTS_REPORT_INTERVAL_MS": "100"}

DRIVER = """
import sys, ray_core as ray
ray.init(address="auto", _temp_dir=sys.argv[1])

@ray.remote(resources={"second": 1})
def greet(x):
    print("hello from the second node", x)
    return x

@ray.remote(max_retries=0)
def fails():
    raise KeyError("no such key")

@ray.remote
class Keeper:
    def hi(self):
        print("keeper says hi")
        return "hi"

refs = [greet.remote(i) for i in range(3)]
print("GREET", refs[0].task_id().hex(), ray.get(refs))
ref = fails.remote()
try:
    ray.get(ref)
except KeyError:
    print("FAILS", ref.task_id().hex())
keeper = Keeper.options(name="keeper", lifetime="detached", resources={"second": 1}).remote()
print("KEEPER", keeper._actor_id.hex(), ray.get(keeper.hi.remote()))
ray.shutdown()
"""


def _gcs_address(temp_dir):
    with open(os.path.join(temp_dir, "ray_current_cluster")) as f:
        return json.load(f)["gcs_address"]


def _state(*args, temp_dir, **kwargs):
    return cli(*args, temp_dir=temp_dir, env=child_env(**FAST_EVENTS), **kwargs)


@pytest.fixture(scope="module")
def ran(module_temp_dir):
    """A head and a second node (resource "second") started by the CLI, and the ids of
    what a driver ran on them: greet (x3, second node), fails, a detached actor."""
    _state("start", "--head", "--port", "0", "--num-cpus", "1", temp_dir=module_temp_dir)
    _state("start", "--address", _gcs_address(module_temp_dir), "--num-cpus", "1",
           "--resources", '{"second": 1}', temp_dir=module_temp_dir)
    try:
        result = run_driver(DRIVER, module_temp_dir, env=child_env(**FAST_EVENTS))
        assert result.returncode == 0, result.stderr[-3000:]
        ids = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()
               if line.split()[0] in ("GREET", "FAILS", "KEEPER")}
        yield module_temp_dir, ids
    finally:
        cli("stop", temp_dir=module_temp_dir)


def _json(*args, temp_dir):
    return json.loads(_state(*args, "--format", "json", temp_dir=temp_dir).stdout)


def test_list_nodes_in_each_format(ran):
    temp_dir, _ids = ran
    table = _state("list", "nodes", temp_dir=temp_dir).stdout
    assert table.splitlines()[0].split()[:4] == ["NODE_ID", "NODE_IP", "IS_HEAD_NODE", "STATE"]
    nodes = _json("list", "nodes", temp_dir=temp_dir)
    assert len(nodes) == 2 and {n["state"] for n in nodes} == {"ALIVE"}
    head = yaml.safe_load(_state("list", "nodes", "--filter", "is_head_node=true",
                                 "--format", "yaml", temp_dir=temp_dir).stdout)
    assert len(head) == 1 and head[0]["is_head_node"] is True


def test_list_get_and_summary_of_tasks_and_actors(ran):
    temp_dir, ids = ran
    # The worker that ran it was ended as the job finished: its events still arrived.
    failed = wait_for(lambda: _json("list", "tasks", "--filter", "state=FAILED",
                                    "--filter", "error_type!=None", "--detail",
                                    temp_dir=temp_dir), "the FAILED task's error type")
    assert failed[0]["task_id"] == ids["FAILS"] and failed[0]["error_type"] == \
        "TASK_EXECUTION_EXCEPTION" and "KeyError" in failed[0]["error_message"]
    others = _json("list", "tasks", "--filter", "state!=FAILED", temp_dir=temp_dir)
    assert ids["FAILS"] not in {t["task_id"] for t in others}
    assert len(_json("list", "tasks", "--limit", "1", temp_dir=temp_dir)) == 1
    task = yaml.safe_load(_state("get", "tasks", ids["GREET"], temp_dir=temp_dir).stdout)
    assert task[0]["name"] == "greet" and task[0]["events"]
    actor = yaml.safe_load(_state("get", "actors", ids["KEEPER"], temp_dir=temp_dir).stdout)
    assert actor[0]["state"] == "ALIVE" and actor[0]["is_detached"] is True
    summary = _state("summary", "tasks", temp_dir=temp_dir).stdout
    assert "Table (group by func_name)" in summary and "__main__.greet" in summary
    assert "FINISHED: 3" in summary, summary
    assert "Keeper" in _state("summary", "actors", temp_dir=temp_dir).stdout
    _state("summary", "objects", temp_dir=temp_dir)
    for resource in ("objects", "workers", "jobs", "placement-groups"):
        _state("list", resource, temp_dir=temp_dir)


def test_bad_filter_and_unknown_id_are_one_line_errors(ran):
    temp_dir, _ids = ran
    bad = _state("list", "tasks", "--filter", "colour=red", temp_dir=temp_dir, check=False)
    assert bad.returncode == 1 and "'colour' is not a column of tasks" in bad.stderr
    assert "task_id" in bad.stderr
    missing = _state("get", "actors", "ab" * 16, temp_dir=temp_dir, check=False)
    assert missing.returncode == 1 and "no actor has id" in missing.stderr


def test_logs_of_an_actor_a_task_a_raylet_and_the_gcs(ran):
    temp_dir, ids = ran
    listing = _state("logs", temp_dir=temp_dir).stdout
    assert listing.count("========") == 4 and "raylet:" in listing and "gcs_server.log" in listing
    assert "keeper says hi" in _state("logs", "actor", "--id", ids["KEEPER"],
                                      temp_dir=temp_dir).stdout
    out = _state("logs", "task", "--id", ids["GREET"], temp_dir=temp_dir).stdout
    assert "hello from the second node" in out
    second = [n for n in _json("list", "nodes", temp_dir=temp_dir) if not n["is_head_node"]]
    raylet = _state("logs", "raylet", "--node-id", second[0]["node_id"][:12], "--tail", "-1",
                    temp_dir=temp_dir).stdout
    assert ids["GREET"] in raylet       # the raylet's lines about the task it leased
    assert len(_state("logs", "gcs", "--tail", "2", temp_dir=temp_dir).stdout.splitlines()) == 2


def test_timeline_is_a_chrome_trace_with_a_slice_per_task(ran, tmp_path):
    temp_dir, ids = ran
    path = tmp_path / "trace.json"
    out = _state("timeline", "--output", str(path), temp_dir=temp_dir).stdout
    assert str(path) in out
    events = json.loads(path.read_text())
    slices = {e["args"]["task_id"]: e for e in events if e["ph"] == "X"}
    assert slices[ids["GREET"]]["name"] == "greet"
    tracks = [e for e in events if e["ph"] == "M" and e["name"] == "thread_name"]
    assert (slices[ids["GREET"]]["pid"], slices[ids["GREET"]]["tid"]) in \
        {(t["pid"], t["tid"]) for t in tracks}


def test_explain_a_failed_task(ran):
    temp_dir, ids = ran
    said = "is FAILED with TASK_EXECUTION_EXCEPTION: KeyError: 'no such key'"
    wait_for(lambda: said in _state("explain", ids["FAILS"], temp_dir=temp_dir).stdout,
             "explain to name the error")


SPINNER = """
import os, sys, time, ray_core as ray
from ray_core.util import state
from tests.waiting import wait_for
ray.init(address="auto", _temp_dir=sys.argv[1])

@ray.remote
def spin_until_the_gate_opens(gate):
    while not os.path.exists(gate):
        time.sleep(0.05)

ref = spin_until_the_gate_opens.remote(sys.argv[2])
wait_for(lambda: (state.get_task(ref.task_id().hex()) or {}).get("state") == "RUNNING",
         "the task running", timeout=60)
print(ref.task_id().hex(), flush=True)
ray.get(ref)
"""


def test_stack_shows_every_worker_and_driver_with_its_task(ran, tmp_path):
    temp_dir, _ids = ran
    gate = str(tmp_path / "gate")
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SPINNER), temp_dir, gate],
                              stdout=subprocess.PIPE, text=True, env=child_env(**FAST_EVENTS))
    try:
        task_id = driver.stdout.readline().strip()
        out = _state("stack", temp_dir=temp_dir).stdout
        assert f"--- driver pid {driver.pid}" in out, out
        assert f"running task {task_id} (spin_until_the_gate_opens)" in out, out
        assert "    spin_until_the_gate_opens (" in out, out     # its frame, in the worker
        open(gate, "w").close()
        assert driver.wait(timeout=60) == 0
    finally:
        open(gate, "w").close()
        driver.kill()
        driver.wait()
        driver.stdout.close()


def test_an_unreachable_address_fails_within_the_timeout():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = cli("list", "nodes", "--address", f"127.0.0.1:{port}", "--timeout", "3",
                 "--auth-token", "f" * 32, check=False, timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "did not answer within 3 s" in \
        result.stderr, result.stderr
