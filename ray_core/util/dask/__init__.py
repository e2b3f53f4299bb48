"""Dask on a ray_core cluster (ray.util.dask's names): `dask.compute(x,
scheduler=ray_dask_get)` or `dask.config.set(scheduler=ray_dask_get)` runs each task of
a Dask graph as a ray_core task. The scheduler is `scheduler.ray_dask_get`."""
try:
    import dask  # noqa: F401
except ImportError as e:
    raise ImportError("ray_core.util.dask needs dask: pip install 'ray_core[dask]'") from e

from ray_core.util.dask.scheduler import ray_dask_get  # noqa: E402,F401

__all__ = ["ray_dask_get"]
