"""A process's task event records, as the GCS task table reads them: the buffer's
batches go through the wire format into a real GcsTaskManager (no process needed)."""
import asyncio

import pytest

from ray_common.config import config
from ray_common.ids import JobID, TaskID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb
from ray_core._private import task_event_buffer as events_mod
from ray_core._private.task_event_buffer import TaskEventBuffer
from ray_core._private.task_manager import PendingTask
from ray_gcs.task_manager import GcsTaskManager

JOB = JobID.from_int(3)
DRIVER = TaskID.for_driver_task(JOB)


class _Gcs:
    """The GCS client's one call the buffer makes, answered by a real task table."""

    def __init__(self):
        self.table = GcsTaskManager()
        self.batches = 0

    async def add_task_event_data(self, data):
        self.batches += 1
        self.table.add(pb.TaskEventData.FromString(data.SerializeToString()))


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _buffer(loop, gcs):
    buffer = TaskEventBuffer(gcs, loop)
    buffer.enabled = True
    buffer._reporter.address.ip_address, buffer._reporter.address.port = "10.0.0.2", 4321
    return buffer


def _send(loop, buffer):
    """What the io loop does every report interval: build and send what waits."""
    async def flush():
        buffer.flush()
        while buffer._building is not None or buffer._sending:
            await asyncio.sleep(0)
    loop.run_until_complete(flush())


def _task(i: int) -> PendingTask:
    task_id = TaskID.for_normal_task(JOB, DRIVER, i)
    spec = common_pb2.TaskSpec(task_id=task_id.binary(), parent_task_id=DRIVER.binary())
    return PendingTask(spec, task_id, [], [], 1, False, "f")


def _template():
    template = common_pb2.TaskSpec(name="")
    template.function_descriptor.module_name = "mod"
    template.function_descriptor.function_name = "f"
    template.required_resources["CPU"] = 1
    return template


def _owned(owner, i: int, *states) -> PendingTask:
    """A task `owner` submitted, which then reached `states`."""
    task = _task(i)
    owner.begin(task, _template())
    for state in states:
        owner.mark(task, state)
    return task


def _row(gcs, task_id):
    reply = asyncio.run(gcs.table.GetTaskEvents(pb.GetTaskEventsRequest(task_ids=[task_id]),
                                                None))
    return {row.attempt_number: row for row in reply.tasks}


def test_a_task_within_one_interval_is_one_row_with_every_state(loop):
    gcs = _Gcs()
    owner, worker = _buffer(loop, gcs), _buffer(loop, gcs)
    task = _owned(owner, 1, events_mod.PENDING_NODE_ASSIGNMENT,
                  events_mod.SUBMITTED_TO_WORKER)
    ran = worker.new_record(task.spec.task_id, 0, events_mod.RUNNING, executed=True)
    worker.end(ran, events_mod.FINISHED)
    owner.end_task(task, events_mod.FINISHED)
    assert len(owner._queue) == 1 and len(worker._queue) == 1
    _send(loop, worker)
    _send(loop, owner)
    row = _row(gcs, task.spec.task_id)[0]
    assert (row.name, row.func_or_class_name, row.state) == ("f", "mod.f", common_pb2.FINISHED)
    assert row.parent_task_id == DRIVER.binary() and row.owner_address.port == 4321
    assert sorted(row.state_times_us) == [common_pb2.PENDING_ARGS_AVAIL,
                                          common_pb2.PENDING_NODE_ASSIGNMENT,
                                          common_pb2.SUBMITTED_TO_WORKER, common_pb2.RUNNING,
                                          common_pb2.FINISHED]
    # The end time is the executor's: the task ended there, before its owner heard.
    assert row.state_times_us[common_pb2.FINISHED] == int(ran[10] * 1e6)


def test_a_state_reached_after_a_send_is_sent_in_a_later_row(loop):
    gcs = _Gcs()
    owner = _buffer(loop, gcs)
    task = _owned(owner, 2, events_mod.PENDING_NODE_ASSIGNMENT)
    _send(loop, owner)
    assert _row(gcs, task.spec.task_id)[0].state == common_pb2.PENDING_NODE_ASSIGNMENT
    owner.mark(task, events_mod.SUBMITTED_TO_WORKER)
    owner.mark(task, events_mod.PENDING_NODE_ASSIGNMENT)    # the first time stays
    _send(loop, owner)
    row = _row(gcs, task.spec.task_id)[0]
    assert row.state == common_pb2.SUBMITTED_TO_WORKER and row.name == "f"
    assert len(row.state_times_us) == 3 and gcs.batches == 2


def test_a_retry_is_a_new_attempt_and_the_failed_one_keeps_its_error(loop):
    gcs = _Gcs()
    owner = _buffer(loop, gcs)
    task = _owned(owner, 3, events_mod.SUBMITTED_TO_WORKER)
    owner.fail_task(task, "WORKER_DIED", "the worker died")
    task.next_attempt()
    owner.mark(task, events_mod.PENDING_NODE_ASSIGNMENT)
    _send(loop, owner)
    rows = _row(gcs, task.spec.task_id)
    assert rows[0].state == common_pb2.FAILED and rows[0].error_type == "WORKER_DIED"
    assert rows[1].state == common_pb2.PENDING_NODE_ASSIGNMENT and rows[1].name == "f"


def test_records_past_the_buffer_bound_are_dropped_and_counted(loop, monkeypatch):
    monkeypatch.setitem(config._system_config, "task_events_max_buffer_size", 2)
    gcs = _Gcs()
    owner = _buffer(loop, gcs)
    for i in range(5):
        _owned(owner, 10 + i)
    _send(loop, owner)
    reply = asyncio.run(gcs.table.GetTaskEvents(pb.GetTaskEventsRequest(), None))
    assert (reply.num_total, reply.num_status_task_events_dropped) == (2, 3)
