"""One row of the scale envelope (`python -m benchmarks.run scale`), in a process of its own.

Run as `python benchmarks/scale_rows.py ROW --backend ray|ray_core [--scale F]`; prints
one JSON line: the row's figures and the peak RSS (VmHWM) of each kind of process of the
cluster it started. The same file runs under Ray (in `make bench-vs-ray`'s virtualenv)
and ray_core, so both do the same work; `--scale` shrinks every count for a quick try.
The rows are Ray's published single-node and cluster limits (release/benchmarks).
"""
import argparse
import concurrent.futures
import contextlib
import json
import os
import resource
import sys
import threading
import time

import numpy as np
import psutil

from socket_copy import copy_seconds   # run as a script (under Ray too): its folder is on sys.path

MB = 1024 ** 2


def _connect(ray, backend: str, **kwargs):
    if backend == "ray":
        kwargs.setdefault("include_dashboard", False)
    ray.init(**kwargs)


def _process_kind(process: psutil.Process) -> str:
    line = " ".join(process.cmdline())
    for kind, marks in (("worker", ("default_worker",)), ("gcs", ("gcs_server", "ray_gcs.")),
                        ("raylet", ("ray_raylet.", "raylet/raylet")),
                        ("store", ("ray_plasma.",))):
        if any(mark in line for mark in marks):
            return kind
    return "other"


def _peak_rss_mb() -> dict:
    """The highest peak RSS of each kind of process under this driver, and the driver's."""
    peaks = {"driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    for process in psutil.Process().children(recursive=True):
        try:
            with open(f"/proc/{process.pid}/status") as status:
                hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
            kind = _process_kind(process)
        except (OSError, StopIteration, psutil.Error):
            continue
        peaks[kind] = max(peaks.get(kind, 0.0), hwm / 1024)
    return {kind: round(mb, 1) for kind, mb in peaks.items()}


def _gcs_rss_mb() -> float:
    for process in psutil.Process().children(recursive=True):
        try:
            if _process_kind(process) == "gcs":
                return process.memory_info().rss / MB
        except psutil.Error:
            continue
    return 0.0


def queued_tasks(ray, backend, n):
    """n tasks submitted before any can start (each waits for a gate's ref): submission
    rate over the first and last tenth, driver memory per pending task, completion."""
    _connect(ray, backend, num_cpus=2)

    @ray.remote
    class Gate:
        def __init__(self):
            self._open = threading.Event()

        def wait(self):
            self._open.wait()

        def open(self):
            self._open.set()

    @ray.remote
    def after(_):
        return None

    gate = Gate.options(num_cpus=0, max_concurrency=2).remote()
    opened = gate.wait.remote()
    ray.get(after.remote(None))     # workers up before the clock starts
    rss_before = psutil.Process().memory_info().rss
    tenth = max(1, n // 10)
    refs, marks = [], [time.perf_counter()]
    for i in range(n):
        refs.append(after.remote(opened))
        if (i + 1) % tenth == 0:
            marks.append(time.perf_counter())
    per_task = (psutil.Process().memory_info().rss - rss_before) / n
    start = time.perf_counter()
    ray.get(gate.open.remote())
    for i in range(0, n, 10_000):
        ray.get(refs[i:i + 10_000])
    done = time.perf_counter() - start
    first, last = tenth / (marks[1] - marks[0]), tenth / (marks[-1] - marks[-2])
    return [("submit rate, first tenth", first, "tasks/s"),
            ("submit rate, last tenth", last, "tasks/s"),
            ("driver memory per pending task", per_task, "bytes"),
            ("completion after the gate opened", done, "s")]


def many_args(ray, backend, n):
    _connect(ray, backend, num_cpus=2)

    @ray.remote
    def count(*args):
        return len(args)

    args = [ray.put(i) for i in range(n)]
    ray.get(count.remote(*args[:10]))
    start = time.perf_counter()
    assert ray.get(count.remote(*args)) == n
    return [(f"task with {n:,} ObjectRef args", (time.perf_counter() - start) * 1e3, "ms")]


def many_returns(ray, backend, n):
    _connect(ray, backend, num_cpus=2)

    @ray.remote
    def spread(k):
        return list(range(k))

    ray.get(spread.options(num_returns=2).remote(2))
    start = time.perf_counter()
    refs = spread.options(num_returns=n).remote(n)
    assert ray.get(refs[-1]) == n - 1 and len(ray.get(refs)) == n
    return [(f"task with {n:,} returns", (time.perf_counter() - start) * 1e3, "ms")]


def get_many(ray, backend, n):
    _connect(ray, backend, num_cpus=2, object_store_memory=2 * 1024 * MB)
    data = np.ones(100 * 1024 // 8)
    refs = [ray.put(data) for _ in range(n)]
    start = time.perf_counter()
    values = ray.get(refs)
    took = time.perf_counter() - start
    assert len(values) == n and values[-1][0] == 1
    return [(f"get of {n:,} objects of 100 KB", took * 1e3, "ms")]


def wait_many(ray, backend, n):
    _connect(ray, backend, num_cpus=2)
    refs = [ray.put(i) for i in range(n)]
    start = time.perf_counter()
    ready, rest = ray.wait(refs, num_returns=n, timeout=600)
    assert len(ready) == n and not rest
    return [(f"wait on {n:,} refs", (time.perf_counter() - start) * 1e3, "ms")]


def many_nodes(ray, backend, n_nodes, n_tasks):
    with _cluster(ray, backend, {"num_cpus": 1}, [{"num_cpus": 1}] * (n_nodes - 1)) as out:
        @ray.remote(num_cpus=1, scheduling_strategy="SPREAD")
        def where(seconds=0.0):
            time.sleep(seconds)
            return ray.get_runtime_context().get_node_id()

        ray.get([where.remote(1.0) for _ in range(n_nodes)])   # a worker up on each node
        start = time.perf_counter()
        nodes = ray.get([where.remote() for _ in range(n_tasks)])
        rate = n_tasks / (time.perf_counter() - start)
        counts = [nodes.count(node) for node in set(nodes)]
        evenness = min(counts) / max(counts) if len(counts) == n_nodes else 0.0
    return [(f"{n_nodes} nodes registered", out["registered"], "s"),
            (f"SPREAD tasks over {n_nodes} nodes", rate, "tasks/s"),
            ("spread evenness (fewest / most tasks on a node)", evenness, "ratio")], out["peaks"]


@contextlib.contextmanager
def _cluster(ray, backend, head_args, nodes_args):
    """A cluster_utils cluster on this machine with this driver connected. Yields a dict
    that holds `registered` (seconds to start every node) and, once the body is done,
    `peaks` (peak RSS per process kind, taken while the cluster still runs)."""
    if backend == "ray":
        from ray.cluster_utils import Cluster
    else:
        from ray_core.cluster_utils import Cluster
    start = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    for node_args in nodes_args:
        cluster.add_node(wait=False, **node_args)
    cluster.wait_for_nodes()
    out = {"registered": time.perf_counter() - start}
    try:
        ray.init(address=cluster.address)
        yield out
        out["peaks"] = _peak_rss_mb()
        ray.shutdown()
    finally:
        cluster.shutdown()


def _plain_copy_seconds(size: int, receivers: int) -> float:
    """The transfer rows' reference, taken in the same run: seconds until `receivers`
    processes each hold `size` bytes sent at once over localhost TCP from other
    processes' shared memory into fresh shared memory (benchmarks/socket_copy.py)."""
    with concurrent.futures.ThreadPoolExecutor(receivers) as pool:
        copies = [pool.submit(copy_seconds, size, 1, "fresh") for _ in range(receivers)]
        return max(copy.result()[0] for copy in copies)


def broadcast(ray, backend, gigabytes):
    """A 1 GB object put on the head, read by one task on each of 3 other nodes (Ray's
    object-store broadcast test): time until all three have it."""
    size = int(gigabytes * 1024 * MB)
    store = size + 512 * MB
    nodes = [{"num_cpus": 1, "resources": {f"n{i}": 1}, "object_store_memory": store}
             for i in range(3)]
    with _cluster(ray, backend, {"num_cpus": 0, "object_store_memory": store},
                  nodes) as out:
        @ray.remote
        def length(array):
            return len(array)

        ray.get([length.options(resources={f"n{i}": 1}).remote(np.ones(8)) for i in range(3)])
        ref = ray.put(np.ones(size // 8))
        start = time.perf_counter()
        assert ray.get([length.options(resources={f"n{i}": 1}).remote(ref)
                        for i in range(3)]) == [size // 8] * 3
        took = time.perf_counter() - start
    plain = _plain_copy_seconds(size, 3)
    return [(f"{gigabytes:g} GB object broadcast from the head to 3 nodes", took, "s"),
            ("... bytes delivered per second", 3 * size / took / MB, "MB/s"),
            ("... plain socket copies of it to 3 processes at once (fresh pages)", plain, "s"),
            ("... speed against those copies (goal 0.8)", plain / took, "ratio")], out["peaks"]


def big_args(ray, backend, count):
    """A task on node B taking `count` x 100 MB arguments made by tasks on node A."""
    store = (count * 100 + 512) * MB
    nodes = [{"num_cpus": 1, "resources": {name: 1}, "object_store_memory": store}
             for name in ("a", "b")]
    with _cluster(ray, backend, {"num_cpus": 0, "object_store_memory": 256 * MB},
                  nodes) as out:
        @ray.remote(resources={"a": 1})
        def make(i):
            return np.full(100 * MB // 8, i)

        @ray.remote(resources={"b": 1})
        def total(*arrays):
            return sum(int(a[0]) for a in arrays)

        ray.get(total.remote(make.remote(0)))
        refs = [make.remote(i) for i in range(count)]
        ray.wait(refs, num_returns=count)
        start = time.perf_counter()
        assert ray.get(total.remote(*refs)) == sum(range(count))
        took = time.perf_counter() - start
    plain = _plain_copy_seconds(count * 100 * MB, 1)
    return [(f"task on node B with {count} x 100 MB args made on node A", took, "s"),
            ("... bytes moved per second", count * 100 / took, "MB/s"),
            ("... a plain socket copy of those bytes (fresh pages)", plain, "s"),
            ("... speed against that copy (goal 0.8)", plain / took, "ratio")], out["peaks"]


# The GCS's ended rows kept in the rows below (ray_core's bound; Ray keeps every removed
# group, and its own dead-actor bound is set to the same figure).
ENDED_ROWS_KEPT = 100
WARM_UP = 100
DETAILS = {}    # figures beside the rows, printed with them


def _bounded(ray, backend, **kwargs):
    bounds = {"maximum_gcs_destroyed_actor_cached_count": ENDED_ROWS_KEPT}
    if backend == "ray_core":
        bounds["maximum_gcs_removed_placement_group_cached_count"] = ENDED_ROWS_KEPT
    _connect(ray, backend, _system_config=bounds, **kwargs)


def _gcs_rows(ray, backend) -> dict:
    """Rows of the GCS's actor and placement group tables, as its own readers see them
    (ray_core: its metrics; Ray: its GCS-backed state calls, no dashboard needed)."""
    if backend == "ray":
        return {"actors": len(ray._private.state.actors()),
                "placement_groups": len(ray.util.placement_group_table())}
    import re
    import urllib.request
    from ray_common.metrics import metrics_files
    from ray_core._private.worker import global_worker
    gcs = next(e for e in metrics_files(global_worker().session_dir)
               if e["component"] == "gcs_server")
    with urllib.request.urlopen(f"http://{gcs['address']}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    return {name: int(float(value)) for name, value in re.findall(
        r'^ray_core_gcs_(?:table_rows\{table|entries\{kind)="(\w+)"\} (\S+)$', text, re.M)}


def _memory_rows(label, n, table, rss, rows):
    """The rows that show the GCS back at its baseline: its RSS and its table's rows after
    a warm-up round, then after each of two rounds of n. Every figure the GCS gives is
    kept in DETAILS (printed with the JSON line)."""
    DETAILS["gcs_rows_after_each_round"] = rows
    out = []
    for when, mb, counts in zip((f"a warm-up round of {WARM_UP}", f"{n} {label}",
                                 f"a second {n} {label}"), rss, rows):
        out += [(f"GCS RSS after {when}", mb, "MB"),
                (f"... {table} rows in the GCS", counts.get(table, 0), "rows")]
    return out


def placement_groups(ray, backend, n):
    _bounded(ray, backend, num_cpus=2, resources={"custom": n})

    def one_round(count):
        start = time.perf_counter()
        groups = [ray.util.placement_group([{"custom": 0.5}]) for _ in range(count)]
        for group in groups:
            assert group.wait(timeout_seconds=60)
        live = _gcs_rss_mb()
        for group in groups:
            ray.util.remove_placement_group(group)
        took = time.perf_counter() - start
        time.sleep(2)
        return count / took, live

    one_round(WARM_UP)
    rss, rows = [_gcs_rss_mb()], [_gcs_rows(ray, backend)]
    rate, live = one_round(n)
    rss.append(_gcs_rss_mb())
    rows.append(_gcs_rows(ray, backend))
    one_round(n)
    rss.append(_gcs_rss_mb())
    rows.append(_gcs_rows(ray, backend))
    return [("placement groups created, ready and removed", rate, "groups/s"),
            (f"GCS RSS with {n} groups placed", live, "MB")] + \
        _memory_rows("groups created and removed", n, "placement_groups", rss, rows)


def actors(ray, backend, n):
    _bounded(ray, backend, num_cpus=2)

    @ray.remote(num_cpus=0)
    class Small:
        def ping(self):
            return 1

    def one_round(count):
        start = time.perf_counter()
        for low in range(0, count, 100):   # at most 100 live at once: 2 cores, one process each
            batch = [Small.remote() for _ in range(min(100, count - low))]
            assert sum(ray.get([actor.ping.remote() for actor in batch])) == len(batch)
            for actor in batch:
                ray.kill(actor)
        took = time.perf_counter() - start
        time.sleep(2)
        return count / took

    one_round(WARM_UP)
    rss, rows = [_gcs_rss_mb()], [_gcs_rows(ray, backend)]
    rate = one_round(n)
    rss.append(_gcs_rss_mb())
    rows.append(_gcs_rows(ray, backend))
    one_round(n)
    rss.append(_gcs_rss_mb())
    rows.append(_gcs_rows(ray, backend))
    return [("actors created, called once, killed", rate, "actors/s")] + \
        _memory_rows("actors created, called and killed", n, "actors", rss, rows)


def spill(ray, backend, total_gb):
    _connect(ray, backend, num_cpus=2, object_store_memory=2 * 1024 * MB)
    chunk = np.ones(100 * MB // 8)
    count = int(total_gb * 10)
    start = time.perf_counter()
    refs = []
    for i in range(count):
        chunk[0] = i
        refs.append(ray.put(chunk))
    put_s = time.perf_counter() - start
    start = time.perf_counter()
    for i, ref in enumerate(refs):
        assert ray.get(ref)[0] == i
    get_s = time.perf_counter() - start
    return [(f"{total_gb:g} GB put through a 2 GB store", count * 100 / put_s, "MB/s"),
            ("... each read back (restored)", count * 100 / get_s, "MB/s")]


def _burn(seconds_of_work: int) -> int:
    total = 0
    for i in range(seconds_of_work):
        total += i * i % 7
    return total


def cpu_bound(ray, backend, n):
    """Parallel efficiency: n pure-Python tasks on 2 CPUs against ideal = n/2 x one such
    task's time alone; and how much CPU the worker's other threads take meanwhile."""
    _connect(ray, backend, num_cpus=2)

    @ray.remote(num_cpus=1)
    def work(k):
        me = threading.get_native_id()
        process = psutil.Process()
        before = {t.id: t.user_time + t.system_time for t in process.threads()}
        start = time.perf_counter()
        _burn(k)
        took = time.perf_counter() - start
        after = {t.id: t.user_time + t.system_time for t in process.threads()}
        own = after.get(me, 0) - before.get(me, 0)
        others = sum(v - before.get(t, 0) for t, v in after.items() if t != me)
        return took, own, others

    loops = 100_000
    while True:    # about 1 s of work on this machine
        took = ray.get(work.remote(loops))[0]
        if took > 0.25:
            loops = int(loops / took)
            break
        loops *= 4
    start = time.perf_counter()
    ray.get(work.remote(loops))
    solo = time.perf_counter() - start
    start = time.perf_counter()
    results = ray.get([work.remote(loops) for _ in range(n)])
    elapsed = time.perf_counter() - start
    own = sum(r[1] for r in results)
    others = sum(r[2] for r in results)
    return [(f"parallel efficiency, {n} x 1 s tasks on 2 CPUs", n / 2 * solo / elapsed,
             "ratio"),
            ("worker's other threads' CPU / its task thread's", others / own if own else 0.0,
             "ratio")]


ROWS = {
    "queued_tasks": lambda ray, b, s: queued_tasks(ray, b, int(1_000_000 * s)),
    "many_args": lambda ray, b, s: many_args(ray, b, int(10_000 * s)),
    "many_returns": lambda ray, b, s: many_returns(ray, b, int(3_000 * s)),
    "get_many": lambda ray, b, s: get_many(ray, b, int(10_000 * s)),
    "wait_many": lambda ray, b, s: wait_many(ray, b, int(100_000 * s)),
    "many_nodes": lambda ray, b, s: many_nodes(ray, b, max(2, int(32 * s)), int(20_000 * s)),
    "broadcast": lambda ray, b, s: broadcast(ray, b, 1.0 * s),
    "big_args": lambda ray, b, s: big_args(ray, b, max(1, int(10 * s))),
    "placement_groups": lambda ray, b, s: placement_groups(ray, b, int(1_000 * s)),
    "actors": lambda ray, b, s: actors(ray, b, int(1_000 * s)),
    "spill": lambda ray, b, s: spill(ray, b, 10 * s),
    "cpu_bound": lambda ray, b, s: cpu_bound(ray, b, 20),
}


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row", choices=sorted(ROWS))
    parser.add_argument("--backend", default="ray_core", choices=["ray", "ray_core"])
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.backend == "ray":
        import ray
    else:
        import ray_core as ray
    result = ROWS[args.row](ray, args.backend, args.scale)
    rows, peaks = result if isinstance(result, tuple) else (result, None)
    if peaks is None:
        peaks = _peak_rss_mb()
    if ray.is_initialized():
        ray.shutdown()
    print(json.dumps({"rows": rows, "peak_rss_mb": peaks, "details": DETAILS}))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
