import pickle

import pytest

from ray_core import exceptions
from ray_core._private import serialization


class MyError(ValueError):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def _raise_and_wrap(error):
    try:
        raise error
    except Exception as e:
        tb = exceptions.format_remote_traceback(e, skip_frames=0)
        return exceptions.RayTaskError("my_function", tb, e, 1234, "10.0.0.1", "ab" * 28, "cd" * 24)


def test_task_error_is_both_ray_task_error_and_user_class():
    wrapped = _raise_and_wrap(MyError("boom", 7)).as_instanceof_cause()
    assert isinstance(wrapped, exceptions.RayTaskError)
    assert isinstance(wrapped, MyError)
    assert isinstance(wrapped, ValueError)
    assert wrapped.code == 7
    text = str(wrapped)
    assert "my_function" in text and "pid=1234" in text and "boom" in text
    assert "MyError" in text and "_raise_and_wrap" in text


def test_task_error_survives_serialization_with_class():
    ser = serialization.serialize_error(_raise_and_wrap(KeyError("k")))
    error = serialization.deserialize(ser.to_bytes(), ser.metadata)
    assert isinstance(error, KeyError) and isinstance(error, exceptions.RayTaskError)
    with pytest.raises(KeyError):
        raise error


def test_unpicklable_cause_degrades_to_message():
    class Local(Exception):
        def __reduce__(self):
            raise TypeError("no pickling")
    ser = serialization.serialize_error(_raise_and_wrap(Local("x")))
    error = serialization.deserialize(ser.to_bytes(), ser.metadata)
    assert type(error) is exceptions.RayTaskError
    assert "could not be pickled" in str(error)


def test_builtin_bases():
    assert issubclass(exceptions.GetTimeoutError, TimeoutError)
    assert issubclass(exceptions.ObjectStoreFullError, MemoryError)
    assert issubclass(exceptions.OwnerDiedError, exceptions.ObjectLostError)
    for name in ("WorkerCrashedError", "TaskCancelledError", "ObjectLostError", "RaySystemError"):
        assert issubclass(getattr(exceptions, name), exceptions.RayError)


def test_errors_pickle_round_trip():
    for error in (exceptions.TaskCancelledError("ab"), exceptions.ObjectLostError("cd"),
                  exceptions.OwnerDiedError("ef"), exceptions.WorkerCrashedError("gone"),
                  exceptions.RaySystemError("sys")):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
