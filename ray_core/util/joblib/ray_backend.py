"""RayBackend: joblib's multiprocessing backend, with a ray_core Pool as its pool.

joblib batches the calls of a Parallel call (auto-batching aims at batches of a fraction
of a second) and submits each batch with Pool.apply_async, so the Pool's actors run the
batches wherever the cluster has CPUs. n_jobs=-1 means every CPU of the cluster, and an
n_jobs larger than the cluster's CPUs is trimmed to them (more actors would only queue).
A call that ends cleanly leaves its Pool to the next call for a moment (warm_pools.py);
one that fails terminates it (its other batches may still run).

Large arguments travel once: joblib pickles every batch with its arguments, so an array
given to each of 1,000 calls (GridSearchCV's X and y) would be copied 1,000 times. The
backend puts each argument of at least joblib_put_arg_min_bytes into the object store
once per Parallel call, keyed by identity, and the batches carry its ObjectRef; the
worker reads the value from shared memory (numpy arrays zero-copy, read-only, as
joblib's own memmapping gives them).
"""
import copy
import threading
from typing import Any, Optional

from joblib._parallel_backends import MultiprocessingBackend

import ray_core
from ray_common.config import config
from ray_core.util.joblib.warm_pools import WarmPools

_WARM_POOLS = WarmPools()


class RayBackend(MultiprocessingBackend):
    def __init__(self, *args, ray_remote_args: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._ray_remote_args = ray_remote_args
        self._pool_shape = None         # (processes, ray_remote_args) of self._pool
        self._stored = _StoredArgs()

    def effective_n_jobs(self, n_jobs: Optional[int]) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if not ray_core.is_initialized():
            ray_core.init()
        cpus = max(1, int(ray_core.cluster_resources().get("CPU", 1)))
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            return max(cpus + 1 + n_jobs, 1)
        return min(n_jobs, cpus)

    def configure(self, n_jobs: int = 1, parallel=None, prefer=None, require=None,
                  **pool_kwargs) -> int:
        """Take a Pool for one Parallel call, a warm one if a call just left it
        (joblib calls terminate() at the call's end). Unlike the multiprocessing
        backend, n_jobs=1 still runs on the cluster."""
        n_jobs = self.effective_n_jobs(n_jobs)
        remote_args = pool_kwargs.pop("ray_remote_args", self._ray_remote_args)
        self._pool_shape = (n_jobs, remote_args)
        self._pool = _WARM_POOLS.take_or_start(*self._pool_shape)
        self.parallel = parallel
        return n_jobs

    def submit(self, func, callback=None):
        return super().submit(self._stored.by_reference(func), callback)

    def terminate(self) -> None:
        """The call ended: its pool waits for the next call (see warm_pools.py)."""
        if self._pool is not None:
            _WARM_POOLS.park(self._pool, *self._pool_shape)
            self._pool = None
        self._stored.clear()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """A batch failed: end the pool's other batches now, then (ensure_ready) start
        a fresh pool for the calls that follow."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
        super().abort_everything(ensure_ready)


class _StoredArgs:
    """The large arguments of one Parallel call, each put once: id(value) -> (value,
    ref). The value is held so that its id is not reused while the call runs. joblib
    submits from its caller's thread and from completion callbacks (the Pool's
    dispatcher thread), hence the lock."""

    def __init__(self):
        self._refs = {}
        self._lock = threading.Lock()

    def by_reference(self, batch):
        """`batch` (joblib's BatchedCalls: .items of (func, args, kwargs)) with its large
        arguments replaced by refs; anything else as it is."""
        items = getattr(batch, "items", None)
        if not isinstance(items, list):
            return batch
        stored = False

        def swap(value):
            nonlocal stored
            new = self._ref_of(value)
            stored = stored or new is not value
            return new

        replaced = [(func, tuple(swap(a) for a in args),
                     {k: swap(v) for k, v in kwargs.items()})
                    for func, args, kwargs in items]
        if not stored:
            return batch
        light = copy.copy(batch)
        light.items = replaced
        return _BatchWithStoredArgs(light)

    def _ref_of(self, value: Any) -> Any:
        if _size_of(value) < config.joblib_put_arg_min_bytes:
            return value
        with self._lock:
            held = self._refs.get(id(value))
            if held is None:
                held = self._refs[id(value)] = (value, _StoredArg(ray_core.put(value)))
        return held[1]

    def clear(self) -> None:
        with self._lock:
            self._refs.clear()


def _size_of(value: Any) -> int:
    """The bytes of an array-like (numpy, pandas Series, Arrow) or bytes value; 0 for
    anything else, which stays in the batch."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    nbytes = getattr(value, "nbytes", None)
    return nbytes if isinstance(nbytes, int) else 0


class _StoredArg:
    """An argument left in the object store: the batch carries its ref (ray_core counts
    it as borrowed while the batch runs)."""

    def __init__(self, ref):
        self.ref = ref


class _BatchWithStoredArgs:
    """A joblib batch whose large arguments are refs: it reads them, then runs the batch
    (joblib's own callable, so its nested-backend settings hold)."""

    def __init__(self, batch):
        self._batch = batch

    def __call__(self):
        items = self._batch.items
        stored = [a for _, args, kwargs in items
                  for a in (*args, *kwargs.values()) if isinstance(a, _StoredArg)]
        values = dict(zip(map(id, stored), ray_core.get([a.ref for a in stored])))

        def read(a):
            return values[id(a)] if isinstance(a, _StoredArg) else a

        self._batch.items = [(func, tuple(read(a) for a in args),
                              {k: read(v) for k, v in kwargs.items()})
                             for func, args, kwargs in items]
        return self._batch()

    def __len__(self):
        return len(self._batch)
