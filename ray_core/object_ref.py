"""ObjectRef: a handle to a value that exists, or will, somewhere in the cluster.

A ref is its ObjectID plus the address of its owner (the worker that created it or
submitted the task that makes it). Creating a ref adds a local reference in this
process's reference counter, dropping it removes one; when no ref, pending task or
nested value holds an object, its owner frees it. Pickling a ref (inside an argument,
a put value, a return value) records it as nested, and unpickling makes a borrowed ref
that resolves through the owner.
"""
import asyncio
import concurrent.futures
from typing import Optional

from ray_common.ids import ObjectID, TaskID


class ObjectRef:
    __slots__ = ("_id", "_owner", "_counter", "__weakref__")

    def __init__(self, object_id: ObjectID, owner_address: bytes = b"", _counter=None):
        if not isinstance(object_id, ObjectID):
            raise TypeError(f"ObjectRef needs an ObjectID, got {type(object_id).__name__}")
        self._id = object_id
        self._owner = owner_address
        self._counter = _counter
        if _counter is not None:
            _counter.add_local_ref(object_id)

    def __del__(self):
        counter = getattr(self, "_counter", None)  # unset if __init__ raised
        if counter is not None:
            try:
                counter.remove_local_ref(self._id)
            except Exception:  # interpreter shutdown: nothing left to free
                pass

    # -- identity ------------------------------------------------------------------
    def binary(self) -> bytes:
        return self._id.binary()

    def hex(self) -> str:
        return self._id.hex()

    def object_id(self) -> ObjectID:
        return self._id

    def task_id(self) -> TaskID:
        return self._id.task_id()

    def owner_address(self) -> bytes:
        """The owner's serialized Address protobuf (empty if unknown)."""
        return self._owner

    def is_nil(self) -> bool:
        return self._id.is_nil()

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    # -- waiting -------------------------------------------------------------------
    def future(self) -> concurrent.futures.Future:
        """A concurrent.futures.Future that resolves to the value (or its error)."""
        from ray_core._private import worker
        return worker.global_worker().core_worker.get_future(self)

    def __await__(self):
        return asyncio.wrap_future(self.future()).__await__()

    def as_future(self) -> "asyncio.Future":
        return asyncio.wrap_future(self.future())

    # -- pickling ------------------------------------------------------------------
    def __reduce__(self):
        from ray_core._private import serialization
        recorder = serialization.current_ref_recorder()
        if recorder is not None:
            recorder.refs.append(self)
        return _rebuild_ref, (self._id.binary(), self._owner)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


def _rebuild_ref(id_bytes: bytes, owner: bytes) -> ObjectRef:
    from ray_core._private import worker
    core = worker.current_core_worker()
    object_id = ObjectID(id_bytes)
    if core is None:
        return ObjectRef(object_id, owner)
    return core.deserialized_ref(object_id, owner)


def _maybe_ref(value) -> Optional[ObjectRef]:
    return value if isinstance(value, ObjectRef) else None
