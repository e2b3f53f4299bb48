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
        return exceptions.RayTaskError("my_function", tb, e, pid=1234, ip="10.0.0.1",
                                         node_id="ab" * 28, task_id="cd" * 24)


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


def test_cause_that_cannot_be_rebuilt_is_an_unserializable_exception():
    # MyError pickles, but unpickling calls MyError("boom") without its code: as in Ray,
    # get() raises UnserializableException with the original text and traceback.
    ser = serialization.serialize_error(_raise_and_wrap(MyError("boom", 7)))
    error = serialization.deserialize(ser.to_bytes(), ser.metadata)
    assert type(error) is exceptions.UnserializableException
    assert "Failed to deserialize exception" in str(error)
    assert "MyError: boom" in str(error) and "my_function" in str(error)


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


# Ray 2.60's constructor arguments of each class, as programs (and libraries that raise
# Ray's errors themselves) call them.
RAY_CONSTRUCTIONS = [
    (exceptions.RaySystemError, ("lost raylet",), {"traceback_str": "tb"}),
    (exceptions.TaskCancelledError, (), {}),
    (exceptions.TaskCancelledError, ("ab" * 12,), {"error_message": "by the user"}),
    (exceptions.RayActorError, (), {}),
    (exceptions.RayActorError, ("ab" * 16, "it died", True, False), {}),
    (exceptions.ActorDiedError, (), {}),
    (exceptions.ActorUnavailableError, ("restarting", b"\x01" * 16), {}),
    (exceptions.ActorUnavailableError, ("restarting", None), {}),
    (exceptions.ObjectLostError, ("cd" * 28, None, ""), {}),
    (exceptions.OwnerDiedError, ("cd" * 28, None, "call site"), {}),
    (exceptions.ObjectFetchTimedOutError, ("cd" * 28, None, ""), {}),
    (exceptions.ObjectReconstructionFailedError, ("cd" * 28,), {}),
    (exceptions.OutOfMemoryError, ("node full",), {}),
    (exceptions.NodeDiedError, ("node gone",), {}),
    (exceptions.RuntimeEnvSetupError, (), {}),
    (exceptions.RuntimeEnvSetupError, ("pip failed",), {}),
    (exceptions.TaskUnschedulableError, ("node dead",), {}),
    (exceptions.ActorUnschedulableError, ("node dead",), {}),
    (exceptions.ActorAlreadyExistsError, ("name taken",), {}),
    (exceptions.ActorHandleNotFoundError, ("no such actor",), {}),
    (exceptions.UnserializableException, ("Traceback ...",), {}),
    (exceptions.RpcError, ("unavailable",), {"rpc_code": 14}),
    (exceptions.WorkerCrashedError, (), {}),
    (exceptions.LocalRayletDiedError, (), {}),
    (exceptions.TaskPlacementGroupRemoved, (), {}),
    (exceptions.ActorPlacementGroupRemoved, (), {}),
    (exceptions.GetTimeoutError, ("late",), {}),
]


@pytest.mark.parametrize("cls,args,kwargs", RAY_CONSTRUCTIONS,
                         ids=[f"{c.__name__}{len(a)}" for c, a, _ in RAY_CONSTRUCTIONS])
def test_constructors_take_rays_arguments(cls, args, kwargs):
    error = cls(*args, **kwargs)
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls and str(back) == str(error) and str(error)


def test_actor_errors_are_ray_actor_errors():
    """Code catches RayActorError around calls to a restarting actor (as in Ray)."""
    unavailable = exceptions.ActorUnavailableError("restarting", b"\x02" * 16)
    assert isinstance(unavailable, exceptions.RayActorError)
    assert unavailable.actor_id == "02" * 16 and "restarting" in str(unavailable)
    died = exceptions.ActorDiedError()
    assert isinstance(died, exceptions.RayActorError) and not died.actor_init_failed
    assert str(died) == exceptions.ActorDiedError.BASE_ERROR_MSG
    init_failed = exceptions.ActorDiedError(_raise_and_wrap(ValueError("in __init__")))
    assert init_failed.actor_init_failed and "in __init__" in str(init_failed)
    assert str(exceptions.RaySystemError("x")) == "System error: x"
    assert str(exceptions.TaskCancelledError("abc")).startswith("Task: abc was cancelled.")
    assert str(exceptions.RuntimeEnvSetupError("pip")) == \
        "Failed to set up runtime environment.\npip"


def test_task_error_takes_rays_positional_arguments():
    error = exceptions.RayTaskError("f", "Traceback...\nValueError: x", ValueError("x"),
                                    "ray::f", 42, "10.1.1.1", "Actor(A)")
    assert (error.proctitle, error.pid, error.ip, error.actor_repr) == \
        ("ray::f", 42, "10.1.1.1", "Actor(A)")
    back = pickle.loads(pickle.dumps(error))
    assert back.pid == 42 and back.actor_repr == "Actor(A)"


_AFTER_DASK = """
import pickle
from ray_core import exceptions
from ray_core._private import serialization

class NeedsCode(Exception):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code

import dask  # installs tblib's reducer in copyreg for every exception class so far
for error in (exceptions.OutOfMemoryError("node full"), exceptions.ObjectStoreFullError("x")):
    assert type(pickle.loads(pickle.dumps(error))) is type(error)
    ser = serialization.serialize_error(error)
    assert type(serialization.deserialize(ser.to_bytes(), ser.metadata)) is type(error)
ser = serialization.serialize_error(NeedsCode("boom", 7))
assert type(serialization.deserialize(ser.to_bytes(), ser.metadata)) is \\
    exceptions.UnserializableException
"""


def test_errors_travel_the_same_after_dask_installs_tblib():
    """`import dask` registers tblib's exception reducer for every class: ray_core's own
    errors still round-trip, and one that cannot be rebuilt is still reported as such."""
    pytest.importorskip("dask")
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", _AFTER_DASK], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
