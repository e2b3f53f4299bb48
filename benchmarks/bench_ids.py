"""ID operations on the task path: Cython IDs beside the same logic in plain Python.

This is the figure that keeps `ray_common/_ids.pyx` in Cython.
"""
import hashlib
import timeit

from ray_common.ids import JobID, ObjectID, TaskID


class PyTaskID:
    """Plain-Python reference with the same checks and derivation."""
    SIZE = 24

    def __init__(self, data):
        if not isinstance(data, bytes):
            raise TypeError("bytes")
        if len(data) != self.SIZE:
            raise ValueError("size")
        self._data = data

    def __hash__(self):
        return hash(self._data)

    def __eq__(self, other):
        return type(other) is type(self) and other._data == self._data

    @staticmethod
    def for_normal_task(job, parent, counter):
        unique = hashlib.blake2b(parent._data + counter.to_bytes(8, "little", signed=True),
                                 digest_size=8).digest()
        return PyTaskID(unique + b"\xff" * 12 + job)


def _rate(stmt, number=200_000):
    return number / min(timeit.repeat(stmt, number=number, repeat=3))


def run():
    job = JobID.from_int(1)
    parent = TaskID.for_driver_task(job)
    py_parent = PyTaskID(parent.binary())
    task = TaskID.for_normal_task(job, parent, 1)
    py_task = PyTaskID(task.binary())
    data = ObjectID.from_index(task, 1).binary()
    table = {task: 1}
    py_table = {py_task: 1}
    return [
        ("derive child TaskID", _rate(lambda: TaskID.for_normal_task(job, parent, 7)), "ops/s",
         _rate(lambda: PyTaskID.for_normal_task(job.binary(), py_parent, 7)), "ops/s"),
        ("ObjectID from binary", _rate(lambda: ObjectID(data)), "ops/s",
         _rate(lambda: PyTaskID(data[:24])), "ops/s"),
        ("dict lookup by TaskID", _rate(lambda: table[task]), "ops/s",
         _rate(lambda: py_table[py_task]), "ops/s"),
    ]
