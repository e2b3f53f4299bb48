"""One small thread pool for work that must leave the io loop (or a GC callback):
plasma releases and deletes (blocking socket calls) and completing ObjectRef futures."""
import concurrent.futures
import threading

_pool = None
_pool_lock = threading.Lock()


def background_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=2, thread_name_prefix="ray_core_background")
    return _pool
