"""multiprocessing.Pool on a ray_core cluster (ray.util.multiprocessing's names):
`from ray_core.util.multiprocessing import Pool` where the code said
`from multiprocessing import Pool`. The layout: `pool.py` (Pool, the public class),
`pool_actor.py` (its processes), `dispatcher.py` (the thread that sends them chunks),
`results.py` (AsyncResult, MapResult and the imap iterators)."""
from multiprocessing import TimeoutError  # noqa: F401  (what get(timeout) raises)

from ray_core.util.multiprocessing.pool import Pool  # noqa: F401

__all__ = ["Pool", "TimeoutError"]
