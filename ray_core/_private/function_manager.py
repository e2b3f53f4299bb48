"""Functions travel once: the driver exports each pickled function to the GCS KV under
the hash of its bytes, and each worker imports it on first use and caches it.

A task spec carries only the hash (FunctionDescriptor.function_hash), so submitting a
task never ships the function again. Identical functions (same bytes) share one entry.
"""
import hashlib
import logging
import threading
from typing import Callable, Dict, Optional

import cloudpickle

from ray_core._private.serialization import dumps_function

logger = logging.getLogger(__name__)
KV_NAMESPACE = "fun"


def function_hash(pickled: bytes) -> bytes:
    return hashlib.sha1(pickled).digest()


def kv_key(fn_hash: bytes) -> bytes:
    return b"RemoteFunction:" + fn_hash.hex().encode()


class ExportedCode:
    """The pickled bytes and hash of one remote function or actor class, made on its
    first .remote(); every .remote() then only makes sure the GCS has them."""
    __slots__ = ("obj", "name", "_what", "_pickled", "_hash")

    def __init__(self, obj, name: str, what: str):
        self.obj = obj
        self.name = name
        self._what = what           # "remote function" or "actor class", for errors
        self._pickled: Optional[bytes] = None
        self._hash: Optional[bytes] = None

    def export(self, manager: "FunctionManager") -> bytes:
        """Export through `manager` (the current CoreWorker's); returns the hash."""
        if self._pickled is None:
            try:
                pickled = dumps_function(self.obj)
            except Exception as e:
                raise TypeError(f"Could not pickle {self._what} {self.name}: {e}. A "
                                f"{self._what} must be picklable by cloudpickle (it must not "
                                f"capture locks, sockets or open files).") from e
            self._hash = function_hash(pickled)
            self._pickled = pickled
            manager.preload(self._hash, self.obj)
        manager.export(self._hash, self._pickled, self.name)
        return self._hash


class FunctionManager:
    def __init__(self, kv_put: Callable[[bytes, bytes], object],
                 kv_get: Callable[[bytes], Optional[bytes]]):
        self._kv_put = kv_put      # blocking (key, value) -> _, namespace KV_NAMESPACE
        self._kv_get = kv_get      # blocking key -> value or None
        self._lock = threading.Lock()
        self._exported = set()
        self._cache: Dict[bytes, object] = {}

    def export(self, fn_hash: bytes, pickled: bytes, name: str = "") -> None:
        """Make sure the GCS has the function; a no-op after the first call per hash."""
        if fn_hash in self._exported:
            return
        with self._lock:
            if fn_hash in self._exported:
                return
            self._kv_put(kv_key(fn_hash), pickled)
            self._exported.add(fn_hash)
        logger.info("Exported function %s (%s, %d bytes)", name, fn_hash.hex()[:16], len(pickled))

    def load(self, fn_hash: bytes, name: str = ""):
        """The function (or class) with this hash, imported once per process."""
        fn = self._cache.get(fn_hash)
        if fn is not None:
            return fn
        with self._lock:
            fn = self._cache.get(fn_hash)
            if fn is not None:
                return fn
            pickled = self._kv_get(kv_key(fn_hash))
            if pickled is None:
                raise RuntimeError(f"function {name or fn_hash.hex()} was not found in the GCS "
                                   f"function table; was it exported by a driver of this cluster?")
            fn = cloudpickle.loads(pickled)
            self._cache[fn_hash] = fn
        logger.info("Imported function %s (%s)", name, fn_hash.hex()[:16])
        return fn

    def preload(self, fn_hash: bytes, fn) -> None:
        """Cache a function this process defined itself (a driver running its own tasks)."""
        self._cache[fn_hash] = fn
