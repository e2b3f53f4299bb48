"""Why a get() or wait() is still waiting: one line per object, saying where it is.

Ray only says that a get "is likely hung". A get that has waited `get_hang_warning_s`
says once, on the terminal of the process that waits (a driver's, or a worker's stream,
which reaches the driver's), what each missing object waits for: its task's arguments,
resources (and whether any node could ever fit them), a worker starting, the worker and
node it runs on, the actor it waits for, or an owner that does not answer. Everything
is read where it already lives -- the task manager, the submitters, the raylet that holds
the lease request, the owner -- with short deadlines: a report must never hang itself.
"""
import asyncio
import logging
import sys
from typing import List

from ray_common import rpc
from ray_common.config import config
from ray_common.ids import ObjectID
from ray_common.protocol import core_worker_pb2, core_worker_pb2_grpc

logger = logging.getLogger(__name__)
_MAX_OBJECTS = 8


def warn(message: str) -> None:
    """To the log file and the terminal (the stderr handler shows only errors)."""
    logger.warning("%s", message)
    print(f"ray_core: {message}", file=sys.stderr, flush=True)


def report_wait(core, what: str, refs: list, waited_s: float) -> None:
    """Explain a blocked get/wait (`what`) of these ObjectRefs on the waiting thread,
    never for long."""
    try:
        lines = rpc.run_sync(asyncio.wait_for(_explain_all(core, refs),
                                              config.get_hang_report_timeout_s))
    except Exception as e:  # noqa: BLE001 - a report that fails still says what it waits for
        lines = [f"{ref.hex()}: (could not find out where it is: {type(e).__name__} {e})"
                 for ref in refs[:_MAX_OBJECTS]]
    more = len(refs) - _MAX_OBJECTS
    warn(f"{what} has waited {waited_s:g} s for {len(refs)} object(s):\n  - "
         + "\n  - ".join(lines) + (f"\n  ... and {more} more" if more > 0 else ""))


async def _explain_all(core, refs: list) -> List[str]:
    return list(await asyncio.gather(*(explain_object(core, ref.object_id(),
                                                      ref.owner_address())
                                       for ref in refs[:_MAX_OBJECTS])))


async def explain_object(core, object_id: ObjectID, owner: bytes = b"", depth: int = 0) -> str:
    """`<id>: <where it is>` for an object this process waits for (io loop); `owner`: the
    serialized address its ref names."""
    task = core.task_manager.get(object_id.task_id())
    if task is not None:
        return f"{object_id.hex()}: {await _explain_task(core, task, depth)}"
    if core.reference_counter.is_owned(object_id):
        return (f"{object_id.hex()}: owned here, but no task of this process will make it "
                f"(it was freed or lost)")
    return f"{object_id.hex()}: {await _explain_borrowed(core, object_id, owner)}"


async def explain_owned(core, object_id: ObjectID):
    """(where the object is, in words; the node holding its plasma copy or b"") as this
    process sees it -- `ray_core explain` asks the object's owner this (io loop)."""
    obj = core.memory_store.get_if_exists(object_id)
    if obj is None:
        return await explain_object(core, object_id), b""
    if obj.is_error:
        return f"{object_id.hex()}: ready, holding an error (its task failed)", b""
    if obj.in_plasma:
        node = obj.plasma_node or core.node_id
        return (f"{object_id.hex()}: ready, {obj.size} bytes in the object store of node "
                f"{node.hex()[:12]}"), node
    return f"{object_id.hex()}: ready, {obj.size} bytes in its owner's memory", b""


async def _explain_task(core, task, depth: int) -> str:
    name = f"the return of task {task.function_name} ({task.task_id.hex()})"
    if task.cancelled:
        return f"{name}, cancelled: waiting for it to stop"
    waiting = [ObjectID(arg.object_ref.object_id) for arg in task.spec.args
               if not arg.is_inlined and core.reference_counter.is_owned(
                   ObjectID(arg.object_ref.object_id))
               and not core.memory_store.contains(ObjectID(arg.object_ref.object_id))]
    if waiting:
        detail = "; ".join([await explain_object(core, oid, depth=depth + 1)
                            for oid in waiting[:3]]
                           if depth < 2 else [oid.hex() for oid in waiting[:3]])
        return (f"{name} waits for {len(waiting)} of its argument(s) to be made "
                f"[{detail}]")
    actor_id = getattr(task, "actor_id", b"")
    if actor_id:
        return f"{name} {core.actor_submitter.where(task)}"
    where, lease = core.submitter.where(task)
    if lease is not None:
        lease_id, raylet = lease
        try:
            why = await core.lease_client.explain_lease(lease_id, raylet)
        except Exception as e:  # noqa: BLE001
            why = f"its raylet {raylet or 'here'} did not say ({type(e).__name__})"
        where = f"{where}: {why}"
    return f"{name} {where}"


async def _explain_borrowed(core, object_id: ObjectID, owner_bytes: bytes) -> str:
    if not owner_bytes:
        return "owned by another process, which this one cannot name"
    owner = core._owner_pb(owner_bytes)
    who = (f"its owner, worker {owner.worker_id.hex()[:16]} at {owner.ip_address}:"
           f"{owner.port} on node {owner.node_id.hex()[:12]}")
    stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub,
                    f"{owner.ip_address}:{owner.port}")
    try:
        await stub.GetObjectLocationsOwner(core_worker_pb2.GetObjectLocationsOwnerRequest(
            object_ids=[object_id.binary()]), timeout=config.get_hang_probe_timeout_s)
    except Exception as e:  # noqa: BLE001
        return (f"{who}, does not answer ({type(e).__name__}): it may be dead, or its node "
                f"unreachable")
    return f"{who}, answers but has not made it yet"
