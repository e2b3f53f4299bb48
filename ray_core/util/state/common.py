"""The rows of the state API, with Ray's names (ray.util.state.common), and the filters
every list_* call takes.

A row is a dataclass; `row["state"]` reads it like a dict too (Ray's rows are read both
ways). Columns marked `detail` are filled only with `detail=True`, as in Ray.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

PREDICATES = ("=", "!=")


class RayStateApiException(Exception):
    """A state API call failed: the cluster did not answer, or not every source did."""


def _detail(default=None):
    return field(default=default, metadata={"detail": True})


class StateSchema:
    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def get(self, name: str, default=None) -> Any:
        return getattr(self, name, default)

    def asdict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def columns(cls, detail: bool = True) -> List[str]:
        return [f.name for f in dataclasses.fields(cls) if detail or not f.metadata.get("detail")]

    def without_detail(self) -> "StateSchema":
        return dataclasses.replace(self, **{
            f.name: None for f in dataclasses.fields(self) if f.metadata.get("detail")})


@dataclass
class TaskState(StateSchema):
    task_id: str
    attempt_number: int
    name: str
    state: str
    job_id: str
    actor_id: Optional[str]
    type: str
    func_or_class_name: str
    parent_task_id: str
    node_id: Optional[str]
    worker_id: Optional[str]
    worker_pid: Optional[int]
    error_type: Optional[str]
    language: Optional[str] = _detail()
    required_resources: Optional[Dict[str, float]] = _detail()
    placement_group_id: Optional[str] = _detail()
    events: Optional[List[Dict[str, Any]]] = _detail()
    creation_time_ms: Optional[int] = _detail()
    start_time_ms: Optional[int] = _detail()
    end_time_ms: Optional[int] = _detail()
    error_message: Optional[str] = _detail()
    owner_address: Optional[str] = _detail()


@dataclass
class ActorState(StateSchema):
    actor_id: str
    class_name: str
    state: str
    job_id: str
    name: Optional[str]
    node_id: Optional[str]
    pid: Optional[int]
    ray_namespace: Optional[str]
    required_resources: Optional[Dict[str, float]] = _detail()
    death_cause: Optional[Dict[str, Any]] = _detail()
    is_detached: Optional[bool] = _detail()
    placement_group_id: Optional[str] = _detail()
    repr_name: Optional[str] = _detail()
    num_restarts: Optional[int] = _detail()
    max_restarts: Optional[int] = _detail()
    address: Optional[str] = _detail()


@dataclass
class NodeState(StateSchema):
    node_id: str
    node_ip: str
    is_head_node: bool
    state: str
    state_message: Optional[str]
    node_name: str
    resources_total: Dict[str, float]
    labels: Dict[str, str]
    start_time_ms: Optional[int] = _detail()
    end_time_ms: Optional[int] = _detail()
    raylet_address: Optional[str] = _detail()


@dataclass
class WorkerState(StateSchema):
    worker_id: str
    is_alive: bool
    worker_type: str
    exit_type: Optional[str]
    node_id: str
    ip: str
    pid: int
    exit_detail: Optional[str]
    job_id: Optional[str] = _detail()
    start_time_ms: Optional[int] = _detail()
    end_time_ms: Optional[int] = _detail()
    address: Optional[str] = _detail()


@dataclass
class JobState(StateSchema):
    job_id: str
    type: str
    status: str
    entrypoint: str
    start_time: Optional[int]
    end_time: Optional[int]
    driver_info: Optional[Dict[str, Any]]
    ray_namespace: Optional[str] = _detail()
    runtime_env: Optional[Dict[str, Any]] = _detail()


@dataclass
class PlacementGroupState(StateSchema):
    placement_group_id: str
    name: str
    creator_job_id: str
    state: str
    bundles: Optional[List[Dict[str, Any]]] = _detail()
    is_detached: Optional[bool] = _detail()
    stats: Optional[Dict[str, Any]] = _detail()


@dataclass
class ObjectState(StateSchema):
    object_id: str
    object_size: int
    task_status: str
    attempt_number: int
    reference_type: str
    call_site: str
    type: str
    pid: int
    ip: str
    node_id: Optional[str] = _detail()
    owner_worker_id: Optional[str] = _detail()
    where: Optional[str] = _detail()
    reference_reasons: Optional[List[str]] = _detail()


# Ray's resource names (`ray list <resource>`), to their row class.
RESOURCES: Dict[str, type] = {
    "tasks": TaskState, "actors": ActorState, "objects": ObjectState, "nodes": NodeState,
    "workers": WorkerState, "jobs": JobState, "placement_groups": PlacementGroupState,
}

Filter = Tuple[str, str, Any]


def check_filters(resource: str, filters: Optional[List[Filter]]) -> List[Filter]:
    """Refuse a filter whose key is no column of `resource`, or whose predicate is not
    = or !=, naming the valid ones."""
    columns = RESOURCES[resource].columns()
    out = []
    for item in filters or ():
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise ValueError(f"a filter is a (key, predicate, value) tuple such as "
                             f"('state', '=', 'RUNNING'), not {item!r}")
        key, predicate, value = item
        if key not in columns:
            raise ValueError(f"{key!r} is not a column of {resource}: filter on one of "
                             f"{', '.join(columns)}")
        if predicate not in PREDICATES:
            raise ValueError(f"unsupported predicate {predicate!r} in the filter on {key!r}: "
                             f"use one of {', '.join(PREDICATES)}")
        out.append((key, predicate, value))
    return out


def _matches(value: Any, wanted: Any) -> bool:
    if value is None:
        return wanted is None or str(wanted).lower() in ("", "none", "null")
    if isinstance(value, bool):
        return str(wanted).lower() in (("true", "1") if value else ("false", "0"))
    return str(value).lower() == str(wanted).lower()


def apply_filters(rows: list, filters: List[Filter]) -> list:
    for key, predicate, wanted in filters:
        want_equal = predicate == "="
        rows = [row for row in rows if _matches(getattr(row, key), wanted) == want_equal]
    return rows
