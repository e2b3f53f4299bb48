"""The doors (issue 16) beside the defaults they replace, in the same run, 2 CPUs each:

- Pool.map of 10,000 tiny calls on ray_core.util.multiprocessing.Pool(2) vs the standard
  library's multiprocessing.Pool(2) (goal: within 2x), with the default chunksize (8
  chunks of 1,250 calls, as both pools choose it) and with chunksize=1 (10,000 round
  trips: what each call costs). Both pools are started and warmed by one map first: the
  rows time the map alone.
- joblib.Parallel(n_jobs=2) of 1,000 calls of 10 ms (a sleep, so the row measures what
  the backend adds, not how the 2 shared cores are split) on the "ray" backend vs
  joblib's default loky backend (goal: at least as fast). Both backends are warmed first
  (loky keeps its workers between calls, the ray backend its Pool: warm_pools.py).
- A Dask array reduction (a 4000x4000 array in 64 chunks: (x + x.T).mean(axis=0).sum())
  with ray_dask_get vs Dask's threaded scheduler and dask.distributed (a LocalCluster of
  2 single-threaded worker processes).

Each row is the best of REPEATS runs; the ratio is ray_core's time over the
reference's (below 1: ray_core is faster).
"""
import multiprocessing
import shutil
import tempfile
import time

REPEATS = 5
TINY_CALLS = 10_000
JOBLIB_CALLS = 1_000
SLEEP_S = 0.01


def tiny(x):
    return x + 1


def ten_ms(x):
    time.sleep(SLEEP_S)
    return x


def _best(fn) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _pool_rows() -> list:
    from ray_core.util.multiprocessing import Pool
    items = range(TINY_CALLS)
    times = {}
    for name, pool in (("theirs", multiprocessing.Pool(2)), ("ours", Pool(2))):
        with pool:
            pool.map(tiny, items)
            for chunksize in (None, 1):
                times[name, chunksize] = _best(lambda: pool.map(tiny, items, chunksize))
    return [(f"Pool(2).map of {TINY_CALLS:,} tiny calls, chunksize={chunksize} "
             f"(vs multiprocessing.Pool)", times["ours", chunksize] * 1e3, "ms",
             times["theirs", chunksize] * 1e3, "ms") for chunksize in (None, 1)]


def _joblib_rows() -> list:
    import joblib
    from ray_core.util.joblib import register_ray
    register_ray()

    def parallel(backend):
        with joblib.parallel_backend(backend, n_jobs=2):
            joblib.Parallel()(joblib.delayed(ten_ms)(i) for i in range(JOBLIB_CALLS))

    parallel("loky")
    reference = _best(lambda: parallel("loky"))
    parallel("ray")
    value = _best(lambda: parallel("ray"))
    return [(f"joblib.Parallel of {JOBLIB_CALLS:,} 10 ms calls (vs loky)",
             value, "s", reference, "s")]


def _dask_rows() -> list:
    import dask.array as da

    from ray_core.util.dask import ray_dask_get
    x = da.random.RandomState(0).random((4000, 4000), chunks=(500, 500))
    reduction = (x + x.T).mean(axis=0).sum()
    value = _best(lambda: reduction.compute(scheduler=ray_dask_get))
    threaded = _best(lambda: reduction.compute(scheduler="threads", num_workers=2))
    name = "Dask (x + x.T).mean(0).sum(), 4000x4000 in 64 chunks"
    rows = [(f"{name} (vs threaded)", value, "s", threaded, "s")]
    try:        # dask.distributed is no dependency of ray_core's: its row needs it here
        from distributed import Client, LocalCluster
    except ImportError:
        return rows
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        reduction.compute(scheduler=client.get)
        distributed = _best(lambda: reduction.compute(scheduler=client.get))
    return rows + [(f"{name} (vs distributed)", value, "s", distributed, "s")]


def run():
    import ray_core as ray
    temp_dir = tempfile.mkdtemp(prefix="rc_bench_", dir="/tmp")
    try:
        ray.init(num_cpus=2, _temp_dir=temp_dir)
        return _pool_rows() + _joblib_rows() + _dask_rows()
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
