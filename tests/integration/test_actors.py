"""Actors on a real head node: state, order, handles, names, failures, concurrency."""
import asyncio
import os
import threading
import time

import pytest

import ray_core as ray
from ray_core.exceptions import ActorDiedError, RayActorError, RayTaskError
from ray_core.util import ActorPool
from tests.integration.conftest import run_script

pytestmark = pytest.mark.timeout(60)


@ray.remote
class Counter:
    def __init__(self, start=0):
        self.value = start
        self.seen = []

    def add(self, k=1):
        self.value += k
        return self.value

    def record(self, item):
        self.seen.append(item)
        return len(self.seen)

    def get_seen(self):
        return self.seen

    def pid(self):
        return os.getpid()

    def die(self):
        os._exit(1)

    @ray.method(num_returns=2)
    def pair(self):
        return self.value, -self.value


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_state_across_1000_ordered_calls(cluster):
    counter = Counter.remote(10)
    refs = [counter.record.remote(i) for i in range(1000)]
    assert ray.get(refs) == list(range(1, 1001))
    assert ray.get(counter.get_seen.remote()) == list(range(1000))
    assert ray.get(counter.add.remote(5)) == 15
    a, b = counter.pair.remote()
    assert ray.get([a, b]) == [15, -15]


def test_calls_wait_for_ref_arguments_in_order(cluster):
    @ray.remote
    def slow(x):
        time.sleep(0.3)
        return x

    counter = Counter.remote()
    first = counter.record.remote(slow.remote("first"))
    second = counter.record.remote("second")
    assert ray.get([first, second]) == [1, 2]
    assert ray.get(counter.get_seen.remote()) == ["first", "second"]


def test_handles_passed_to_tasks_count_every_call_once(cluster):
    counter = Counter.remote()

    @ray.remote
    def caller(handle, n, tag):
        return ray.get([handle.record.remote((tag, i)) for i in range(n)])[-1]

    ray.get([caller.remote(counter, 50, t) for t in range(4)])
    seen = ray.get(counter.get_seen.remote())
    assert len(seen) == 200 and len(set(seen)) == 200
    for tag in range(4):  # each caller's calls ran in its own order
        mine = [i for t, i in seen if t == tag]
        assert mine == list(range(50))


def test_handle_passed_to_another_actor(cluster):
    @ray.remote
    class Forwarder:
        def forward(self, handle, x):
            return ray.get(handle.add.remote(x))

    counter = Counter.remote()
    forwarder = Forwarder.remote()
    assert ray.get(forwarder.forward.remote(counter, 3)) == 3
    assert ray.get(counter.add.remote(1)) == 4


def test_named_actor_from_second_driver_and_detached_outlives_driver(cluster, short_temp_dir):
    named = Counter.options(name="shared_counter", namespace="team").remote(100)
    ray.get(named.add.remote(1))
    result = run_script(f"""
        import ray_core as ray
        ray.init(address="auto", _temp_dir={short_temp_dir!r})
        handle = ray.get_actor("shared_counter", namespace="team")
        print("VALUE", ray.get(handle.add.remote(1)))

        @ray.remote
        class Keeper:
            def __init__(self):
                self.items = []
            def put(self, x):
                self.items.append(x)
                return len(self.items)
            def items_(self):
                return self.items

        keeper = Keeper.options(name="keeper", namespace="team", lifetime="detached").remote()
        print("PUT", ray.get(keeper.put.remote("from the first driver")))
        owned = Keeper.options(name="owned", namespace="team").remote()
        print("OWNED", ray.get(owned.put.remote(1)))
        ray.shutdown()
    """)
    assert result.returncode == 0, result.stderr
    assert "VALUE 102" in result.stdout and "PUT 1" in result.stdout
    keeper = ray.get_actor("keeper", namespace="team")
    assert ray.get(keeper.items_.remote()) == ["from the first driver"]

    def owned_gone():   # a non-detached actor dies with the driver that owns it
        try:
            ray.get_actor("owned", namespace="team")
            return False
        except ValueError:
            return True
    wait_for(owned_gone, what="the second driver's actor to die with it")
    assert ray.get(named.add.remote(1)) == 103
    with pytest.raises(ValueError, match="missing.*namespace 'team'|'missing'.*'team'"):
        ray.get_actor("missing", namespace="team")
    # Ray's ActorAlreadyExistsError, a ValueError too.
    with pytest.raises(ray.exceptions.ActorAlreadyExistsError, match="already taken"):
        Counter.options(name="shared_counter", namespace="team").remote()
    same = Counter.options(name="shared_counter", namespace="team", get_if_exists=True).remote()
    assert ray.get(same.add.remote(1)) == 104
    ray.kill(keeper)


def test_kill_then_actor_died_error(cluster):
    counter = Counter.remote()
    assert ray.get(counter.add.remote()) == 1
    ray.kill(counter)
    with pytest.raises(ActorDiedError, match="killed by ray_core.kill"):
        ray.get(counter.add.remote(), timeout=20)
    with pytest.raises(RayActorError):
        ray.get(counter.add.remote(), timeout=20)


def test_constructor_exception_is_surfaced_with_traceback(cluster):
    @ray.remote
    class Broken:
        def __init__(self):
            raise ZeroDivisionError("bad config in the constructor")

        def ping(self):
            return "pong"

    broken = Broken.remote()
    with pytest.raises(ActorDiedError) as info:
        ray.get(broken.ping.remote(), timeout=20)
    text = str(info.value)
    assert "constructor" in text and "ZeroDivisionError" in text
    assert "bad config in the constructor" in text and "Traceback" in text


def test_exit_restarts_once_then_dies_for_good(cluster):
    counter = Counter.options(max_restarts=1).remote()
    assert ray.get(counter.add.remote(5)) == 5
    first_pid = ray.get(counter.pid.remote())
    counter.die.remote()
    # State is reset by the restart; calls made while it restarts wait for it.
    wait_for(lambda: _call_ok(counter), what="the restarted actor")
    assert ray.get(counter.add.remote(0)) == 1     # the restart reset the state
    assert ray.get(counter.pid.remote()) != first_pid
    counter.die.remote()
    with pytest.raises(ActorDiedError, match="no restarts left|died unexpectedly"):
        for _ in range(200):
            ray.get(counter.add.remote(), timeout=20)
            time.sleep(0.05)


def test_calls_in_flight_during_a_restart_are_resent_in_order(cluster, tmp_path):
    @ray.remote(max_restarts=1, max_task_retries=-1)
    class Journal:
        def __init__(self):
            self.seen = []

        def record(self, i):
            self.seen.append(i)
            return i

        def crash_once(self, marker):
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            return "survived"

        def seen_(self):
            return self.seen

    journal = Journal.remote()
    marker = str(tmp_path / "crashed")
    refs = [journal.record.remote(i) for i in range(5)]
    crash = journal.crash_once.remote(marker)
    refs += [journal.record.remote(i) for i in range(5, 10)]
    assert ray.get(refs, timeout=30) == list(range(10))
    assert ray.get(crash, timeout=30) == "survived"
    seen = ray.get(journal.seen_.remote())
    # The new incarnation ran the re-sent calls in their original order.
    assert seen == sorted(seen) and seen[-5:] == list(range(5, 10))


def _call_ok(handle) -> bool:
    try:
        ray.get(handle.add.remote(1), timeout=20)
        return True
    except RayActorError:
        return False
    except ray.exceptions.ActorUnavailableError:
        return False


def test_method_call_exception_keeps_actor_alive(cluster):
    @ray.remote
    class Flaky:
        def fail(self):
            raise KeyError("no such thing")

        def ok(self):
            return "ok"

    flaky = Flaky.remote()
    with pytest.raises(RayTaskError, match="no such thing"):
        ray.get(flaky.fail.remote())
    with pytest.raises(KeyError):
        ray.get(flaky.fail.remote())
    assert ray.get(flaky.ok.remote()) == "ok"


def test_threaded_actor_runs_calls_concurrently(cluster):
    @ray.remote(max_concurrency=3)
    class Threaded:
        def __init__(self):
            self.barrier = threading.Barrier(3, timeout=20)

        def meet(self):
            # Returns only once three calls wait here at the same time.
            return self.barrier.wait()

    threaded = Threaded.remote()
    assert sorted(ray.get([threaded.meet.remote() for _ in range(3)], timeout=30)) == [0, 1, 2]


def test_async_actor_interleaves_calls(cluster):
    @ray.remote
    class AsyncActor:
        def __init__(self):
            self.event = asyncio.Event()
            self.order = []

        async def wait_for_signal(self):
            self.order.append("waiting")
            await self.event.wait()
            self.order.append("released")
            return "done"

        async def signal(self):
            self.order.append("signal")
            self.event.set()
            return "set"

        def order_(self):
            return self.order

    actor = AsyncActor.remote()
    waiting = actor.wait_for_signal.remote()
    assert ray.get(actor.signal.remote(), timeout=20) == "set"
    assert ray.get(waiting, timeout=20) == "done"
    assert ray.get(actor.order_.remote()) == ["waiting", "signal", "released"]


def test_actor_needing_more_cpus_than_exist_stays_pending(cluster):
    big = Counter.options(num_cpus=64).remote()
    ref = big.add.remote()
    ready, not_ready = ray.wait([ref], timeout=1.5)
    assert not ready and not_ready == [ref]
    rows = ray._private.worker.global_worker().gcs.sync.get_actor_info(big._actor_id)
    assert rows.state == rows.PENDING_CREATION
    ray.kill(big)
    with pytest.raises(ActorDiedError):
        ray.get(ref, timeout=20)


def test_actor_pool_map_keeps_order(cluster):
    @ray.remote
    class Doubler:
        def double(self, x):
            time.sleep(0.01 * (x % 3))
            return 2 * x

    pool = ActorPool([Doubler.remote() for _ in range(3)])
    assert list(pool.map(lambda a, v: a.double.remote(v), range(12))) == \
        [2 * v for v in range(12)]
    assert sorted(pool.map_unordered(lambda a, v: a.double.remote(v), range(6))) == \
        [0, 2, 4, 6, 8, 10]
    pool.submit(lambda a, v: a.double.remote(v), 21)
    assert pool.has_next() and pool.get_next() == 42 and not pool.has_next()


def test_exit_actor_inside_method(cluster):
    @ray.remote
    class Quitter:
        def quit(self):
            from ray_core.actor import exit_actor
            exit_actor()

        def ping(self):
            return "pong"

    quitter = Quitter.remote()
    pings = [quitter.ping.remote() for _ in range(20)]
    quit_ref = quitter.quit.remote()
    assert ray.get(pings, timeout=20) == ["pong"] * 20     # the calls before it still answer
    with pytest.raises(ActorDiedError, match="exit_actor"):
        ray.get(quit_ref, timeout=20)
    with pytest.raises(ActorDiedError, match="exit_actor"):
        ray.get(quitter.ping.remote(), timeout=20)


def test_actor_log_lines_carry_actor_and_task_ids(cluster):
    counter = Counter.remote()
    ref = counter.add.remote()
    ray.get(ref)
    from ray_core._private.task_log import task_log
    task_log.flush()    # the caller's lines; the worker's flush on their own timer
    task_hex = ref.task_id().hex()
    actor_hex = counter._actor_id.hex()
    logs = os.path.join(cluster["session_dir"], "logs")

    def found():
        hits = {"caller": False, "actor": False}
        for name in os.listdir(logs):
            if not name.endswith(".log"):
                continue
            with open(os.path.join(logs, name), errors="replace") as f:
                for line in f:
                    if task_hex in line and actor_hex in line:
                        hits["actor" if "worker" in name else "caller"] = True
        return all(hits.values())

    wait_for(found, timeout=10, what="log lines with the actor and task ids")


def test_method_options_and_kill_that_allows_a_restart(cluster):
    counter = Counter.options(max_restarts=1).remote(7)
    whole = counter.pair.options(num_returns=1).remote()
    assert ray.get(whole) == (7, -7)
    first_pid = ray.get(counter.pid.remote())
    ray.kill(counter, no_restart=False)
    wait_for(lambda: _call_ok(counter), what="the actor restarted after kill")
    assert ray.get(counter.pid.remote()) != first_pid
    assert ray.get(counter.add.remote(0)) == 8      # constructor ran again: 7, +1 above
    ray.kill(counter)
    with pytest.raises(ActorDiedError, match="killed by ray_core.kill"):
        ray.get(counter.add.remote(), timeout=20)


def test_tasks_resolve_names_in_their_drivers_namespace(cluster, short_temp_dir):
    result = run_script(f"""
        import ray_core as ray
        ray.init(address="auto", namespace="blue", _temp_dir={short_temp_dir!r})

        @ray.remote
        class Box:
            def get(self):
                return "in blue"

        @ray.remote
        def lookup():
            return ray.get(ray.get_actor("box").get.remote())

        box = Box.options(name="box").remote()
        print("FOUND", ray.get(lookup.remote()))
        try:
            ray.get_actor("box", namespace="red")
        except ValueError as e:
            print("MISSING", "'red'" in str(e))
        ray.shutdown()
    """)
    assert result.returncode == 0, result.stderr
    assert "FOUND in blue" in result.stdout and "MISSING True" in result.stdout


def test_actor_ends_when_its_handles_go_out_of_scope(cluster):
    gcs = ray._private.worker.global_worker().gcs
    counter = Counter.remote()
    actor_id = counter._actor_id
    ref = counter.add.remote(2)
    del counter                 # the call made before still runs
    assert ray.get(ref, timeout=20) == 2
    wait_for(lambda: gcs.sync.get_actor_info(actor_id).state ==
             gcs.sync.get_actor_info(actor_id).DEAD, what="the unreferenced actor to end")
    assert "handles went out of scope" in \
        gcs.sync.get_actor_info(actor_id).death_cause.error_message

    @ray.remote
    def use(handle):
        return ray.get(handle.add.remote(1))

    shared = Counter.remote()
    shared_id = shared._actor_id
    assert ray.get(use.remote(shared)) == 1     # a copy went to a task: it may live on there
    del shared
    time.sleep(0.5)
    row = gcs.sync.get_actor_info(shared_id)
    assert row.state == row.ALIVE
    ray.kill(ray.actor.ActorHandle(shared_id, "Counter", {}))


def test_a_handle_collected_inside_the_submitters_lock_still_ends_its_actor(cluster):
    """The garbage collector may drop an owning handle anywhere -- here on a thread that
    holds the actor submitter's lock, as a collection inside the io loop would: the
    actor must still end, and nothing may wait for that lock (once a deadlock)."""
    gcs = ray._private.worker.global_worker().gcs
    submitter = ray._private.worker.global_worker().core_worker.actor_submitter
    holder = [Counter.remote()]
    actor_id = holder[0]._actor_id
    assert ray.get(holder[0].add.remote(1)) == 1
    dropped = threading.Event()

    def drop_under_lock():
        with submitter._lock:
            holder.clear()
        dropped.set()

    thread = threading.Thread(target=drop_under_lock, daemon=True)
    thread.start()
    thread.join(10)
    assert dropped.is_set(), "dropping the handle under the submitter's lock deadlocked"
    wait_for(lambda: gcs.sync.get_actor_info(actor_id).state ==
             gcs.sync.get_actor_info(actor_id).DEAD, what="the unreferenced actor to end")


def test_runtime_context_inside_an_actor(cluster):
    @ray.remote(max_restarts=1)
    class Introspect:
        def ids(self):
            ctx = ray.get_runtime_context()
            return ctx.get_actor_id(), ctx.get_actor_name(), ctx.was_current_actor_reconstructed

        def me(self):
            return ray.get_runtime_context().current_actor

        def die(self):
            os._exit(1)

    actor = Introspect.options(name="introspect").remote()
    assert ray.get(actor.ids.remote()) == (actor._actor_id.hex(), "introspect", False)
    assert ray.get(actor.me.remote()) == actor
    assert ray.get_runtime_context().get_actor_id() is None
    actor.die.remote()
    wait_for(lambda: _ids_ok(actor), what="the restarted actor")
    assert ray.get(actor.ids.remote())[2] is True
    ray.kill(actor)


def _ids_ok(handle) -> bool:
    try:
        ray.get(handle.ids.remote(), timeout=20)
        return True
    except (RayActorError, ray.exceptions.ActorUnavailableError):
        return False


def test_large_arguments_and_returns_go_through_plasma(cluster):
    import numpy as np

    @ray.remote
    class Store:
        def __init__(self, initial):
            self.total = int(initial.sum())

        def add(self, array):
            self.total += int(array.sum())
            return np.full(300_000, self.total, dtype=np.int64)

    initial = np.ones(200_000, dtype=np.int64)           # > the inline limit: plasma
    store = Store.remote(ray.put(initial))
    out = ray.get(store.add.remote(np.ones(200_000, dtype=np.int64)))
    assert out.shape == (300_000,) and out[0] == 400_000
    ref = ray.put(np.ones(200_000, dtype=np.int64))
    assert ray.get(store.add.remote(ref))[0] == 600_000


def test_actors_created_by_an_actor_end_with_it(cluster):
    @ray.remote
    class Parent:
        def __init__(self):
            self.child = Counter.remote()

        def child_handle(self):
            return self.child

    parent = Parent.remote()
    child = ray.get(parent.child_handle.remote())
    assert ray.get(child.add.remote(3)) == 3
    ray.kill(parent)
    with pytest.raises(ActorDiedError, match="its owner"):
        for _ in range(200):
            ray.get(child.add.remote(), timeout=20)
            time.sleep(0.05)


def test_actor_keeps_its_env_and_resources_for_every_call(cluster):
    @ray.remote(num_cpus=1, runtime_env={"env_vars": {"ACTOR_FLAVOUR": "mint"}})
    class Env:
        def flavour(self):
            return os.environ.get("ACTOR_FLAVOUR")

        def resources(self):
            return ray.get_runtime_context().get_assigned_resources()

    env = Env.remote()
    assert ray.get([env.flavour.remote() for _ in range(3)]) == ["mint"] * 3
    assert ray.get(env.resources.remote()) == {"CPU": 1.0}
    ray.kill(env)
