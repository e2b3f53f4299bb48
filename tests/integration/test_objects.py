"""Objects end to end: put/get, large numpy through plasma, wait, timeouts, futures."""
import asyncio
import time

import numpy as np
import pytest

import ray_core as ray
from tests.integration.conftest import STORE_BYTES
from ray_core import exceptions

# A hang fails this file's test fast instead of eating the suite's budget.
pytestmark = pytest.mark.timeout(120)


@ray.remote
def echo(x):
    return x


@ray.remote
def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def test_put_get_small_and_values_are_copies(cluster):
    data = [1, 2, 3]
    ref = ray.put(data)
    data.append(4)
    assert ray.get(ref) == [1, 2, 3]
    assert ray.get(ray.put(None)) is None
    refs = [ray.put(i) for i in range(100)]
    assert ray.get(refs) == list(range(100))
    with pytest.raises(TypeError, match="ObjectRef"):
        ray.put(ref)


def test_200mb_numpy_argument_and_return(cluster):
    array = np.arange(200 * 1024 ** 2 // 8, dtype=np.int64)

    @ray.remote
    def touch(a):
        assert not a.flags.writeable   # a zero-copy view of shared memory
        return a[::-1].copy()

    result = ray.get(touch.remote(array))
    assert result.shape == array.shape and result[0] == array[-1] and result[-1] == 0
    del result


def test_large_put_is_zero_copy_and_freed(cluster):
    array = np.ones(30 * 1024 ** 2 // 8)
    ref = ray.put(array)
    a = ray.get(ref)
    b = ray.get(ref)
    assert not a.flags.writeable
    assert a.ctypes.data == b.ctypes.data   # both views of the same shared memory
    np.testing.assert_array_equal(a, array)
    core = ray._private.worker.global_worker().core_worker
    used_before = core.plasma.stats()["used"]
    del a, b, ref
    deadline = time.time() + 10
    while core.plasma.stats()["used"] >= used_before and time.time() < deadline:
        time.sleep(0.05)
    assert core.plasma.stats()["used"] < used_before


def test_put_and_drop_does_not_leak(cluster):
    core = ray._private.worker.global_worker().core_worker
    before = len(core.memory_store)
    for i in range(2000):
        ray.get(ray.put(i))
    for i in range(200):
        ray.get(echo.remote(i))
    core.reference_counter.flush()
    assert len(core.memory_store) <= before + 1


def test_get_timeout(cluster):
    ref = sleep_then.remote(3, "late")
    with pytest.raises(exceptions.GetTimeoutError):
        ray.get(ref, timeout=0.2)
    with pytest.raises(TimeoutError):
        ray.get([ref], timeout=0)
    assert ray.get(ref) == "late"


def test_wait_semantics(cluster):
    fast = [echo.remote(i) for i in range(3)]
    slow = sleep_then.remote(5, "slow")
    ray.get(fast)
    refs = [slow] + fast
    ready, not_ready = ray.wait(refs, num_returns=2)
    assert ready == fast[:2] and not_ready == [slow, fast[2]]
    ready, not_ready = ray.wait(refs, num_returns=4, timeout=0.2)
    assert ready == fast and not_ready == [slow]
    ready, not_ready = ray.wait([slow], timeout=0)
    assert ready == [] and not_ready == [slow]
    with pytest.raises(ValueError):
        ray.wait(fast, num_returns=4)
    with pytest.raises(ValueError):
        ray.wait([fast[0], fast[0]])
    with pytest.raises(TypeError):
        ray.wait(fast[0])
    assert ray.wait([]) == ([], [])        # as in Ray
    ray.cancel(slow, force=True)


def test_object_ref_api(cluster):
    ref = echo.remote(5)
    assert len(ref.hex()) == 56 and ref.task_id().hex() == ref.hex()[:48]
    assert hash(ref) == hash(ray.ObjectRef(ref.object_id()))
    assert {ref: 1}[ref] == 1
    assert ref.future().result(timeout=30) == 5

    async def main():
        return await echo.remote(6), await asyncio.gather(echo.remote(7), echo.remote(8))

    assert asyncio.run(main()) == (6, [7, 8])


def test_errors_through_future(cluster):
    @ray.remote
    def bad():
        raise ValueError("no")

    with pytest.raises(ValueError):
        bad.remote().future().result(timeout=30)


def test_object_store_full_is_a_clear_error(cluster):
    # Pinned objects spill to disk (tests/integration/test_object_lifetime.py), so only an
    # object larger than the whole store cannot be put.
    with pytest.raises(exceptions.ObjectStoreFullError) as info:
        ray.put(np.ones(STORE_BYTES // 8 + 1024))
    assert isinstance(info.value, MemoryError)
    assert "object_store_memory" in str(info.value)


def test_large_values_are_copied_with_the_cpus_a_task_holds(cluster):
    """A task copies a large value into plasma with as many threads as CPUs it was
    granted (more would take cores the raylet gave to others); a driver with
    copy_threads. The copied value is whole either way."""
    from ray_common.config import config

    def threads():
        return ray._private.worker.global_worker().core_worker._copy_threads()

    @ray.remote
    def put_large(n):
        array = np.arange(n, dtype=np.int64)
        return threads(), ray.get(ray.put(array)).sum() == array.sum()

    n = 40 * 1024 ** 2 // 8          # above parallel_copy_min_bytes
    assert threads() == config.copy_threads
    assert ray.get(put_large.options(num_cpus=1).remote(n)) == (1, True)
    assert ray.get(put_large.options(num_cpus=0).remote(n)) == (1, True)
    assert ray.get(put_large.options(num_cpus=2).remote(n)) == (min(2, config.copy_threads),
                                                                True)
