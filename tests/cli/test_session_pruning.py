"""Old session folders go (newest max_sessions stay), by `ray_core stop`, by a starting
head and by init(); a folder in use never goes, however old."""
import datetime
import json
import os
import subprocess
import sys

import psutil
import pytest

from ray_common.config import config
from ray_core.node import NODES_DIR, Node, prune_sessions
from tests.cli.conftest import child_env, cli, run_driver


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _session(temp_dir, day, pid):
    """A session folder as new_session_dir names it, created on `day` of 2020-01."""
    path = os.path.join(temp_dir, f"session_2020-01-{day:02d}_10-00-00_000000_{pid}")
    os.makedirs(os.path.join(path, "logs"))
    with open(os.path.join(path, "logs", "raylet.log"), "w") as f:
        f.write("old lines\n")
    return path


def _sessions(temp_dir):
    return sorted(n for n in os.listdir(temp_dir) if n.startswith("session_2"))


@pytest.fixture
def sleeper():
    """A running process that the tests name as a session's owner; killed after."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


def _record_node(temp_dir, session_dir, proc):
    """A node record, as Node._record writes it, whose one process is `proc`."""
    os.makedirs(os.path.join(temp_dir, NODES_DIR), exist_ok=True)
    with open(os.path.join(temp_dir, NODES_DIR, "fake.json"), "w") as f:
        json.dump({"session_dir": session_dir, "gcs_address": "", "head": False,
                   "node_id": "", "owner_pid": os.getpid(), "detached": True,
                   "processes": [{"name": "raylet", "pid": proc.pid,
                                  "create_time": psutil.Process(proc.pid).create_time()}]}, f)


def test_prune_keeps_the_newest_and_every_folder_in_use(temp_dir, sleeper, monkeypatch):
    monkeypatch.setitem(config._system_config, "max_sessions", 2)
    dead = _dead_pid()
    owned_by_a_node = _session(temp_dir, 1, dead)
    _record_node(temp_dir, owned_by_a_node, sleeper)
    creator_runs = _session(temp_dir, 2, sleeper.pid)
    in_use = _session(temp_dir, 3, dead)
    gone = [_session(temp_dir, day, dead) for day in (4, 5)]
    newest = [_session(temp_dir, day, dead) for day in (6, 7)]
    os.makedirs(os.path.join(temp_dir, "session_notes"))       # not a session folder
    os.symlink(gone[0], os.path.join(temp_dir, "session_latest"))

    assert sorted(prune_sessions(temp_dir, in_use=in_use)) == gone
    assert _sessions(temp_dir) == sorted(os.path.basename(p) for p in
                                         [owned_by_a_node, creator_runs, in_use] + newest)
    assert os.path.isdir(os.path.join(temp_dir, "session_notes"))
    assert not os.path.lexists(os.path.join(temp_dir, "session_latest"))  # it dangled


def test_stop_prunes_what_it_stopped_beyond_the_newest(temp_dir, sleeper):
    creator_runs = _session(temp_dir, 1, sleeper.pid)
    old = [_session(temp_dir, day, _dead_pid()) for day in (2, 3, 4)]
    cli("start", "--head", "--port", "0", "--num-cpus", "1", temp_dir=temp_dir)
    [head_session] = [n for n in _sessions(temp_dir) if not n.startswith("session_2020")]
    assert len(_sessions(temp_dir)) == 5       # within the default max_sessions
    result = cli("stop", temp_dir=temp_dir, env=child_env(RAY_CORE_MAX_SESSIONS="2"))
    assert "Removed 2 old session folder(s)" in result.stdout, result.stdout
    assert _sessions(temp_dir) == sorted([os.path.basename(creator_runs),
                                          os.path.basename(old[2]), head_session])
    assert os.path.realpath(os.path.join(temp_dir, "session_latest")) == \
        os.path.join(temp_dir, head_session)


def test_a_new_head_prunes_but_never_a_running_node_s_session(temp_dir, monkeypatch):
    monkeypatch.setitem(config._system_config, "max_sessions", 2)
    first = Node.start_head(temp_dir, num_cpus=0, object_store_memory=50 * 1024 ** 2)
    try:
        # Newer folders than the running head's, left by exited processes.
        now = datetime.datetime.now()
        newer = []
        for i in range(3):
            stamp = (now + datetime.timedelta(microseconds=i + 1)).strftime(
                "%Y-%m-%d_%H-%M-%S_%f")
            newer.append(os.path.join(temp_dir, f"session_{stamp}_{_dead_pid()}"))
            os.makedirs(newer[-1])
        second = Node.start_head(temp_dir, num_cpus=0, object_store_memory=50 * 1024 ** 2)
        try:
            assert _sessions(temp_dir) == sorted(os.path.basename(p) for p in (
                first.session_dir, newer[2], second.session_dir))
        finally:
            second.kill()
    finally:
        first.kill()


DRIVER = """
import sys, ray_core as ray
ctx = ray.init(num_cpus=1, _temp_dir=sys.argv[1], _system_config={"max_sessions": 3})
print("SESSION", ctx["session_dir"], flush=True)
ray.shutdown()
"""


def test_init_starting_a_head_prunes(temp_dir):
    old = [_session(temp_dir, day, _dead_pid()) for day in range(1, 6)]
    result = run_driver(DRIVER, temp_dir)
    assert result.returncode == 0, result.stderr
    session = result.stdout.split("SESSION ", 1)[1].split()[0]
    assert _sessions(temp_dir) == sorted([os.path.basename(old[3]), os.path.basename(old[4]),
                                          os.path.basename(session)])
