"""TaskEventBuffer: a process's record of its tasks' state changes, sent to the GCS in
batches (the GCS task table, ray_gcs/task_manager.py, aggregates them).

The owner records PENDING_ARGS_AVAIL (with the spec: what the task is),
PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER and FINISHED/FAILED; the worker that runs a
task records RUNNING and how it ended. On the task path a record is one tuple appended
to a deque (thread-safe under the GIL, no lock, no protobuf); every
`task_events_report_interval_ms`, or when `task_events_send_batch_size` events wait,
the io loop turns the waiting tuples into one column-wise TaskEventData (packed arrays;
tasks of one shape share one TaskDefinition) and sends it without retrying: a batch the
GCS does not take, or events past `task_events_max_buffer_size`, are dropped and
counted, never queued behind a GCS that is away.
"""
import asyncio
import collections
import logging
import os
import time

from ray_common import rpc
from ray_common.config import config
from ray_common.protocol import common_pb2, gcs_service_pb2

from ray_core import exceptions

logger = logging.getLogger(__name__)

PENDING_ARGS_AVAIL = common_pb2.PENDING_ARGS_AVAIL
PENDING_NODE_ASSIGNMENT = common_pb2.PENDING_NODE_ASSIGNMENT
SUBMITTED_TO_WORKER = common_pb2.SUBMITTED_TO_WORKER
RUNNING = common_pb2.RUNNING
FINISHED = common_pb2.FINISHED
FAILED = common_pb2.FAILED
_MAX_MESSAGE_CHARS = 4000
_CHUNK = 256       # events turned into columns per turn of the io loop (~0.3 ms)

# Most specific first: the Ray ErrorType name of each failure a task can end with.
_ERROR_TYPES = [
    (exceptions.TaskCancelledError, "TASK_CANCELLED"),
    (exceptions.OutOfMemoryError, "OUT_OF_MEMORY"),
    (exceptions.OwnerDiedError, "OWNER_DIED"),
    (exceptions.ObjectLostError, "OBJECT_LOST"),
    (exceptions.ObjectStoreFullError, "OBJECT_STORE_FULL"),
    (exceptions.ActorUnavailableError, "ACTOR_UNAVAILABLE"),
    (exceptions.RayActorError, "ACTOR_DIED"),
    (exceptions.NodeDiedError, "NODE_DIED"),
    (exceptions.RuntimeEnvSetupError, "RUNTIME_ENV_SETUP_FAILED"),
    (exceptions.WorkerCrashedError, "WORKER_DIED"),
    (exceptions.RayTaskError, "TASK_EXECUTION_EXCEPTION"),
]


def error_type_of(error: BaseException) -> str:
    for cls, name in _ERROR_TYPES:
        if isinstance(error, cls):
            return name
    return "WORKER_DIED" if isinstance(error, exceptions.RaySystemError) \
        else "TASK_EXECUTION_EXCEPTION"


def _definition(spec) -> gcs_service_pb2.TaskDefinition:
    fd = spec.function_descriptor
    if spec.type == common_pb2.ACTOR_CREATION_TASK:
        func_or_class = f"{fd.class_name}.__init__"
    elif fd.class_name:
        func_or_class = f"{fd.class_name}.{fd.function_name}"
    else:
        func_or_class = f"{fd.module_name}.{fd.function_name}" if fd.module_name \
            else fd.function_name
    name = spec.name or (f"{fd.class_name}.{fd.function_name}" if fd.class_name
                         else fd.function_name)
    definition = gcs_service_pb2.TaskDefinition(
        name=name, func_or_class_name=func_or_class, type=spec.type,
        placement_group_id=spec.scheduling_strategy.placement_group_scheduling_strategy
        .placement_group_id)
    definition.required_resources.update(spec.required_resources)
    return definition


class _Batch:
    """One TaskEventData being built from event tuples, a chunk at a time."""

    def __init__(self, reporter: gcs_service_pb2.TaskEventData):
        self.data = gcs_service_pb2.TaskEventData()
        self.data.CopyFrom(reporter)
        self.size = 0
        self.described = 0
        # id(template) -> (definition index, template): holding the template keeps its id
        # from being reused by another one while this batch is built.
        self._shapes = {}

    def add(self, chunk: list) -> None:
        """Events (task id, attempt, state, time, executed), before any described one."""
        if not chunk:
            return
        data = self.data
        columns = list(zip(*chunk))
        data.task_ids.extend(columns[0])
        data.attempts.extend(columns[1])
        data.states.extend(columns[2])
        data.times_s.extend(columns[3])
        data.executed.extend(columns[4])
        self.size += len(chunk)

    def add_described(self, chunk: list) -> None:
        """Events that say what their task is: (event..., template, parent task id)."""
        data = self.data
        if not self.described:
            data.described_from = self.size
        self.add(chunk)
        self.described += len(chunk)
        shapes = self._shapes
        indexes = []
        for event in chunk:
            template = event[5]
            shape = shapes.get(id(template))
            if shape is None:
                shape = shapes[id(template)] = (len(shapes), template)
                data.definitions.append(_definition(template))
            indexes.append(shape[0])
        data.described_definitions.extend(indexes)
        data.described_parents.extend([e[6] for e in chunk])

    def add_error(self, task_id: bytes, attempt: int, error_type: str, message: str) -> None:
        data = self.data
        data.error_task_ids.append(task_id)
        data.error_attempts.append(attempt)
        data.error_types.append(error_type)
        data.error_messages.append(message)


class TaskEventBuffer:
    def __init__(self, gcs, loop):
        self.enabled = bool(config.enable_task_events)
        self._gcs = gcs
        self._loop = loop
        self._events = collections.deque()
        self._described = collections.deque()
        self._errors = collections.deque()
        self._dropped = 0
        self._max = config.task_events_max_buffer_size
        self._batch = config.task_events_send_batch_size
        self._interval_s = config.task_events_report_interval_ms / 1000.0
        self._reporter = gcs_service_pb2.TaskEventData(pid=os.getpid())
        self._sending = set()
        self._building: "_Batch" = None
        self._closed = False

    def start(self, worker_id: bytes, node_id: bytes, address: common_pb2.Address) -> None:
        """Begin the periodic sends (once the process knows its own address)."""
        self._reporter.worker_id = worker_id
        self._reporter.node_id = node_id
        self._reporter.address.CopyFrom(address)
        if self.enabled:
            self._loop.call_soon_threadsafe(self._flush_periodically)

    # -- the task path (any thread) ---------------------------------------------------
    def record(self, task_id: bytes, attempt: int, state: int, executed: bool = False) -> None:
        """One state change of a task this process owns (or, `executed`, runs)."""
        events = self._events
        if len(events) >= self._max:
            self._dropped += 1
            return
        events.append((task_id, attempt, state, time.time(), executed))
        if len(events) == self._batch:
            self._loop.call_soon_threadsafe(self.flush)

    def record_described(self, task_id: bytes, attempt: int, state: int, template,
                         parent_task_id: bytes, executed: bool = False) -> None:
        """A state change that says what the task is: `template` is a TaskSpec whose
        function descriptor, name, resources and strategy are the task's (the remote
        function's spec template, shared by its calls, or the task's own spec)."""
        described = self._described
        if len(described) >= self._max:
            self._dropped += 1
            return
        described.append((task_id, attempt, state, time.time(), executed, template,
                          parent_task_id))

    def record_failure(self, task_id: bytes, attempt: int, error_type: str, message: str,
                       executed: bool = False) -> None:
        """The attempt FAILED: its Ray ErrorType name (error_type_of) and message."""
        self._errors.append((task_id, attempt, error_type, message[:_MAX_MESSAGE_CHARS]))
        self.record(task_id, attempt, FAILED, executed)

    # -- sending (io loop) -------------------------------------------------------------
    def _flush_periodically(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._loop.call_later(self._interval_s, self._flush_periodically)

    def flush(self) -> None:
        """Build a batch of what waits, _CHUNK events per turn of the io loop (a batch
        of thousands built in one go stalls the task replies this loop also carries:
        async tasks/s fell by a third), then send it."""
        if self._building is None and (self._events or self._described or self._errors
                                       or self._dropped):
            self._building = _Batch(self._reporter)
            self._loop.call_soon(self._build_step)

    def _build_step(self) -> None:
        batch, events, described = self._building, self._events, self._described
        room = self._batch - batch.size
        if events and not batch.described:   # plain events come first in a batch
            count = min(len(events), _CHUNK, room)
            batch.add([events.popleft() for _ in range(count)])
        elif described:
            count = min(len(described), _CHUNK, room)
            batch.add_described([described.popleft() for _ in range(count)])
        if (events and not batch.described or described) and batch.size < self._batch:
            self._loop.call_soon(self._build_step)
            return
        self._building = None
        self._spawn_send(self._finish(batch))
        if events or described:
            self.flush()

    def _finish(self, batch: "_Batch"):
        errors = self._errors
        while errors:
            batch.add_error(*errors.popleft())
        data = batch.data
        data.num_dropped, self._dropped = self._dropped, 0
        return data

    def _spawn_send(self, data) -> None:
        task = asyncio.ensure_future(self._send(data))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, data) -> None:
        try:
            await self._gcs.add_task_event_data(data)
        except Exception as e:  # noqa: BLE001 - lose the batch, never the process
            self._dropped += len(data.task_ids) + data.num_dropped
            logger.info("Sending %d task events to the GCS failed (dropped): %s",
                        len(data.task_ids), str(e).splitlines()[0] if str(e) else
                        type(e).__name__)

    def close(self) -> None:
        """Send what waits, once, briefly (a process's last tasks end just before)."""
        if self._closed or not self.enabled:
            self._closed = True
            return
        try:
            rpc.run_sync(asyncio.wait_for(self.drain(), config.task_events_report_interval_ms
                                          / 1000.0 + 1.0))
        except Exception as e:  # noqa: BLE001
            logger.info("Sending the last task events failed: %s", e)

    async def drain(self) -> None:
        """Send everything buffered now and stop (io loop): the last act of a process
        about to exit, so that its tasks' ends (and failures' error types) are not lost
        with it."""
        if self._closed or not self.enabled:
            self._closed = True
            return
        self._closed = True
        batch = self._building or _Batch(self._reporter)
        self._building = None
        if not batch.described:
            batch.add(list(self._events))
            self._events.clear()
        batch.add_described(list(self._described))
        self._described.clear()
        pending = list(self._sending)
        if batch.size or self._errors or self._dropped:
            pending.append(self._send(self._finish(batch)))
        await asyncio.gather(*pending, return_exceptions=True)
