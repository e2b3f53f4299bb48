"""Copying a large buffer into plasma: several threads, each with streaming stores.

Every large value reaches shared memory through one copy (a put's serialized buffers,
a plasma client's create_and_seal), so that copy is what "put gigabytes" measures.
Two measured choices (2-core dev machine, benchmarks/README.md): streaming stores
(ray_plasma/_memcopy.pyx) run ~1.7x memcpy once a buffer no longer fits the cache, and
copy_threads threads share one buffer because one core's copy does not saturate memory.
Smaller buffers take a plain slice assignment: their destination may still be in cache
when it is read, and a thread hand-off would cost more than the copy.
"""
import concurrent.futures
import threading

from ray_common.config import config
from ray_plasma._memcopy import stream_copy

_ALIGNMENT = 64
_pool = None
_pool_lock = threading.Lock()


def _copy_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=threads - 1, thread_name_prefix="ray_plasma_copy")
    return _pool


def copy_into(dest: memoryview, src: memoryview, threads: int = 0) -> None:
    """Copy src (any C-contiguous buffer) into the writable dest of the same size, with
    up to `threads` threads (0: copy_threads)."""
    dest = dest.cast("B") if dest.format != "B" or dest.ndim != 1 else dest
    src = src.cast("B") if src.format != "B" or src.ndim != 1 else src
    n = src.nbytes
    if n < config.parallel_copy_min_bytes:
        dest[:] = src
        return
    threads = max(1, threads or config.copy_threads)
    step = -(-n // threads)
    step += (-step) % _ALIGNMENT
    if threads == 1 or step >= n:
        stream_copy(dest, src)
        return
    pool = _copy_pool(threads)
    futures = [pool.submit(stream_copy, dest[i:i + step], src[i:i + step])
               for i in range(step, n, step)]
    stream_copy(dest[:step], src[:step])
    for future in futures:
        future.result()
