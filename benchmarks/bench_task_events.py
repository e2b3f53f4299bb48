"""What recording task events costs: the microbenchmark's task rows with
`enable_task_events` on (the default) and off, in the same run.

Each run is a fresh driver with its own `init(num_cpus=2)` head in its own temp dir:
warm-up (workers started, functions exported), then the rows "single client tasks
async" (TASKS `small.remote(i)` in batches of 1,000), "single client tasks sync" (SYNC
tasks one `get` at a time) and "1:1 actor calls async" (TASKS calls in batches of
1,000). On and off alternate RUNS times; the best of each row is kept (a shared machine
only ever makes a run slower).

  python -m benchmarks.bench_task_events [RUNS]     prints the table and JSON
"""
import json
import sys

from benchmarks.fresh_driver import run_driver

TASKS = 20_000
SYNC = 2_000
RUNS = 3

DRIVER = """
import json, sys, time
import ray_core as ray

ray.init(num_cpus=2, _temp_dir=sys.argv[1])
tasks, sync = int(sys.argv[2]), int(sys.argv[3])

@ray.remote
def small(x):
    return x

@ray.remote
class Actor:
    def small(self, x):
        return x

actor = Actor.remote()
ray.get([small.remote(i) for i in range(2000)] + [actor.small.remote(i) for i in range(2000)])

def rate(n, body):
    start = time.perf_counter()
    body()
    return n / (time.perf_counter() - start)

def batches(call):
    for _ in range(tasks // 1000):
        assert len(ray.get([call(i) for i in range(1000)])) == 1000

def one_by_one():
    for i in range(sync):
        ray.get(small.remote(i))

result = {"single client tasks async": rate(tasks, lambda: batches(small.remote)),
          "single client tasks sync": rate(sync, one_by_one),
          "1:1 actor calls async": rate(tasks, lambda: batches(actor.small.remote))}
ray.shutdown()
print("RESULT " + json.dumps(result))
"""


def _one_run(events_on: bool, tasks: int, sync: int) -> dict:
    return run_driver(DRIVER, tasks, sync, RAY_CORE_ENABLE_TASK_EVENTS="1" if events_on else "0")


def measure(runs: int = RUNS, tasks: int = TASKS, sync: int = SYNC) -> dict:
    best = {"on": {}, "off": {}}
    for _ in range(runs):
        for mode in ("on", "off"):
            for row, value in _one_run(mode == "on", tasks, sync).items():
                best[mode][row] = max(best[mode].get(row, 0.0), value)
    return best


def run():
    best = measure()
    return [(f"{row}, task events on (ref: off)", value, "/s", best["off"][row], "/s")
            for row, value in best["on"].items()]


if __name__ == "__main__":
    result = measure(int(sys.argv[1]) if len(sys.argv) > 1 else RUNS)
    for row, on in result["on"].items():
        off = result["off"][row]
        print(f"{row:30} on {on:9,.0f}/s  off {off:9,.0f}/s  on/off {on / off:5.3f}")
    print(json.dumps(result))
