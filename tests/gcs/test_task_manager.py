"""The GCS task table: events from owners and executors folded into one row per attempt,
bounded per job with the oldest ended attempts forgotten first."""
import asyncio

from ray_common.config import config
from ray_common.ids import JobID, TaskID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb
from ray_gcs.task_manager import GcsTaskManager

JOB = JobID.from_int(7)
DRIVER = TaskID.for_driver_task(JOB)


def _task(i: int) -> bytes:
    return TaskID.for_normal_task(JOB, DRIVER, i).binary()


_TIME_COLUMNS = {common_pb2.PENDING_ARGS_AVAIL: "args_avail_s",
                 common_pb2.PENDING_NODE_ASSIGNMENT: "node_assignment_s",
                 common_pb2.SUBMITTED_TO_WORKER: "submitted_s",
                 common_pb2.RUNNING: "running_s"}


def _batch(events, *, executed=False, pid=11, described=(), errors=()):
    """events: (task id, attempt, state, time in us), one row per attempt as a reporter
    sends it; the attempts in `described` say what their task is."""
    data = pb.TaskEventData(worker_id=b"w" * 28, node_id=b"n" * 28, pid=pid)
    data.address.ip_address, data.address.port = "10.0.0.1", 1234
    rows = {}
    for task_id, attempt, state, time_us in events:
        row = rows.setdefault((task_id, attempt), {})
        row[state] = time_us / 1e6
    for (task_id, attempt), times in rows.items():
        data.task_ids.append(task_id)
        data.attempts.append(attempt)
        data.executed.append(executed)
        for state, column in _TIME_COLUMNS.items():
            getattr(data, column).append(times.get(state, 0.0))
        end_state = max((s for s in times if s >= common_pb2.FINISHED), default=0)
        data.ended_s.append(times.get(end_state, 0.0))
        data.end_states.append(end_state)
        if (task_id, attempt) in described:
            if not data.definitions:
                data.definitions.add(name="f", func_or_class_name="mod.f",
                                     type=common_pb2.NORMAL_TASK)
            data.definition_of.append(1)
            data.described_parents.append(DRIVER.binary())
        else:
            data.definition_of.append(0)
    for task_id, attempt, error_type, message in errors:
        data.error_task_ids.append(task_id)
        data.error_attempts.append(attempt)
        data.error_types.append(error_type)
        data.error_messages.append(message)
    return data


def _rows(manager, **kwargs):
    request = pb.GetTaskEventsRequest(**kwargs)
    return asyncio.run(manager.GetTaskEvents(request, None))


def test_owner_and_executor_events_make_one_row_in_any_order():
    manager = GcsTaskManager()
    t = _task(1)
    # The executor's batch arrives first: where it ran, and that it finished.
    manager.add(_batch([(t, 0, common_pb2.RUNNING, 30), (t, 0, common_pb2.FINISHED, 40)],
                       executed=True, pid=99))
    manager.add(_batch([(t, 0, common_pb2.SUBMITTED_TO_WORKER, 20),
                        (t, 0, common_pb2.FINISHED, 45),
                        (t, 0, common_pb2.PENDING_ARGS_AVAIL, 10)], described=[(t, 0)]))
    reply = _rows(manager)
    assert reply.num_total == 1
    row = reply.tasks[0]
    assert (row.name, row.func_or_class_name, row.state) == ("f", "mod.f", common_pb2.FINISHED)
    assert row.worker_pid == 99 and row.node_id == b"n" * 28
    assert row.owner_address.port == 1234 and row.job_id == JOB.binary()
    assert row.parent_task_id == DRIVER.binary()
    assert dict(row.state_times_us) == {common_pb2.PENDING_ARGS_AVAIL: 10,
                                        common_pb2.SUBMITTED_TO_WORKER: 20,
                                        common_pb2.RUNNING: 30, common_pb2.FINISHED: 40}


def test_a_retry_is_a_new_attempt_of_the_same_task():
    manager = GcsTaskManager()
    t = _task(2)
    manager.add(_batch([(t, 0, common_pb2.PENDING_ARGS_AVAIL, 1)], described=[(t, 0)]))
    manager.add(_batch([(t, 0, common_pb2.FAILED, 2), (t, 1, common_pb2.PENDING_NODE_ASSIGNMENT, 3)],
                       errors=[(t, 0, "WORKER_DIED", "the worker died")]))
    rows = {row.attempt_number: row for row in _rows(manager, task_ids=[t]).tasks}
    assert rows[0].state == common_pb2.FAILED and rows[0].error_type == "WORKER_DIED"
    assert rows[1].state == common_pb2.PENDING_NODE_ASSIGNMENT and rows[1].name == "f"


def test_the_executors_exception_message_wins_over_the_owners_summary():
    manager = GcsTaskManager()
    t = _task(3)
    manager.add(_batch([(t, 0, common_pb2.FAILED, 5)],
                       errors=[(t, 0, "TASK_EXECUTION_EXCEPTION", "ValueError: boom\n  tb")],
                       executed=True))
    manager.add(_batch([(t, 0, common_pb2.FAILED, 6)]))
    row = _rows(manager).tasks[0]
    assert row.error_type == "TASK_EXECUTION_EXCEPTION" and "boom" in row.error_message


def test_a_job_keeps_its_newest_and_unfinished_attempts_and_counts_the_rest(monkeypatch):
    monkeypatch.setitem(config._system_config, "task_events_max_num_task_in_gcs", 3)
    manager = GcsTaskManager()
    running = _task(100)
    manager.add(_batch([(running, 0, common_pb2.RUNNING, 1)], executed=True))
    for i in range(5):
        manager.add(_batch([(_task(i), 0, common_pb2.FINISHED, 10 + i)]))
    reply = _rows(manager)
    kept = [row.task_id for row in reply.tasks]
    # The two newest finished attempts and the running one; the three oldest finished
    # are forgotten before the running one, which is older than all of them.
    assert kept == [running, _task(3), _task(4)]
    assert reply.num_status_task_events_dropped == 3


def test_filters_and_limit():
    manager = GcsTaskManager()
    for i in range(4):
        manager.add(_batch([(_task(i), 0, common_pb2.PENDING_ARGS_AVAIL, i)]))
    manager.add(_batch([], pid=1))
    reply = _rows(manager, limit=2)
    assert (len(reply.tasks), reply.num_total) == (2, 4)
    assert _rows(manager, job_id=JobID.from_int(8).binary()).num_total == 0
    assert [r.task_id for r in _rows(manager, task_ids=[_task(2)]).tasks] == [_task(2)]
