"""`ray_core.util.state`: Ray's state API (ray.util.state) over a running cluster.

    common.py         the rows (TaskState, ActorState, ...) with Ray's field names, filters
    state_manager.py  StateDataSource: the one reader of the GCS tables, the owners and
                      the raylets, which the CLI and this API share
    api.py            list_* / get_* / summarize_* / list_logs / get_log
    explain.py        explain(id): where a task, object or actor is and what it waits for
    timeline.py       the tasks as a Chrome trace (ray_core.timeline, `ray_core timeline`)
    stacks.py         every worker's and driver's Python stack (`ray_core stack`)
    state_cli.py      the CLI's state commands, printers over this API
"""
from ray_core.util.state.api import (  # noqa: F401
    get_actor, get_job, get_log, get_node, get_objects, get_placement_group, get_task,
    get_worker, list_actors, list_jobs, list_logs, list_nodes, list_objects,
    list_placement_groups, list_tasks, list_workers, summarize_actors, summarize_objects,
    summarize_tasks)
from ray_core.util.state.explain import explain  # noqa: F401
from ray_core.util.state.common import (  # noqa: F401
    ActorState, JobState, NodeState, ObjectState, PlacementGroupState, RayStateApiException,
    TaskState, WorkerState)
