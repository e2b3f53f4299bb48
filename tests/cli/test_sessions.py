"""Sessions, logs and process hygiene of a driver that starts its own head (init())."""
import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.cli.conftest import child_env, recorded_pids, running

DRIVER = """
import os, sys, time, ray_core as ray
ctx = ray.init(num_cpus=1, _temp_dir=sys.argv[1], object_store_memory=40 * 1024 ** 2)

@ray.remote
def work(x):
    print("working on", x)
    return os.getpid()

ref = work.remote(5)
print("TASK", ref.task_id().hex(), flush=True)
print("WORKER", ray.get(ref), flush=True)
print("SESSION", ctx["session_dir"], flush=True)
if sys.argv[2] == "hang":
    import numpy as np
    held = [ray.put(np.full(12 * 1024 ** 2, i, dtype=np.uint8)) for i in range(8)]
    print("READY", flush=True)
    time.sleep(600)
ray.shutdown()
"""


def _run(temp_dir, mode):
    return subprocess.Popen([sys.executable, "-c", DRIVER, temp_dir, mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())


def _fields(lines):
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines
            if line.split(" ", 1)[0] in ("TASK", "WORKER", "SESSION")}


def test_grep_task_id_finds_driver_raylet_and_worker_lines(temp_dir):
    proc = _run(temp_dir, "exit")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    fields = _fields(out.splitlines())
    task_id, worker_pid = fields["TASK"], fields["WORKER"]
    assert f"(pid={worker_pid}, ip=127.0.0.1) working on 5" in out
    session = fields["SESSION"]
    assert os.path.basename(session).startswith("session_")
    assert os.path.realpath(os.path.join(temp_dir, "session_latest")) == session
    logs = os.path.join(session, "logs")
    hits = subprocess.run(["grep", "-l", task_id] + glob.glob(os.path.join(logs, "*")),
                          capture_output=True, text=True).stdout.split()
    names = [os.path.basename(h) for h in hits]
    assert any(n.startswith("python-core-driver-") for n in names), names
    assert any(n.startswith("raylet") and n.endswith(".log") for n in names), names
    assert any(n.startswith("python-core-worker-") and n.endswith(f"_{worker_pid}.log")
               for n in names), names
    assert glob.glob(os.path.join(logs, f"worker-*-{worker_pid}.out"))
    assert glob.glob(os.path.join(logs, f"worker-*-{worker_pid}.err"))
    assert not glob.glob(os.path.join(temp_dir, "nodes", "*.json"))   # shutdown forgot it


def test_sigkilled_driver_leaves_nothing_running(temp_dir):
    proc = _run(temp_dir, "hang")
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == "READY":
                break
        fields = _fields(lines)
        pids = recorded_pids(temp_dir) | {int(fields["WORKER"])}
        assert len(running(pids)) >= 5   # GCS, raylet, store, log monitor, worker(s)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while running(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(pids)

    # What the killed raylet left (the objects it had spilled, a record of dead
    # processes) goes when the next head starts in the same temp dir.
    from ray_core.node import read_records
    [(_path, record)] = read_records(temp_dir)
    spilled = record["spill_dir"]
    assert os.listdir(spilled)
    proc = _run(temp_dir, "exit")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert not os.path.exists(spilled)
    assert read_records(temp_dir) == []


ROTATING = """
import sys, ray_core as ray
ray.init(num_cpus=1, _temp_dir=sys.argv[1],
         _system_config={"log_rotation_max_bytes": 20000, "log_rotation_backup_count": 2})

@ray.remote
def work(x):
    return x

assert ray.get([work.remote(i) for i in range(300)]) == list(range(300))
print("SESSION", ray.get_runtime_context().get_node_id(), flush=True)
ray.shutdown()
"""


def test_logs_rotate_by_size_from_config(temp_dir):
    result = subprocess.run([sys.executable, "-c", ROTATING, temp_dir], capture_output=True,
                            text=True, timeout=120, env=child_env())
    assert result.returncode == 0, result.stderr
    logs = os.path.join(temp_dir, "session_latest", "logs")
    drivers = sorted(os.path.basename(p) for p in
                     glob.glob(os.path.join(logs, "python-core-driver-*.log*")))
    assert len(drivers) == 3, drivers          # the file and backup_count rotated ones
    for path in glob.glob(os.path.join(logs, "*.log*")):
        # A file rolls over once past the limit; one buffered flush may overshoot it.
        assert os.path.getsize(path) < 20000 + 100000, path


ACTOR_DRIVER = """
import sys, ray_core as ray
ray.init(num_cpus=1, _temp_dir=sys.argv[1])

@ray.remote
class Counter:
    def inc(self, x):
        print("counting", x)
        return x + 1

print("RESULT", ray.get(Counter.remote().inc.remote(1)))
ray.shutdown()
"""


def test_actor_prints_carry_the_class_name(temp_dir):
    result = subprocess.run([sys.executable, "-c", ACTOR_DRIVER, temp_dir],
                            capture_output=True, text=True, timeout=120, env=child_env())
    assert result.returncode == 0 and "RESULT 2" in result.stdout, result.stderr
    assert "(Counter pid=" in result.stdout and ", ip=127.0.0.1) counting 1" in result.stdout
