"""A node's logs folder stays within log_dir_max_bytes: the sweep's order on fixed files,
then a real node under a chatty load with a small budget."""
import os
import subprocess
import sys

from ray_common.config import config
from ray_core._private import log_budget
from ray_core._private.log_monitor import LogMonitor
from tests.cli.conftest import run_driver

WORKER = "ab" * 28


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _file(folder, name, size, mtime=None):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(b"x" * size)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_closed_files_go_oldest_first_and_live_files_stay(tmp_path):
    folder, dead = str(tmp_path), _dead_pid()
    live = [_file(folder, f"python-core-driver-{os.getpid()}.log", 300),
            _file(folder, "raylet.log", 300)]
    oldest = _file(folder, "raylet.log.2", 300, mtime=500)
    older = _file(folder, "raylet.log.1", 300, mtime=1000)
    dead_log = _file(folder, f"python-core-worker-{WORKER}_{dead}.log", 300, mtime=2000)
    dead_out = _file(folder, f"worker-{WORKER}-{dead}.out", 300, mtime=3000)
    _file(folder, ".log_monitor.lock", 5000)          # hidden: neither counted nor removed

    swept = log_budget.enforce(folder, 1300)
    assert swept.removed == [oldest, older] and swept.truncated == []
    assert (swept.before, swept.after) == (1800, 1200)
    assert all(os.path.exists(p) for p in live + [dead_log, dead_out])

    swept = log_budget.enforce(folder, 600)            # the exited worker's files next
    assert swept.removed == [dead_log, dead_out] and swept.after == 600
    assert all(os.path.getsize(p) == 300 for p in live)
    assert os.path.exists(os.path.join(folder, ".log_monitor.lock"))


def test_live_files_alone_over_budget_are_emptied_largest_first(tmp_path):
    folder = str(tmp_path)
    big = _file(folder, f"python-core-driver-{os.getpid()}.log", 500)
    small = _file(folder, "gcs_server.log", 200)
    writer = os.open(big, os.O_WRONLY | os.O_APPEND)   # as every writer holds its file
    try:
        swept = log_budget.enforce(folder, 300)
        assert swept.truncated == [big] and swept.removed == [] and swept.after == 200
        os.write(writer, b"next line\n")              # the writer goes on from the start
    finally:
        os.close(writer)
    with open(big, "rb") as f:
        assert f.read() == b"next line\n"
    assert os.path.getsize(small) == 200


def test_unpublished_output_of_an_exited_worker_waits_for_the_monitor(tmp_path, monkeypatch):
    monkeypatch.setitem(config._system_config, "log_dir_max_bytes", 100)
    folder = str(tmp_path)
    out = os.path.join(folder, f"worker-{WORKER}-{_dead_pid()}.out")
    with open(out, "w") as f:
        f.write("".join(f"last words {i}\n" for i in range(20)))
    backup = _file(folder, "raylet.log.1", 50)
    monitor = LogMonitor(folder, "127.0.0.1")
    swept = monitor.enforce_budget()                 # nothing of `out` was published yet
    assert swept.removed == [backup] and os.path.exists(out)
    lines = [line for batch in monitor.poll() for line in batch.lines]
    assert lines[-1] == "last words 19" and len(lines) == 20
    assert monitor.enforce_budget().removed == [out]


CHATTY = """
import glob, os, sys, time, ray_core as ray
budget = int(sys.argv[2])
ctx = ray.init(num_cpus=2, _temp_dir=sys.argv[1], log_to_driver=False, _system_config={
    "log_dir_max_bytes": budget, "log_rotation_max_bytes": budget // 10,
    "log_rotation_backup_count": 3, "log_dir_sweep_interval_ms": 100})
logs = os.path.join(ctx["session_dir"], "logs")

@ray.remote
def chatty(i):
    print("line", i, "of a chatty task " + "x" * 80)
    return i

for _ in range(8):
    assert ray.get([chatty.remote(i) for i in range(1000)]) == list(range(1000))
last = chatty.remote(-1)
assert ray.get(last) == -1
print("LAST", last.task_id().hex(), flush=True)
print("LOGS", logs, flush=True)

def total():
    return sum(os.path.getsize(p) for p in glob.glob(logs + "/*") if os.path.isfile(p))

def greps(text):
    found = []
    for path in glob.glob(logs + "/*"):
        try:
            with open(path, errors="replace") as f:
                if text in f.read():
                    found.append(os.path.basename(path))
        except OSError:                     # rotated away meanwhile
            pass
    return found

# Read while the node runs: the monitor sweeps every 100 ms, and the worker's buffered
# task lines reach its file within log_flush_interval_ms (a worker killed at shutdown
# may not flush).
from ray_core._private.task_log import task_log
task_log.flush()
deadline = time.monotonic() + 60
while time.monotonic() < deadline and (total() > budget or not any(
        n.startswith("python-core-worker-") for n in greps(last.task_id().hex()))):
    time.sleep(0.1)
print("TOTAL", total(), flush=True)
print("FILES", " ".join(sorted(os.listdir(logs))), flush=True)
print("GREP", " ".join(greps(last.task_id().hex())), flush=True)
ray.shutdown()
"""


def _fields(out):
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines()
            if line.split(" ", 1)[0] in ("LAST", "LOGS", "TOTAL", "FILES", "GREP")}


def test_a_chatty_node_stays_within_its_log_budget(temp_dir):
    budget = 400_000
    result = run_driver(CHATTY, temp_dir, str(budget))
    assert result.returncode == 0, result.stderr
    fields = _fields(result.stdout)
    assert int(fields["TOTAL"]) <= budget, fields["FILES"]
    logs = fields["LOGS"]

    # Far more was written than the budget holds: several processes rotated their
    # files, and the sweep removed the oldest rotated files of more than one of them.
    with open(os.path.join(logs, "log_monitor.log")) as f:
        removals = " ".join(line.split(": removed ", 1)[1] for line in f
                            if "over its budget" in line)
    assert "python-core-driver-" in removals, removals
    assert "python-core-worker-" in removals or ".out." in removals, removals
    # Each process's live file is still there, and the newest task still greps
    # across driver and worker.
    names = fields["FILES"].split()
    for prefix in ("python-core-driver-", "python-core-worker-", "raylet", "gcs_server",
                   "worker-"):
        assert any(n.startswith(prefix) and not n[-1].isdigit() for n in names), prefix
    hit_names = fields["GREP"].split()
    assert any(n.startswith("python-core-driver-") for n in hit_names), hit_names
    assert any(n.startswith("python-core-worker-") for n in hit_names), hit_names
