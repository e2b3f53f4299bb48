"""ray_dask_get: a Dask scheduler (the `get` function Dask calls with a graph and the keys
it wants) that hands the whole graph to ray_core at once.

Each graph node becomes one ray_core task, submitted in dask.order's order (dependencies
first), whose arguments are the ObjectRefs of the tasks it depends on: ray_core starts a
task once its arguments exist, wherever they are, so intermediate results go from worker
to worker (small ones inline, large ones through the object store) and only the keys
asked for come back to the driver. Data nodes are put in the object store once; aliases
share their target's ref. An error reaches the caller as the exception the task raised,
as with Dask's own schedulers.

ray_persist=True leaves the results in the cluster: `dask.persist(x,
scheduler=ray_dask_get, ray_persist=True)` gives a collection whose graph holds, for each
key, a small task that reads its ObjectRef (not the value). A later compute with
ray_dask_get passes that ref on as the argument of the tasks that need it; Dask may also
fuse the small task into its dependent, which then reads the ref on its worker, and any
other scheduler reads it on the driver. Persist returns once the results exist (Dask's
own local schedulers block too): a task that reads a persisted ref must never wait on
the task that makes it, which may be queued behind it on the same worker.
"""
from typing import Any, Dict, Mapping, Optional

from dask._task_spec import Alias, DataNode, Task, convert_legacy_graph
from dask.core import flatten
from dask.local import nested_get
from dask.order import order

import ray_core
from ray_core.exceptions import RayTaskError
from ray_core.util.remote_exceptions import original_exception


@ray_core.remote
def _run_node(node, dependency_keys: tuple, *dependencies):
    """One Dask task, given the values of the keys it depends on (ray_core resolved the
    refs before the call)."""
    return node(dict(zip(dependency_keys, dependencies)))


def _persisted_value(ref):
    """A persisted key's value, wherever the task that needs it runs."""
    return ray_core.get(ref)


def _is_persisted(node) -> bool:
    return isinstance(node, Task) and node.func is _persisted_value and \
        len(node.args) == 1 and isinstance(node.args[0], ray_core.ObjectRef)


def ray_dask_get(dsk: Mapping, keys, ray_remote_args: Optional[dict] = None,
                 ray_persist: bool = False, **kwargs):
    """Compute `keys` (a key, or nested lists of keys) of the Dask graph `dsk` on the
    cluster; the answer has the shape of `keys`, as dask.threaded.get's does.
    ray_remote_args are the options of every task (num_cpus, resources, ...); other
    keyword arguments of Dask's schedulers (num_workers, pool, ...) do not apply."""
    if not ray_core.is_initialized():
        ray_core.init()
    if not isinstance(dsk, Mapping):
        dsk = dsk.__dask_graph__()
    refs = _submit_graph(convert_legacy_graph(dsk), ray_remote_args or {})
    wanted = list(flatten(keys)) if isinstance(keys, list) else [keys]
    if ray_persist:
        made = list(dict.fromkeys(refs[key] for key in wanted))    # aliases share a ref
        ray_core.wait(made, num_returns=len(made), fetch_local=False)
        return nested_get(keys, {key: Task(key, _persisted_value, refs[key])
                                 for key in wanted})
    try:
        values = ray_core.get([refs[key] for key in wanted])
    except RayTaskError as e:
        raise original_exception(e) from None
    return nested_get(keys, dict(zip(wanted, values)))


def _submit_graph(graph: Dict[Any, Any], remote_args: dict) -> Dict[Any, Any]:
    """key -> ObjectRef of every node of `graph`, its task submitted after its
    dependencies'."""
    run = _run_node.options(**remote_args) if remote_args else _run_node
    priorities = order(graph)
    refs: Dict[Any, Any] = {}
    for key in sorted(graph, key=priorities.__getitem__):
        node = graph[key]
        if isinstance(node, Alias):
            refs[key] = refs[node.target]
        elif isinstance(node, DataNode):
            refs[key] = ray_core.put(node.value)
        elif _is_persisted(node):
            refs[key] = node.args[0]
        else:
            dependencies = tuple(node.dependencies)
            refs[key] = run.remote(node, dependencies, *(refs[d] for d in dependencies))
    return refs
