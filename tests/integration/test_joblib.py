"""joblib's "ray" backend on a real cluster: joblib.Parallel, scikit-learn's n_jobs, errors
as the function raised them, large arguments put in the object store once."""
import os

import numpy as np
import pytest

import ray_core as ray
from ray_common.config import config
from ray_core.util.joblib import register_ray, warm_pools

from tests.waiting import wait_for

joblib = pytest.importorskip("joblib")
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module", autouse=True)
def ray_backend(cluster):
    register_ray()


def cpu_bound(n):
    return sum(i * i for i in range(n))


def total_plus(x, array):
    return x + int(array.sum()), array.flags.writeable, os.getpid()


def test_parallel_runs_on_the_pools_processes():
    with joblib.parallel_backend("ray"):
        out = joblib.Parallel(n_jobs=-1)(joblib.delayed(cpu_bound)(n) for n in range(200))
        pids = joblib.Parallel(n_jobs=2, batch_size=1)(
            joblib.delayed(os.getpid)() for _ in range(20))
    assert out == [cpu_bound(n) for n in range(200)]
    assert os.getpid() not in pids


def test_errors_are_the_functions_own():
    with joblib.parallel_backend("ray"), pytest.raises(ValueError, match="invalid literal"):
        joblib.Parallel(n_jobs=2)(joblib.delayed(int)(x) for x in ["1", "2", "a", "4"])


def test_consecutive_calls_share_a_pool_that_then_gives_its_cpus_back(monkeypatch):
    keep_s = 10     # far longer than the gap between two calls; the test waits it out
    monkeypatch.setitem(config._system_config, "joblib_pool_keep_s", keep_s)
    started = []
    real_pool = warm_pools.Pool
    monkeypatch.setattr(warm_pools, "Pool", lambda *a, **kw: started.append(a) or
                        real_pool(*a, **kw))
    with joblib.parallel_backend("ray"):
        for n in (100, 200):
            assert joblib.Parallel(n_jobs=2)(joblib.delayed(cpu_bound)(i)
                                             for i in range(n))[-1] == cpu_bound(n - 1)
    assert len(started) == 1
    wait_for(lambda: ray.available_resources().get("CPU") == 2, "the pool's CPUs back",
             timeout=keep_s + 30)


def test_a_failed_call_gives_its_cpus_back():
    with joblib.parallel_backend("ray"), pytest.raises(ZeroDivisionError):
        joblib.Parallel(n_jobs=2)(joblib.delayed(divmod)(1, x) for x in [1, 0])
    wait_for(lambda: ray.available_resources().get("CPU") == 2, "the pool's CPUs back")


def test_a_large_argument_is_put_once(monkeypatch):
    puts = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value, **kw: puts.append(value) or
                        real_put(value, **kw))
    big = np.arange(200_000, dtype=np.int64)        # 1.6 MB, above joblib_put_arg_min_bytes
    with joblib.parallel_backend("ray"):
        out = joblib.Parallel(n_jobs=2, batch_size=1)(
            joblib.delayed(total_plus)(i, big) for i in range(30))
    assert [x for x, _, _ in out] == [i + int(big.sum()) for i in range(30)]
    assert len(puts) == 1 and puts[0] is big
    # read from shared memory, not unpickled from the batch
    assert not any(writeable for _, writeable, _ in out)


def test_grid_search_with_n_jobs_on_the_cluster():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    X, y = load_iris(return_X_y=True)
    grid = {"C": [0.1, 1, 10], "gamma": ["scale", 0.1, 1.0]}
    local = GridSearchCV(SVC(), grid, cv=3, n_jobs=1).fit(X, y)
    with joblib.parallel_backend("ray"):
        remote = GridSearchCV(SVC(), grid, cv=3, n_jobs=2).fit(X, y)
    assert remote.best_params_ == local.best_params_
    assert np.allclose(remote.cv_results_["mean_test_score"],
                       local.cv_results_["mean_test_score"])
