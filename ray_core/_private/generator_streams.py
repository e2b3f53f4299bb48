"""Streaming generator tasks on the caller's side: ObjectRefGenerator and the items its
task reports while it runs.

A task submitted with num_returns="streaming" (the default for a generator function)
sends each value it yields to its caller (ReportGeneratorItem) before computing the
next, so the caller can use item k while item k+1 is being made. Item k is the object
ObjectID.from_index(task, ITEM_BASE + k): a retried task reports the same ids again and
the copies already held are kept. The task's one ordinary return, stored when it ends,
is the number of items, or the error that ended it, which the caller meets as the last
ref it iterates to, as in Ray.

num_returns="dynamic" (Ray's older form) runs the same way on the worker; the caller
collects the items and, when the task ends, stores as its one return a
DynamicObjectRefGenerator of their refs, with one more ref holding the error if the
task raised midway (as in Ray). That value holds the items like any value holding refs.
"""
import asyncio
import weakref
from typing import Dict, Optional

from ray_common.ids import ObjectID, TaskID
from ray_common.protocol import core_worker_pb2

from ray_core._private import serialization
from ray_core._private.task_log import task_log

# Far above the indexes of the task's own puts (which start after its returns).
ITEM_BASE = 1 << 24


def item_id(task_id: TaskID, index: int) -> ObjectID:
    return ObjectID.from_index(task_id, ITEM_BASE + index)


class _Stream:
    """Refs to the items reported and not yet handed out, by index."""
    __slots__ = ("refs", "__weakref__")

    def __init__(self):
        self.refs: Dict[int, object] = {}


class GeneratorStreams:
    """The streams of this process's generator tasks that an ObjectRefGenerator still
    holds; an item of a stream nobody holds any more is let go as it arrives."""

    def __init__(self, core):
        self._core = core
        self._streams: "weakref.WeakValueDictionary[bytes, _Stream]" = \
            weakref.WeakValueDictionary()
        self._collected: Dict[bytes, _Stream] = {}     # dynamic tasks' items, until they end

    def open(self, end_ref) -> "ObjectRefGenerator":
        stream = _Stream()
        self._streams[end_ref.task_id().binary()] = stream
        return ObjectRefGenerator(end_ref, stream, self._core)

    def collect(self, end_ref) -> None:
        """Keep the items of a num_returns="dynamic" task until it ends."""
        stream = self._collected[end_ref.task_id().binary()] = _Stream()
        self._streams[end_ref.task_id().binary()] = stream

    def end_dynamic(self, task, reply):
        """The reply of a dynamic task that ended, its return made the refs of its items
        (and of the error that stopped it, if one did); None (it failed): drop them."""
        from ray_core.object_ref import ObjectRef
        stream = self._collected.pop(task.task_id.binary(), None)
        if reply is None or stream is None or not reply.return_objects:
            return reply
        core = self._core
        refs = [stream.refs[index] for index in sorted(stream.refs)]
        end = reply.return_objects[0]
        if end.object.metadata == serialization.META_ERROR:
            error_id = item_id(task.task_id, len(refs))
            core.reference_counter.add_owned(error_id)
            refs.append(ObjectRef(error_id, core.address_bytes, core.reference_counter))
            error = core_worker_pb2.ReturnObject()
            error.CopyFrom(end)
            error.object_id = error_id.binary()
            core.task_manager.store_return(error, error_id, True)
        ser = serialization.serialize(DynamicObjectRefGenerator(refs))
        out = core_worker_pb2.PushTaskReply()
        out.CopyFrom(reply)
        ret = out.return_objects[0]
        ret.ClearField("object")
        ret.in_plasma = False
        ret.object.data = ser.to_bytes()
        ret.object.metadata = ser.metadata
        ret.size = ser.total_size
        outer = ObjectID(ret.object_id)
        if core.reference_counter.has_reference(outer):
            core.lifetime.hold_contained(outer, refs)   # the items live as long as it does
        return out

    def report(self, request) -> None:
        """An item arrived (io loop): hand it to its stream before storing it, so a
        waiter woken by the store finds its ref."""
        from ray_core.object_ref import ObjectRef
        core = self._core
        object_id = ObjectID(request.item.object_id)
        if core.memory_store.contains(object_id):
            return      # reported again by a retry of the task: keep the first copy
        stream = self._streams.get(request.task_id)
        if task_log.enabled:
            task_log.line(f"Generator item {request.index} of task {request.task_id.hex()} "
                          f"arrived, object {object_id.hex()}"
                          + ("" if stream is not None else " (nobody iterates it: dropped)"))
        if stream is not None:
            core.reference_counter.add_owned(object_id)
            stream.refs[request.index] = ObjectRef(object_id, core.address_bytes,
                                                   core.reference_counter)
        core.task_manager.store_return(request.item, object_id, stream is not None)


class DynamicObjectRefGenerator:
    """What get() of a num_returns="dynamic" task's ref gives: the refs of the values it
    yielded, in order (iterate it, or take its len()); it pickles into other tasks."""

    def __init__(self, refs):
        self._refs = list(refs)

    def __iter__(self):
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self):
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"


class ObjectRefGenerator:
    """What .remote() of a streaming generator task returns: iterate it (or `async for`)
    for the refs of the values the task yields, each as soon as it is made."""

    def __init__(self, end_ref, stream: _Stream, core):
        self._end = end_ref
        self._stream = stream
        self._core = core
        self._task_id = end_ref.task_id()
        self._index = 0
        self._done = False

    def __iter__(self):
        return self

    def __next__(self):
        ref = self._next(None)
        if ref is None:
            raise StopIteration
        return ref

    def __aiter__(self):
        return self

    async def __anext__(self):
        ref = await asyncio.get_running_loop().run_in_executor(None, self._next, None)
        if ref is None:
            raise StopAsyncIteration
        return ref

    def next_ready(self, timeout: Optional[float] = None):
        """The next ref if its value is there within `timeout`; raises GetTimeoutError
        otherwise, StopIteration once the task has yielded everything."""
        ref = self._next(timeout)
        if ref is None:
            raise StopIteration
        return ref

    def completed(self):
        """A ref that resolves (to the number of items) when the task has ended."""
        return self._end

    def is_finished(self) -> bool:
        return self._done

    def watched_ids(self):
        """What makes the next step ready: the next item, or the task's end."""
        return [item_id(self._task_id, self._index), self._end.object_id()]

    def next_is_ready(self) -> bool:
        """Would next() return at once (an item, the end, or the error that ended it)?"""
        return self._done or self._index in self._stream.refs or \
            self._core.memory_store.contains(self._end.object_id())

    def _next(self, timeout: Optional[float]):
        """The ref of the next item; the end ref once if the task failed; None at the end."""
        from ray_core import exceptions
        if self._done:
            return None
        wanted = [item_id(self._task_id, self._index), self._end.object_id()]
        while True:
            if not self._core.wait_in_store(wanted, 1, timeout):
                raise exceptions.GetTimeoutError(
                    f"item {self._index} of generator task {self._task_id.hex()} was not "
                    f"ready within {timeout}s")
            ref = self._stream.refs.pop(self._index, None)
            if ref is not None:
                self._index += 1
                return ref
            end = self._core.memory_store.get_if_exists(wanted[1])
            if end is None:
                continue
            self._done = True
            if end.is_error:
                return self._end          # its get() raises what ended the task
            if self._index < serialization.deserialize(end.data, end.metadata):
                # Reported before the task ended, so it is there or being stored.
                self._done = False
                wanted = wanted[:1]
                continue
            return None

    def __repr__(self):
        return f"ObjectRefGenerator(task={self._task_id.hex()}, next={self._index})"

    def __reduce__(self):
        raise TypeError("an ObjectRefGenerator stays in the process that called .remote() "
                        "(its items are reported there): pass on the refs it yields instead")
