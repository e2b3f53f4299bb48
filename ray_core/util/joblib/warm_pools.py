"""WarmPools: the Pools of finished Parallel calls, kept a moment for the next call.

joblib makes a backend start its workers for every Parallel call; loky hides that by
keeping its executor's processes between calls. Starting a Pool's actors costs a worker
process each (0.2-0.7 s for Pool(2) on the 2-core machine, against 5 s for a whole
Parallel call of 1,000 10 ms calls), so a loop of Parallel calls would pay it each time.
A Pool that ends a call cleanly is parked here for joblib_pool_keep_s: a call with the
same size and actor options in that time takes it over, else a timer terminates it and
its CPUs go back to the cluster. A parked pool belongs to the driver connection that made
it (a shutdown and init in between never hands back a pool of the old cluster).
"""
import threading
from typing import Dict, Optional, Tuple

import ray_core
from ray_common.config import config
from ray_core.util.multiprocessing import Pool


class WarmPools:
    def __init__(self):
        self._lock = threading.Lock()
        self._parked: Dict[Tuple, Tuple[Pool, threading.Timer]] = {}

    def take_or_start(self, processes: int, remote_args: Optional[dict]) -> Pool:
        """A parked pool of this shape, or a new one."""
        key = _key(processes, remote_args)
        with self._lock:
            parked = self._parked.pop(key, None)
        if parked is None:
            return Pool(processes, ray_remote_args=remote_args)
        pool, timer = parked
        timer.cancel()
        return pool

    def park(self, pool: Pool, processes: int, remote_args: Optional[dict]) -> None:
        """Keep `pool` (idle, its call ended) for the next call of its shape; a pool
        already parked under that shape is terminated (one of each is enough)."""
        key = _key(processes, remote_args)
        timer = threading.Timer(config.joblib_pool_keep_s, self._expire, (key, pool))
        timer.daemon = True
        with self._lock:
            previous = self._parked.pop(key, None)
            self._parked[key] = (pool, timer)
        if previous is not None:
            previous[1].cancel()
            previous[0].terminate()
        timer.start()

    def _expire(self, key: Tuple, pool: Pool) -> None:
        with self._lock:
            if self._parked.get(key, (None,))[0] is not pool:
                return      # taken over meanwhile
            del self._parked[key]
        pool.terminate()


def _key(processes: int, remote_args: Optional[dict]) -> Tuple:
    options = tuple(sorted((name, repr(value)) for name, value in
                           (remote_args or {}).items()))
    return ray_core.get_runtime_context().get_worker_id(), processes, options
