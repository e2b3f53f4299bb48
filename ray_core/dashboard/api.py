"""The dashboard's JSON API under /api/ (documented in the README): every answer is read
through the state API (ray_core.util.state) when it is asked, so the dashboard, the CLI
and user code see one truth. The state API is synchronous (it runs its calls on this
process's io loop), so each request calls it from a worker thread.

    GET /api/config                     the page's polling interval
    GET /api/cluster                    nodes with their resources in use, and totals
    GET /api/jobs | actors | placement_groups | workers
    GET /api/tasks?state=&name=&job_id=&limit=      task attempts, newest first
    GET /api/tasks/timeline_counts      task counts by state over time
    GET /api/objects                    objects and each node's object store use
    GET /api/logs?node_id=              a node's log files by category
    GET /api/logs/file?node_id=&filename=|actor_id=|task_id=&tail=   a log's last lines
    GET /api/timeline                   the Chrome trace of the tasks, as a download
"""
import asyncio
import bisect
import functools
import json
import time
from typing import Any, Callable, Dict, List

from aiohttp import web

from ray_common.config import config

from ray_core.util import state
from ray_core.util.state.state_manager import StateDataSource
from ray_core.util.state.timeline import timeline

# Columns of /api/tasks a query may filter on, and the most rows it returns.
TASK_FILTERS = ("state", "name", "job_id", "func_or_class_name", "node_id", "actor_id")
MAX_TASK_ROWS = 1000
TIMELINE_POINTS = 60
# A page polls each second: a slow answer must not pile up calls behind it.
STATE_TIMEOUT_S = 10.0


def _plain(value: Any) -> Any:
    """State rows (dataclasses) as JSON-ready dicts."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value.asdict() if hasattr(value, "asdict") else value


def _endpoint(fn: Callable[..., Any]):
    """Run `fn(address, query)` (state API calls) on a thread; its value as JSON, a bad
    query as 400 and a cluster that did not answer as 502, each with its reason."""
    @functools.wraps(fn)
    async def handle(request: web.Request) -> web.Response:
        address = request.app["gcs_address"]
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                None, fn, address, request.query)
        except ValueError as e:
            return web.json_response({"error": str(e)}, status=400)
        except Exception as e:      # the cluster did not answer: say so on the page
            return web.json_response({"error": f"{type(e).__name__}: {e}"}, status=502)
        if isinstance(result, web.StreamResponse):
            return result
        return web.json_response(_plain(result), dumps=functools.partial(json.dumps,
                                                                         default=str))
    return handle


def _list(name: str, address: str, **kwargs) -> list:
    return getattr(state, f"list_{name}")(address=address, detail=True, limit=10 ** 9,
                                          timeout=STATE_TIMEOUT_S,
                                          raise_on_missing_output=False, **kwargs)


def _node_stats(address: str) -> list:
    """(NodeState, GetNodeStatsReply or the error it raised) per alive node."""
    source = StateDataSource(address)
    return source.run(source.node_stats(), STATE_TIMEOUT_S)


def get_config(address, query) -> dict:
    return {"poll_ms": config.dashboard_poll_ms, "gcs_address": address}


def get_cluster(address, query) -> dict:
    """Each node with its resources in use (total - available) and object store use."""
    nodes = _list("nodes", address)
    stats = dict((n.node_id, s) for n, s in _node_stats(address))
    rows, totals = [], {}
    for node in nodes:
        row = node.asdict()
        reply = stats.get(node.node_id)
        if reply is not None and not isinstance(reply, BaseException):
            available = dict(reply.resources_available)
            row["resources_used"] = {k: v - available.get(k, 0.0)
                                     for k, v in node.resources_total.items()}
            row["object_store_used_bytes"] = reply.object_store_used_bytes
            row["object_store_capacity_bytes"] = reply.object_store_capacity_bytes
            row["num_workers"] = sum(1 for w in reply.workers if not w.is_driver)
        rows.append(row)
        if node.state == "ALIVE":
            for key, value in node.resources_total.items():
                used = row.get("resources_used", {}).get(key, 0.0)
                total = totals.setdefault(key, {"used": 0.0, "total": 0.0})
                total["used"] += used
                total["total"] += value
    alive = sum(1 for n in nodes if n.state == "ALIVE")
    return {"nodes": rows, "num_alive": alive, "num_dead": len(nodes) - alive,
            "resources": totals}


def get_jobs(address, query) -> list:
    return _list("jobs", address)


def get_actors(address, query) -> list:
    return _list("actors", address)


def get_workers(address, query) -> list:
    return _list("workers", address)


def get_placement_groups(address, query) -> list:
    return _list("placement_groups", address)


def get_tasks(address, query) -> dict:
    """Task attempts matching the query's filters (column=value), newest first."""
    filters = [(key, "=", query[key]) for key in TASK_FILTERS if query.get(key)]
    rows = _list("tasks", address, filters=filters)
    rows.sort(key=lambda r: r.creation_time_ms or 0, reverse=True)
    counts: Dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    limit = min(int(query.get("limit", MAX_TASK_ROWS)), MAX_TASK_ROWS)
    return {"total": len(rows), "counts": counts, "tasks": rows[:limit]}


def get_task_timeline_counts(address, query) -> dict:
    """How many task attempts were pending, running, finished and failed at each of
    TIMELINE_POINTS instants from the first attempt's creation to now: derived from the
    times the task table records, so the series needs no history of its own."""
    rows = _list("tasks", address)
    now_ms = int(time.time() * 1000)
    created, started, finished, failed = [], [], [], []
    for row in rows:
        born = row.creation_time_ms or row.start_time_ms or row.end_time_ms
        if born is None:
            continue
        created.append(born)
        if row.state in ("FINISHED", "FAILED"):
            # An attempt whose end was not reported ended by the last time it was seen.
            end = row.end_time_ms or row.start_time_ms or born
            (finished if row.state == "FINISHED" else failed).append(end)
            started.append(row.start_time_ms or end)    # never ran: never counts as running
        elif row.start_time_ms:
            started.append(row.start_time_ms)
    for times in (created, started, finished, failed):
        times.sort()
    first = created[0] if created else now_ms
    step = max((now_ms - first) / (TIMELINE_POINTS - 1), 1)
    points: List[dict] = []
    for i in range(TIMELINE_POINTS):
        t = first + i * step
        n_created, n_started = bisect.bisect_right(created, t), bisect.bisect_right(started, t)
        n_finished, n_failed = bisect.bisect_right(finished, t), bisect.bisect_right(failed, t)
        points.append({"time_ms": int(t), "PENDING": n_created - n_started,
                       "RUNNING": max(n_started - n_finished - n_failed, 0),
                       "FINISHED": n_finished, "FAILED": n_failed})
    return {"points": points}


def get_objects(address, query) -> dict:
    rows = _list("objects", address)
    stores = [{"node_id": n.node_id, "node_ip": n.node_ip,
               "used_bytes": s.object_store_used_bytes,
               "capacity_bytes": s.object_store_capacity_bytes,
               "spilled_bytes": s.spilled_bytes, "num_spilled_objects": s.num_spilled_objects,
               "total_restored_bytes": s.total_restored_bytes}
              for n, s in _node_stats(address)
              if not isinstance(s, BaseException)]
    return {"stores": stores, "objects": rows}


def get_logs(address, query) -> dict:
    return state.list_logs(address=address, node_id=query.get("node_id") or None,
                           timeout=STATE_TIMEOUT_S)


def get_log_file(address, query) -> dict:
    """The last `tail` lines of one log (the page asks again each poll: a live tail)."""
    tail = min(int(query.get("tail", 1000)), 10000)
    lines = "".join(state.get_log(
        address=address, node_id=query.get("node_id") or None,
        filename=query.get("filename") or None, actor_id=query.get("actor_id") or None,
        task_id=query.get("task_id") or None, tail=tail, timeout=STATE_TIMEOUT_S,
        suffix=query.get("suffix", "out")))
    return {"text": lines}


def get_timeline(address, query) -> web.Response:
    events = timeline(address=address, timeout=STATE_TIMEOUT_S)
    return web.Response(body=json.dumps(events), content_type="application/json", headers={
        "Content-Disposition": 'attachment; filename="ray_core_timeline.json"'})


ROUTES = {
    "/api/config": get_config, "/api/cluster": get_cluster, "/api/jobs": get_jobs,
    "/api/actors": get_actors, "/api/workers": get_workers,
    "/api/placement_groups": get_placement_groups, "/api/tasks": get_tasks,
    "/api/tasks/timeline_counts": get_task_timeline_counts, "/api/objects": get_objects,
    "/api/logs": get_logs, "/api/logs/file": get_log_file, "/api/timeline": get_timeline,
}


def add_routes(app: web.Application, gcs_address: str) -> None:
    app["gcs_address"] = gcs_address
    for path, fn in ROUTES.items():
        app.router.add_get(path, _endpoint(fn))
