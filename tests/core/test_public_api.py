"""The public surface of ray_core, pinned: names and signatures change only on purpose."""
import inspect

import ray_core
from ray_core import exceptions

EXPECTED_NAMES = {
    "ActorClass", "ActorHandle", "get_actor", "kill", "method",
    "ObjectRef", "ObjectRefGenerator", "RemoteFunction", "available_resources", "cancel",
    "cluster_resources", "exceptions", "get", "get_gpu_ids", "get_runtime_context", "init",
    "is_initialized", "nodes", "put", "remote", "shutdown", "timeline", "wait", "__version__",
}

EXPECTED_SIGNATURES = {
    "init": "(address: Optional[str] = None, *, num_cpus: Optional[int] = None, "
            "num_gpus: Optional[int] = None, resources: Optional[Dict[str, float]] = None, "
            "object_store_memory: Optional[int] = None, namespace: Optional[str] = None, "
            "ignore_reinit_error: bool = False, log_to_driver: bool = True, "
            "runtime_env: Optional[Dict[str, Any]] = None, "
            "include_dashboard: Optional[bool] = None, dashboard_host: Optional[str] = None, "
            "dashboard_port: Optional[int] = None, logging_level: Any = None, "
            "configure_logging: bool = True, _temp_dir: Optional[str] = None, "
            "_system_config: Optional[Dict[str, Any]] = None, "
            "_node_ip_address: Optional[str] = None) -> ray_core._private.worker.RayContext",
    "shutdown": "() -> None",
    "is_initialized": "() -> bool",
    "get": "(object_refs: Union[ray_core._private._object_ref.ObjectRef, "
           "Sequence[ray_core._private._object_ref.ObjectRef]], *, timeout: Optional[float] = None) -> Any",
    "put": "(value: Any, *, _owner=None) -> ray_core._private._object_ref.ObjectRef",
    "wait": "(object_refs: List[ray_core._private._object_ref.ObjectRef], *, num_returns: int = 1, "
            "timeout: Optional[float] = None, fetch_local: bool = True)",
    "cancel": "(object_ref: ray_core._private._object_ref.ObjectRef, *, force: bool = False, "
              "recursive: bool = True) -> None",
    "remote": "(*args, **kwargs)",
    "get_runtime_context": "()",
    "get_gpu_ids": "() -> List[int]",
    "nodes": "() -> List[dict]",
    "cluster_resources": "() -> Dict[str, float]",
    "available_resources": "() -> Dict[str, float]",
    "get_actor": "(name: str, namespace: Optional[str] = None) -> ray_core.actor.ActorHandle",
    "kill": "(actor: ray_core.actor.ActorHandle, *, no_restart: bool = True) -> None",
    "method": "(*args, **kwargs)",
    "timeline": "(filename: Optional[str] = None) -> Optional[List[dict]]",
}

EXPECTED_EXCEPTIONS = {
    "RayError", "RaySystemError", "RayTaskError", "WorkerCrashedError", "LocalRayletDiedError",
    "TaskCancelledError", "GetTimeoutError", "ObjectLostError", "OwnerDiedError",
    "ObjectReconstructionFailedError", "ObjectStoreFullError", "OutOfMemoryError",
    "ActorError", "RayActorError", "ActorDiedError", "ActorUnavailableError",
    "NodeDiedError", "RuntimeEnvSetupError", "TaskPlacementGroupRemoved",
}

OBJECT_REF_METHODS = {"binary", "hex", "task_id", "object_id", "owner_address", "future",
                      "as_future", "is_nil", "__await__", "__hash__", "__eq__", "__reduce__"}


def test_exported_names():
    assert set(ray_core.__all__) == EXPECTED_NAMES
    public = {n for n in dir(ray_core) if not n.startswith("_")} | {"__version__"}
    # Submodules are reachable but only the names above are the API.
    assert EXPECTED_NAMES <= public


def test_signatures():
    for name, expected in EXPECTED_SIGNATURES.items():
        assert str(inspect.signature(getattr(ray_core, name))) == expected, name


def test_util_module_has_rays_helpers():
    import ray_core.util
    from ray_core.util.placement_group import PlacementGroup  # the module path Ray has too
    assert ray_core.util.PlacementGroup is PlacementGroup
    assert {"placement_group", "remove_placement_group", "get_placement_group",
            "placement_group_table", "get_current_placement_group", "ActorPool",
            "as_completed", "map_unordered", "list_named_actors",
            "get_node_ip_address", "register_serializer", "deregister_serializer"} <= set(
        ray_core.util.__all__)


def test_exceptions_module():
    assert set(exceptions.__all__) == EXPECTED_EXCEPTIONS
    for name in EXPECTED_EXCEPTIONS:
        assert issubclass(getattr(exceptions, name), exceptions.RayError)


def test_object_ref_surface():
    assert OBJECT_REF_METHODS <= set(dir(ray_core.ObjectRef))


def test_remote_function_surface():
    rf = ray_core.remote(lambda: None)
    assert callable(rf.remote) and callable(rf.options)
    assert callable(rf.options(num_cpus=1).remote)


def test_util_metrics_module():
    import inspect

    from ray_core.util import metrics
    assert str(inspect.signature(metrics.Counter.inc)) == \
        "(self, value: float = 1.0, tags: Optional[Dict[str, str]] = None) -> None"
    assert str(inspect.signature(metrics.Gauge.set)) == \
        "(self, value: float, tags: Optional[Dict[str, str]] = None) -> None"
    assert str(inspect.signature(metrics.Histogram.observe)) == \
        "(self, value: float, tags: Optional[Dict[str, str]] = None) -> None"
    assert "boundaries" in inspect.signature(metrics.Histogram).parameters
    assert callable(metrics.Counter.set_default_tags)
