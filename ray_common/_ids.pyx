# cython: language_level=3
"""Fixed-size binary IDs with Ray's sizes and derivation rules.

Layout (bytes), as in Ray, so that an ID tells where it came from:
  JobID            4
  ActorID         16 = 12 unique + JobID
  TaskID          24 =  8 unique + ActorID (the nil actor of the job for non-actor tasks)
  ObjectID        28 = TaskID + 4-byte little-endian index (returns 1..n, puts after)
  PlacementGroupID 18 = 14 unique + JobID
  NodeID, WorkerID, UniqueID 28 random bytes
Unique parts that must be reproducible (a child task's ID, an actor's ID) are a
hash of the parent task ID and the parent's submission counter.
"""
import binascii
import hashlib
import os

cdef bytes _NIL_BYTE = b"\xff"


cdef bytes _derive(bytes parent, long long counter, Py_ssize_t size):
    """Deterministic unique bytes from a parent ID and its counter."""
    return hashlib.blake2b(parent + counter.to_bytes(8, "little", signed=True),
                           digest_size=size).digest()


cdef class BaseID:
    SIZE = 0

    def __init__(self, data):
        if not isinstance(data, bytes):
            raise TypeError(f"{type(self).__name__} needs bytes, got {type(data).__name__}")
        if len(<bytes>data) != type(self).SIZE:
            raise ValueError(f"{type(self).__name__} must be {type(self).SIZE} bytes, "
                             f"got {len(<bytes>data)}")
        self._data = data

    @classmethod
    def from_binary(cls, data):
        return cls(data)

    @classmethod
    def from_hex(cls, hex_str):
        if not isinstance(hex_str, str) or len(hex_str) != 2 * cls.SIZE:
            raise ValueError(f"{cls.__name__}.from_hex needs {2 * cls.SIZE} hex characters "
                             f"({cls.SIZE} bytes), got {hex_str!r}")
        try:
            return cls(binascii.unhexlify(hex_str))
        except binascii.Error:
            raise ValueError(f"{cls.__name__}.from_hex: {hex_str!r} is not hexadecimal") from None

    @classmethod
    def from_random(cls):
        return cls(os.urandom(cls.SIZE))

    @classmethod
    def nil(cls):
        return cls(_NIL_BYTE * cls.SIZE)

    @classmethod
    def size(cls):
        return cls.SIZE

    def is_nil(self):
        return self._data == _NIL_BYTE * len(self._data)

    def binary(self):
        return self._data

    def hex(self):
        return self._data.hex()

    def __hash__(self):
        return hash(self._data)

    def __eq__(self, other):
        return type(other) is type(self) and (<BaseID>other)._data == self._data

    def __ne__(self, other):
        return not self.__eq__(other)

    def __lt__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._data < (<BaseID>other)._data

    def __len__(self):
        return len(self._data)

    def __reduce__(self):
        return (type(self), (self._data,))

    def __repr__(self):
        return f"{type(self).__name__}({self._data.hex()})"


cdef class UniqueID(BaseID):
    SIZE = 28


cdef class NodeID(BaseID):
    SIZE = 28


cdef class WorkerID(BaseID):
    SIZE = 28


cdef class JobID(BaseID):
    SIZE = 4

    @staticmethod
    def from_int(value):
        if not 0 <= value < 2 ** 32:
            raise ValueError(f"JobID.from_int needs 0 <= value < 2**32, got {value}")
        return JobID(value.to_bytes(4, "little"))

    def int(self):
        return int.from_bytes(self._data, "little")


cdef class ActorID(BaseID):
    SIZE = 16

    @staticmethod
    def of(JobID job_id, TaskID parent_task_id, long long parent_task_counter):
        return ActorID(_derive(parent_task_id._data, parent_task_counter, 12) + job_id._data)

    @staticmethod
    def nil_from_job(JobID job_id):
        return ActorID(_NIL_BYTE * 12 + job_id._data)

    def job_id(self):
        return JobID(self._data[12:])


cdef class TaskID(BaseID):
    SIZE = 24

    @staticmethod
    def for_driver_task(JobID job_id):
        return TaskID(_NIL_BYTE * 8 + ActorID.nil_from_job(job_id)._data)

    @staticmethod
    def for_normal_task(JobID job_id, TaskID parent_task_id, long long parent_task_counter):
        return TaskID(_derive(parent_task_id._data, parent_task_counter, 8)
                      + _NIL_BYTE * 12 + job_id._data)

    @staticmethod
    def for_actor_creation_task(ActorID actor_id):
        return TaskID(_NIL_BYTE * 8 + actor_id._data)

    @staticmethod
    def for_actor_task(JobID job_id, TaskID parent_task_id, long long parent_task_counter,
                       ActorID actor_id):
        return TaskID(_derive(parent_task_id._data, parent_task_counter, 8) + actor_id._data)

    def actor_id(self):
        return ActorID(self._data[8:])

    def job_id(self):
        return JobID(self._data[20:])


cdef class ObjectID(BaseID):
    SIZE = 28

    @staticmethod
    def from_index(TaskID task_id, unsigned int index):
        return ObjectID(task_id._data + index.to_bytes(4, "little"))

    def task_id(self):
        return TaskID(self._data[:24])

    def object_index(self):
        return int.from_bytes(self._data[24:], "little")


cdef class PlacementGroupID(BaseID):
    SIZE = 18

    @staticmethod
    def of(JobID job_id):
        return PlacementGroupID(os.urandom(14) + job_id._data)

    def job_id(self):
        return JobID(self._data[14:])
