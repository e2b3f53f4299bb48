"""Ray core API behaviours real programs rely on (issue 15), each as Ray 2.60 has it."""
import sys

import pytest

import ray_core as ray
from tests.integration.conftest import run_script

GET_TIMEOUT = 60


def test_init_returns_rays_context_fields(cluster):
    assert cluster.dashboard_url.startswith("http://127.0.0.1:")
    assert cluster.ray_version == ray.__version__
    assert cluster.python_version == ".".join(map(str, sys.version_info[:3]))
    assert cluster.address_info["gcs_address"] == cluster.gcs_address


# ---- RuntimeContext ---------------------------------------------------------------------

@ray.remote
def task_context():
    ctx = ray.get_runtime_context()
    return (ctx.get_task_name(), ctx.get_task_function_name(), ctx.get_task_id(),
            ctx.get_worker_id(), ctx.get_actor_id(), ctx.get_actor_name(),
            ctx.get_accelerator_ids(), ctx.is_canceled())


@ray.remote
class Named:
    def context(self):
        ctx = ray.get_runtime_context()
        return (ctx.get_task_name(), ctx.get_task_function_name(), ctx.get_actor_name(),
                ctx.get_actor_id(), ctx.was_current_actor_reconstructed, ctx.current_actor)

    async def async_context(self):
        ctx = ray.get_runtime_context()
        return ctx.get_task_name(), ctx.get_task_id()


def test_task_names_and_ids(cluster):
    name, function_name, task_id, worker_id, actor_id, actor_name, accelerators, cancelled = \
        ray.get(task_context.remote(), timeout=GET_TIMEOUT)
    assert name == "task_context"
    assert function_name == f"{__name__}.task_context"
    assert len(task_id) == 48 and len(worker_id) == 56
    assert worker_id != ray.get_runtime_context().get_worker_id()
    assert (actor_id, actor_name, accelerators, cancelled) == (None, None, {"GPU": []}, False)
    assert ray.get(task_context.options(name="custom").remote(),
                   timeout=GET_TIMEOUT)[0] == "custom"
    ctx = ray.get_runtime_context()
    assert (ctx.get_task_name(), ctx.get_task_function_name(), ctx.get_actor_name()) == \
        (None, None, None)


def test_actor_context(cluster):
    actor = Named.options(name="ctx_actor").remote()
    name, function_name, actor_name, actor_id, restarted, me = ray.get(
        actor.context.remote(), timeout=GET_TIMEOUT)
    assert (name, actor_name, actor_id, restarted) == \
        ("Named.context", "ctx_actor", actor._actor_id.hex(), False)
    assert function_name == f"{__name__}.Named.context"
    assert me == actor
    assert ray.get(actor.context.options(name="renamed").remote(),
                   timeout=GET_TIMEOUT)[0] == "renamed"
    ray.kill(actor)
    unnamed = Named.remote()
    assert ray.get(unnamed.context.remote(), timeout=GET_TIMEOUT)[2] == ""
    ray.kill(unnamed)


def test_async_actor_calls_see_their_own_task(cluster):
    actor = Named.remote()
    refs = [actor.async_context.remote() for _ in range(4)]
    answers = ray.get(refs, timeout=GET_TIMEOUT)
    assert [a[0] for a in answers] == ["Named.async_context"] * 4
    assert [a[1] for a in answers] == [ref.task_id().hex() for ref in refs]
    ray.kill(actor)


# ---- cancel on actor calls ----------------------------------------------------------------

@ray.remote
class AsyncWorker:
    def __init__(self):
        import asyncio
        self.started = asyncio.Event()

    async def sleep(self, catch: bool):
        import asyncio
        self.started.set()
        try:
            await asyncio.sleep(120)
        except asyncio.CancelledError:
            if not catch:
                raise
            return "cleaned up"
        return "slept"

    async def wait_started(self):
        await self.started.wait()
        self.started.clear()
        return True


@ray.remote
class PlainWorker:
    def __init__(self):
        import threading
        self.started = threading.Event()

    def until_cancelled(self):
        import time
        self.started.set()
        ctx = ray.get_runtime_context()
        while not ctx.is_canceled():
            time.sleep(0.01)
        self.cancel_seen = True
        return "saw the cancel"

    def saw_cancel(self):
        return getattr(self, "cancel_seen", False)

    def wait_started(self):
        return self.started.wait(GET_TIMEOUT)

    def ping(self):
        return "pong"


def test_force_cancel_of_an_actor_call_is_a_value_error(cluster):
    actor = PlainWorker.remote()
    ref = actor.ping.remote()
    with pytest.raises(ValueError, match="force=True is not supported for actor tasks"):
        ray.cancel(ref, force=True)
    assert ray.get(ref, timeout=GET_TIMEOUT) == "pong"
    ray.kill(actor)


def test_cancelled_async_call_raises_in_get_even_if_it_catches_the_cancel(cluster):
    # As in Ray 2.60: the method sees CancelledError at its await (it may clean up and
    # return), and get() raises a RayTaskError that is also a TaskCancelledError.
    actor = AsyncWorker.remote()
    for catch in (True, False):
        ref = actor.sleep.remote(catch)
        assert ray.get(actor.wait_started.remote(), timeout=GET_TIMEOUT)
        ray.cancel(ref)
        with pytest.raises(ray.exceptions.RayTaskError) as info:
            ray.get(ref, timeout=GET_TIMEOUT)
        assert isinstance(info.value, ray.exceptions.TaskCancelledError)
    ray.kill(actor)


def test_running_threaded_actor_call_runs_on_and_get_raises_cancelled(cluster):
    # As in Ray 2.60: the call is not interrupted (it sees is_canceled() and returns),
    # but its caller gets TaskCancelledError rather than the value.
    actor = PlainWorker.options(max_concurrency=2).remote()
    running = actor.until_cancelled.remote()
    assert ray.get(actor.wait_started.remote(), timeout=GET_TIMEOUT)
    ray.cancel(running)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(running, timeout=GET_TIMEOUT)
    assert ray.get(actor.saw_cancel.remote(), timeout=GET_TIMEOUT)
    ray.kill(actor)


def test_queued_actor_call_is_cancelled_and_later_calls_run(cluster):
    actor = PlainWorker.remote()
    blocker = actor.until_cancelled.remote()
    queued = actor.ping.remote()          # behind the blocking call, here or at the actor
    ray.cancel(queued)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(queued, timeout=GET_TIMEOUT)
    ray.cancel(blocker)                  # running (it returns) or not started (skipped)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(blocker, timeout=GET_TIMEOUT)
    assert ray.get(actor.ping.remote(), timeout=GET_TIMEOUT) == "pong"
    ray.kill(actor)


@ray.remote
def spin_after_marking(path):
    import pathlib
    import time
    pathlib.Path(path).touch()
    while True:
        time.sleep(0.01)


def test_running_task_cancelled_raises_a_ray_task_error(cluster, tmp_path):
    # As in Ray: the cancel is raised inside the running task, so get() raises it as a
    # RayTaskError that is also a TaskCancelledError (code catches either).
    import os
    import time
    mark = str(tmp_path / "running")
    ref = spin_after_marking.remote(mark)
    while not os.path.exists(mark):
        time.sleep(0.01)
    ray.cancel(ref)
    with pytest.raises(ray.exceptions.RayTaskError) as info:
        ray.get(ref, timeout=GET_TIMEOUT)
    assert isinstance(info.value, ray.exceptions.TaskCancelledError)


@ray.remote
class Methods:
    def plain(self, y):
        return y

    @staticmethod
    def static(z):
        return z

    @classmethod
    def klass(cls, w):
        return w


@ray.remote
def call_with_too_many(handle):
    try:
        handle.plain.remote(1, 2)
    except TypeError as e:
        return str(e)


def test_actor_call_arguments_are_checked_at_remote(cluster):
    actor = Methods.remote()
    assert ray.get([actor.plain.remote(1), actor.static.remote(2), actor.klass.remote(3)],
                   timeout=GET_TIMEOUT) == [1, 2, 3]
    with pytest.raises(TypeError, match=r"Methods.plain.remote\(\): missing a required"):
        actor.plain.remote()
    with pytest.raises(TypeError, match="too many positional arguments"):
        actor.static.options(num_returns=1).remote(1, 2)
    # A handle passed to a task checks there too.
    assert "too many positional arguments" in ray.get(call_with_too_many.remote(actor),
                                                      timeout=GET_TIMEOUT)
    ray.kill(actor)


# ---- ObjectRef from its id ------------------------------------------------------------------

@ray.remote
def add_one(x):
    return x + 1


def test_object_ref_rebuilt_from_its_bytes(cluster):
    ref = ray.put(41)
    hex_id = ref.hex()
    again = ray.ObjectRef(bytes.fromhex(hex_id))
    assert again == ref and ray.ObjectRef.from_hex(hex_id) == ref
    del ref                                   # the rebuilt ref holds the value too
    assert ray.get(again, timeout=GET_TIMEOUT) == 41
    assert ray.get(add_one.remote(again), timeout=GET_TIMEOUT) == 42
    task_ref = add_one.remote(1)
    assert ray.get(ray.ObjectRef(task_ref.binary()), timeout=GET_TIMEOUT) == 2
    with pytest.raises(ValueError, match="needs the 28 bytes of an object id"):
        ray.ObjectRef(b"short")


def test_object_ref_job_id_and_call_site(cluster):
    job = ray.get_runtime_context().get_job_id()
    assert ray.put(1).job_id().hex() == job
    assert add_one.remote(1).job_id().hex() == job
    assert ray.put(1).call_site() == ""       # as in Ray without recorded creation sites


# ---- NodeAffinitySchedulingStrategy ----------------------------------------------------------

@ray.remote
def node_of_task():
    return ray.get_runtime_context().get_node_id()


def test_node_affinity_takes_a_node_id_or_its_hex(cluster):
    from ray_core.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    node_id = ray.get_runtime_context().node_id
    for given in (node_id, node_id.hex()):
        strategy = NodeAffinitySchedulingStrategy(node_id=given, soft=False)
        assert strategy.node_id == node_id.hex()
        assert ray.get(node_of_task.options(scheduling_strategy=strategy).remote(),
                       timeout=GET_TIMEOUT) == node_id.hex()
    with pytest.raises(ValueError, match="Invalid node_id 'abc'"):
        NodeAffinitySchedulingStrategy("abc", soft=True)


# ---- ending an actor from its side ----------------------------------------------------------

@ray.remote
class Quitter:
    def __init__(self):
        self.calls = 0

    def work(self):
        self.calls += 1
        return self.calls

    def quit(self):
        from ray_core.actor import exit_actor
        exit_actor()

    async def quit_async(self):
        from ray_core.actor import exit_actor
        exit_actor()

    async def work_async(self):
        return "async"


def test_ray_terminate_runs_the_queued_calls_first(cluster):
    actor = Quitter.remote()
    refs = [actor.work.remote() for _ in range(3)]
    with pytest.raises(ray.exceptions.RayActorError, match="__ray_terminate__"):
        ray.get(actor.__ray_terminate__.remote(), timeout=GET_TIMEOUT)
    assert ray.get(refs, timeout=GET_TIMEOUT) == [1, 2, 3]
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(actor.work.remote(), timeout=GET_TIMEOUT)


@ray.remote
class Counter:
    def __init__(self):
        self.calls = 0


def _bump(actor, by):
    actor.calls += by
    return actor.calls


async def _bump_async(actor, by):
    actor.calls += by
    return actor.calls


@pytest.mark.parametrize("cls,bump", [(Counter, _bump), (Quitter, _bump_async)])
def test_every_actor_has_ray_ready_and_ray_call(cluster, cls, bump):
    # As in Ray: __ray_ready__ answers True once the actor is created; __ray_call__ runs
    # a function on the actor instance, in the actor (an async one awaits it).
    actor = cls.remote()
    assert ray.get(actor.__ray_ready__.remote(), timeout=GET_TIMEOUT) is True
    assert ray.get(actor.__ray_call__.remote(bump, 2), timeout=GET_TIMEOUT) == 2
    assert ray.get(actor.__ray_call__.remote(bump, by=3), timeout=GET_TIMEOUT) == 5
    with pytest.raises(AttributeError, match="has no method '__ray_other__'"):
        actor.__ray_other__


@pytest.mark.parametrize("method", ["quit", "quit_async"])
def test_exit_actor_from_inside(cluster, method):
    actor = Quitter.remote()
    assert ray.get(actor.work.remote(), timeout=GET_TIMEOUT) == 1
    # As in Ray: the call that exits gets the actor's death itself, not a RayTaskError.
    with pytest.raises(ray.exceptions.ActorDiedError, match="exit_actor") as info:
        ray.get(getattr(actor, method).remote(), timeout=GET_TIMEOUT)
    assert not isinstance(info.value, ray.exceptions.RayTaskError)
    with pytest.raises(ray.exceptions.ActorDiedError, match="exit_actor"):
        ray.get(actor.work.remote(), timeout=GET_TIMEOUT)
    with pytest.raises(TypeError, match="inside an actor"):
        from ray_core.actor import exit_actor
        exit_actor()


@ray.remote(num_cpus=0)
class Gate:
    def __init__(self):
        import asyncio
        self.open = asyncio.Event()

    def release(self):
        self.open.set()

    async def passed(self):
        await self.open.wait()
        return True


@ray.remote
class AsyncWaiter:
    async def through(self, gate):
        return await gate.passed.remote()


@ray.remote(max_concurrency=2)
class ThreadedWaiter:
    def through(self, gate):
        return ray.get(gate.passed.remote())


@pytest.mark.parametrize("waiter", [AsyncWaiter, ThreadedWaiter])
def test_concurrent_actor_whose_handles_are_gone_ends_after_its_calls(cluster, waiter):
    # As in Ray: `Actor.remote().method.remote()` drops the only handle at once; the
    # actor ends after that call, even when the call waits (here until the gate opens).
    import gc
    gate = Gate.remote()
    ref = waiter.remote().through.remote(gate)
    gc.collect()
    ray.get(gate.release.remote(), timeout=GET_TIMEOUT)
    assert ray.get(ref, timeout=GET_TIMEOUT) is True
    ray.kill(gate)


# ---- tqdm_ray ---------------------------------------------------------------------------------

TQDM_DRIVER = """
import sys, ray_core as ray
from ray_core.experimental.tqdm_ray import tqdm
ray.init(num_cpus=2, _temp_dir=sys.argv[1])

@ray.remote
def work(i):
    for _ in tqdm(range(5), desc=f"task {i}", flush_interval_s=0):
        pass
    print("plain output", i)
    return i

print("RESULT", ray.get([work.remote(i) for i in range(3)], timeout=60))
with tqdm(total=2, desc="driver bar") as bar:
    bar.update(2)
ray.shutdown()
"""


def test_tqdm_bars_of_tasks_are_drawn_in_the_driver(own_temp_dir):
    result = run_script(TQDM_DRIVER, args=[own_temp_dir])
    assert result.returncode == 0, result.stderr
    assert "RESULT [0, 1, 2]" in result.stdout and "plain output 2" in result.stdout
    assert "__ray_core_tqdm__" not in result.stdout + result.stderr
    for i in range(3):
        assert f"task {i}: 100%|" in result.stderr and "5/5 it (pid=" in result.stderr
    assert "driver bar: 100%|" in result.stderr


# ---- num_returns="dynamic" ------------------------------------------------------------------

@ray.remote(num_returns="dynamic")
def split(n, fail_at=None):
    for i in range(n):
        if i == fail_at:
            raise KeyError(f"no item {i}")
        yield i * 10


@ray.remote
def total(generator):
    return sum(ray.get(list(generator)))


@ray.remote
class Splitter:
    @ray.method(num_returns="dynamic")
    def split(self, n):
        yield from range(n)


def test_dynamic_returns_give_a_generator_of_refs(cluster):
    ref = split.remote(4)
    assert isinstance(ref, ray.ObjectRef)
    generator = ray.get(ref, timeout=GET_TIMEOUT)
    assert isinstance(generator, ray.DynamicObjectRefGenerator) and len(generator) == 4
    assert ray.get(list(generator), timeout=GET_TIMEOUT) == [0, 10, 20, 30]
    assert ray.get(total.remote(generator), timeout=GET_TIMEOUT) == 60   # passed to a task
    del ref                                       # the generator holds its items alone
    assert ray.get(list(generator), timeout=GET_TIMEOUT) == [0, 10, 20, 30]
    assert list(ray.get(split.remote(0), timeout=GET_TIMEOUT)) == []
    actor = Splitter.remote()
    assert ray.get(list(ray.get(actor.split.remote(3), timeout=GET_TIMEOUT)),
                   timeout=GET_TIMEOUT) == [0, 1, 2]
    ray.kill(actor)


def test_dynamic_error_midway_is_one_more_ref(cluster):
    refs = list(ray.get(split.remote(5, fail_at=2), timeout=GET_TIMEOUT))
    assert len(refs) == 3
    assert ray.get(refs[:2], timeout=GET_TIMEOUT) == [0, 10]
    with pytest.raises(KeyError, match="no item 2"):
        ray.get(refs[2], timeout=GET_TIMEOUT)


# ---- options Ray takes -------------------------------------------------------------------------

def test_max_pending_calls_and_options_ray_takes(cluster):
    actor = PlainWorker.options(max_pending_calls=1).remote()
    running = actor.until_cancelled.remote()      # pending until cancelled
    with pytest.raises(ray.exceptions.PendingCallsLimitExceeded, match="max_pending_calls=1"):
        actor.ping.remote()
    ray.cancel(running)
    try:
        assert ray.get(running, timeout=GET_TIMEOUT) == "saw the cancel"
    except ray.exceptions.TaskCancelledError:
        pass                                      # cancelled before it started
    assert ray.get(actor.ping.options(enable_task_events=False).remote(),
                   timeout=GET_TIMEOUT) == "pong"
    ray.kill(actor)
    assert ray.get(add_one.options(enable_task_events=False, object_store_memory=1).remote(1),
                   timeout=GET_TIMEOUT) == 2
    with pytest.raises(ValueError, match="'label_selector' .* not supported by ray_core"):
        add_one.options(label_selector={"zone": "a"})


@ray.remote(num_returns=3)
def three_then_fail(fail_at):
    for i in range(3):
        if i == fail_at:
            raise KeyError(f"stopped at {i}")
        yield i


def test_static_num_returns_generator_keeps_the_values_before_an_error(cluster):
    assert ray.get(three_then_fail.remote(None), timeout=GET_TIMEOUT) == [0, 1, 2]
    first, second, third = three_then_fail.remote(1)
    assert ray.get(first, timeout=GET_TIMEOUT) == 0
    for ref in (second, third):
        with pytest.raises(KeyError, match="stopped at 1"):
            ray.get(ref, timeout=GET_TIMEOUT)


# ---- JobConfig -----------------------------------------------------------------------------------

JOB_CONFIG_DRIVER = """
import os, sys, ray_core as ray
from ray_core.job_config import JobConfig
config = JobConfig(runtime_env={"env_vars": {"FROM_CONFIG": "1"}}, ray_namespace="job_ns",
                   metadata={"team": "core"}, default_actor_lifetime="detached")
ray.init(num_cpus=2, _temp_dir=sys.argv[1], job_config=config)

@ray.remote
class Plain:
    def ping(self):
        return "pong"

@ray.remote
def make_actor():
    actor = Plain.remote()
    ray.get(actor.ping.remote())
    return actor

@ray.remote
def env():
    return os.environ.get("FROM_CONFIG")

gcs = ray._private.worker.global_worker().gcs
from_driver = Plain.remote()
from_task = ray.get(make_actor.remote(), timeout=60)
ray.get(from_driver.ping.remote(), timeout=60)
job = [j for j in gcs.sync.get_all_job_info()
       if j.job_id.hex() == ray.get_runtime_context().get_job_id()][0]
print("RESULT", ray.get(env.remote(), timeout=60), ray.get_runtime_context().namespace,
      dict(job.metadata), [gcs.sync.get_actor_info(a._actor_id).is_detached
                           for a in (from_driver, from_task)])
ray.kill(from_driver)
ray.kill(from_task)
ray.shutdown()
"""


def test_job_config_sets_the_jobs_env_namespace_metadata_and_actor_lifetime(own_temp_dir):
    result = run_script(JOB_CONFIG_DRIVER, args=[own_temp_dir])
    assert result.returncode == 0, result.stderr
    assert "RESULT 1 job_ns {'team': 'core'} [True, True]" in result.stdout, result.stdout


# ---- concurrency groups ---------------------------------------------------------------------

@ray.remote(concurrency_groups={"io": 2, "compute": 1})
class Grouped:
    def __init__(self):
        import threading
        self.both = threading.Barrier(2, timeout=GET_TIMEOUT)

    @ray.method(concurrency_group="io")
    def io(self):
        self.both.wait()          # returns only while another io call runs beside it
        return "io"

    @ray.method(concurrency_group="compute")
    def compute(self):
        return "compute"

    def default(self):
        return "default"


@ray.remote(concurrency_groups={"io": 2})
class AsyncGrouped:
    def __init__(self):
        self.waiting = 0

    @ray.method(concurrency_group="io")
    async def io(self):
        import asyncio
        self.waiting += 1
        while self.waiting < 2:   # returns only while another io call runs beside it
            await asyncio.sleep(0.01)
        return "io"

    async def other(self):
        return "other"


@pytest.mark.parametrize("actor_class", [Grouped, AsyncGrouped])
def test_concurrency_groups_run_their_calls_apart(cluster, actor_class):
    actor = actor_class.remote()
    first = actor.io.remote()                # blocks until a second io call runs
    other = actor.compute.remote() if actor_class is Grouped else actor.other.remote()
    assert ray.get(other, timeout=GET_TIMEOUT) in ("compute", "other")
    second = actor.io.remote()
    assert ray.get([first, second], timeout=GET_TIMEOUT) == ["io", "io"]
    ray.kill(actor)


def test_concurrency_group_names_are_checked(cluster):
    @ray.remote
    class Undeclared:
        @ray.method(concurrency_group="io")
        def io(self):
            return 1

    with pytest.raises(ValueError, match="concurrency group 'io'"):
        Undeclared.remote()
    actor = Grouped.remote()
    assert ray.get(actor.default.options(concurrency_group="compute").remote(),
                   timeout=GET_TIMEOUT) == "default"
    with pytest.raises(ValueError, match="no concurrency group 'nope'"):
        ray.get(actor.default.options(concurrency_group="nope").remote(), timeout=GET_TIMEOUT)
    ray.kill(actor)


# ---- node labels ------------------------------------------------------------------------------

def test_the_head_node_has_rays_head_resource(cluster):
    assert ray.cluster_resources()["node:__internal_head__"] == 1
    pinned = add_one.options(resources={"node:__internal_head__": 0.01})
    assert ray.get(pinned.remote(1), timeout=GET_TIMEOUT) == 2


def test_every_node_has_rays_node_id_label(cluster):
    ctx = ray.get_runtime_context()
    assert ctx.get_node_labels() == {"ray.io/node-id": ctx.get_node_id()}
    assert ray.nodes()[0]["Labels"] == {"ray.io/node-id": ctx.get_node_id()}


LABELS_DRIVER = """
import sys, ray_core as ray
ray.init(num_cpus=1, labels={"zone": "a"}, dashboard_port=8265, _temp_dir=sys.argv[1])

@ray.remote
def labels():
    return ray.get_runtime_context().get_node_labels()

print("RESULT", sorted(ray.get(labels.remote(), timeout=60).items())[1:])
ray.shutdown()
"""


def test_init_labels_label_the_node_it_starts(own_temp_dir):
    result = run_script(LABELS_DRIVER, args=[own_temp_dir])
    assert result.returncode == 0, result.stderr
    assert "RESULT [('zone', 'a')]" in result.stdout, result.stdout
