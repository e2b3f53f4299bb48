"""Actor API pieces that need no cluster: options, handles, errors, the caller's state."""
import pickle

import pytest

import ray_core as ray
from ray_common.protocol import common_pb2, gcs_service_pb2
from ray_core import exceptions
from ray_core._private import actor_submitter, serialization
from ray_core.actor import ActorHandle
from ray_core.util import ActorPool


@ray.remote
class Thing:
    def plain(self):
        return 1

    @ray.method(num_returns=2)
    def two(self):
        return 1, 2

    async def later(self):
        return 3


def test_actor_class_options_are_checked_when_given():
    with pytest.raises(ValueError, match="max_concurency.*Did you mean 'max_concurrency'"):
        Thing.options(max_concurency=2)
    with pytest.raises(ValueError, match="max_concurrency must be >= 1"):
        Thing.options(max_concurrency=0)
    with pytest.raises(ValueError, match="lifetime"):
        Thing.options(lifetime="forever")
    with pytest.raises(TypeError, match="get_if_exists must be a bool"):
        Thing.options(get_if_exists="yes")
    with pytest.raises(ValueError, match="Invalid option 'num_returns'"):
        Thing.options(num_returns=2)
    with pytest.raises(TypeError, match="Thing.remote()"):
        Thing()


def test_method_table_and_async_detection():
    # Each entry: the method's options, and its parameters (checked at .remote()).
    assert Thing._methods["two"] == {"num_returns": 2, "_params": ()}
    assert Thing._methods["plain"] == {"_params": ()}
    assert Thing._is_async
    with pytest.raises(TypeError, match="keyword options only"):
        ray.method(2)
    with pytest.raises(ValueError, match="Invalid option 'num_cpus'"):
        ray.method(num_cpus=1)


def test_handle_pickles_with_its_method_table():
    handle = ActorHandle(b"\x01" * 16, "Thing", Thing._methods, max_task_retries=3)
    copy = pickle.loads(pickle.dumps(handle))
    assert copy == handle and hash(copy) == hash(handle)
    assert copy._max_task_retries == 3 and repr(copy) == f"Actor(Thing, {'01' * 16})"
    assert copy.two._options == {"num_returns": 2, "_params": ()}
    with pytest.raises(AttributeError, match="has no method 'missing'"):
        copy.missing
    with pytest.raises(TypeError, match="cannot be called directly"):
        copy.plain()
    with pytest.raises(ValueError, match="Invalid option"):
        copy.plain.options(num_cpus=1)


def test_death_error_carries_the_constructor_traceback():
    cause = exceptions.RayTaskError("Thing.__init__", "Traceback (most recent call last):\n"
                                    "  File x, line 3\nValueError: boom", ValueError("boom"),
                                    1234, "127.0.0.1", "ab" * 14, "cd" * 12)
    row = gcs_service_pb2.ActorTableData(actor_id=b"\x02" * 16, class_name="Thing",
                                         state=gcs_service_pb2.ActorTableData.DEAD)
    row.death_cause.error_message = "its constructor raised an exception"
    row.death_cause.creation_exception = serialization.serialize_error(cause).to_bytes()
    error = actor_submitter.death_error(row)
    assert isinstance(error, exceptions.ActorDiedError)
    assert isinstance(error, exceptions.RayActorError)
    text = str(error)
    assert "Thing" in text and "02" * 16 in text and "constructor raised" in text
    assert "ValueError: boom" in text and "Traceback" in text
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == text and again.actor_id == "02" * 16


class _FakeTaskManager:
    def __init__(self):
        self.failed = []

    def fail(self, task, error):
        self.failed.append((task, error))


class _FakeCore:
    def __init__(self):
        self.task_manager = _FakeTaskManager()


def test_stale_rows_are_ignored_and_death_fails_waiting_calls():
    submitter = actor_submitter.ActorTaskSubmitter(_FakeCore())
    submitter._closed = True    # no GCS subscription or polling in this test
    actor = submitter._actor(b"\x03" * 16)
    State = gcs_service_pb2.ActorTableData
    alive = State(actor_id=actor.actor_id, state=State.ALIVE, num_restarts=1,
                  address=common_pb2.Address(worker_id=b"w" * 28))
    actor.state = State.ALIVE
    actor.version = (1, 1)
    actor.worker_id = b"w" * 28
    actor.connecting = True     # pretend a connection is being made
    stale = State(actor_id=actor.actor_id, state=State.RESTARTING, num_restarts=1)
    submitter._apply(actor, stale)      # older than what we know: ignored
    assert actor.state == State.ALIVE and actor.worker_id == b"w" * 28
    submitter._apply(actor, alive)
    queued = object()
    actor.queue.append(queued)
    dead = State(actor_id=actor.actor_id, state=State.DEAD, num_restarts=1, class_name="Thing")
    dead.death_cause.error_message = "it was killed by ray_core.kill()"
    submitter._apply(actor, dead)
    assert actor.state == State.DEAD
    [(task, error)] = submitter._core.task_manager.failed
    assert task is queued and isinstance(error, exceptions.ActorDiedError)
    assert "killed by ray_core.kill()" in str(error)


class _Ref:
    def __init__(self, value):
        self.value = value


def test_actor_pool_orders_results_and_queues_when_busy(monkeypatch):
    import ray_core
    monkeypatch.setattr(ray_core, "get", lambda ref: ref.value)
    monkeypatch.setattr(ray_core, "wait", lambda refs, num_returns=1, timeout=None:
                        (refs[:num_returns], refs[num_returns:]))
    calls = []

    def double(actor, v):
        calls.append((actor, v))
        return _Ref(2 * v)

    pool = ActorPool(["a", "b"])
    assert list(pool.map(double, range(5))) == [0, 2, 4, 6, 8]
    assert {actor for actor, _ in calls} == {"a", "b"}
    assert sorted(pool.map_unordered(double, [10, 20, 30])) == [20, 40, 60]
    pool.submit(double, 1)
    pool.submit(double, 2)
    pool.submit(double, 3)      # both actors busy: waits in the pool
    assert pool.get_next() == 2 and pool.get_next() == 4 and pool.get_next() == 6
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    with pytest.raises(ValueError, match="at least one actor"):
        ActorPool([])
