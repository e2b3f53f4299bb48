"""Local reference counts: what this process's ObjectRefs, pending tasks and nested
values still hold, so the owner frees an object once nothing here needs it.

Increments and decrements (ObjectRef creation and deallocation, by the thousand on the
hot paths, possibly inside the garbage collector on a thread that holds this counter's
lock) are only appended to a queue; they are applied in order, under the lock, by
flush(): before any question about a count, when the queue grows past _DRAIN_AT, and
periodically from the CoreWorker's io loop, so a dropped object is freed promptly.

Seam for issue 8 (distributed counting with borrowers): a ref that was serialized out
of this process (inside an argument, a put value or a return) is marked `escaped`, and
an escaped object is never freed here, because without the borrower protocol this
process cannot know when the borrowers are done with it.
"""
import collections
import threading
from typing import Callable, Dict, Iterable, Set

from ray_common.ids import ObjectID

_DRAIN_AT = 4096


class ReferenceCounter:
    def __init__(self, on_zero: Callable[[ObjectID, bool], None]):
        """on_zero(object_id, owned) runs when nothing here holds the object any more
        (owned: this process owns it and should free it; else a borrowed copy to drop)."""
        self._lock = threading.Lock()
        self._counts: Dict[ObjectID, int] = {}
        self._escaped: Set[ObjectID] = set()
        self._owned: Set[ObjectID] = set()
        self._pending_ops = collections.deque()
        self._on_zero = on_zero

    def add_owned(self, object_id: ObjectID) -> None:
        with self._lock:
            self._owned.add(object_id)

    def is_owned(self, object_id: ObjectID) -> bool:
        return object_id in self._owned

    def add_local_ref(self, object_id: ObjectID) -> None:
        # Appends are atomic under the GIL: no lock on the path every ref takes.
        self._pending_ops.append((object_id, 1))
        if len(self._pending_ops) > _DRAIN_AT:
            self.try_flush()

    def remove_local_ref(self, object_id: ObjectID) -> None:
        self._pending_ops.append((object_id, -1))
        if len(self._pending_ops) > _DRAIN_AT:
            self.try_flush()

    def mark_escaped(self, object_ids: Iterable[ObjectID]) -> None:
        with self._lock:
            self._escaped.update(object_ids)

    def has_reference(self, object_id: ObjectID) -> bool:
        self.flush()
        return self._counts.get(object_id, 0) > 0 or object_id in self._escaped

    def count(self, object_id: ObjectID) -> int:
        self.flush()
        return self._counts.get(object_id, 0)

    def flush(self) -> None:
        """Apply queued increments and decrements in order; free what reached zero."""
        if not self._pending_ops:
            return
        with self._lock:
            freed = self._drain_locked()
        self._free(freed)

    def try_flush(self) -> None:
        """flush() unless this thread (inside the garbage collector) already holds the lock."""
        if self._lock.acquire(blocking=False):
            try:
                freed = self._drain_locked()
            finally:
                self._lock.release()
            self._free(freed)

    def num_tracked(self) -> int:
        self.flush()
        return len(self._counts)

    def _drain_locked(self):
        freed = []
        counts = self._counts
        ops = self._pending_ops
        escaped = self._escaped
        owned_set = self._owned
        while ops:
            object_id, delta = ops.popleft()
            n = counts.get(object_id, 0) + delta
            if n > 0:
                counts[object_id] = n
                continue
            counts.pop(object_id, None)
            if delta > 0 or object_id in escaped:
                continue
            owned = object_id in owned_set
            owned_set.discard(object_id)
            freed.append((object_id, owned))
        return freed

    def _free(self, freed) -> None:
        for object_id, owned in freed:
            self._on_zero(object_id, owned)
