import numpy as np
import pyarrow as pa
import pytest

from ray_core._private import serialization
from ray_core._private.serialization import META_PICKLE, META_PICKLE_OOB
from ray_common.ids import ObjectID, TaskID, JobID
from ray_core.object_ref import ObjectRef


def round_trip(value):
    ser = serialization.serialize(value)
    return serialization.deserialize(ser.to_bytes(), ser.metadata), ser


@pytest.mark.parametrize("value", [0, 1.5, "s", b"b", None, True, [1, {"a": (2, 3)}],
                                   {"nested": [None, b"x" * 10]}])
def test_plain_values(value):
    back, ser = round_trip(value)
    assert back == value and ser.metadata == META_PICKLE


def test_numpy_goes_out_of_band_aligned_and_zero_copy():
    array = np.arange(100_000, dtype=np.float64)
    ser = serialization.serialize({"a": array, "b": 3})
    assert ser.metadata == META_PICKLE_OOB and len(ser.buffers) == 1
    region = bytearray(ser.total_size)
    ser.write_to(memoryview(region))
    view = memoryview(bytes(region))  # read-only, as a plasma view is
    back = serialization.deserialize(view, ser.metadata)
    np.testing.assert_array_equal(back["a"], array)
    assert not back["a"].flags.writeable          # backed by the (read-only) region
    offset = back["a"].ctypes.data - np.frombuffer(view, np.uint8).ctypes.data
    assert offset % serialization.ALIGNMENT == 0


def test_arrow_table_round_trip():
    table = pa.table({"x": list(range(1000)), "y": [str(i) for i in range(1000)]})
    back, ser = round_trip(table)
    assert back.equals(table)


def test_lambda_and_closure_by_value():
    k = 5
    back, _ = round_trip(lambda x: x + k)
    assert back(1) == 6


def test_nested_refs_are_recorded():
    oid = ObjectID.from_index(TaskID.for_driver_task(JobID.from_int(1)), 1)
    ref = ObjectRef(oid, b"owner")
    ser = serialization.serialize({"r": [ref]})
    assert ser.nested_refs == [ref]
    back = serialization.deserialize(ser.to_bytes(), ser.metadata)
    assert back["r"][0] == ref and back["r"][0].owner_address() == b"owner"


def test_describe_unpicklable_names_the_culprit():
    import threading
    lock = threading.Lock()
    try:
        serialization.serialize({"x": [lock]})
    except Exception as e:
        text = serialization.describe_unpicklable({"x": [lock]}, e)
    assert "lock" in text.lower()


class Connection:
    """Holds a lock, which pickle refuses: the kind of class register_serializer is for."""

    def __init__(self, url):
        import threading
        self.url = url
        self.lock = threading.Lock()


def test_a_registered_serializer_pickles_a_class_pickle_refuses():
    import ray_core.util
    with pytest.raises(TypeError):
        serialization.serialize(Connection("db://a"))
    ray_core.util.register_serializer(Connection, serializer=lambda c: c.url,
                                      deserializer=lambda url: Connection(url + "#copy"))
    try:
        ser = serialization.serialize({"conn": Connection("db://a")})
        copy = serialization.deserialize(ser.to_bytes(), ser.metadata)["conn"]
        assert isinstance(copy, Connection) and copy.url == "db://a#copy"
    finally:
        ray_core.util.deregister_serializer(Connection)
    with pytest.raises(TypeError):
        serialization.serialize(Connection("db://a"))
    with pytest.raises(TypeError, match="serializer must be callable"):
        ray_core.util.register_serializer(Connection, serializer=None, deserializer=str)


def test_inspect_serializability_names_what_does_not_pickle():
    import io
    import threading
    from ray_core.util import inspect_serializability
    lock = threading.Lock()

    def uses_lock():
        return lock

    report = io.StringIO()
    ok, failures = inspect_serializability(uses_lock, name="uses_lock", print_file=report)
    assert not ok and [f.name for f in failures] == ["uses_lock.lock"]
    assert failures.pop().obj is lock and "uses_lock.lock: lock" in report.getvalue()
    assert inspect_serializability({"fine": [1, 2]}, print_file=io.StringIO()) == (True, set())
