"""`ray_core microbenchmark`: the task and object rows of Ray's `ray microbenchmark`.

Run: `python -m ray_core._private.microbenchmark [--json]` (starts its own 2-CPU head
node), or `benchmarks/bench_core.py` through `make bench`. Each row is
(name, value, unit, reference, ref_unit): "put gigabytes" stands beside a plain numpy
copy of the same array into already-touched memory, measured in the same run; the
other rows carry the Ray 2.60 figure measured on this 2-core machine that issue 6
quotes (`make bench-vs-ray` is the way to measure Ray itself beside these).
Ray's multi-client rows use actors as clients; here they are tasks that submit or put
from inside a worker (the same paths), and both backends run this same code. Sources:
"multi client put gigabytes" puts np.zeros arrays as Ray's row does; "single client put
gigabytes" puts np.ones (a zeros array is read from the kernel's zero page, which would
flatter both the put and the numpy-copy baseline it is compared with).
"""
import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
from typing import Callable, List, Tuple

import numpy as np

try:
    from ray_core._private import microbenchmark_actors
except ImportError:  # run as a script by another backend's interpreter (make bench-vs-ray)
    import microbenchmark_actors

# Ray 2.60 on this machine, as quoted by issue 6 (used where no same-run baseline exists).
RAY_REFERENCE = {
    "single client tasks sync": 620.0,
    "single client tasks async": 2070.0,
    "single client put calls (Plasma Store)": 2000.0,
    "single client get calls (Plasma Store)": 12000.0,
    "task latency p50": 1.6,
}
Row = Tuple[str, float, str, float, str]


def timeit(fn: Callable[[], None], multiplier: float = 1.0, min_seconds: float = 1.5,
           warmup: int = 1) -> float:
    """Best-of rate over repeated windows: `multiplier` units per call of fn."""
    for _ in range(warmup):
        fn()
    best = 0.0
    for _ in range(2):
        count = 0
        start = time.perf_counter()
        while True:
            fn()
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds / 2:
                break
        best = max(best, count * multiplier / elapsed)
    return best


def make_tasks(ray):
    """The benchmark's remote functions, made with the backend being measured."""

    @ray.remote
    def small_value():
        return b"ok"

    @ray.remote
    def put_many_small(n):
        for _ in range(n):
            ray.put(0)
        return n

    @ray.remote
    def put_large_many(n, size):
        import numpy
        for _ in range(n):
            # np.zeros, as Ray's own row does (its pages are read from the zero page).
            ray.put(numpy.zeros(size // 8, dtype=numpy.int64))
        return n

    @ray.remote
    def submit_batch(n):
        return len(ray.get([small_value.remote() for _ in range(n)]))

    @ray.remote
    def create_object_containing_refs(n):
        return [ray.put(i) for i in range(n)]

    return small_value, put_many_small, put_large_many, submit_batch, \
        create_object_containing_refs


def _ref(name) -> Tuple[float, str]:
    value = RAY_REFERENCE.get(name)
    return (value, "Ray 2.60 (issue 6)") if value else (0.0, "")


def run_rows(ray, quick: bool = False) -> List[Row]:
    small_value, put_many_small, put_large_many, submit_batch, create_object_containing_refs = \
        make_tasks(ray)
    rows: List[Row] = []
    scale = 0.3 if quick else 1.0

    def add(name, value, unit, reference=None, ref_unit=None):
        if reference is None:
            reference, ref_unit = _ref(name)
        rows.append((name, value, unit, reference, ref_unit))
        print(f"  {name}: {value:,.1f} {unit}", file=sys.stderr, flush=True)

    value = ray.put(0)
    add("single client get calls (Plasma Store)",
        timeit(lambda: ray.get(value), min_seconds=scale), "calls/s")
    add("single client put calls (Plasma Store)",
        timeit(lambda: ray.put(0), min_seconds=scale), "calls/s")
    add("multi client put calls (Plasma Store)",
        timeit(lambda: ray.get([put_many_small.remote(1000) for _ in range(4)]), 4000,
               min_seconds=scale), "calls/s")

    size = 400 * 1024 ** 2
    # Ones, not zeros: a fresh np.zeros array reads from the kernel's shared zero page,
    # which would flatter both the copy and the put.
    array = np.ones(size // 8, dtype=np.int64)
    target = np.empty_like(array)
    np.copyto(target, array)
    copy_rate = timeit(lambda: np.copyto(target, array), size / 1e9, min_seconds=scale)
    del target
    add("single client put gigabytes", timeit(lambda: ray.put(array), size / 1e9,
                                              min_seconds=2 * scale), "GB/s",
        copy_rate, "GB/s numpy copy")
    chunk = 80 * 1024 ** 2
    add("multi client put gigabytes",
        timeit(lambda: ray.get([put_large_many.remote(10, chunk) for _ in range(4)]),
               40 * chunk / 1e9, min_seconds=2 * scale), "GB/s", copy_rate, "GB/s numpy copy")
    del array

    add("single client tasks and get batch",
        timeit(lambda: ray.get([small_value.remote() for _ in range(1000)]),
               min_seconds=scale), "batches/s")
    container = create_object_containing_refs.remote(10_000)
    ray.get(container)
    add("single client get object containing 10k refs",
        timeit(lambda: ray.get(container), min_seconds=scale), "calls/s")
    refs = [small_value.remote() for _ in range(1000)]
    ray.get(refs)
    add("single client wait 1k refs",
        timeit(lambda: ray.wait(refs, num_returns=len(refs)), min_seconds=scale), "calls/s")
    add("single client tasks sync",
        timeit(lambda: ray.get(small_value.remote()), min_seconds=scale), "tasks/s")
    add("single client tasks async",
        timeit(lambda: ray.get([small_value.remote() for _ in range(1000)]), 1000,
               min_seconds=scale), "tasks/s")
    add("multi client tasks async",
        timeit(lambda: ray.get([submit_batch.remote(1000) for _ in range(4)]), 4000,
               min_seconds=scale), "tasks/s")

    latencies = []
    for _ in range(int(2000 * scale)):
        start = time.perf_counter()
        ray.get(small_value.remote())
        latencies.append((time.perf_counter() - start) * 1000)
    latencies.sort()
    add("task latency p50", latencies[len(latencies) // 2], "ms")
    add("task latency p99", latencies[int(len(latencies) * 0.99)], "ms")
    microbenchmark_actors.run_actor_rows(ray, add, timeit, scale)

    def create_and_remove_groups(n=100):
        # Ray's row: one-bundle groups of a sliver of a custom resource, waited on, removed.
        groups = [ray.util.placement_group([{"custom": 0.001}]) for _ in range(n)]
        for group in groups:
            group.wait(timeout_seconds=30)
        for group in groups:
            ray.util.remove_placement_group(group)

    add("placement group create/removal", timeit(create_and_remove_groups, 100,
                                                 min_seconds=scale), "groups/s")
    return rows


def run(quick: bool = False, backend: str = "ray_core") -> List[Row]:
    """Start a 2-CPU head node of `backend` (ray_core, or ray for comparison), measure, stop."""
    ray = importlib.import_module(backend)
    temp_dir = tempfile.mkdtemp(prefix="rcb_", dir="/tmp")
    started = time.perf_counter()
    ray.init(num_cpus=2, object_store_memory=2 * 1024 ** 3, _temp_dir=temp_dir,
             resources={"custom": 100}, log_to_driver=False, include_dashboard=False)
    try:
        small_value = make_tasks(ray)[0]
        assert ray.get(small_value.remote()) == b"ok"
        init_to_first = time.perf_counter() - started
        rows = run_rows(ray, quick)
        rows.insert(0, ("init() to first task result", init_to_first, "s", 0.0, ""))
        return rows
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="ray_core microbenchmark")
    parser.add_argument("--json", action="store_true", help="print rows as JSON")
    parser.add_argument("--quick", action="store_true", help="shorter windows")
    parser.add_argument("--backend", default="ray_core",
                        help="module to measure: ray_core (default) or ray")
    args = parser.parse_args(argv)
    rows = run(args.quick, args.backend)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'benchmark':48} {'value':>12} {'unit':10} {'reference':>12} {'ratio':>7}")
    for name, value, unit, reference, ref_unit in rows:
        if reference:
            ratio = value / reference if not unit == "ms" else reference / value
            print(f"{name:48} {value:12,.2f} {unit:10} {reference:12,.2f} {ratio:7.2f}  "
                  f"({ref_unit})")
        else:
            print(f"{name:48} {value:12,.2f} {unit:10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
