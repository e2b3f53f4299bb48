"""ray_core.util.multiprocessing.Pool against the standard library's contract: a sample of
the cases CPython's test_multiprocessing runs on multiprocessing.Pool (apply, maps,
imaps, async results and callbacks, iterable errors, remote tracebacks, terminate,
worker lifetime), written for actors on a real cluster, plus what actors add: a dead
process fails its chunk instead of hanging, and progress bars. A pool over two nodes:
test_doors_two_nodes.py."""
import functools
import multiprocessing
import operator
import os
import pickle

import pytest

import ray_core as ray
from ray_core.exceptions import RayActorError
from ray_core.util.multiprocessing import Pool, TimeoutError

from tests.integration.conftest import run_script
from tests.integration.signal_actor import SignalActor

pytestmark = pytest.mark.timeout(180)
T = 60      # every get/next/join in this file waits at most this long


def sqr(x):
    return x * x


def mul(x, y):
    return x * y


class SayWhenError(ValueError):
    pass


def throwing_generator(total, when):
    """Yields 0..total-1, but raises SayWhenError when it reaches `when` (-1: at once)."""
    if when == -1:
        raise SayWhenError("somebody said when")
    for i in range(total):
        if i == when:
            raise SayWhenError("somebody said when")
        yield i


def raise_on(bad, x):
    if x == bad:
        raise KeyError(f"bad item {x}")
    return x


def wait_for_signal(signal, x):
    ray.get(signal.wait.remote(), timeout=T)
    return x


class CarriesData(Exception):
    def __init__(self, message, code):
        super().__init__(message, code)     # both in args: the error pickles
        self.code = code


def raise_carries_data():
    raise CarriesData("with a code", 7)


def unpicklable():
    import threading
    return threading.Lock()


def die():
    os._exit(1)


_greeting = None


def set_greeting(word):
    global _greeting
    _greeting = word


def greet(name):
    return f"{_greeting} {name}"


# The cluster has 2 CPUs: the shared pool takes one (two processes of half a CPU), and
# the tests that make pools of their own use the other.
HALF = {"num_cpus": 0.5}


@pytest.fixture(scope="module")
def pool(cluster):
    p = Pool(2, ray_remote_args=HALF)
    yield p
    p.terminate()
    p.join(T)


def test_apply(pool):
    assert pool.apply(sqr, (5,)) == 25
    assert pool.apply(sqr, (), {"x": 3}) == 9
    assert pool.apply(mul, (6,), {"y": 7}) == 42


def test_map(pool):
    assert pool.map(sqr, range(10)) == [x * x for x in range(10)]
    assert pool.map(sqr, range(100), chunksize=20) == [x * x for x in range(100)]
    assert pool.map(sqr, (x for x in range(7))) == [x * x for x in range(7)]


def test_starmap(pool):
    pairs = list(zip(range(10), range(10, 20)))
    assert pool.starmap(mul, pairs) == [a * b for a, b in pairs]
    assert pool.starmap(mul, pairs, chunksize=3) == [a * b for a, b in pairs]
    assert pool.starmap_async(mul, pairs).get(T) == [a * b for a, b in pairs]


def test_empty_iterables(pool):
    assert pool.map(sqr, []) == []
    assert pool.map_async(sqr, []).get(T) == []
    assert pool.starmap(mul, []) == []
    assert list(pool.imap(sqr, [])) == []
    assert list(pool.imap_unordered(sqr, [])) == []


def test_map_async_callbacks(pool):
    calls, errors = [], []
    result = pool.map_async(sqr, range(10), callback=calls.append,
                            error_callback=errors.append)
    assert result.get(T) == [x * x for x in range(10)]
    assert calls == [[x * x for x in range(10)]] and errors == []
    result = pool.map_async(operator.truediv, [(1, 0)], error_callback=errors.append)
    with pytest.raises(TypeError):       # truediv called with one tuple
        result.get(T)
    assert len(errors) == 1 and type(errors[0]) is TypeError and not result.successful()


def test_apply_async_error_callback_runs_before_get_returns(pool):
    errors = []
    result = pool.apply_async(raise_on, (1, 1), error_callback=errors.append)
    with pytest.raises(KeyError):
        result.get(T)
    assert len(errors) == 1 and type(errors[0]) is KeyError


def test_a_failing_callback_does_not_stop_the_pool(pool, capfd):
    def bad_callback(value):
        raise RuntimeError("callback broke")

    assert pool.apply_async(sqr, (3,), callback=bad_callback).get(T) == 9
    assert pool.map(sqr, range(3)) == [0, 1, 4]
    assert "callback broke" in capfd.readouterr().err


def test_async_result_states_and_timeout(pool):
    signal = SignalActor.remote()
    result = pool.apply_async(wait_for_signal, (signal, 9))
    assert not result.ready()
    with pytest.raises(ValueError, match="not ready"):
        result.successful()
    with pytest.raises(TimeoutError):
        result.get(timeout=0.05)
    result.wait(timeout=0.05)
    assert not result.ready()
    ray.get(signal.send.remote(), timeout=T)
    assert result.get(T) == 9 and result.ready() and result.successful()
    ray.kill(signal)


def test_imap(pool):
    it = pool.imap(sqr, range(10))
    assert list(it) == [x * x for x in range(10)]
    it = pool.imap(sqr, range(10))
    assert [it.next(T) for _ in range(10)] == [x * x for x in range(10)]
    with pytest.raises(StopIteration):
        it.next(T)
    assert list(pool.imap(sqr, range(1000), chunksize=100)) == [x * x for x in range(1000)]


def test_imap_next_timeout(pool):
    signal = SignalActor.remote()
    it = pool.imap(functools.partial(wait_for_signal, signal), [5])
    with pytest.raises(TimeoutError):
        it.next(timeout=0.05)
    ray.get(signal.send.remote(), timeout=T)
    assert it.next(T) == 5
    with pytest.raises(StopIteration):
        it.next(T)
    ray.kill(signal)


def test_imap_unordered(pool):
    assert sorted(pool.imap_unordered(sqr, range(100))) == [x * x for x in range(100)]
    assert sorted(pool.imap_unordered(sqr, range(100), chunksize=7)) == \
        [x * x for x in range(100)]


def test_imap_handles_an_iterable_that_raises(pool):
    it = pool.imap(sqr, throwing_generator(10, 3), 1)
    assert [it.next(T) for _ in range(3)] == [0, 1, 4]
    with pytest.raises(SayWhenError):
        it.next(T)
    with pytest.raises(StopIteration):
        it.next(T)
    # chunks of 2: the chunk the generator broke in (item 6) is lost, as in multiprocessing
    it = pool.imap(sqr, throwing_generator(20, 7), 2)
    assert [it.next(T) for _ in range(6)] == [0, 1, 4, 9, 16, 25]
    with pytest.raises(SayWhenError):
        it.next(T)
    with pytest.raises(SayWhenError):
        pool.imap(sqr, throwing_generator(1, -1), 1).next(T)


def test_imap_unordered_handles_an_iterable_that_raises(pool):
    it = pool.imap_unordered(sqr, throwing_generator(10, 3), 1)
    expected = [x * x for x in range(10)]
    with pytest.raises(SayWhenError):
        for _ in range(10):
            value = it.next(T)
            expected.remove(value)
    assert len(expected) >= 7       # at most 0, 1, 4 came before the error


def test_errors_are_the_functions_own_with_the_remote_traceback(pool):
    with pytest.raises(KeyError) as info:
        pool.starmap(raise_on, [(3, x) for x in range(10)])
    assert type(info.value) is KeyError and "bad item 3" in str(info.value)
    cause = info.value.__cause__
    assert type(cause) is multiprocessing.pool.RemoteTraceback
    assert 'raise KeyError(f"bad item {x}")' in cause.tb
    with pytest.raises(CarriesData) as info:
        pool.apply(raise_carries_data)
    assert type(info.value) is CarriesData and info.value.code == 7
    assert pool.map(sqr, range(3)) == [0, 1, 4]        # the pool still works


def test_unpicklable_result_is_a_clear_error(pool):
    with pytest.raises(TypeError, match="pickle"):
        pool.apply(unpicklable)
    assert pool.apply(sqr, (4,)) == 16


def test_bad_arguments_are_named(pool, cluster):
    with pytest.raises(ValueError, match="at least 1"):
        Pool(0)
    with pytest.raises(ValueError, match="at least 1"):
        Pool(-1)
    with pytest.raises(ValueError, match="maxtasksperchild"):
        Pool(1, maxtasksperchild=0)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        Pool(1, initializer=3)
    with pytest.raises(ValueError, match=r"needs 3 CPUs .* the cluster has 2"):
        Pool(3)
    with pytest.raises(TypeError, match="ray_remote_args"):
        Pool(1, ray_remote_args=[("num_cpus", 1)])
    with pytest.raises(TypeError, match="Pool.map: the function must be callable"):
        pool.map(5, range(3))
    with pytest.raises(ValueError, match="chunksize must be an int of 1 or more, got 0"):
        pool.imap(sqr, range(3), chunksize=0)
    with pytest.raises(ValueError, match="chunksize"):
        pool.map(sqr, range(3), chunksize=-2)
    with pytest.raises(NotImplementedError, match="cannot be passed between processes"):
        pickle.dumps(pool)
    with pytest.raises(ValueError, match="Pool is still running"):
        pool.join()


def test_initializer_runs_in_each_process(cluster):
    with Pool(2, initializer=set_greeting, initargs=("hello",), ray_remote_args=HALF) as p:
        assert p.map(greet, ["a", "b", "c"]) == ["hello a", "hello b", "hello c"]
    with pytest.raises(RayActorError, match="KeyError"):
        Pool(1, initializer=raise_on, initargs=(1, 1))


def test_worker_lifetime(cluster):
    with Pool(2, maxtasksperchild=2, ray_remote_args=HALF) as p:
        results = [p.apply_async(os.getpid) for _ in range(10)]
        pids = [r.get(T) for r in results]
    assert len(set(pids)) >= 5      # 10 chunks, each process replaced after 2


def test_close_then_join_finishes_the_work(cluster):
    p = Pool(2, ray_remote_args=HALF)
    result = p.map_async(sqr, range(50), chunksize=1)
    p.close()
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply(sqr, (1,))
    p.join(T)
    assert result.get(T) == [x * x for x in range(50)]


def test_terminate_fails_what_was_not_done(cluster):
    signal = SignalActor.remote()
    p = Pool(2, ray_remote_args=HALF)
    result = p.map_async(wait_for_signal, [signal] * 4, chunksize=1)
    it = p.imap(wait_for_signal, [signal] * 4)
    p.terminate()
    p.join(T)
    with pytest.raises(RuntimeError, match="terminated"):
        result.get(T)
    with pytest.raises(RuntimeError, match="terminated"):
        it.next(T)
    ray.kill(signal)


def test_context_manager_terminates(cluster):
    with Pool(1) as p:
        assert p.map(sqr, range(4)) == [0, 1, 4, 9]
    with pytest.raises(ValueError, match="Pool not running"):
        p.map(sqr, range(4))


def test_a_process_that_dies_fails_its_chunk_not_the_pool(cluster):
    with Pool(1) as p:
        with pytest.raises(RayActorError):
            p.apply(die)
        assert p.map(sqr, range(5)) == [0, 1, 4, 9, 16]     # on a fresh actor


def test_progress_bar(pool, capfd):
    assert pool.map(sqr, range(20), progress=True) == [x * x for x in range(20)]
    assert list(pool.imap(sqr, range(5), progress="squares")) == [0, 1, 4, 9, 16]
    err = capfd.readouterr().err
    assert "Pool.map(sqr)" in err and "20/20" in err and "squares" in err


def test_a_driver_connects_with_ray_address(cluster):
    token = os.path.join(cluster["session_dir"], "auth_token")
    result = run_script(f"""
        import os
        os.environ["RAY_CORE_AUTH_TOKEN"] = open({token!r}).read().strip()
        from ray_core.util.multiprocessing import Pool
        with Pool(1, ray_address={cluster["gcs_address"]!r}) as p:
            print("SQUARES", p.map(abs, [-1, -2, -3]))
    """)
    assert result.returncode == 0, result.stderr
    assert "SQUARES [1, 2, 3]" in result.stdout
