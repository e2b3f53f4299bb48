"""Ray core API behaviours real programs rely on (issue 15), each as Ray 2.60 has it."""
import pytest

import ray_core as ray
from tests.integration.conftest import CLUSTER_CPUS, STORE_BYTES, shut_down_cleanly  # noqa: F401

GET_TIMEOUT = 60


@pytest.fixture(scope="module")
def cluster(short_temp_dir):
    with shut_down_cleanly():
        yield ray.init(num_cpus=CLUSTER_CPUS, object_store_memory=STORE_BYTES,
                       _temp_dir=short_temp_dir)


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
