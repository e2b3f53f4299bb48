"""Step 3 of a task's life: wait for the ObjectRef arguments this process owns.

Runs on the io loop. A top-level ref argument owned here is waited for in the memory
store; once it is there, a small value (or an error) is inlined into the task spec, and
a plasma value stays a reference (the raylet makes it local before granting a lease).
Refs owned by other processes are passed as references: the executor resolves them
through their owners.
"""
import logging
from typing import Callable

from ray_common.config import config
from ray_common.ids import ObjectID

from ray_core._private.memory_store import MemoryStore
from ray_core._private.task_manager import PendingTask
from ray_core._private.task_log import task_log

logger = logging.getLogger(__name__)


class DependencyResolver:
    def __init__(self, memory_store: MemoryStore, is_owned: Callable[[ObjectID], bool],
                 call_soon_threadsafe: Callable):
        self._store = memory_store
        self._is_owned = is_owned
        self._call_soon_threadsafe = call_soon_threadsafe
        self._inline_limit = config.max_direct_call_object_size
        self._inline_total = config.task_rpc_inlined_bytes_limit

    def resolve(self, task: PendingTask, on_resolved: Callable[[PendingTask], None]) -> None:
        """Call on_resolved(task) (on the io loop) when the owned ref arguments are ready."""
        waiting = []
        for arg in task.spec.args:
            if arg.is_inlined:
                continue
            object_id = ObjectID(arg.object_ref.object_id)
            if self._is_owned(object_id) and not self._store.contains(object_id):
                waiting.append(object_id)
        if not waiting:
            self._inline(task)
            on_resolved(task)
            return
        if task_log.enabled:
            task_log.line(f"Task {task.task_id.hex()} waits for objects "
                          + " ".join(object_id.hex() for object_id in waiting))
        remaining = [len(waiting)]

        def one_ready(_obj):
            remaining[0] -= 1
            if remaining[0] == 0:
                self._call_soon_threadsafe(self._finish, task, on_resolved)

        for object_id in waiting:
            self._store.add_callback(object_id, one_ready)

    def ready_now(self, task: PendingTask) -> bool:
        """For a caller's thread: True (and its small values inlined) when no ref argument
        owned here is still being computed, so the task may leave without the io loop."""
        store = self._store
        for ref in task.arg_refs:
            object_id = ref.object_id()
            if self._is_owned(object_id) and not store.contains(object_id):
                return False
        if task.arg_refs:
            self._inline(task)
        return True

    def _finish(self, task: PendingTask, on_resolved) -> None:
        if task_log.enabled:
            task_log.line("Task dependencies resolved " + task.task_id.hex())
        self._inline(task)
        on_resolved(task)

    def _inline(self, task: PendingTask) -> None:
        total = 0
        for arg in task.spec.args:
            if arg.is_inlined:
                total += len(arg.inlined.data)
                continue
            obj = self._store.get_if_exists(ObjectID(arg.object_ref.object_id))
            if obj is None or obj.in_plasma:
                continue
            if obj.size > self._inline_limit or total + obj.size > self._inline_total:
                continue
            arg.is_inlined = True
            arg.inlined.data = obj.data
            arg.inlined.metadata = obj.metadata
            total += obj.size
