"""Reference counts, owner-based and distributed: what keeps an object alive.

Local counts: this process's ObjectRefs (and refs held on behalf of others: a pending
task's arguments, the refs nested inside an object this process holds). Increments and
decrements (ObjectRef creation and deallocation, by the thousand on the hot paths,
possibly inside the garbage collector on a thread that holds this counter's lock) are
only appended to a queue; they are applied in order, under the lock, by flush(): before
any question about a count, periodically from the CoreWorker's io loop (so a dropped
object is freed promptly), and by maybe_flush() at the API calls that make refs (put,
remote, get: a user thread holding none of ray_core's locks) once the queue is past
_DRAIN_AT. The append itself never drains in place: it may run inside the garbage
collector, or as a container is cleared, on a thread holding any lock (the memory
store's, the submitter's) that freeing would take; past _DEFER_AT (a thread that makes
refs without those calls) it asks the io loop to drain.

Borrowers (Ray's ownership design, with counted registrations): a process that holds a
ref it does not own past the moment its sender stops vouching for it is registered at
the owner (UpdateRefCounts, `added`). Registrations are counted per borrower, because
they come from two places: a borrower registers itself (after deserializing a nested ref
in get(), or at the end of a task whose arguments held it), and an executor registers
its caller for refs nested in a task's return value before replying. The borrower counts
the registrations made for it (`_borrowed`), and when its local count of the object
reaches zero it sends one removal carrying that number; the owner subtracts it. Sums
commute, so an addition and a removal may arrive in either order. The owner frees an
object once its local count is zero and no borrower is left.
"""
import collections
import threading
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from ray_common import rpc
from ray_common.ids import ObjectID

_DRAIN_AT = 4096
_DEFER_AT = 4 * _DRAIN_AT


class ReferenceCounter:
    def __init__(self, on_zero: Callable[[ObjectID, bool], None],
                 on_borrow_released: Optional[Callable[[ObjectID, bytes, int], None]] = None,
                 loop=None):
        """on_zero(object_id, owned) runs when nothing holds the object any more (owned:
        this process owns it and should free it; else a borrowed copy to drop).
        on_borrow_released(object_id, owner_address, n) runs when this borrower lets go
        of an object it was registered for n times at its owner. `loop` (the io loop)
        drains a long queue; without it a long queue is drained in place, where no lock
        may be held (unit tests)."""
        self._lock = threading.Lock()
        self._counts: Dict[ObjectID, int] = {}
        self._owned = set()
        # owned object -> {borrower address (serialized Address): registrations}
        self._borrowers: Dict[ObjectID, Dict[bytes, int]] = {}
        # borrowed object -> [owner address, registrations made for this process]
        self._borrowed: Dict[ObjectID, list] = {}
        self._pending_ops = collections.deque()
        self._on_zero = on_zero
        self._on_borrow_released = on_borrow_released
        self._drain = rpc.SoonOnLoop(loop, self.flush) if loop is not None else None

    def add_owned(self, object_id: ObjectID) -> None:
        with self._lock:
            self._owned.add(object_id)

    def is_owned(self, object_id: ObjectID) -> bool:
        return object_id in self._owned

    def add_local_ref(self, object_id: ObjectID) -> None:
        # Appends are atomic under the GIL: no lock on the path every ref takes.
        self._pending_ops.append((object_id, 1))
        if len(self._pending_ops) > _DEFER_AT:
            self._drain_soon()

    def remove_local_ref(self, object_id: ObjectID) -> None:
        self._pending_ops.append((object_id, -1))
        if len(self._pending_ops) > _DEFER_AT:
            self._drain_soon()

    def maybe_flush(self) -> None:
        """flush() if the queue is long; only where the caller holds no ray_core lock."""
        if len(self._pending_ops) > _DRAIN_AT:
            self.flush()

    def _drain_soon(self) -> None:
        if self._drain is None:
            self.try_flush()
        else:
            self._drain.request()

    # ---- the owner's side ---------------------------------------------------------
    def add_borrower(self, object_id: ObjectID, borrower: bytes, n: int = 1) -> bool:
        """Count n registrations of a borrower; False if the object is not owned here
        (any more): the borrower then holds a ref to a freed object."""
        self.flush()
        with self._lock:
            if object_id not in self._owned:
                return False
            entry = self._borrowers.setdefault(object_id, {})
            entry[borrower] = entry.get(borrower, 0) + n
            return True

    def remove_borrower(self, object_id: ObjectID, borrower: bytes, n: int = 1) -> None:
        """Subtract n registrations; frees the object if that was the last holder."""
        with self._lock:
            # Apply queued local changes first, under the same lock as the check below.
            freed = self._drain_locked()
            entry = self._borrowers.get(object_id)
            if entry is not None and borrower in entry:
                left = entry[borrower] - n
                if left > 0:
                    entry[borrower] = left
                else:
                    del entry[borrower]
                    if not entry:
                        del self._borrowers[object_id]
                        if self._counts.get(object_id, 0) == 0 and object_id in self._owned:
                            self._owned.discard(object_id)
                            freed.append((object_id, True))
        self._free(freed)

    def remove_borrower_everywhere(self, borrower: bytes) -> None:
        """A borrower died: it holds nothing any more."""
        with self._lock:
            hits = [(oid, entry[borrower]) for oid, entry in self._borrowers.items()
                    if borrower in entry]
        for object_id, n in hits:
            self.remove_borrower(object_id, borrower, n)

    def borrowers(self, object_id: ObjectID) -> Dict[bytes, int]:
        with self._lock:
            return dict(self._borrowers.get(object_id, {}))

    # ---- the borrower's side --------------------------------------------------------
    def note_borrowed(self, object_id: ObjectID, owner: bytes, n: int = 1) -> None:
        """n registrations of this process were made at the owner of object_id."""
        released = None
        with self._lock:
            freed = self._drain_locked()
            entry = self._borrowed.get(object_id)
            if entry is None:
                entry = self._borrowed[object_id] = [owner, 0]
            entry[1] += n
            if self._counts.get(object_id, 0) == 0:
                # Nothing here holds it (a return nobody kept): let go at once.
                released = self._borrowed.pop(object_id)
        self._free(freed)
        if released is not None and self._on_borrow_released is not None:
            self._on_borrow_released(object_id, released[0], released[1])

    def is_registered_borrower(self, object_id: ObjectID) -> bool:
        return object_id in self._borrowed

    def unregistered_held(self, candidates: Iterable[Tuple[ObjectID, bytes]]) \
            -> List[Tuple[ObjectID, bytes]]:
        """Of these (id, owner) refs not owned here, those still held locally and not yet
        registered at their owner."""
        self.flush()
        out = []
        seen = set()
        with self._lock:
            for object_id, owner in candidates:
                if object_id in seen or object_id in self._owned or \
                        object_id in self._borrowed or self._counts.get(object_id, 0) <= 0:
                    continue
                seen.add(object_id)
                out.append((object_id, owner))
        return out

    # ---- questions --------------------------------------------------------------------
    def has_reference(self, object_id: ObjectID) -> bool:
        self.flush()
        return self._counts.get(object_id, 0) > 0 or object_id in self._borrowers

    def count(self, object_id: ObjectID) -> int:
        self.flush()
        return self._counts.get(object_id, 0)

    def num_owned(self) -> int:
        return len(self._owned)

    def num_tracked(self) -> int:
        self.flush()
        return len(self._counts)

    def snapshot(self) -> Dict[str, dict]:
        """Counts, borrowers and borrowed entries (for memory_summary)."""
        self.flush()
        with self._lock:
            return {"counts": dict(self._counts),
                    "borrowers": {k: dict(v) for k, v in self._borrowers.items()},
                    "borrowed": {k: tuple(v) for k, v in self._borrowed.items()},
                    "owned": set(self._owned)}

    # ---- applying queued ops -----------------------------------------------------------
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

    def _drain_locked(self):
        freed = []
        counts = self._counts
        ops = self._pending_ops
        borrowers = self._borrowers
        borrowed = self._borrowed
        owned_set = self._owned
        while ops:
            object_id, delta = ops.popleft()
            n = counts.get(object_id, 0) + delta
            if n > 0:
                counts[object_id] = n
                continue
            counts.pop(object_id, None)
            if delta > 0:
                continue
            if object_id in owned_set:
                if object_id in borrowers:
                    continue
                owned_set.discard(object_id)
                freed.append((object_id, True))
            else:
                entry = borrowed.pop(object_id, None) if borrowed else None
                freed.append((object_id, False) if entry is None else (object_id, entry))
        return freed

    def _free(self, freed) -> None:
        for object_id, what in freed:
            if what is True or what is False:
                self._on_zero(object_id, what)
            else:
                self._on_zero(object_id, False)
                if self._on_borrow_released is not None:
                    self._on_borrow_released(object_id, what[0], what[1])
