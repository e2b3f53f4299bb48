"""TaskEventBuffer: a process's record of its tasks' state changes, sent to the GCS in
batches (the GCS task table, ray_gcs/task_manager.py, aggregates them).

The owner records PENDING_ARGS_AVAIL (with the spec: what the task is),
PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER and FINISHED/FAILED; the worker that runs a
task records RUNNING and how it ended. Each process keeps one record per task attempt
(a list: which attempt, then the time it reached each state); a state change writes its
time into the record and queues the record only when it is not queued already, so a
task that lives within one report interval is one row on the wire and one update in
the GCS, however many states it passed (four separate events a task cost the owner
~2.7 us and the GCS ~8 us a task to fold six of them; see benchmarks/README.md, "Task
events on and off"). No lock: the io loop clears a record's queued mark before it reads
the times, and a state change writes its time before it looks at the mark, so a change
is either in the row being built or queues the record again (under the GIL).

Every `task_events_report_interval_ms`, or when `task_events_send_batch_size` records
wait, the io loop turns the queued records into one column-wise TaskEventData (packed
arrays; tasks of one shape share one TaskDefinition) and sends it without retrying: a
batch the GCS does not take, or records past `task_events_max_buffer_size`, are dropped
and counted, never queued behind a GCS that is away.
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
_CHUNK = 256       # records turned into columns per turn of the io loop (~0.3 ms)

# A record's slots: the attempt, then what its first row says about the task, whether it
# waits in the queue, the times it reached states 1-4 (slot = state + _STATE_SLOT), when
# and how (FINISHED/FAILED) it ended.
_TASK_ID, _ATTEMPT, _EXECUTED, _TEMPLATE, _PARENT, _QUEUED, _END, _END_STATE = \
    0, 1, 2, 3, 4, 5, 10, 11
_STATE_SLOT = 5

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
    """One TaskEventData being built from records, a chunk at a time."""

    def __init__(self, reporter: gcs_service_pb2.TaskEventData):
        self.data = gcs_service_pb2.TaskEventData()
        self.data.CopyFrom(reporter)
        self.size = 0
        # id(template) -> (definition index + 1, template): holding the template keeps
        # its id from being reused by another one while this batch is built.
        self._shapes = {}

    def add(self, chunk: list) -> None:
        """One row per record, with the times it holds now (its queued mark cleared
        first: a state reached after the read queues it again)."""
        if not chunk:
            return
        data = self.data
        shapes = self._shapes
        described = []
        parents = data.described_parents
        for record in chunk:
            record[_QUEUED] = False
            template = record[_TEMPLATE]
            if template is None:
                described.append(0)
                continue
            record[_TEMPLATE] = None        # said once
            shape = shapes.get(id(template))
            if shape is None:
                shape = shapes[id(template)] = (len(shapes) + 1, template)
                data.definitions.append(_definition(template))
            described.append(shape[0])
            parents.append(record[_PARENT])
        columns = list(zip(*chunk))
        data.task_ids.extend(columns[_TASK_ID])
        data.attempts.extend(columns[_ATTEMPT])
        data.executed.extend(columns[_EXECUTED])
        data.args_avail_s.extend(columns[PENDING_ARGS_AVAIL + _STATE_SLOT])
        data.node_assignment_s.extend(columns[PENDING_NODE_ASSIGNMENT + _STATE_SLOT])
        data.submitted_s.extend(columns[SUBMITTED_TO_WORKER + _STATE_SLOT])
        data.running_s.extend(columns[RUNNING + _STATE_SLOT])
        data.ended_s.extend(columns[_END])
        data.end_states.extend(columns[_END_STATE])
        data.definition_of.extend(described)
        self.size += len(chunk)

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
        self._queue = collections.deque()     # records with news for the GCS
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
    def new_record(self, task_id: bytes, attempt: int, state: int, template=None,
                   parent_task_id: bytes = b"", executed: bool = False) -> list:
        """The record of an attempt this process owns (or, `executed`, runs), which
        reached `state` (1-4; 0: none yet) now; `template`, when given, says what the task is: a
        TaskSpec whose function descriptor, name, resources and strategy are the task's
        (the remote function's spec template, shared by its calls, or the task's own)."""
        record = [task_id, attempt, executed, template, parent_task_id, False,
                  0.0, 0.0, 0.0, 0.0, 0.0, 0]
        if state:
            record[state + _STATE_SLOT] = time.time()
        self._enqueue(record)
        return record

    def begin(self, task, template) -> None:
        """A task this process owns was submitted (`task` a PendingTask): its record,
        PENDING_ARGS_AVAIL now."""
        task.events = self.new_record(task.spec.task_id, task.attempt, PENDING_ARGS_AVAIL,
                                      template, task.spec.parent_task_id)

    def mark(self, task, state: int) -> None:
        """A task this process owns reached `state` (1-4) now."""
        record = task.events
        if record is None or record[_ATTEMPT] != task.attempt:   # a retry: a new attempt
            task.events = self.new_record(task.spec.task_id, task.attempt, state)
            return
        slot = state + _STATE_SLOT
        if not record[slot]:
            record[slot] = time.time()
        if not record[_QUEUED]:
            self._enqueue(record)

    def end(self, record: list, state: int) -> None:
        """The record's attempt ended now (FINISHED or FAILED; FAILED wins)."""
        if state <= record[_END_STATE]:
            return
        record[_END] = time.time()
        record[_END_STATE] = state
        if not record[_QUEUED]:
            self._enqueue(record)

    def end_task(self, task, state: int) -> None:
        """A task this process owns ended (FINISHED or FAILED)."""
        record = task.events
        if record is None or record[_ATTEMPT] != task.attempt:
            record = task.events = self.new_record(task.spec.task_id, task.attempt, 0)
        self.end(record, state)

    def fail(self, record: list, error_type: str, message: str) -> None:
        """The record's attempt FAILED: its Ray ErrorType name (error_type_of) and
        message."""
        self._errors.append((record[_TASK_ID], record[_ATTEMPT], error_type,
                             message[:_MAX_MESSAGE_CHARS]))
        self.end(record, FAILED)

    def fail_task(self, task, error_type: str, message: str) -> None:
        """A task this process owns FAILED (its current attempt)."""
        self.end_task(task, FAILED)
        self.fail(task.events, error_type, message)

    def _enqueue(self, record: list) -> None:
        queue = self._queue
        if len(queue) >= self._max:
            self._dropped += 1
            return
        record[_QUEUED] = True
        queue.append(record)
        if len(queue) == self._batch:
            self._loop.call_soon_threadsafe(self.flush)

    # -- sending (io loop) -------------------------------------------------------------
    def _flush_periodically(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._loop.call_later(self._interval_s, self._flush_periodically)

    def flush(self) -> None:
        """Build a batch of what waits, _CHUNK records per turn of the io loop (a batch
        of thousands built in one go stalls the task replies this loop also carries:
        async tasks/s fell by a third), then send it."""
        if self._building is None and (self._queue or self._errors or self._dropped):
            self._building = _Batch(self._reporter)
            self._loop.call_soon(self._build_step)

    def _build_step(self) -> None:
        batch, queue = self._building, self._queue
        count = min(len(queue), _CHUNK, self._batch - batch.size)
        batch.add([queue.popleft() for _ in range(count)])
        if queue and batch.size < self._batch:
            self._loop.call_soon(self._build_step)
            return
        self._building = None
        self._spawn_send(self._finish(batch))
        if queue:
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
        batch.add(list(self._queue))
        self._queue.clear()
        pending = list(self._sending)
        if batch.size or self._errors or self._dropped:
            pending.append(self._send(self._finish(batch)))
        await asyncio.gather(*pending, return_exceptions=True)
