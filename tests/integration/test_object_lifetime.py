"""Object lifetime on one node: put/drop leaves nothing, borrowers keep objects alive,
spilling carries 3x the store capacity, memory_summary says who holds what."""
import gc
import os
import time

import numpy as np
import pytest

import ray_core as ray
from ray_core import internal
from tests.integration.conftest import shut_down_cleanly, sigkilled_driver

STORE_BYTES = 120 * 1024 ** 2


@pytest.fixture(scope="module")
def small_store(short_temp_dir):
    """One CPU (so every task lands on the same worker) and a small store that spills."""
    spill_dir = os.path.join(short_temp_dir, "spill_here")
    with shut_down_cleanly():
        yield ray.init(num_cpus=1, object_store_memory=STORE_BYTES, _temp_dir=short_temp_dir,
                       _system_config={"object_spilling_directory": spill_dir,
                                       "min_spilling_size": 16 * 1024 ** 2}), spill_dir
    assert _files(spill_dir) == [], "spill files left after shutdown"


def _core():
    return ray._private.worker.global_worker().core_worker


def _files(directory):
    return [os.path.join(d, f) for d, _, names in os.walk(directory) for f in names]


def _settle(predicate, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    core = _core()
    while True:
        gc.collect()
        core.reference_counter.flush()
        core.plasma_objects.drain_releases()
        if predicate():
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _usage():
    core = _core()
    return len(core.memory_store), core.plasma.stats()["used"]


def test_put_and_drop_cycles_return_to_baseline(small_store):
    _settle(lambda: True, "")
    store_before, plasma_before = _usage()
    for i in range(100_000):
        ref = ray.put(i)
        del ref
    big = np.ones(10 * 1024 ** 2 // 8)
    for i in range(200):
        ref = ray.put(big)
        del ref
    _settle(lambda: _usage() == (store_before, plasma_before),
            f"memory store and plasma back at ({store_before}, {plasma_before}), now {_usage()}")
    assert _core().reference_counter.num_tracked() <= 1


@ray.remote
def keep(holder):
    import builtins
    builtins._lifetime_kept = holder          # stands in for an actor's state
    return len(holder)


@ray.remote
def read_kept():
    import builtins
    return int(ray.get(builtins._lifetime_kept[0])[0])


@ray.remote
def drop_kept():
    import builtins
    del builtins._lifetime_kept
    return True


@ray.remote
def pass_on(holder):
    # A borrower of a borrower: hand the nested ref on to another task and return
    # without waiting; this worker borrows it (its pending task holds it) past its task.
    keep.remote(holder)
    return 1


def _read_kept_when_there(timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ray.get(read_kept.remote())
        except ray.exceptions.RayTaskError as e:
            if not isinstance(e.cause, AttributeError) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _owned_alive(object_id):
    core = _core()
    return core.reference_counter.is_owned(object_id) and core.memory_store.contains(object_id)


@pytest.mark.parametrize("via", ["direct", "borrower_of_borrower"])
def test_borrowed_ref_outlives_the_owners_ref_until_the_borrower_drops_it(small_store, via):
    ref = ray.put(np.full(200_000, 5))               # plasma: the raylet pins it
    object_id = ref.object_id()
    task = keep if via == "direct" else pass_on
    assert ray.get(task.remote([ref])) == 1
    del ref
    _settle(lambda: True, "")
    assert _owned_alive(object_id), "the owner freed an object a worker still holds"
    assert _read_kept_when_there() == 5
    _settle(lambda: True, "")
    assert _owned_alive(object_id)
    assert ray.get(drop_kept.remote())
    _settle(lambda: not _owned_alive(object_id), f"object {object_id.hex()} to be freed")


@ray.remote(max_retries=0)
def exit_if_holding():
    import builtins
    if hasattr(builtins, "_lifetime_kept"):
        os._exit(1)
    return False


def test_a_borrower_that_dies_releases_what_it_held(small_store):
    ref = ray.put(np.full(200_000, 6))
    object_id = ref.object_id()
    assert ray.get(keep.remote([ref])) == 1
    del ref
    _settle(lambda: True, "")
    assert _owned_alive(object_id)
    deadline = time.monotonic() + 30
    while True:        # run until it lands on the worker that holds the ref
        try:
            ray.get(exit_if_holding.remote())
        except ray.exceptions.WorkerCrashedError:
            break
        assert time.monotonic() < deadline, "never reached the worker holding the ref"
    _settle(lambda: not _owned_alive(object_id), "the dead borrower's object to be freed")


@ray.remote
def make_inner():
    inner = ray.put(np.full(300_000, 9))          # owned by this worker
    return [inner]


def test_ref_nested_in_a_return_is_borrowed_by_the_caller(small_store):
    outer = make_inner.remote()
    [inner] = ray.get(outer)
    del outer
    gc.collect()
    time.sleep(0.3)                                # the executor has long dropped its own ref
    assert int(ray.get(inner)[0]) == 9
    del inner


def test_ref_nested_in_a_put_lives_as_long_as_its_container(small_store):
    inner = ray.put(np.full(300_000, 3))
    inner_id = inner.object_id()
    outer = ray.put({"x": inner})
    del inner
    _settle(lambda: True, "")
    assert _owned_alive(inner_id)
    assert int(ray.get(ray.get(outer)["x"])[0]) == 3
    del outer
    _settle(lambda: not _owned_alive(inner_id), "the nested object to be freed")


def test_puts_of_three_times_the_store_spill_and_read_back(small_store):
    _, spill_dir = small_store
    n = 3 * STORE_BYTES // (8 * 1024 ** 2)
    refs = [ray.put(np.full(1024 ** 2, i, dtype=np.int64)) for i in range(n)]   # 8 MB each
    assert _files(spill_dir), "nothing was spilled"
    for i, ref in enumerate(refs):
        array = ray.get(ref)
        assert array[0] == i and array[-1] == i
        del array

    @ray.remote
    def first(a):
        return int(a[0])

    assert ray.get([first.remote(r) for r in refs[:: max(1, n // 8)]]) == \
        list(range(0, n, max(1, n // 8)))
    del refs
    _settle(lambda: not _files(spill_dir), f"the spill dir to empty: {_files(spill_dir)}")


def test_put_larger_than_the_store_is_a_clear_error(small_store):
    with pytest.raises(ray.exceptions.ObjectStoreFullError) as info:
        ray.put(np.ones(STORE_BYTES // 8 + 1024))
    message = str(info.value)
    print(message)
    size = int(message.split("(")[1].split(" bytes")[0])
    assert size > STORE_BYTES and "capacity" in message and "object_store_memory" in message


def test_memory_summary_names_owner_size_place_and_reason(small_store):
    small = ray.put("x" * 100)
    big = ray.put(np.zeros(500_000))
    assert ray.get(keep.remote([small])) == 1
    summary = internal.memory_summary(stats_only=False)
    assert small.hex() in summary and big.hex() in summary
    line = next(l for l in summary.splitlines() if big.hex() in l)
    assert "LOCAL_REFERENCE" in line and "plasma" in line and "4000" in line
    assert "Plasma" in summary or "plasma" in summary
    rows = internal.memory_objects()
    assert any(r["object_id"] == big.hex() and r["size"] >= 4_000_000 for r in rows)
    # The worker that keeps `small` reports it as borrowed, owned by the driver.
    me = _core().worker_id.hex()
    assert any(r["object_id"] == small.hex() and r["mode"] == "worker" and not r["owned"]
               and r["owner_worker_id"] == me for r in rows)
    assert "======== worker" in summary and "BORROWED_BY" in summary
    ray.get(drop_kept.remote())


@ray.remote(num_cpus=0)
class Keeper:
    def hold(self, refs):
        self.refs = refs
        return True

    def total(self):
        return int(ray.get(self.refs[0]).sum())


@ray.remote(max_calls=1)
def put_owned_by(owner):
    """Puts a value owned by `owner`; the worker exits after (max_calls=1)."""
    return [ray.put(np.ones(1024 ** 2, dtype=np.uint8), _owner=owner)]


def test_put_with_an_owner_outlives_the_process_that_put_it(small_store):
    keeper = Keeper.remote()
    [ref] = ray.get(put_owned_by.remote(keeper))
    assert ray.get(keeper.hold.remote([ref]))
    del ref
    _settle(lambda: True, "")
    assert ray.get(keeper.total.remote()) == 1024 ** 2     # its maker is gone, not it
    _, plasma_before = _usage()
    ray.kill(keeper)
    # The owner's death frees the raylet's pin of the object it owned.
    _settle(lambda: _usage()[1] <= plasma_before - 1024 ** 2,
            f"the dead owner's object freed (plasma at {plasma_before} before)")


def test_put_owner_must_be_an_actor(small_store):
    with pytest.raises(TypeError, match="actor handle"):
        ray.put(1, _owner="nobody")


def test_a_sigkilled_drivers_pinned_objects_are_freed(small_store):
    """Task returns in plasma are pinned by the raylet for their owner, the driver; when
    that driver is SIGKILLed, nobody will ever free them but the raylet."""
    _settle(lambda: True, "")
    _, plasma_before = _usage()
    script = f"""
        import time, numpy as np, ray_core as ray
        ray.init(address="auto", _temp_dir={small_store[0]["session_dir"].rsplit("/", 1)[0]!r})

        @ray.remote
        def big(i):
            return np.full(4 * 1024 ** 2, i, dtype=np.uint8)

        refs = [big.remote(i) for i in range(5)]
        ray.wait(refs, num_returns=5)
        print("HOLDING", flush=True)
        time.sleep(600)
    """
    with sigkilled_driver(script, "HOLDING"):
        assert _usage()[1] >= plasma_before + 5 * 4 * 1024 ** 2
    _settle(lambda: _usage()[1] <= plasma_before, "the killed driver's returns freed")
