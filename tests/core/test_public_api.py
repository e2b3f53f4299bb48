"""The public surface of ray_core, pinned: names and signatures change only on purpose."""
import inspect

import ray_core
from ray_core import exceptions

EXPECTED_NAMES = {
    "ActorClass", "ActorHandle", "get_actor", "kill", "method", "SCRIPT_MODE", "WORKER_MODE",
    "DynamicObjectRefGenerator",
    "ActorID", "JobID", "NodeID", "ObjectID", "PlacementGroupID", "TaskID", "UniqueID",
    "WorkerID",
    "ObjectRef", "ObjectRefGenerator", "RemoteFunction", "available_resources", "cancel",
    "cluster_resources", "exceptions", "get", "get_gpu_ids", "get_runtime_context", "init",
    "is_initialized", "nodes", "put", "remote", "shutdown", "timeline", "wait", "__version__",
}

EXPECTED_SIGNATURES = {
    "init": "(address: Optional[str] = None, *, num_cpus: Optional[int] = None, "
            "num_gpus: Optional[int] = None, resources: Optional[Dict[str, float]] = None, "
            "object_store_memory: Optional[int] = None, namespace: Optional[str] = None, "
            "ignore_reinit_error: bool = False, log_to_driver: bool = True, "
            "runtime_env: Optional[Dict[str, Any]] = None, job_config: Any = None, "
            "include_dashboard: Optional[bool] = None, dashboard_host: str = '127.0.0.1', "
            "dashboard_port: Optional[int] = None, labels: Optional[Dict[str, str]] = None, "
            "local_mode: bool = False, logging_level: Any = None, "
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
    "get_runtime_context": "() -> ray_core.runtime_context.RuntimeContext",
    "get_gpu_ids": "() -> List[int]",
    "nodes": "() -> List[dict]",
    "cluster_resources": "() -> Dict[str, float]",
    "available_resources": "() -> Dict[str, float]",
    "get_actor": "(name: str, namespace: Optional[str] = None) -> ray_core.actor.ActorHandle",
    "kill": "(actor: ray_core.actor.ActorHandle, *, no_restart: bool = True) -> None",
    "method": "(*args, **kwargs)",
    "timeline": "(filename: Optional[str] = None) -> Optional[List[dict]]",
}

# Every class of Ray 2.60's ray.exceptions that means something without Ray's compiled
# graphs (RayChannel*, RayCgraph*, RayDirectTransportError), with its bases.
EXPECTED_EXCEPTIONS = {
    "RayError": ("Exception",), "CrossLanguageError": ("RayError",),
    "RaySystemError": ("RayError",), "RayTaskError": ("RayError",),
    "WorkerCrashedError": ("RayError",), "LocalRayletDiedError": ("RayError",),
    "TaskCancelledError": ("RayError",), "GetTimeoutError": ("RayError", "TimeoutError"),
    "PlasmaObjectNotAvailable": ("RayError",), "ObjectLostError": ("RayError",),
    "ObjectFetchTimedOutError": ("ObjectLostError",),
    "ReferenceCountingAssertionError": ("ObjectLostError", "AssertionError"),
    "ObjectFreedError": ("ObjectLostError",), "OwnerDiedError": ("ObjectLostError",),
    "ObjectReconstructionFailedError": ("ObjectLostError",),
    "ObjectReconstructionFailedMaxAttemptsExceededError": ("ObjectReconstructionFailedError",),
    "ObjectReconstructionFailedLineageEvictedError": ("ObjectReconstructionFailedError",),
    "ObjectStoreFullError": ("RayError",), "OutOfDiskError": ("RayError",),
    "OutOfMemoryError": ("RayError",), "NodeDiedError": ("RayError",),
    "RayActorError": ("RayError",), "ActorDiedError": ("RayActorError",),
    "ActorUnavailableError": ("RayActorError",), "ActorUnschedulableError": ("RayError",),
    "TaskUnschedulableError": ("RayError",), "AsyncioActorExit": ("RayError",),
    "RuntimeEnvSetupError": ("RayError",), "TaskPlacementGroupRemoved": ("RayError",),
    "ActorPlacementGroupRemoved": ("RayError",), "PendingCallsLimitExceeded": ("RayError",),
    "ObjectRefStreamEndOfStreamError": ("RayError",), "UserCodeException": ("RayError",),
    "RpcError": ("RayError",), "AuthenticationError": ("RayError",),
    "UnserializableException": ("RayError",),
    "ActorAlreadyExistsError": ("ValueError", "RayError"),
    "ActorHandleNotFoundError": ("ValueError", "RayError"),
    "OufOfBandObjectRefSerializationException": ("RayError",),
}

OBJECT_REF_METHODS = {"binary", "hex", "task_id", "job_id", "call_site", "object_id",
                      "owner_address", "future", "as_future", "is_nil", "from_binary",
                      "from_hex", "nil", "__await__", "__hash__", "__eq__", "__reduce__"}


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
    """Ray's classes with Ray's bases (a builtin base more, as MemoryError, is allowed:
    code catching either keeps working)."""
    import builtins
    assert set(exceptions.__all__) == set(EXPECTED_EXCEPTIONS)
    for name, bases in EXPECTED_EXCEPTIONS.items():
        cls = getattr(exceptions, name)
        for base in bases:
            assert issubclass(cls, getattr(exceptions, base, None) or getattr(builtins, base)), \
                (name, base)


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


# Every public path Ray 2.60 documents for core (its API reference: Core API, Utility,
# Scheduling, Runtime Context, Exceptions), as `import ray` programs reach them.
RAY_CORE_PATHS = {
    "ray_core": ["init", "shutdown", "is_initialized", "remote", "cancel", "method",
                 "get_actor", "kill", "get", "wait", "put", "get_runtime_context",
                 "get_gpu_ids", "nodes", "cluster_resources", "available_resources",
                 "ObjectRef", "ObjectRefGenerator", "DynamicObjectRefGenerator", "ObjectID",
                 "NodeID", "JobID", "TaskID", "ActorID", "WorkerID", "PlacementGroupID",
                 "actor", "util", "exceptions"],
    "ray_core.remote_function": ["RemoteFunction"],
    "ray_core.job_config": ["JobConfig"],
    "ray_core.actor": ["ActorClass", "ActorMethod", "ActorHandle",
                       "ActorClassInheritanceException", "exit_actor"],
    "ray_core.runtime_context": ["get_runtime_context", "RuntimeContext"],
    "ray_core.util": ["ActorPool", "as_completed", "map_unordered", "list_named_actors",
                      "get_node_ip_address", "placement_group", "remove_placement_group",
                      "get_placement_group", "placement_group_table",
                      "get_current_placement_group", "register_serializer",
                      "deregister_serializer", "inspect_serializability",
                      "get_node_instance_id", "log_once", "disable_log_once_globally",
                      "enable_periodic_logging"],
    "ray_core.util.metrics": ["Counter", "Gauge", "Histogram"],
    "ray_core.util.debug": ["log_once", "disable_log_once_globally", "enable_periodic_logging"],
    "ray_core.runtime_env": ["RuntimeEnv", "RuntimeEnvConfig"],
    "ray_core.util.actor_pool": ["ActorPool"],
    "ray_core.util.queue": ["Queue", "Empty", "Full"],
    "ray_core.util.serialization": ["register_serializer", "deregister_serializer"],
    "ray_core.util.placement_group": ["placement_group", "PlacementGroup",
                                      "placement_group_table", "remove_placement_group",
                                      "get_placement_group", "get_current_placement_group"],
    "ray_core.util.scheduling_strategies": ["PlacementGroupSchedulingStrategy",
                                            "NodeAffinitySchedulingStrategy",
                                            "SchedulingStrategyT"],
    "ray_core._raylet": ["ObjectRef", "ObjectRefGenerator", "DynamicObjectRefGenerator",
                         "ObjectID", "NodeID", "TaskID", "ActorID", "JobID", "WorkerID"],
    "ray_core.experimental.tqdm_ray": ["tqdm", "safe_print"],
}

RUNTIME_CONTEXT_GETTERS = [
    "get", "get_job_id", "get_node_id", "get_worker_id", "get_task_id", "get_task_name",
    "get_task_function_name", "get_actor_id", "get_actor_name", "get_placement_group_id",
    "get_assigned_resources", "get_accelerator_ids", "get_resource_ids",
    "get_runtime_env_string", "get_node_labels", "get_temp_dir", "get_session_name",
    "is_canceled", "job_id", "node_id", "task_id", "actor_id", "worker_id", "namespace",
    "gcs_address", "runtime_env", "current_actor", "was_current_actor_reconstructed",
    "current_placement_group_id", "should_capture_child_tasks_in_placement_group",
]


def test_every_path_ray_documents_for_core_imports():
    import importlib
    missing = []
    for module_name, names in RAY_CORE_PATHS.items():
        module = importlib.import_module(module_name)
        missing += [f"{module_name}.{name}" for name in names if not hasattr(module, name)]
    assert not missing, missing
    from ray_core.runtime_context import RuntimeContext
    assert [g for g in RUNTIME_CONTEXT_GETTERS if not hasattr(RuntimeContext, g)] == []


def test_an_actor_class_cannot_be_inherited():
    from ray_core.actor import ActorClassInheritanceException

    @ray_core.remote
    class Base:
        pass

    try:
        class Child(Base):
            pass
    except ActorClassInheritanceException as e:
        assert "decorate the subclass" in str(e)
    else:
        raise AssertionError("inheriting from an actor class was allowed")
