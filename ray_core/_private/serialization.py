"""Values to bytes and back: cloudpickle with pickle protocol 5 and out-of-band buffers.

A value becomes a SerializedObject: metadata (a one-byte format tag), the in-band
pickle bytes and the raw out-of-band buffers (numpy arrays, Arrow buffers, bytearrays).
Its `write_to(view)` lays them out in one destination -- a plasma allocation for large
values -- so a large array is copied exactly once, straight into shared memory, and
`deserialize` over a plasma view hands numpy/Arrow buffers back zero-copy (read-only).

Layout of the out-of-band format (tag b"B"), all little endian:
    u64 pickle_len | u32 num_buffers | u64 len * num_buffers | pad to 64
    pickle bytes | pad to 64 | buffer 0 | pad to 64 | buffer 1 ...
Buffers start 64-byte aligned, so SIMD code over them gets aligned data.

ObjectRefs met while pickling are recorded (they become the task's or object's nested
refs, so their owners can keep them alive); refs inside arguments stay refs.
"""
import collections
import io
import pickle
import struct
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence

import cloudpickle

from ray_plasma.memcopy import copy_into
from ray_core import exceptions

META_PICKLE = b"P"       # in-band pickle5 bytes
META_PICKLE_OOB = b"B"   # header + pickle + aligned out-of-band buffers
META_ERROR = b"E"        # a pickled RayError: get() raises it
META_IN_PLASMA = b"L"    # marker in a memory store: the value lives in plasma

ALIGNMENT = 64
_HEADER = struct.Struct("<QI")
_LEN = struct.Struct("<Q")
_FAST_TYPES = frozenset({int, float, str, bool, type(None), bytes})
_local = threading.local()


def _pad(n: int) -> int:
    return (-n) % ALIGNMENT


class SerializedObject:
    """A value ready to be written: metadata, in-band bytes, out-of-band buffers."""

    __slots__ = ("metadata", "inband", "buffers", "nested_refs", "total_size", "_offsets")

    def __init__(self, metadata: bytes, inband: bytes, buffers: Sequence[memoryview] = (),
                 nested_refs: Sequence = ()):
        self.metadata = metadata
        self.inband = inband
        self.buffers = buffers
        self.nested_refs = nested_refs
        if not buffers:
            self.total_size = len(inband)
            self._offsets = None
        else:
            header = _HEADER.size + _LEN.size * len(buffers)
            pos = header + _pad(header)
            offsets = [pos]
            pos += len(inband)
            for buf in buffers:
                pos += _pad(pos)
                offsets.append(pos)
                pos += buf.nbytes
            self._offsets = offsets
            self.total_size = pos

    def write_to(self, dest: memoryview, copy_threads: int = 0) -> None:
        """Copy into `dest` (exactly total_size bytes long, writable); large buffers with
        up to copy_threads threads (0: the copy_threads tunable)."""
        if self._offsets is None:
            dest[:len(self.inband)] = self.inband
            return
        _HEADER.pack_into(dest, 0, len(self.inband), len(self.buffers))
        pos = _HEADER.size
        for buf in self.buffers:
            _LEN.pack_into(dest, pos, buf.nbytes)
            pos += _LEN.size
        offsets = self._offsets
        dest[offsets[0]:offsets[0] + len(self.inband)] = self.inband
        for start, buf in zip(offsets[1:], self.buffers):
            copy_into(dest[start:start + buf.nbytes], buf, copy_threads)

    def to_bytes(self) -> bytes:
        if self._offsets is None:
            return self.inband
        out = bytearray(self.total_size)
        self.write_to(memoryview(out))
        return bytes(out)


class _RefRecorder:
    """Collects the ObjectRefs pickled inside one value (ObjectRef.__reduce__ appends)."""
    __slots__ = ("refs",)

    def __init__(self):
        self.refs = []


def current_ref_recorder() -> Optional[_RefRecorder]:
    return getattr(_local, "recorder", None)


# Reducers of the classes given to ray_core.util.register_serializer, consulted before
# cloudpickle's own. Only this process pickles with them (as in Ray): the deserializer
# travels inside each value, so a reader needs no registration.
_custom_reducers: Dict[type, Callable] = {}


class _Pickler(cloudpickle.CloudPickler):
    dispatch_table = collections.ChainMap(_custom_reducers,
                                          cloudpickle.CloudPickler.dispatch_table)

    def reducer_override(self, obj):
        # An exception pickles by its own __reduce__, as wherever ray_core is not loaded:
        # tblib (which `import dask` installs) registers a reducer in copyreg for every
        # exception class, and it cannot rebuild some (a MemoryError subclass such as
        # OutOfMemoryError), nor tell a cause that cannot be rebuilt.
        if isinstance(obj, BaseException) and type(obj) not in _custom_reducers:
            return obj.__reduce_ex__(5)
        return super().reducer_override(obj)


def _dumps(value: Any, buffer_callback=None) -> bytes:
    with io.BytesIO() as out:
        _Pickler(out, protocol=5, buffer_callback=buffer_callback).dump(value)
        return out.getvalue()


def register_reducer(cls: type, serializer: Callable, deserializer: Callable) -> None:
    _custom_reducers[cls] = lambda obj: (deserializer, (serializer(obj),))


def deregister_reducer(cls: type) -> None:
    _custom_reducers.pop(cls, None)


def serialize(value: Any) -> SerializedObject:
    """Serialize any picklable value; raises what pickling raised."""
    if type(value) in _FAST_TYPES:
        return SerializedObject(META_PICKLE, pickle.dumps(value, protocol=5))
    recorder = _RefRecorder()
    previous = getattr(_local, "recorder", None)
    _local.recorder = recorder
    buffers: List[pickle.PickleBuffer] = []
    try:
        inband = _dumps(value, buffers.append)
    finally:
        _local.recorder = previous
    if not buffers:
        return SerializedObject(META_PICKLE, inband, (), recorder.refs)
    raws = []
    for buf in buffers:
        try:
            raws.append(buf.raw())
        except BufferError:
            # Non-contiguous exporters: copy once into a contiguous buffer.
            raws.append(memoryview(bytes(buf)))
    return SerializedObject(META_PICKLE_OOB, inband, raws, recorder.refs)


def serialize_error(error: BaseException) -> SerializedObject:
    """Serialize an error so get() raises it; degrade to a message if it won't pickle.

    An exception that pickles but cannot be rebuilt (its __init__ takes other arguments
    than its args, say) is sent as Ray sends it: an UnserializableException with the
    original text and traceback (errors are rare, so the round trip costs nothing)."""
    try:
        data = _dumps(error)
        try:
            pickle.loads(data)
        except Exception:
            data = _dumps(exceptions.UnserializableException(str(error)))
    except Exception as e:  # the user's exception holds something unpicklable
        if isinstance(error, exceptions.RayTaskError):
            fallback = exceptions.RayTaskError(
                error.function_name,
                f"{error.traceback_str}\n(the original {type(error.cause).__name__} could not "
                f"be pickled: {e})", None, error.proctitle, error.pid, error.ip, error.actor_repr,
                error._actor_id, error.node_id, error.task_id)
        else:
            fallback = exceptions.RaySystemError(f"{type(error).__name__}: {error}")
        data = _dumps(fallback)
    return SerializedObject(META_ERROR, data)


def loads_error(data) -> BaseException:
    try:
        error = pickle.loads(data)
    except Exception as e:     # e.g. its class is not importable in this process
        return exceptions.UnserializableException(
            f"(an exception from a task that cannot be rebuilt here: {type(e).__name__}: {e})")
    if isinstance(error, exceptions.RayTaskError):
        return error.as_instanceof_cause()
    return error


def deserialize(data, metadata: bytes) -> Any:
    """Rebuild a value; over a plasma view, out-of-band buffers stay zero-copy.

    Returns the error object for META_ERROR (the caller decides to raise it).
    """
    if metadata == META_PICKLE:
        return pickle.loads(data)
    if metadata == META_PICKLE_OOB:
        view = data if isinstance(data, memoryview) else memoryview(data)
        pickle_len, nbuf = _HEADER.unpack_from(view, 0)
        pos = _HEADER.size
        lengths = []
        for _ in range(nbuf):
            lengths.append(_LEN.unpack_from(view, pos)[0])
            pos += _LEN.size
        pos += _pad(pos)
        inband = view[pos:pos + pickle_len]
        pos += pickle_len
        buffers = []
        for n in lengths:
            pos += _pad(pos)
            buffers.append(view[pos:pos + n])
            pos += n
        return pickle.loads(inband, buffers=buffers)
    if metadata == META_ERROR:
        return loads_error(data)
    raise exceptions.RaySystemError(f"unknown serialization format tag {bytes(metadata)!r}")


def describe_unpicklable(value: Any, error: Exception) -> str:
    """Name the innermost object that would not pickle, for the TypeError the user sees."""
    culprit = _find_unpicklable(value, depth=0)
    where = f" (the unpicklable object inside is {culprit!r})" if culprit is not None \
        and culprit is not value else ""
    return f"{type(value).__name__} object {_short_repr(value)}{where}: {type(error).__name__}: {error}"


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 120 else text[:117] + "..."


def _find_unpicklable(value: Any, depth: int):
    if depth > 3:
        return None
    children = []
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        children = list(value)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        children = list(vars(value).values())
    for child in children:
        try:
            _dumps(child)
        except Exception:
            return _find_unpicklable(child, depth + 1) or child
    return None


def dumps_function(fn: Any) -> bytes:
    """Pickle a function or class by value (cloudpickle), for the GCS function table."""
    out = io.BytesIO()
    cloudpickle.CloudPickler(out, protocol=5).dump(fn)
    return out.getvalue()
