"""Every error a ray_core user can catch, in one module.

Each class subclasses RayError and, where one fits, the closest builtin
(`GetTimeoutError` is a `TimeoutError`, `ObjectStoreFullError` a `MemoryError`), so
code written against either keeps working. A task that raised is re-raised at `get`
as a class made on the fly that inherits from both RayTaskError and the user's own
exception class: `except ValueError` and `except RayTaskError` both catch it, and its
message carries the remote traceback, the function name, the pid and the node.
"""
import os
import socket
import traceback
from typing import Optional


class RayError(Exception):
    """Base of every ray_core error."""

    @staticmethod
    def from_bytes(data: bytes) -> "RayError":
        from ray_core._private import serialization
        return serialization.loads_error(data)


class RaySystemError(RayError):
    """ray_core itself failed (a component died, a protocol broke)."""

    def __init__(self, message: str, traceback_str: Optional[str] = None):
        self.message = message
        self.traceback_str = traceback_str
        super().__init__(message if not traceback_str else f"{message}\n{traceback_str}")

    def __reduce__(self):
        return type(self), (self.message, self.traceback_str)


class RayTaskError(RayError):
    """A task raised; `cause` is the user's exception, rebuilt on the caller's side."""

    def __init__(self, function_name: str, traceback_str: str, cause: Optional[BaseException],
                 pid: Optional[int] = None, ip: Optional[str] = None,
                 node_id: str = "", task_id: str = ""):
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid if pid is not None else os.getpid()
        self.ip = ip if ip is not None else _hostname_ip()
        self.node_id = node_id
        self.task_id = task_id
        # Exception.__init__ is bypassed for dual subclasses (see as_instanceof_cause);
        # args is what str() would fall back to, so keep it meaningful.
        self.args = (self._message(),)

    def _message(self) -> str:
        where = f"pid={self.pid}, ip={self.ip}"
        if self.node_id:
            where += f", node={self.node_id[:12]}"
        if self.task_id:
            where += f", task={self.task_id}"
        cause = type(self.cause).__name__ if self.cause is not None else "Exception"
        return (f"{cause} raised in task {self.function_name}() ({where})\n"
                f"{self.traceback_str.rstrip()}")

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):
        return RayTaskError, (self.function_name, self.traceback_str, self.cause, self.pid,
                              self.ip, self.node_id, self.task_id)

    def as_instanceof_cause(self) -> "RayTaskError":
        """This error as an instance of a class deriving from RayTaskError and the cause's class.

        Falls back to plain RayTaskError when the cause's class cannot be subclassed
        (final classes, or ones whose layout clashes with Exception's).
        """
        cause = self.cause
        if cause is None or isinstance(cause, RayTaskError):
            return self
        cause_cls = type(cause)
        if not isinstance(cause, Exception):
            return self
        name = f"RayTaskError({cause_cls.__name__})"
        try:
            dual = _DUAL_CLASSES.get(cause_cls)
            if dual is None:
                dual = type(name, (RayTaskError, cause_cls), {
                    "__init__": _dual_init,
                    "__str__": RayTaskError.__str__,
                    "__reduce__": RayTaskError.__reduce__,
                    "__module__": cause_cls.__module__,
                    "__qualname__": name,
                })
                _DUAL_CLASSES[cause_cls] = dual
            error = dual.__new__(dual)
            error.__dict__.update(getattr(cause, "__dict__", {}))
            RayTaskError.__init__(error, self.function_name, self.traceback_str, cause,
                                  self.pid, self.ip, self.node_id, self.task_id)
            error.__cause__ = cause
            return error
        except TypeError:
            return self


def _dual_init(self, *args, **kwargs):
    RayTaskError.__init__(self, *args, **kwargs)


_DUAL_CLASSES: dict = {}


def _hostname_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def format_remote_traceback(exc: BaseException, skip_frames: int = 1) -> str:
    """The traceback of an exception raised by user code, minus the executor's own frames."""
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


class WorkerCrashedError(RayError):
    """The worker running the task died (crash, kill, os._exit) and retries ran out."""

    def __init__(self, message: str = "The worker executing the task died unexpectedly."):
        super().__init__(message)


class LocalRayletDiedError(RayError):
    """The raylet of this process's node died."""


class TaskCancelledError(RayError):
    """The task was cancelled with ray_core.cancel()."""

    def __init__(self, task_id: str = "", message: Optional[str] = None):
        self.task_id = task_id
        super().__init__(message or f"Task {task_id} was cancelled.")

    def __reduce__(self):
        return type(self), (self.task_id, self.args[0] if self.args else None)


class GetTimeoutError(RayError, TimeoutError):
    """get() or wait() ran past its timeout."""


class ObjectLostError(RayError):
    """The object's every copy is gone and it cannot be rebuilt."""

    def __init__(self, object_ref_hex: str = "", message: Optional[str] = None):
        self.object_ref_hex = object_ref_hex
        super().__init__(message or f"Object {object_ref_hex} is lost: every copy is gone "
                                    f"and it cannot be reconstructed.")

    def __reduce__(self):
        return type(self), (self.object_ref_hex, self.args[0] if self.args else None)


class OwnerDiedError(ObjectLostError):
    """The worker that owned the object (created it or submitted its task) died."""

    def __init__(self, object_ref_hex: str = "", message: Optional[str] = None):
        super().__init__(object_ref_hex, message or (
            f"Object {object_ref_hex} is lost because its owner died; keep the ref in a "
            f"process that outlives its users (for example the driver)."))


class ObjectReconstructionFailedError(ObjectLostError):
    """Re-running the task that made a lost object failed."""


class ObjectStoreFullError(RayError, MemoryError):
    """The object store has no room for the object, even after eviction and spilling."""


class OutOfMemoryError(RayError, MemoryError):
    """The node ran out of memory and the raylet killed the worker running the task."""


class ActorError(RayError):
    """Base of actor failures."""

    def __init__(self, message: str = "", actor_id: Optional[str] = None):
        super().__init__(message)
        self.actor_id = actor_id

    def __reduce__(self):
        return (type(self), (str(self), self.actor_id))


class RayActorError(ActorError):
    """The actor died or could not be created; the message says why."""


class ActorDiedError(RayActorError):
    """The actor is dead for good: killed, its constructor raised, its worker or node
    died with no restarts left, its owner died, or it called exit_actor()."""


class ActorUnavailableError(ActorError):
    """The actor cannot be reached for now (it is restarting); a later call may succeed."""


class NodeDiedError(RayError):
    """The node the task or object lived on died."""


class RuntimeEnvSetupError(RayError):
    """The task's runtime_env could not be set up."""


class TaskPlacementGroupRemoved(RayError):
    """The placement group the task was to run in was removed."""


__all__ = [
    "RayError", "RaySystemError", "RayTaskError", "WorkerCrashedError", "LocalRayletDiedError",
    "TaskCancelledError", "GetTimeoutError", "ObjectLostError", "OwnerDiedError",
    "ObjectReconstructionFailedError", "ObjectStoreFullError", "OutOfMemoryError",
    "ActorError", "RayActorError", "ActorDiedError", "ActorUnavailableError",
    "NodeDiedError", "RuntimeEnvSetupError", "TaskPlacementGroupRemoved",
]
