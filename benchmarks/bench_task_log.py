"""What the per-task log lines cost: log bytes per task in each process's file, and task
throughput with the lines on (log_level info, the default) and off (log_level warning).

Each run is a fresh driver with its own head node in its own temp dir. It warms up
(workers started, functions exported), waits for the buffered lines to reach the files,
notes every log file's size, runs TASKS small tasks as one async batch, shuts down (every
process flushes its buffer on exit) and measures again, so start-up and shut-down lines
count for a few bytes per task at most. On and off alternate RUNS times each; the best
throughput of each is kept (a shared machine only ever makes a run slower).

  python -m benchmarks.bench_task_log [TASKS]     prints the table and JSON
"""
import json
import sys

from benchmarks.fresh_driver import run_driver

TASKS = 20_000
RUNS = 3

DRIVER = """
import glob, json, os, sys, time
import ray_core as ray
from ray_common.config import config

ctx = ray.init(num_cpus=2, _temp_dir=sys.argv[1])
n = int(sys.argv[2])

@ray.remote
def small(x):
    return x

ray.get([small.remote(i) for i in range(2000)])        # workers up, function exported
time.sleep(3 * config.log_flush_interval_ms / 1000.0 + 0.3)
logs = os.path.join(ctx["session_dir"], "logs")

def sizes():
    return {os.path.basename(p): os.path.getsize(p) for p in glob.glob(logs + "/*")}

before = sizes()
start = time.perf_counter()
for _ in range(n // 1000):
    assert len(ray.get([small.remote(i) for i in range(1000)])) == 1000
elapsed = time.perf_counter() - start
ray.shutdown()
after = sizes()
print("RESULT " + json.dumps({"tasks_per_s": n / elapsed, "before": before, "after": after}))
"""

# Log files by the process that writes them (raylet_<port>.log: a second raylet).
GROUPS = [("driver", "python-core-driver-"), ("worker", "python-core-worker-"),
          ("raylet", "raylet"), ("gcs", "gcs_server"), ("store", "plasma_store"),
          ("log monitor", "log_monitor"), ("worker stdout/err", "worker-")]


def _group(name: str) -> str:
    for group, prefix in GROUPS:
        if name.startswith(prefix):
            return group
    return "other"


def _one_run(level: str, tasks: int) -> dict:
    result = run_driver(DRIVER, tasks, RAY_CORE_LOG_LEVEL=level)
    per_group = {}
    for name, size in result["after"].items():
        grown = size - result["before"].get(name, 0)
        per_group[_group(name)] = per_group.get(_group(name), 0) + grown
    return {"tasks_per_s": result["tasks_per_s"],
            "bytes_per_task": {g: b / tasks for g, b in per_group.items()}}


def measure(tasks: int = TASKS, runs: int = RUNS) -> dict:
    best = {}
    for _ in range(runs):
        for mode, level in (("on", "info"), ("off", "warning")):
            run = _one_run(level, tasks)
            if mode not in best or run["tasks_per_s"] > best[mode]["tasks_per_s"]:
                best[mode] = run
    return best


def run():
    best = measure()
    on, off = best["on"], best["off"]
    rows = [(f"{TASKS // 1000}k async tasks, task lines on (ref: off)", on["tasks_per_s"],
             "tasks/s", off["tasks_per_s"], "tasks/s")]
    rows += [(f"log bytes per task, {group}", on["bytes_per_task"][group], "B/task", 0, "")
             for group, _prefix in GROUPS if on["bytes_per_task"].get(group, 0) >= 0.05]
    rows.append(("log bytes per task, every process, lines off",
                 sum(off["bytes_per_task"].values()), "B/task", 0, ""))
    return rows


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else TASKS
    result = measure(count)
    for mode in ("on", "off"):
        figures = result[mode]
        total = sum(figures["bytes_per_task"].values())
        print(f"task lines {mode:3}: {figures['tasks_per_s']:9,.0f} tasks/s, "
              f"{total:7.1f} log bytes/task: " + ", ".join(
                  f"{g} {b:.1f}" for g, b in sorted(figures["bytes_per_task"].items())))
    print(json.dumps(result))
