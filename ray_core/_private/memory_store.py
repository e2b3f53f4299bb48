"""The owner's in-process store: small values, errors, and markers of plasma values.

Results of tasks this process submitted arrive here (inline in the push reply), as do
small put() values. A large value lives in plasma; the store then holds an IN_PLASMA
marker naming the node, so a get knows to read shared memory. Readers block on a
per-call waiter (any thread) or register a callback (the io loop's dependency
resolver and ObjectRef.future()).
"""
import _thread
import threading
from typing import Callable, Dict, Iterable, List, Optional

from ray_common.ids import ObjectID

from ray_core._private.serialization import META_ERROR, META_IN_PLASMA, serialize_error


class StoredObject:
    """One entry: serialized bytes + metadata tag, or a marker that the value is in plasma."""
    __slots__ = ("data", "metadata", "plasma_node", "size")

    def __init__(self, data, metadata: bytes, plasma_node: bytes = b"", size: int = 0):
        self.data = data
        self.metadata = metadata
        self.plasma_node = plasma_node
        self.size = size or (len(data) if data is not None else 0)

    @property
    def in_plasma(self) -> bool:
        return self.metadata == META_IN_PLASMA

    @property
    def is_error(self) -> bool:
        return self.metadata == META_ERROR

    @staticmethod
    def plasma_marker(node_id: bytes, size: int) -> "StoredObject":
        return StoredObject(None, META_IN_PLASMA, node_id, size)

    @staticmethod
    def error(error: BaseException) -> "StoredObject":
        """An entry whose get() raises `error`."""
        return StoredObject(serialize_error(error).to_bytes(), META_ERROR)


class _Waiter:
    """One blocked reader: a bare lock, held until enough of its objects arrived (an
    Event would build a Condition and a second lock per call)."""
    __slots__ = ("remaining", "lock")

    def __init__(self, remaining: int):
        self.remaining = remaining
        self.lock = _thread.allocate_lock()
        self.lock.acquire()

    def hit(self) -> bool:
        """Count one arrival; True when the reader is to be woken."""
        self.remaining -= 1
        return self.remaining == 0

    def wait(self, timeout: Optional[float]) -> None:
        self.lock.acquire(True, -1 if timeout is None else max(timeout, 0.0))


class MemoryStore:
    def __init__(self):
        self._lock = threading.Lock()
        self._objects: Dict[ObjectID, StoredObject] = {}
        self._waiters: Dict[ObjectID, List] = {}

    def put(self, object_id: ObjectID, obj: StoredObject) -> None:
        with self._lock:
            self._objects[object_id] = obj
            waiters = self._waiters.pop(object_id, None)
        if waiters:
            for waiter in waiters:
                if isinstance(waiter, _Waiter):
                    with self._lock:
                        wake = waiter.hit()
                    if wake:
                        waiter.lock.release()
                else:
                    waiter(obj)

    def get_if_exists(self, object_id: ObjectID) -> Optional[StoredObject]:
        return self._objects.get(object_id)

    def contains(self, object_id: ObjectID) -> bool:
        return object_id in self._objects

    def delete(self, object_ids: Iterable[ObjectID]) -> None:
        with self._lock:
            for object_id in object_ids:
                self._objects.pop(object_id, None)

    def add_callback(self, object_id: ObjectID, callback: Callable[[StoredObject], None]) -> None:
        """Call `callback(obj)` once the object is here (at once if it already is).

        The callback runs on the thread that put the object; keep it short.
        """
        with self._lock:
            obj = self._objects.get(object_id)
            if obj is None:
                self._waiters.setdefault(object_id, []).append(callback)
                return
        callback(obj)

    def wait(self, object_ids: List[ObjectID], num_required: int,
             timeout: Optional[float]) -> Dict[ObjectID, StoredObject]:
        """Block until `num_required` of the (distinct) ids are here or the timeout passes.

        Returns whatever is present at the end.
        """
        objects = self._objects
        with self._lock:
            missing = [oid for oid in object_ids if oid not in objects]
            present = len(object_ids) - len(missing)
            if present >= num_required or timeout == 0:
                waiter = None
            else:
                waiter = _Waiter(num_required - present)
                for oid in missing:
                    self._waiters.setdefault(oid, []).append(waiter)
        if waiter is not None:
            waiter.wait(timeout)
            with self._lock:
                for oid in missing:
                    lst = self._waiters.get(oid)
                    if lst is not None:
                        try:
                            lst.remove(waiter)
                        except ValueError:
                            pass
                        if not lst:
                            del self._waiters[oid]
        return {oid: objects[oid] for oid in object_ids if oid in objects}

    def __len__(self) -> int:
        return len(self._objects)
