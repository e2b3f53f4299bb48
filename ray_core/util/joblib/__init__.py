"""joblib on a ray_core cluster (ray.util.joblib's names): after register_ray(),
`with joblib.parallel_backend("ray"): ...` runs joblib.Parallel, and so scikit-learn's
n_jobs, on the cluster's CPUs. The backend is `ray_backend.RayBackend`."""


def register_ray() -> None:
    """Register the joblib parallel backend named "ray"."""
    try:
        from joblib import register_parallel_backend
    except ImportError as e:
        raise ImportError("ray_core.util.joblib needs joblib: "
                          "pip install 'ray_core[joblib]'") from e
    from ray_core.util.joblib.ray_backend import RayBackend
    register_parallel_backend("ray", RayBackend)


__all__ = ["register_ray"]
