"""Tasks this process submitted and still owns: the owner side of steps 2 and 8.

A PendingTask lives here from submission until its returns are stored (or its error is).
It holds the task's ObjectRef arguments, so they stay alive while the task may still
need them. Retries: a worker death is retried up to max_retries (default 3, -1 means
forever); an application exception is retried only with retry_exceptions (True, or a
list of exception classes). A cancelled task is never retried.
"""
import logging
import threading
import time
from typing import Callable, Dict, List, Optional

from ray_common.ids import ObjectID, TaskID
from ray_common.protocol import common_pb2

from ray_core import exceptions
from ray_core._private import serialization
from ray_core._private.memory_store import MemoryStore, StoredObject
from ray_core._private.task_event_buffer import (FAILED, FINISHED, PENDING_ARGS_AVAIL,
                                                 error_type_of)
from ray_core._private.task_log import task_log

logger = logging.getLogger(__name__)


class PendingTask:
    __slots__ = ("spec", "task_id", "return_ids", "arg_refs", "retries_left", "retry_exceptions",
                 "function_name", "cancelled", "force_cancel", "key", "attempt", "pushed_at",
                 "lineage_live", "events")

    def __init__(self, spec: common_pb2.TaskSpec, task_id: TaskID, return_ids: List[ObjectID],
                 arg_refs: list, max_retries: int, retry_exceptions, function_name: str):
        self.spec = spec
        self.task_id = task_id
        self.return_ids = return_ids
        self.arg_refs = arg_refs
        self.retries_left = max_retries
        self.retry_exceptions = retry_exceptions
        self.function_name = function_name
        self.cancelled = False
        self.force_cancel = False
        self.key = None
        self.attempt = 0
        self.pushed_at = 0.0
        self.lineage_live = None
        self.events = None     # its TaskEventBuffer record (task_event_buffer.begin)

    def next_attempt(self) -> None:
        """Spend a retry (unless unlimited, -1) on running this task once more."""
        if self.retries_left > 0:
            self.retries_left -= 1
        self.attempt += 1
        self.spec.attempt_number = self.attempt


class TaskManager:
    last_completed_at = 0.0   # monotonic time of the last completion; shutdown waits for its prints

    def __init__(self, memory_store: MemoryStore, resubmit: Callable[[PendingTask], None],
                 has_reference: Callable[[ObjectID], bool], on_plasma_return=None):
        self._lock = threading.Lock()
        self._pending: Dict[TaskID, PendingTask] = {}
        self._store = memory_store
        self._resubmit = resubmit
        self._has_reference = has_reference
        self._on_plasma_return = on_plasma_return
        # Set by the CoreWorker (object_lifetime.ObjectLifetime): refs nested in returns,
        # and the lineage of tasks whose returns live in plasma.
        self.on_return_nested = None
        self.remember_lineage = None
        self.events = None    # the CoreWorker's TaskEventBuffer
        # (task, reply or None) -> reply: a num_returns="dynamic" task's end (its return
        # becomes the refs of its items); None when it failed as a whole.
        self.on_dynamic_end = None

    def add_pending(self, task: PendingTask) -> None:
        with self._lock:
            self._pending[task.task_id] = task

    def get(self, task_id: TaskID) -> Optional[PendingTask]:
        return self._pending.get(task_id)

    def is_pending(self, task_id: TaskID) -> bool:
        return task_id in self._pending

    def num_pending(self) -> int:
        return len(self._pending)

    def pending_tasks(self) -> List[PendingTask]:
        with self._lock:
            return list(self._pending.values())

    def complete(self, task: PendingTask, reply) -> None:
        """Store the returns of a finished task (a PushTaskReply), or retry it."""
        if reply.is_application_error and task.retry_exceptions and task.retries_left != 0 \
                and not (task.cancelled or reply.was_cancelled) \
                and self._should_retry_exception(task, reply):
            self._retry(task, "the task raised an exception and retry_exceptions is set",
                        "TASK_EXECUTION_EXCEPTION")
            return
        with self._lock:
            if self._pending.pop(task.task_id, None) is None:
                return
        self.last_completed_at = time.monotonic()
        if task_log.enabled:
            task_log.line("Completing task " + task.task_id.hex())
        events = self.events
        if events is not None and events.enabled:
            events.end_task(task, FAILED if reply.is_application_error else FINISHED)
        if task.spec.dynamic_returns:
            reply = self.on_dynamic_end(task, reply)
        returns = [(ret, ObjectID(ret.object_id)) for ret in reply.return_objects]
        kept = [self._has_reference(object_id) for _, object_id in returns]
        in_plasma = [object_id for (ret, object_id), keep in zip(returns, kept)
                     if keep and ret.in_plasma]
        if in_plasma and self.remember_lineage is not None:
            task.return_ids = in_plasma
            self.remember_lineage(task)
        else:
            task.arg_refs = None
        for (ret, object_id), keep in zip(returns, kept):
            self.store_return(ret, object_id, keep)

    def store_return(self, ret, object_id: ObjectID, keep: bool) -> None:
        """Keep one value a task sent back (a ReturnObject), or, when nothing refers to it
        any more, let its plasma copy go."""
        if ret.object.nested_refs and self.on_return_nested is not None:
            self.on_return_nested(object_id, ret.object.nested_refs, keep)
        if not keep:
            # Every ref to this return was dropped while the task ran: nothing will
            # read it, so do not keep it (a plasma copy is freed by its pin's owner).
            if ret.in_plasma and self._on_plasma_return is not None:
                self._on_plasma_return(object_id, ret.plasma_node_id, False)
            return
        if ret.in_plasma:
            if self._on_plasma_return is not None:
                self._on_plasma_return(object_id, ret.plasma_node_id, True)
            obj = StoredObject.plasma_marker(ret.plasma_node_id, ret.size)
        else:
            obj = StoredObject(ret.object.data, ret.object.metadata)
        self._store.put(object_id, obj)

    def resubmit_lineage(self, task: PendingTask, resubmit: Callable[[PendingTask], None]) -> None:
        """Re-run a finished task whose plasma returns were lost (lineage reconstruction);
        `resubmit` sends it through dependency resolution again (its args may be rebuilt)."""
        with self._lock:
            self._pending[task.task_id] = task
        task.lineage_live = None
        task.next_attempt()
        logger.info("Re-running task %s to rebuild its lost returns (attempt %d)",
                    task.task_id.hex(), task.attempt)
        if self.events is not None and self.events.enabled:
            self.events.mark(task, PENDING_ARGS_AVAIL)
        resubmit(task)

    def fail_or_retry(self, task: PendingTask, error: BaseException, retryable: bool = True) -> bool:
        """A system failure (worker died, lease failed): retry if allowed, else store the error.

        Returns True when the task was resubmitted.
        """
        if task.cancelled:
            error = exceptions.TaskCancelledError(task.task_id.hex())
            retryable = False
        if retryable and task.retries_left != 0 and task.task_id in self._pending:
            self._retry(task, str(error).splitlines()[0] if str(error) else type(error).__name__,
                        error_type_of(error))
            return True
        self.fail(task, error)
        return False

    def fail(self, task: PendingTask, error: BaseException) -> None:
        with self._lock:
            if self._pending.pop(task.task_id, None) is None:
                return
        self.last_completed_at = time.monotonic()
        logger.info("Failing task %s: %s", task.task_id.hex(), str(error).splitlines()[0]
                    if str(error) else type(error).__name__)
        if self.events is not None and self.events.enabled:
            self.events.fail_task(task, error_type_of(error), str(error))
        stored = StoredObject.error(error)
        for object_id in task.return_ids:
            self._store.put(object_id, stored)
        task.arg_refs = None
        if task.spec.dynamic_returns:
            self.on_dynamic_end(task, None)     # the items it made go with it

    def _retry(self, task: PendingTask, why: str, error_type: str) -> None:
        if self.events is not None and self.events.enabled:
            self.events.fail_task(task, error_type, why)
        task.next_attempt()
        logger.info("Retrying task %s (attempt %d, %s retries left): %s", task.task_id.hex(),
                    task.attempt, "unlimited" if task.retries_left < 0 else task.retries_left, why)
        self._resubmit(task)

    @staticmethod
    def _should_retry_exception(task: PendingTask, reply) -> bool:
        if task.retry_exceptions is True:
            return True
        if not reply.return_objects:
            return False
        try:
            error = serialization.deserialize(reply.return_objects[0].object.data,
                                              reply.return_objects[0].object.metadata)
        except Exception:
            return False
        cause = getattr(error, "cause", None)
        return cause is not None and isinstance(cause, tuple(task.retry_exceptions))
