"""Ray's state API functions (ray.util.state): list_*, get_*, summarize_*, list_logs,
get_log, with Ray's arguments. Every call reads through a StateDataSource (one source of
truth) within `timeout` seconds; `address` picks the cluster (default: this driver's, or
the one started on this machine).

Like Ray, a list returns at most `limit` rows (state_api_default_limit) and warns when
some source did not answer or the GCS forgot rows (task events dropped); with
raise_on_missing_output=True that is a RayStateApiException instead.
"""
import asyncio
import time
import warnings
from typing import Dict, Iterator, List, Optional

from ray_common.config import config

from ray_core._private import log_monitor

from ray_core.util.state.common import (RESOURCES, ActorState, Filter, NodeState,
                                        ObjectState, RayStateApiException, TaskState,
                                        apply_filters, check_filters)
from ray_core.util.state.state_manager import StateDataSource


def _missing_output(what: str, raise_on_missing_output: bool) -> None:
    if raise_on_missing_output:
        raise RayStateApiException(f"{what} (pass raise_on_missing_output=False to get "
                                   f"what there is)")
    warnings.warn(what, RuntimeWarning, stacklevel=3)


def _list(resource: str, address, filters, limit, timeout, detail, raise_on_missing_output,
          source: Optional[StateDataSource] = None):
    filters = check_filters(resource, filters)
    source = source or StateDataSource(address)
    gaps: List[str] = []
    if resource == "tasks":
        rows, dropped = source.run(source.tasks(), timeout)
        if dropped:
            gaps.append(f"{dropped} task attempt(s) or event(s) were dropped (more than "
                        f"task_events_max_num_task_in_gcs per job, or a process's buffer "
                        f"was full): some tasks are missing or behind")
    elif resource == "objects":
        rows = source.run(_objects(source), timeout)
        gaps += rows.pop()
    else:
        rows = source.run(getattr(source, resource)(), timeout)
    if gaps:
        _missing_output("; ".join(gaps), raise_on_missing_output)
    rows = apply_filters(rows, filters)
    limit = config.state_api_default_limit if limit is None else limit
    if len(rows) > limit:
        warnings.warn(f"{len(rows)} {resource} match; only the first {limit} are "
                      f"returned (limit=...)", RuntimeWarning, stacklevel=3)
        rows = rows[:limit]
    return rows if detail else [row.without_detail() for row in rows]


async def _objects(source: StateDataSource) -> list:
    """ObjectState rows with their tasks' states from the task table; their warnings last."""
    (rows, gaps), tasks = await asyncio.gather(source.objects(), source.task_entries())
    states = {}
    for entry in tasks.tasks:       # the newest attempt of each task wins
        key = entry.task_id.hex()
        if entry.attempt_number >= states.get(key, ("", -1))[1]:
            states[key] = (StateDataSource.task_row(entry).state, entry.attempt_number)
    return [StateDataSource.object_row(row, states) for row in rows] + [gaps]


def _lister(resource: str):
    def list_resource(address: Optional[str] = None, filters: Optional[List[Filter]] = None,
                      limit: Optional[int] = None, timeout: Optional[float] = None,
                      detail: bool = False, raise_on_missing_output: bool = True) -> list:
        return _list(resource, address, filters, limit, timeout, detail,
                     raise_on_missing_output)
    list_resource.__name__ = f"list_{resource}"
    list_resource.__doc__ = (f"Ray's list_{resource}: {RESOURCES[resource].__name__} rows, "
                             f"filtered by [(column, '=' or '!=', value)], at most `limit`.")
    return list_resource


list_tasks = _lister("tasks")
list_actors = _lister("actors")
list_objects = _lister("objects")
list_nodes = _lister("nodes")
list_workers = _lister("workers")
list_jobs = _lister("jobs")
list_placement_groups = _lister("placement_groups")


def list_resource_rows(resource: str, key: str, id: str, address: Optional[str] = None,
                       timeout: Optional[float] = None) -> list:
    """Every row of `resource` whose `key` column is `id`, with detail (get_* and the
    CLI's `get`)."""
    return _list(resource, address, [(key, "=", id)], 10 ** 9, timeout, True, False)


def get_actor(id: str, address: Optional[str] = None, timeout: Optional[float] = None) -> Optional[ActorState]:
    rows = list_resource_rows("actors", "actor_id", id, address, timeout)
    return rows[0] if rows else None


def get_node(id: str, address: Optional[str] = None, timeout: Optional[float] = None) -> Optional[NodeState]:
    rows = list_resource_rows("nodes", "node_id", id, address, timeout)
    return rows[0] if rows else None


def get_task(id: str, address: Optional[str] = None, timeout: Optional[float] = None) -> Optional[TaskState]:
    """The newest attempt of the task (Ray's get_task)."""
    rows = list_resource_rows("tasks", "task_id", id, address, timeout)
    return max(rows, key=lambda r: r.attempt_number) if rows else None


def get_objects(id: str, address: Optional[str] = None, timeout: Optional[float] = None) -> List[ObjectState]:
    """One row per process that owns or references the object."""
    return list_resource_rows("objects", "object_id", id, address, timeout)


def get_job(id: str, address: Optional[str] = None, timeout: Optional[float] = None):
    rows = list_resource_rows("jobs", "job_id", id, address, timeout)
    return rows[0] if rows else None


def get_worker(id: str, address: Optional[str] = None, timeout: Optional[float] = None):
    rows = list_resource_rows("workers", "worker_id", id, address, timeout)
    return rows[0] if rows else None


def get_placement_group(id: str, address: Optional[str] = None,
                        timeout: Optional[float] = None):
    rows = list_resource_rows("placement_groups", "placement_group_id", id, address, timeout)
    return rows[0] if rows else None


# ---- summaries ---------------------------------------------------------------------
def _counts(rows, key) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for row in rows:
        out[key(row)] = out.get(key(row), 0) + 1
    return out


def summarize_tasks(address: Optional[str] = None, timeout: Optional[float] = None,
                    raise_on_missing_output: bool = True) -> dict:
    """Ray's summarize_tasks: per function or method, its tasks' counts by state."""
    rows = _list("tasks", address, None, 10 ** 9, timeout, True, raise_on_missing_output)
    summary = {}
    for name in sorted({row.func_or_class_name for row in rows}):
        group = [row for row in rows if row.func_or_class_name == name]
        summary[name] = {"func_or_class_name": name, "type": group[0].type,
                         "state_counts": _counts(group, lambda r: r.state)}
    return {"cluster": {
        "summary": summary, "total_tasks": len(rows),
        "total_actor_tasks": sum(r.type == "ACTOR_TASK" for r in rows),
        "total_actor_scheduled": sum(r.type == "ACTOR_CREATION_TASK" for r in rows),
        "summary_by": "func_name"}}


def summarize_actors(address: Optional[str] = None, timeout: Optional[float] = None,
                     raise_on_missing_output: bool = True) -> dict:
    """Ray's summarize_actors: per class, its actors' counts by state."""
    rows = _list("actors", address, None, 10 ** 9, timeout, True, raise_on_missing_output)
    summary = {name: {"class_name": name,
                      "state_counts": _counts([r for r in rows if r.class_name == name],
                                              lambda r: r.state)}
               for name in sorted({row.class_name for row in rows})}
    return {"cluster": {"summary": summary, "total_actors": len(rows),
                        "summary_by": "class"}}


def summarize_objects(address: Optional[str] = None, timeout: Optional[float] = None,
                      raise_on_missing_output: bool = True) -> dict:
    """Ray's summarize_objects, grouped by call site (not recorded: one group,
    "disabled", as Ray without RAY_record_ref_creation_sites)."""
    rows = _list("objects", address, None, 10 ** 9, timeout, True, raise_on_missing_output)
    unique = {row.object_id: row for row in rows}
    size_mb = sum(r.object_size for r in unique.values()) / 1024 ** 2
    group = {"total_objects": len(unique), "total_size_mb": size_mb,
             "total_num_workers": len({(r.ip, r.pid) for r in rows}),
             "total_num_nodes": len({r.node_id for r in rows}),
             "task_state_counts": _counts(unique.values(), lambda r: r.task_status),
             "ref_type_counts": _counts(rows, lambda r: r.reference_type)}
    return {"cluster": {"summary": {"disabled": group} if rows else {},
                        "total_objects": len(unique), "total_size_mb": size_mb,
                        "callsite_enabled": False, "summary_by": "callsite"}}


# ---- logs --------------------------------------------------------------------------
_LOG_CATEGORIES = [("worker_out", "worker-", ".out"), ("worker_err", "worker-", ".err"),
                   ("core_worker", "python-core-worker-", ""),
                   ("core_driver", "python-core-driver-", ""), ("raylet", "raylet", ""),
                   ("gcs_server", "gcs_server", ""), ("gcs_supervisor", "gcs_supervisor", ""),
                   ("plasma_store", "plasma_store", ""), ("log_monitor", "log_monitor", "")]


def _category(name: str) -> str:
    for category, prefix, suffix in _LOG_CATEGORIES:
        if name.startswith(prefix) and name.endswith(suffix):
            return category
    return "internal"


def _node(source: StateDataSource, node_id: Optional[str], node_ip: Optional[str],
          timeout) -> NodeState:
    """The node named by id (a unique prefix will do) or ip; the head by default."""
    nodes = [n for n in source.run(source.nodes(), timeout) if n.state == "ALIVE"]
    if node_id:
        found = [n for n in nodes if n.node_id.startswith(node_id.lower())]
    elif node_ip:
        found = [n for n in nodes if n.node_ip == node_ip]
    else:
        found = [n for n in nodes if n.is_head_node] or nodes[:1]
    if len(found) != 1:
        raise ValueError(f"{'no' if not found else 'more than one'} alive node has "
                         f"{'id ' + node_id if node_id else 'ip ' + str(node_ip)}: alive nodes "
                         f"are {', '.join(n.node_id for n in nodes)}")
    return found[0]


def list_logs(address: Optional[str] = None, node_id: Optional[str] = None,
              node_ip: Optional[str] = None, glob_filter: Optional[str] = None,
              timeout: Optional[float] = None) -> Dict[str, List[str]]:
    """Ray's list_logs: a node's log file names (the head's by default) by category."""
    source = StateDataSource(address)
    node = _node(source, node_id, node_ip, timeout)
    files = source.run(source.list_log_files(node, glob_filter or ""), timeout)
    out: Dict[str, List[str]] = {}
    for name, _size in files:
        out.setdefault(_category(name), []).append(name)
    return out


def _log_target(source: StateDataSource, timeout, node_id, node_ip, filename, actor_id,
                task_id, pid, suffix):
    """(node, file name) of the log a get_log call names."""
    if actor_id:
        actor = get_actor(actor_id, source.address, timeout)
        if actor is None or not actor.pid:
            raise ValueError(f"no actor {actor_id} with a running worker is known to the "
                             f"cluster")
        node_id, pid = actor.node_id, actor.pid
    elif task_id:
        task = get_task(task_id, source.address, timeout)
        if task is None or not task.worker_pid:
            raise ValueError(f"task {task_id} has not run on any worker that the cluster "
                             f"knows of (list_tasks shows its state)")
        node_id, pid = task.node_id, task.worker_pid
    node = _node(source, node_id, node_ip, timeout)
    if filename:
        return node, filename
    if pid is None:
        raise ValueError("get_log needs one of filename, actor_id, task_id or pid")
    names = [n for n, _ in source.run(source.list_log_files(node, f"*{pid}.{suffix}"),
                                      timeout)]
    names = [n for n in names if n.rsplit(".", 1)[0].endswith(f"-{pid}") or
             n.rsplit(".", 1)[0].endswith(f"_{pid}")]
    if not names:
        raise ValueError(f"no .{suffix} log of pid {pid} on node {node.node_id}")
    return node, names[0]


def component_log(component: str, node_id: Optional[str] = None,
                  address: Optional[str] = None, timeout: Optional[float] = None) -> str:
    """The log file name of a node's raylet ("raylet") or of the GCS ("gcs"): a second
    raylet sharing a session folder (cluster_utils) writes raylet_<port>.log."""
    source = StateDataSource(address)
    node = _node(source, node_id, None, timeout)
    if component == "gcs":
        return "gcs_server.log"
    names = {name for name, _ in source.run(source.list_log_files(node, "raylet*.log"),
                                             timeout)}
    own = f"raylet_{node.raylet_address.rsplit(':', 1)[1]}.log"
    return own if own in names else "raylet.log"


def get_log(address: Optional[str] = None, node_id: Optional[str] = None,
            node_ip: Optional[str] = None, filename: Optional[str] = None,
            actor_id: Optional[str] = None, task_id: Optional[str] = None,
            pid: Optional[int] = None, follow: bool = False, tail: int = 1000,
            timeout: Optional[float] = None, suffix: str = "out") -> Iterator[str]:
    """Ray's get_log: the lines of one log file (by name, or the worker stdout/stderr
    (`suffix` out/err) of an actor, a task or a pid), its last `tail` lines (-1: all);
    with follow, then each new line as it is written, until the caller stops."""
    source = StateDataSource(address)
    node, name = _log_target(source, timeout, node_id, node_ip, filename, actor_id, task_id,
                             pid, suffix)
    for chunk in _read_log(source, node, name, follow, tail, timeout):
        yield _without_markers(chunk) if name.startswith("worker-") else chunk


def _without_markers(chunk: str) -> str:
    """Without the lines that tag a worker's output with its job and actor (the log
    monitor reads them; the driver's terminal never shows them either)."""
    return "".join(line for line in chunk.splitlines(keepends=True)
                   if not line.startswith((log_monitor.JOB_MARKER, log_monitor.ACTOR_MARKER)))


def _read_log(source: StateDataSource, node: NodeState, name: str, follow: bool, tail: int,
              timeout) -> Iterator[str]:
    if tail is not None and tail >= 0:
        reply = source.run(source.read_log(node, name, tail_lines=tail or 1), timeout)
        if tail:
            yield reply.data.decode(errors="replace")
        offset = reply.end_offset
    else:
        offset = 0
        while True:
            reply = source.run(source.read_log(node, name, offset=offset), timeout)
            if not reply.data:
                break
            yield reply.data.decode(errors="replace")
            offset = reply.end_offset
    while follow:
        reply = source.run(source.read_log(node, name, offset=offset), timeout)
        if reply.data:
            yield reply.data.decode(errors="replace")
            offset = reply.end_offset
        else:
            time.sleep(config.log_follow_poll_ms / 1000.0)

