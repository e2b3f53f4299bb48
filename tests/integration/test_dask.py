"""ray_dask_get on a real cluster: dask.array and dask.dataframe results equal Dask's
threaded scheduler's, intermediate results never reach the driver, errors are the
task's own, dask.persist keeps results in the cluster."""
import numpy as np
import pytest

import ray_core as ray

from tests.waiting import wait_for

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
from ray_core.util.dask import ray_dask_get  # noqa: E402  (after the skip: needs dask)

pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(180)]


@pytest.fixture
def gets(monkeypatch):
    """How many values each ray_core.get on the driver fetched."""
    counts = []
    real_get = ray.get

    def counting_get(refs, **kwargs):
        counts.append(len(refs) if isinstance(refs, list) else 1)
        return real_get(refs, **kwargs)

    monkeypatch.setattr(ray, "get", counting_get)
    return counts


def an_array():
    return da.random.RandomState(42).random((600, 600), chunks=(150, 150))


def test_an_array_computation_equals_the_threaded_schedulers(gets):
    x = an_array()
    y = (x + x.T).mean(axis=0) - x.std(axis=1)
    expected = y.compute(scheduler="threads")
    assert np.allclose(y.compute(scheduler=ray_dask_get), expected)
    assert gets == [1]      # 16 chunks, many tasks: only the final value came back


def test_a_dataframe_computation_equals_the_threaded_schedulers():
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    df = pd.DataFrame({"k": np.arange(2000) % 7, "v": np.arange(2000.0),
                       "w": np.arange(2000) % 13})
    ddf = dd.from_pandas(df, npartitions=4)
    query = ddf[ddf.w > 3].groupby("k").agg({"v": "sum", "w": "mean"})
    pd.testing.assert_frame_equal(query.compute(scheduler=ray_dask_get),
                                  query.compute(scheduler="threads"))


def test_config_set_and_several_collections():
    x = an_array()
    with dask.config.set(scheduler=ray_dask_get):
        total, biggest = dask.compute(x.sum(), x.max())
    assert np.isclose(total, x.sum().compute(scheduler="threads"))
    assert biggest == x.max().compute(scheduler="threads")


def test_persist_keeps_the_results_in_the_cluster(gets):
    x = an_array()
    y = (x * 2).sum(axis=0)
    expected = (y + 1).compute(scheduler="threads")
    persisted, = dask.persist(y, scheduler=ray_dask_get, ray_persist=True)
    assert gets == []       # nothing fetched by persist
    assert np.allclose((persisted + 1).compute(scheduler=ray_dask_get), expected)
    assert gets == [1]      # the persisted chunks went from task to task
    assert np.allclose((persisted + 1).compute(scheduler="threads"), expected)
    plain, = dask.persist(y, scheduler=ray_dask_get)
    assert np.allclose(plain.compute(scheduler="sync"), y.compute(scheduler="threads"))


class Broken(ValueError):
    pass


def fail_on_block_2(block, block_info=None):
    if block_info[0]["chunk-location"] == (2,):
        raise Broken("block 2 is broken")
    return block


def test_an_error_is_the_tasks_own():
    y = da.arange(100, chunks=20).map_blocks(fail_on_block_2, dtype=int).sum() + 1
    with pytest.raises(Broken, match="block 2 is broken") as info:
        y.compute(scheduler=ray_dask_get)
    assert type(info.value) is Broken
    # the graph's other tasks end; the cluster is whole again
    wait_for(lambda: ray.available_resources().get("CPU") == 2, "every CPU free again")
    assert da.arange(100, chunks=20).sum().compute(scheduler=ray_dask_get) == 4950
