"""ray_core: the public API (`import ray_core as ray`), the CoreWorker, the CLI.

Layout: the names below are the whole public surface (tests/core/test_public_api.py
pins them with their signatures). `remote_function.py` holds @remote for functions,
`object_ref.py` the ObjectRef, `exceptions.py` every error, `runtime_context.py` what
get_runtime_context() returns, `node.py` the one node launcher (init(), the CLI in `scripts.py`
/`__main__.py`, `cluster_utils.Cluster`), `workers/` the worker
entry point; the CoreWorker and everything behind it live in `_private/` (its
`__init__` is the map). `actor.py` holds @remote for classes (actors) and the actor API;
`util/` Ray's helpers, `experimental/` its tqdm_ray, `_raylet.py` Ray's `ray._raylet`
path. The public modules use `_private/`, never the other way round.
"""
import inspect
import os
from typing import List, Optional

# gRPC's C core logs connection shutdowns (GOAWAY) at info level to stderr; keep a
# driver's terminal for the user's output.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from ray_common.ids import (ActorID, JobID, NodeID, ObjectID, PlacementGroupID, TaskID,  # noqa: F401
                            UniqueID, WorkerID)

from ray_core import exceptions  # noqa: F401
from ray_core._private.worker import (available_resources, cancel, cluster_resources, get,
                                      get_gpu_ids, init, is_initialized, nodes, put,
                                      shutdown, wait)
from ray_core.runtime_context import get_runtime_context
from ray_core._private.generator_streams import DynamicObjectRefGenerator, ObjectRefGenerator
from ray_core.object_ref import ObjectRef
from ray_core import remote_function as _remote_function
from ray_core.remote_function import RemoteFunction
from ray_core.actor import ACTOR_OPTIONS, ActorClass, ActorHandle, get_actor, kill, method
from ray_core import internal  # noqa: F401,E402  (ray_core.internal.memory_summary())
from ray_core import actor, job_config, util  # noqa: F401,E402  (ray.actor.*, ... without an import)

__version__ = "0.1.0"
# Ray's process modes (ray.SCRIPT_MODE is a driver's, ray.WORKER_MODE a task's worker).
SCRIPT_MODE = 0
WORKER_MODE = 1


def remote(*args, **kwargs):
    """@remote or @remote(num_cpus=..., ...) on a function: make it a remote function."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("@remote takes either a function or keyword options only, e.g. "
                        "@ray_core.remote(num_cpus=2)")
    # Checked now, so a typo fails at the decorator; actor-only options are checked
    # when the decorated object turns out to be a class.
    _remote_function.validate_task_options(
        {k: v for k, v in kwargs.items()
         if k not in ACTOR_OPTIONS or k in _remote_function.TASK_OPTIONS}, "@remote")

    def decorator(function_or_class):
        return _make_remote(function_or_class, kwargs)
    return decorator


def timeline(filename: Optional[str] = None) -> Optional[List[dict]]:
    """Ray's ray.timeline: every task that ran, as Chrome trace events (one track per
    worker, a slice per task); written as JSON to `filename` when given, else returned."""
    from ray_core.util.state.timeline import timeline as trace
    events = trace(filename)
    return None if filename is not None else events


def _make_remote(obj, task_options):
    if inspect.isclass(obj):
        return ActorClass(obj, task_options)
    if not callable(obj):
        raise TypeError(f"@remote must decorate a function, got {type(obj).__name__}")
    return RemoteFunction(obj, task_options)


__all__ = ["ActorClass", "ActorHandle", "get_actor", "kill", "method", "SCRIPT_MODE",
           "WORKER_MODE", "ActorID", "JobID", "NodeID", "ObjectID", "PlacementGroupID",
           "TaskID", "UniqueID", "WorkerID",
           "DynamicObjectRefGenerator", "ObjectRef", "ObjectRefGenerator", "RemoteFunction", "available_resources", "cancel",
           "cluster_resources", "exceptions", "get", "get_gpu_ids", "get_runtime_context",
           "init", "is_initialized", "nodes", "put", "remote", "shutdown", "timeline", "wait",
           "__version__"]
