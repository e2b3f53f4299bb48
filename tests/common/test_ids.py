import pickle

import pytest

from ray_common.ids import (ActorID, JobID, NodeID, ObjectID, PlacementGroupID, TaskID,
                            UniqueID, WorkerID)

ALL_IDS = [(JobID, 4), (ActorID, 16), (TaskID, 24), (ObjectID, 28), (NodeID, 28),
           (WorkerID, 28), (PlacementGroupID, 18), (UniqueID, 28)]


@pytest.mark.parametrize("cls,size", ALL_IDS)
def test_round_trips(cls, size):
    original = cls.from_random()
    assert cls.size() == size and len(original.binary()) == size
    assert cls.from_binary(original.binary()) == original
    assert cls.from_hex(original.hex()) == original
    assert pickle.loads(pickle.dumps(original)) == original
    assert hash(cls.from_binary(original.binary())) == hash(original)
    assert cls.nil().is_nil() and not original.is_nil()
    assert original in {original: 1}


@pytest.mark.parametrize("cls,size", ALL_IDS)
def test_bad_input_names_type_and_size(cls, size):
    with pytest.raises(ValueError, match=rf"{cls.__name__}.*{size} bytes"):
        cls(b"x" * (size + 1))
    with pytest.raises(ValueError, match=rf"{cls.__name__}.*{2 * size} hex"):
        cls.from_hex("ab")
    with pytest.raises(ValueError, match="not hexadecimal"):
        cls.from_hex("zz" * size)
    with pytest.raises(TypeError, match=cls.__name__):
        cls("a" * size)


def test_types_do_not_compare_equal():
    data = b"\x01" * 28
    assert ObjectID(data) != NodeID(data)
    assert WorkerID(data) != NodeID(data)


def test_driver_task_derives_from_job():
    job = JobID.from_int(7)
    task = TaskID.for_driver_task(job)
    assert task.job_id() == job
    assert task.actor_id() == ActorID.nil_from_job(job)
    assert TaskID.for_driver_task(job) == task
    assert job.int() == 7


def test_child_task_ids_are_deterministic_and_distinct():
    job = JobID.from_int(1)
    parent = TaskID.for_driver_task(job)
    first = TaskID.for_normal_task(job, parent, 1)
    assert TaskID.for_normal_task(job, parent, 1) == first
    assert TaskID.for_normal_task(job, parent, 2) != first
    assert first.job_id() == job
    children = {TaskID.for_normal_task(job, parent, i) for i in range(10000)}
    assert len(children) == 10000


def test_actor_ids():
    job = JobID.from_int(3)
    parent = TaskID.for_driver_task(job)
    actor = ActorID.of(job, parent, 5)
    assert actor.job_id() == job
    assert ActorID.of(job, parent, 5) == actor and ActorID.of(job, parent, 6) != actor
    creation = TaskID.for_actor_creation_task(actor)
    assert creation.actor_id() == actor
    call = TaskID.for_actor_task(job, parent, 9, actor)
    assert call.actor_id() == actor and call.job_id() == job


def test_object_id_recovers_creating_task():
    task = TaskID.for_normal_task(JobID.from_int(2), TaskID.for_driver_task(JobID.from_int(2)), 4)
    for index in (1, 2, 1000):
        obj = ObjectID.from_index(task, index)
        assert obj.task_id() == task
        assert obj.object_index() == index


def test_job_id_range():
    with pytest.raises(ValueError, match="JobID"):
        JobID.from_int(-1)
    assert JobID.from_int(2 ** 32 - 1).int() == 2 ** 32 - 1


def test_placement_group_id_carries_job():
    job = JobID.from_int(11)
    assert PlacementGroupID.of(job).job_id() == job
