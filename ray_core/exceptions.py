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

    def to_bytes(self) -> bytes:
        from ray_core._private import serialization
        return serialization.serialize_error(self).to_bytes()

    @staticmethod
    def from_bytes(data: bytes) -> "RayError":
        from ray_core._private import serialization
        return serialization.loads_error(data)


class CrossLanguageError(RayError):
    """Raised from another language (ray_core runs Python only: kept for Ray's API)."""

    def __init__(self, ray_exception):
        super().__init__(f"An exception raised from another language:\n{ray_exception}")


class RaySystemError(RayError):
    """ray_core itself failed (a component died, a protocol broke)."""

    def __init__(self, client_exc, traceback_str: Optional[str] = None):
        self.client_exc = client_exc
        self.traceback_str = traceback_str
        super().__init__(client_exc)

    def __str__(self) -> str:
        message = f"System error: {self.client_exc}"
        return f"{message}\ntraceback: {self.traceback_str}" if self.traceback_str else message

    def __reduce__(self):
        return type(self), (self.client_exc, self.traceback_str)


class RayTaskError(RayError):
    """A task raised; `cause` is the user's exception, rebuilt on the caller's side."""

    def __init__(self, function_name: str, traceback_str: str, cause: Optional[BaseException],
                 proctitle: Optional[str] = None, pid: Optional[int] = None,
                 ip: Optional[str] = None, actor_repr: Optional[str] = None,
                 actor_id: Optional[str] = None, node_id: str = "", task_id: str = ""):
        self.function_name = function_name
        self.proctitle = proctitle or f"ray_core::{function_name}"
        self.actor_repr = actor_repr
        self._actor_id = actor_id
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
        if self.actor_repr:
            where += f", repr={self.actor_repr}"
        cause = type(self.cause).__name__ if self.cause is not None else "Exception"
        return (f"{cause} raised in task {self.function_name}() ({where})\n"
                f"{self.traceback_str.rstrip()}")

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):
        return RayTaskError, (self.function_name, self.traceback_str, self.cause,
                              self.proctitle, self.pid, self.ip, self.actor_repr,
                              self._actor_id, self.node_id, self.task_id)

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
                                  self.proctitle, self.pid, self.ip, self.actor_repr,
                                  self._actor_id, self.node_id, self.task_id)
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

    def __init__(self, message: str = "The task's local raylet died; see its log in the "
                                      "session's logs folder."):
        super().__init__(message)


class TaskCancelledError(RayError):
    """The task was cancelled with ray_core.cancel(); Ray's (task_id, error_message)."""

    def __init__(self, task_id=None, error_message: Optional[str] = None):
        self.task_id = task_id
        self.error_message = error_message
        super().__init__(task_id, error_message)

    def __str__(self) -> str:
        text = f"Task: {self.task_id} was cancelled. " if self.task_id else ""
        return (text + (self.error_message or "")).strip() or "The task was cancelled."

    def __reduce__(self):
        return type(self), (self.task_id, self.error_message)


class GetTimeoutError(RayError, TimeoutError):
    """get() or wait() ran past its timeout."""


class PlasmaObjectNotAvailable(RayError):
    """An object was not available within the given timeout."""


class ObjectLostError(RayError):
    """The object's every copy is gone and it cannot be rebuilt.

    Ray's arguments (object_ref_hex, owner_address, call_site); `message`, when given,
    says what happened instead of the class's generic sentence."""

    def __init__(self, object_ref_hex: str = "", owner_address=None, call_site: str = "", *,
                 message: Optional[str] = None):
        self.object_ref_hex = object_ref_hex
        self.owner_address = owner_address
        self.call_site = call_site or ""
        self.message = message
        super().__init__(object_ref_hex)

    def _base_str(self) -> str:
        where = f" (created at {self.call_site})" if self.call_site else ""
        return f"Failed to retrieve object {self.object_ref_hex}{where}."

    def _reason(self) -> str:
        return (f"All copies of {self.object_ref_hex} are lost and it cannot be "
                f"reconstructed.")

    def __str__(self) -> str:
        return self.message or f"{self._base_str()} {self._reason()}"

    def __reduce__(self):
        return _rebuild_lost, (type(self), dict(self.__dict__))


def _rebuild_lost(cls, state):
    error = cls.__new__(cls)
    error.__dict__.update(state)
    error.args = (state.get("object_ref_hex", ""),)
    return error


class ObjectFetchTimedOutError(ObjectLostError):
    """Fetching the object timed out: no location of it was found."""

    def _reason(self) -> str:
        return f"Fetching {self.object_ref_hex} timed out: no copy of it could be located."


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """The object was deleted while a reference to it still existed (a ray_core bug)."""

    def _reason(self) -> str:
        return "Reference counting deleted it while a reference still existed."


class ObjectFreedError(ObjectLostError):
    """The object was freed on purpose (internal free) before this read."""

    def _reason(self) -> str:
        return "It was freed explicitly before this read."


class OwnerDiedError(ObjectLostError):
    """The worker that owned the object (created it or submitted its task) died."""

    def _reason(self) -> str:
        return ("Its owner (the worker that created the ref with .remote() or put()) "
                "died; keep the ref in a process that outlives its users (for example "
                "the driver).")


class ObjectReconstructionFailedError(ObjectLostError):
    """Re-running the task that made a lost object failed; Ray's (object_ref_hex, reason,
    reason_message, owner_address, call_site)."""

    def __init__(self, object_ref_hex: str = "", reason=None, reason_message: Optional[str] = None,
                 owner_address=None, call_site: str = "", *, message: Optional[str] = None):
        super().__init__(object_ref_hex, owner_address, call_site, message=message)
        self.reason = reason
        self.reason_message = reason_message

    def _reason(self) -> str:
        return self.reason_message or "Re-running the task that made it failed."


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectReconstructionFailedError):
    """The task that made the object has no retries left to rebuild it."""


class ObjectReconstructionFailedLineageEvictedError(ObjectReconstructionFailedError):
    """The lineage needed to rebuild the object was evicted."""


# MemoryError first: its layout is then the class's base, so any pickler that rebuilds
# an exception with cls.__new__(cls) (tblib's, which `import dask` installs) can.
class ObjectStoreFullError(MemoryError, RayError):
    """The object store has no room for the object, even after eviction and spilling."""


class OutOfDiskError(RayError):
    """Neither the object store nor the local disk (for spilling) has room."""


class OutOfMemoryError(MemoryError, RayError):   # MemoryError first: see ObjectStoreFullError
    """The node ran out of memory and the raylet killed the worker running the task."""

    def __init__(self, message: str = "The node ran out of memory."):
        self.message = message
        super().__init__(message)


class NodeDiedError(RayError):
    """The node the task or object lived on died."""

    def __init__(self, message: str = "The node died."):
        self.message = message
        super().__init__(message)


class RayActorError(RayError):
    """The actor failed before finishing this call: dead (ActorDiedError) or unreachable
    for now (ActorUnavailableError). Ray's (actor_id, error_msg, actor_init_failed,
    preempted)."""

    BASE_ERROR_MSG = "The actor experienced an error before finishing this task."

    def __init__(self, actor_id: Optional[str] = None, error_msg: str = BASE_ERROR_MSG,
                 actor_init_failed: bool = False, preempted: bool = False):
        self.actor_id = actor_id
        self.error_msg = error_msg
        self._actor_init_failed = actor_init_failed
        self._preempted = preempted
        super().__init__(error_msg)

    def __str__(self) -> str:
        return self.error_msg

    @property
    def actor_init_failed(self) -> bool:
        return self._actor_init_failed

    @property
    def preempted(self) -> bool:
        return self._preempted

    def __reduce__(self):
        return _rebuild_actor_error, (type(self), self.actor_id, self.error_msg,
                                      self._actor_init_failed, self._preempted)


def _rebuild_actor_error(cls, actor_id, error_msg, init_failed, preempted):
    error = cls.__new__(cls)
    RayActorError.__init__(error, actor_id, error_msg, init_failed, preempted)
    return error


class ActorDiedError(RayActorError):
    """The actor is dead for good: killed, its constructor raised, its worker or node
    died with no restarts left, its owner died, or it called exit_actor().

    Ray's single argument `cause`: None, the RayTaskError its constructor raised, or
    (here) the sentence that says why; `actor_id` (hex) names the actor."""

    BASE_ERROR_MSG = "The actor died unexpectedly before finishing this task."

    def __init__(self, cause=None, *, actor_id: Optional[str] = None,
                 actor_init_failed: bool = False):
        if isinstance(cause, RayTaskError):
            actor_init_failed = True
            error_msg = f"The actor died because of an error raised in its creation task, {cause}"
        else:
            error_msg = str(cause) if cause else self.BASE_ERROR_MSG
        super().__init__(actor_id, error_msg, actor_init_failed)

    @staticmethod
    def from_task_error(task_error: "RayTaskError") -> "ActorDiedError":
        return ActorDiedError(task_error)


class ActorUnavailableError(RayActorError):
    """The actor cannot be reached for now (it is restarting); a later call may succeed.
    Ray's (error_message, actor_id as bytes)."""

    def __init__(self, error_message: str, actor_id: Optional[bytes]):
        hex_id = actor_id.hex() if isinstance(actor_id, bytes) else actor_id
        super().__init__(hex_id, f"The actor {hex_id} is unavailable: {error_message}. The "
                                 f"task may or may not have been executed on the actor.")


class _UnschedulableError(RayError):
    _WHAT = ""

    def __init__(self, error_message: str):
        self.error_message = error_message
        super().__init__(error_message)

    def __str__(self) -> str:
        return f"The {self._WHAT} is not schedulable: {self.error_message}"


class ActorUnschedulableError(_UnschedulableError):
    """The actor cannot be scheduled (for example, its NodeAffinity node is dead)."""
    _WHAT = "actor"


class TaskUnschedulableError(_UnschedulableError):
    """The task cannot be scheduled (for example, its NodeAffinity node is dead)."""
    _WHAT = "task"


class AsyncioActorExit(RayError):
    """Raised inside an async actor that called exit_actor()."""


class RuntimeEnvSetupError(RayError):
    """The task's runtime_env could not be set up; `error_message` says why."""

    def __init__(self, error_message: Optional[str] = None):
        self.error_message = error_message
        super().__init__(error_message)

    def __str__(self) -> str:
        return "\n".join(["Failed to set up runtime environment."] +
                         ([self.error_message] if self.error_message else []))


class TaskPlacementGroupRemoved(RayError):
    """The placement group the task was to run in was removed."""

    def __init__(self, message: str = "The placement group of this task has been removed."):
        super().__init__(message)


class ActorPlacementGroupRemoved(RayError):
    """The placement group the actor was to run in was removed."""

    def __init__(self, message: str = "The placement group of this actor has been removed."):
        super().__init__(message)


class PendingCallsLimitExceeded(RayError):
    """More calls are pending on the actor than its max_pending_calls."""


class ObjectRefStreamEndOfStreamError(RayError):
    """A streaming generator has no more refs to give."""


class UserCodeException(RayError):
    """Wraps an exception of user code (retry_exceptions looks at its cause)."""


class RpcError(RayError):
    """A call between ray_core processes failed."""

    def __init__(self, message: str, rpc_code=None):
        self.message = message
        self.rpc_code = rpc_code
        super().__init__(message)


class AuthenticationError(RayError):
    """A call carried no or the wrong cluster token (see README: the cluster token)."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class UnserializableException(RayError):
    """A remote exception could not be unpickled here; its text and traceback can."""

    def __init__(self, original_stack_trace: str):
        self._original_stack_trace = original_stack_trace
        super().__init__(original_stack_trace)

    def __str__(self) -> str:
        return f"Failed to deserialize exception. Original exception:\n{self._original_stack_trace}"


class ActorAlreadyExistsError(ValueError, RayError):
    """A named actor with this name already exists in the namespace (a ValueError too)."""

    def __init__(self, error_message: str):
        self.error_message = error_message
        super().__init__(error_message)


class ActorHandleNotFoundError(ValueError, RayError):
    """The actor handle names no actor of this cluster (a ValueError too)."""

    def __init__(self, error_message: str):
        self.error_message = error_message
        super().__init__(error_message)


class OufOfBandObjectRefSerializationException(RayError):
    """An ObjectRef was pickled outside ray_core's serializer (kept as Ray spells it)."""


__all__ = [
    "RayError", "CrossLanguageError", "RaySystemError", "RayTaskError", "WorkerCrashedError",
    "LocalRayletDiedError", "TaskCancelledError", "GetTimeoutError", "PlasmaObjectNotAvailable",
    "ObjectLostError", "ObjectFetchTimedOutError", "ReferenceCountingAssertionError",
    "ObjectFreedError", "OwnerDiedError", "ObjectReconstructionFailedError",
    "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectReconstructionFailedLineageEvictedError", "ObjectStoreFullError", "OutOfDiskError",
    "OutOfMemoryError", "NodeDiedError", "RayActorError", "ActorDiedError",
    "ActorUnavailableError", "ActorUnschedulableError", "TaskUnschedulableError",
    "AsyncioActorExit", "RuntimeEnvSetupError", "TaskPlacementGroupRemoved",
    "ActorPlacementGroupRemoved", "PendingCallsLimitExceeded",
    "ObjectRefStreamEndOfStreamError", "UserCodeException", "RpcError", "AuthenticationError",
    "UnserializableException", "ActorAlreadyExistsError", "ActorHandleNotFoundError",
    "OufOfBandObjectRefSerializationException",
]
