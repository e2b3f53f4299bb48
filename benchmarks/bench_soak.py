"""Soak (issue 13): does anything grow while one driver runs a long, steady load?

`python -m benchmarks.run soak` (not part of a plain `make bench`: it takes minutes).
One driver on a 2-CPU head runs, in batches: SOAK_TASKS tiny tasks, SOAK_ACTOR_CALLS
calls to one actor, SOAK_PUTS put+get pairs of 1 KB, then drops every ref. A sampler
thread reads the RSS of the driver, raylet, GCS, plasma store and the actor's worker
every SAMPLE_S. Rows per process: the RSS at the end of the warm-up (the first tenth of
the run), at the end, and the growth between them (the goal: under 10%); then what is
left once the load is over: objects in the store and its bytes, the driver's memory
store, reference counts and pending tasks, the raylet's pinned objects and leases, the
actor's stored replies. Sizes shrink with SOAK_SCALE (e.g. 0.1 for a quick look).
"""
import gc
import os
import statistics
import tempfile
import threading
import time

import psutil

SCALE = float(os.environ.get("SOAK_SCALE", "1"))
TASKS = int(1_000_000 * SCALE)
ACTOR_CALLS = int(100_000 * SCALE)
PUTS = int(100_000 * SCALE)
BATCH = 2_000
SAMPLE_S = 2.0
WARMUP_FRACTION = 0.1


class Sampler(threading.Thread):
    """RSS of each named process every SAMPLE_S seconds, and of the task workers (all the
    raylet's workers but the actor's, summed: the pool may start and reap some)."""

    def __init__(self, processes, raylet, actor_pid):
        super().__init__(daemon=True, name="soak_sampler")
        self.processes = processes
        self.raylet = raylet
        self.actor_pid = actor_pid
        self.samples = []           # (seconds since start, {name: rss bytes})
        self._halt = threading.Event()
        self._start = time.monotonic()

    def run(self):
        while True:
            self.samples.append((time.monotonic() - self._start, self._rss()))
            if self._halt.wait(SAMPLE_S):
                break

    def _rss(self):
        out = {}
        for name, proc in self.processes.items():
            try:
                out[name] = proc.memory_info().rss
            except psutil.Error:
                out[name] = 0
        total = 0
        for child in self.raylet.children():
            try:
                if child.pid != self.actor_pid and "default_worker" in " ".join(child.cmdline()):
                    total += child.memory_info().rss
            except psutil.Error:
                pass
        out["task workers (sum)"] = total
        return out

    def stop(self):
        self._halt.set()
        self.join()
        self.samples.append((time.monotonic() - self._start, self._rss()))


def _processes(ray, actor):
    from ray_core._private import worker as worker_mod
    node = worker_mod.global_worker().node
    raylet = psutil.Process(node.raylet_proc.pid)
    store = next(p for p in raylet.children() if "ray_plasma.store" in " ".join(p.cmdline()))
    return {"driver": psutil.Process(), "raylet": raylet, "gcs": psutil.Process(node.gcs_proc.pid),
            "plasma store": store, "actor worker": psutil.Process(ray.get(actor.pid.remote()))}


def _growth(samples, name):
    """(RSS at the end of the warm-up, RSS at the end) in MB, medians of nearby samples."""
    total = samples[-1][0]
    warm = [rss[name] for t, rss in samples if WARMUP_FRACTION * total <= t
            <= 2 * WARMUP_FRACTION * total] or [samples[0][1][name]]
    end = [rss[name] for t, rss in samples if t >= (1 - WARMUP_FRACTION) * total] or \
        [samples[-1][1][name]]
    return statistics.median(warm) / 1e6, statistics.median(end) / 1e6


def run():
    import ray_core as ray
    from ray_common import rpc

    @ray.remote
    def tiny(i):
        return i

    @ray.remote
    class Counter:
        def __init__(self):
            self.n = 0

        def add(self, k):
            self.n += k
            return self.n

        def pid(self):
            return os.getpid()

        def replies_kept(self):
            from ray_core._private import worker as worker_mod
            order = worker_mod.global_worker().core_worker.task_server.call_order
            return sum(len(c.replies) for c in order._callers.values())

    temp_dir = tempfile.mkdtemp(prefix="rc_soak_", dir="/tmp")
    rows = []
    ray.init(num_cpus=2, object_store_memory=200 * 1024 ** 2, _temp_dir=temp_dir)
    try:
        actor = Counter.remote()
        processes = _processes(ray, actor)
        sampler = Sampler(processes, processes["raylet"], processes["actor worker"].pid)
        sampler.start()
        started = time.perf_counter()
        for start in range(0, TASKS, BATCH):
            assert ray.get([tiny.remote(i) for i in range(start, start + BATCH)])[-1] == \
                start + BATCH - 1
        tasks_s = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(ACTOR_CALLS // BATCH):
            ray.get([actor.add.remote(1) for _ in range(BATCH)])
        calls_s = time.perf_counter() - started
        payload = b"x" * 1024
        started = time.perf_counter()
        for _ in range(PUTS // BATCH):
            refs = [ray.put(payload) for _ in range(BATCH)]
            assert all(v == payload for v in ray.get(refs))
            del refs
        puts_s = time.perf_counter() - started
        sampler.stop()

        rows += [("tasks per s", TASKS / tasks_s, "tasks/s", None, ""),
                 ("actor calls per s", ACTOR_CALLS / calls_s, "calls/s", None, ""),
                 ("put+get of 1 KB per s", PUTS / puts_s, "pairs/s", None, ""),
                 ("samples", len(sampler.samples), "count", None, "")]
        for name in list(sampler.processes) + ["task workers (sum)"]:
            warm, end = _growth(sampler.samples, name)
            peak = max(rss[name] for _, rss in sampler.samples) / 1e6
            rows += [(f"{name} RSS after warm-up", warm, "MB", None, ""),
                     (f"{name} RSS at the end", end, "MB", None, ""),
                     (f"{name} RSS peak", peak, "MB", None, ""),
                     (f"{name} RSS growth after warm-up", 100 * (end / warm - 1), "%", None, "")]

        replies = ray.get(actor.replies_kept.remote())
        ray.kill(actor)
        core = ray._private.worker.global_worker().core_worker
        gc.collect()
        time.sleep(2.0)         # frees and the raylet's view settle
        core.reference_counter.flush()
        core.plasma_objects.drain_releases()
        stats = rpc.run_sync(core.lease_client.get_node_stats())
        store = core.plasma.stats()
        rows += [("left: plasma objects", store.get("num_objects", 0), "objects", None, ""),
                 ("left: plasma bytes", store.get("used", 0), "bytes", None, ""),
                 ("left: driver memory store", len(core.memory_store), "objects", None, ""),
                 ("left: driver reference counts", core.reference_counter.num_tracked(),
                  "refs", None, ""),
                 ("left: driver pending tasks", len(core.task_manager.pending_tasks()),
                  "tasks", None, ""),
                 ("left: raylet pinned objects", stats.num_pinned_objects, "objects", None, ""),
                 ("left: raylet queued leases", stats.num_pending_leases, "leases", None, ""),
                 ("left: actor's stored replies (before kill)", replies, "replies", None, "")]
    finally:
        ray.shutdown()
    return rows
