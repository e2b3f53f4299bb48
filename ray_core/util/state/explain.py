"""explain(id): one paragraph on where a task, an object or an actor is and what it waits
for -- `ray_core explain ID` (beyond Ray, whose state API lists states but not causes).

Each part is asked of whoever knows it, as every state read is: the GCS task table (the
attempt's state, its worker and node), the owner (the dependencies it still waits for and
their owners, the lease request its raylet holds: resources asked against each node's
free ones, infeasible, a worker starting -- hang_report's words, over ExplainObject),
the placement group and actor tables (a group not ready, an actor restarting), the
raylets (an object spilled or being transferred: ExplainNodeObject) and the worker table
(an owner that died, and why). An owner that does not answer is said so, never waited on
past `get_hang_probe_timeout_s`.
"""
import asyncio
from typing import Dict, List, Optional

from ray_common import rpc
from ray_common.config import config
from ray_common.protocol import (common_pb2, core_worker_pb2, core_worker_pb2_grpc,
                                 gcs_service_pb2, node_manager_pb2)

from ray_core.util.state.state_manager import StateDataSource

_ACTOR = gcs_service_pb2.ActorTableData
# Bytes of each kind of id (ray_common.ids): how explain tells them apart.
_ACTOR_ID, _TASK_ID, _OBJECT_ID = 16, 24, 28
_DONE = (common_pb2.FINISHED, common_pb2.FAILED)


def explain(id: str, address: Optional[str] = None, timeout: Optional[float] = None) -> str:
    """Where the task, object or actor `id` (hex) is and what it waits for, in words."""
    try:
        raw = bytes.fromhex(id)
    except ValueError:
        raise ValueError(f"{id!r} is not a hex id") from None
    kinds = {_ACTOR_ID: _explain_actor, _TASK_ID: _explain_task, _OBJECT_ID: _explain_object}
    if len(raw) not in kinds:
        raise ValueError(f"{id} is no task id ({2 * _TASK_ID} hex digits), object id "
                         f"({2 * _OBJECT_ID}) or actor id ({2 * _ACTOR_ID})")
    source = StateDataSource(address)
    return source.run(kinds[len(raw)](source, raw), timeout)


def _resources(amounts: Dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(amounts.items())) + "}"


def _where(entry) -> str:
    return f"worker pid {entry.worker_pid} on node {entry.node_id.hex()[:12]}"


# ---- owners -------------------------------------------------------------------------
async def _dead_worker(source: StateDataSource, worker_id: bytes):
    """The worker table row of `worker_id` if it says the worker ended, else None."""
    for row in await source.gcs.get_all_worker_info():
        if row.worker_id == worker_id and not row.is_alive:
            return row
    return None


async def _ask_owner(source: StateDataSource, owner: common_pb2.Address, object_id: bytes):
    """(the owner's words on the object, the node holding its plasma copy); when the owner
    does not answer, why: dead (the worker table says how) or unreachable."""
    who = (f"its owner, worker {owner.worker_id.hex()[:16]} at {owner.ip_address}:"
           f"{owner.port} on node {owner.node_id.hex()[:12]}")
    dead = await _dead_worker(source, owner.worker_id)
    if dead is None:
        stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub,
                        f"{owner.ip_address}:{owner.port}", token=source.token)
        try:
            reply = await stub.ExplainObject(core_worker_pb2.ExplainObjectRequest(
                object_id=object_id), timeout=config.get_hang_probe_timeout_s)
            words = reply.explanation.split(": ", 1)[-1]
            return f"{words} (says {who})", reply.plasma_node_id
        except Exception as e:  # noqa: BLE001 - an owner that fails to answer is the answer
            dead = await _dead_worker(source, owner.worker_id)
            if dead is None:
                return (f"{who}, does not answer ({type(e).__name__}): it may be hung, or "
                        f"its node unreachable"), b""
    return (f"{who} (pid {dead.pid}), is dead ({dead.exit_detail or 'it exited'}): what "
            f"it owned is lost and its pending tasks will not run (OwnerDiedError)"), b""


async def _placement_group_words(source: StateDataSource, group_id: bytes) -> str:
    if not group_id:
        return ""
    for group in await source.placement_groups():
        if group.placement_group_id == group_id.hex() and group.state != "CREATED":
            detail = group.stats.get("scheduling_detail")
            return (f"it waits for placement group {group.placement_group_id}"
                    f"{' (' + group.name + ')' if group.name else ''}, which is not ready: "
                    f"{group.state}{': ' + detail if detail else ''}")
    return ""


# ---- tasks --------------------------------------------------------------------------
async def _explain_task(source: StateDataSource, task_id: bytes) -> str:
    entries = (await source.task_entries(task_ids=[task_id])).tasks
    if not entries:
        return (f"Task {task_id.hex()} is not known to the GCS: its events have not arrived "
                f"yet (they are sent in batches), or were dropped, or no such task exists.")
    entry = max(entries, key=lambda e: e.attempt_number)
    head = (f"Task {task_id.hex()} ({entry.name}, attempt {entry.attempt_number}) is "
            f"{common_pb2.TaskStatus.Name(entry.state)}")
    if entry.state == common_pb2.FINISHED:
        return f"{head}: it ran on {_where(entry)}."
    if entry.state == common_pb2.FAILED:
        message = (entry.error_message or "").strip().splitlines()
        return (f"{head} with {entry.error_type or 'an error'}"
                f"{': ' + message[-1] if message else ''}"
                f"{' (on ' + _where(entry) + ')' if entry.worker_pid else ''}.")
    if entry.state == common_pb2.RUNNING:
        return f"{head} on {_where(entry)}."
    if entry.type == common_pb2.ACTOR_CREATION_TASK:
        return f"{head}: it creates an actor. " + await _explain_actor(
            source, entry.actor_id)
    parts = [head]
    group = await _placement_group_words(source, entry.placement_group_id)
    if group:
        parts.append(group)
    returns = task_id + (1).to_bytes(4, "little")
    words, _node = await _ask_owner(source, entry.owner_address, returns)
    parts.append(words)
    return "; ".join(parts) + "."


# ---- objects ------------------------------------------------------------------------
async def _explain_object(source: StateDataSource, object_id: bytes) -> str:
    head = f"Object {object_id.hex()}"
    owner = await _owner_of_object(source, object_id)
    if owner is None:
        return (f"{head} is not known to any live process of the cluster: it was freed "
                f"(no reference is left), or its owner and every borrower are gone.")
    words, plasma_node = await _ask_owner(source, owner, object_id)
    parts = [f"{head}: {words}"]
    if plasma_node or "is dead" in words:     # a copy held in a store is said already
        parts += [said for _node, said in await _node_words(source, object_id)
                  if not said.startswith("in the object store")]
    return "; ".join(parts) + "."


async def _owner_of_object(source: StateDataSource, object_id: bytes):
    """The owner's Address: from the processes that hold the object (the owner's row, or a
    borrower naming its owner), else from the task table (a pending task's return: its
    owner submitted the task; a put's id names the task that put it, not its owner)."""
    rows, _gaps = await source.objects(config.state_probe_timeout_s)
    rows = [r for r in rows if r["object_id"] == object_id.hex()]
    owner_hex = next((r["worker_id"] for r in rows if r["owned"]), None) or \
        next((r["owner_worker_id"] for r in rows if r["owner_worker_id"]), None)
    if owner_hex is None:
        entries = (await source.task_entries(task_ids=[object_id[:_TASK_ID]])).tasks
        return entries[0].owner_address if entries else None
    for row in rows:
        if row["worker_id"] == owner_hex:
            ip, port = row["address"].rsplit(":", 1)
            return common_pb2.Address(worker_id=bytes.fromhex(owner_hex), ip_address=ip,
                                      port=int(port), node_id=bytes.fromhex(row["node_id"]))
    dead = await _dead_worker(source, bytes.fromhex(owner_hex))
    return dead.worker_address if dead is not None else common_pb2.Address(
        worker_id=bytes.fromhex(owner_hex))


async def _node_words(source: StateDataSource, object_id: bytes) -> List[tuple]:
    """(node, what it says) for each alive node that has something of the object."""
    nodes = [n for n in await source.nodes() if n.state == "ALIVE"]
    replies = await asyncio.gather(*(source.raylet(n).ExplainNodeObject(
        node_manager_pb2.ExplainNodeObjectRequest(object_id=object_id),
        timeout=config.get_hang_probe_timeout_s) for n in nodes), return_exceptions=True)
    return [(node, reply.explanation) for node, reply in zip(nodes, replies)
            if not isinstance(reply, BaseException) and reply.explanation]


# ---- actors -------------------------------------------------------------------------
async def _explain_actor(source: StateDataSource, actor_id: bytes) -> str:
    row = await source.gcs.get_actor_info(actor_id)
    if row is None:
        return f"No actor {actor_id.hex()} is known to the GCS."
    state = row.state
    head = (f"Actor {actor_id.hex()} ({row.class_name}{', ' + repr(row.name) if row.name else ''})"
            f" is {_ACTOR.ActorState.Name(state)}")
    death = row.death_cause.error_message.strip().splitlines()
    if state == _ACTOR.ALIVE:
        return f"{head} on worker pid {row.pid} of node {row.address.node_id.hex()[:12]}."
    if state == _ACTOR.DEAD:
        return f"{head}: {death[-1] if death else 'it was killed or its owner exited'}."
    if state == _ACTOR.DEPENDENCIES_UNREADY:
        return (f"{head}: its constructor's arguments are not ready yet; its owner, worker "
                f"{row.owner_address.worker_id.hex()[:16]}, resolves them first.")
    parts = [head]
    if state == _ACTOR.RESTARTING:
        parts.append(f"restart {row.num_restarts} of "
                     f"{'infinite' if row.max_restarts < 0 else row.max_restarts}"
                     f"{' after: ' + death[-1] if death else ', its previous worker died'}")
    strategy = row.task_spec.scheduling_strategy.placement_group_scheduling_strategy
    group = await _placement_group_words(source, strategy.placement_group_id)
    parts.append(group or await _placement_words(source, dict(row.required_resources)))
    return "; ".join(parts) + "."


async def _placement_words(source: StateDataSource, demand: Dict[str, float]) -> str:
    """Whether a worker for `demand` fits: infeasible, busy nodes, or starting."""
    view = await source.gcs.get_cluster_resource_view()
    names = sorted(demand)
    free = "; ".join(
        f"node {n.node_id.hex()[:12]} has "
        f"{_resources({k: n.resources_available.get(k, 0) for k in names})} free of "
        f"{_resources({k: n.resources_total.get(k, 0) for k in names})}" for n in view)
    asks = f"it asks for {_resources(demand)}"
    if not any(all(n.resources_total.get(k, 0) >= v for k, v in demand.items())
               for n in view):
        return f"infeasible: {asks}, which no node of the cluster has ({free})"
    if not any(all(n.resources_available.get(k, 0) >= v for k, v in demand.items())
               for n in view):
        return f"waiting for resources: {asks}, busy on every node that has it ({free})"
    return (f"{asks}, which fits ({free}): the GCS is leasing it a worker, whose process "
            f"may be starting")
