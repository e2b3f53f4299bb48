from ray_common.ids import JobID, ObjectID, TaskID
from ray_common.protocol import common_pb2, core_worker_pb2

from ray_core import exceptions
from ray_core._private import serialization
from ray_core._private.memory_store import MemoryStore
from ray_core._private.task_manager import PendingTask, TaskManager

JOB = JobID.from_int(1)
DRIVER = TaskID.for_driver_task(JOB)


def make_task(i=1, max_retries=3, retry_exceptions=False):
    task_id = TaskID.for_normal_task(JOB, DRIVER, i)
    spec = common_pb2.TaskSpec(task_id=task_id.binary(), num_returns=1)
    return PendingTask(spec, task_id, [ObjectID.from_index(task_id, 1)], [], max_retries,
                       retry_exceptions, "f")


def setup():
    store = MemoryStore()
    resubmitted = []
    tm = TaskManager(store, resubmitted.append, lambda oid: True)
    return store, tm, resubmitted


def reply_for(task, value=None, error=None):
    reply = core_worker_pb2.PushTaskReply(task_id=task.spec.task_id)
    ret = reply.return_objects.add(object_id=task.return_ids[0].binary())
    ser = serialization.serialize(value) if error is None else serialization.serialize_error(error)
    ret.object.data = ser.to_bytes()
    ret.object.metadata = ser.metadata
    reply.is_application_error = error is not None
    return reply


def test_complete_stores_inline_return():
    store, tm, _ = setup()
    task = make_task()
    tm.add_pending(task)
    tm.complete(task, reply_for(task, 42))
    obj = store.get_if_exists(task.return_ids[0])
    assert serialization.deserialize(obj.data, obj.metadata) == 42
    assert not tm.is_pending(task.task_id)


def test_worker_death_retries_then_fails():
    store, tm, resubmitted = setup()
    task = make_task(max_retries=2)
    tm.add_pending(task)
    crash = exceptions.WorkerCrashedError("died")
    assert tm.fail_or_retry(task, crash)
    assert tm.fail_or_retry(task, crash)
    assert resubmitted == [task, task] and task.spec.attempt_number == 2
    assert not tm.fail_or_retry(task, crash)
    obj = store.get_if_exists(task.return_ids[0])
    assert isinstance(serialization.deserialize(obj.data, obj.metadata),
                      exceptions.WorkerCrashedError)


def test_cancelled_task_is_not_retried():
    store, tm, resubmitted = setup()
    task = make_task()
    tm.add_pending(task)
    task.cancelled = True
    assert not tm.fail_or_retry(task, exceptions.WorkerCrashedError())
    obj = store.get_if_exists(task.return_ids[0])
    assert isinstance(serialization.deserialize(obj.data, obj.metadata),
                      exceptions.TaskCancelledError)
    assert resubmitted == []


def test_retry_exceptions_by_class():
    store, tm, resubmitted = setup()
    task = make_task(max_retries=1, retry_exceptions=[KeyError])
    tm.add_pending(task)
    err = exceptions.RayTaskError("f", "tb", KeyError("k"))
    tm.complete(task, reply_for(task, error=err))
    assert resubmitted == [task]
    tm.complete(task, reply_for(task, error=err))  # retries exhausted: the error is stored
    assert store.contains(task.return_ids[0])


def test_application_error_without_retry_exceptions_is_stored():
    store, tm, resubmitted = setup()
    task = make_task()
    tm.add_pending(task)
    tm.complete(task, reply_for(task, error=exceptions.RayTaskError("f", "tb", ValueError("v"))))
    assert resubmitted == [] and store.contains(task.return_ids[0])
