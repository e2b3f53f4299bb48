"""Local reference counts: what this process's ObjectRefs, pending tasks and nested
values still hold, so the owner frees an object once nothing here needs it.

Decrements come from ObjectRef.__del__, which may run inside the garbage collector on a
thread that already holds this counter's lock; they are queued and applied by whoever
takes the lock next, never applied re-entrantly.

Seam for issue 8 (distributed counting with borrowers): a ref that was serialized out
of this process (inside an argument, a put value or a return) is marked `escaped`, and
an escaped object is never freed here, because without the borrower protocol this
process cannot know when the borrowers are done with it.
"""
import collections
import threading
from typing import Callable, Dict, Iterable, Set

from ray_common.ids import ObjectID


class ReferenceCounter:
    def __init__(self, on_zero: Callable[[ObjectID, bool], None]):
        """on_zero(object_id, owned) runs when nothing here holds the object any more
        (owned: this process owns it and should free it; else a borrowed copy to drop)."""
        self._lock = threading.Lock()
        self._counts: Dict[ObjectID, int] = {}
        self._escaped: Set[ObjectID] = set()
        self._owned: Set[ObjectID] = set()
        self._pending_removals = collections.deque()
        self._on_zero = on_zero

    def add_owned(self, object_id: ObjectID) -> None:
        with self._lock:
            self._owned.add(object_id)

    def is_owned(self, object_id: ObjectID) -> bool:
        return object_id in self._owned

    def add_local_ref(self, object_id: ObjectID) -> None:
        with self._lock:
            self._counts[object_id] = self._counts.get(object_id, 0) + 1
            if self._pending_removals:
                freed = self._drain_locked()
            else:
                return
        self._free(freed)

    def remove_local_ref(self, object_id: ObjectID) -> None:
        self._pending_removals.append(object_id)
        if self._lock.acquire(blocking=False):
            try:
                freed = self._drain_locked()
            finally:
                self._lock.release()
            self._free(freed)

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
        if not self._pending_removals:
            return
        with self._lock:
            freed = self._drain_locked()
        self._free(freed)

    def num_tracked(self) -> int:
        self.flush()
        return len(self._counts)

    def _drain_locked(self):
        freed = []
        counts = self._counts
        pending = self._pending_removals
        while pending:
            object_id = pending.popleft()
            n = counts.get(object_id, 0) - 1
            if n > 0:
                counts[object_id] = n
                continue
            counts.pop(object_id, None)
            if object_id in self._escaped:
                continue
            owned = object_id in self._owned
            self._owned.discard(object_id)
            freed.append((object_id, owned))
        return freed

    def _free(self, freed) -> None:
        for object_id, owned in freed:
            self._on_zero(object_id, owned)
