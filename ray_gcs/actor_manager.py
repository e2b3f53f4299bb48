"""The actor manager: creates actors, restarts them, kills them, and says why they died.

An actor's life as the GCS runs it (Ray's GcsActorManager, in Python):
1. RegisterActor stores the row PENDING_CREATION (the named index refuses a taken name)
   and starts scheduling at once; the caller does not wait for creation.
2. Scheduling leases a worker from the raylet of the owner's node (falling back to any
   alive node), honouring resources and scheduling strategy: the raylet's own policy
   may spill the request back to a better node, or keep it queued while nothing fits
   (an actor asking for more than exists stays PENDING_CREATION, it does not fail).
3. The creation task is pushed to the leased worker with CoreWorkerService.PushTask
   (gRPC: the GCS never imports ray_core). The constructor's reply makes it ALIVE with
   the worker's address, or DEAD with the constructor's pickled exception.
4. A worker failure (WORKER_FAILURE_CHANNEL) or node death ends the incarnation: the
   actor is RESTARTING and rescheduled while num_restarts < max_restarts (-1: no
   limit), else DEAD with a cause naming what happened. A kill with no_restart, a job
   that ends, or the death of the actor's owner (unless detached) makes it DEAD.
Every change is stored and published on ACTOR_CHANNEL by GcsActorTable.put, which is
what callers resolve addresses from. After a GCS restart on Redis the rows come back
from storage; ALIVE actors keep serving (their workers never stopped), pending ones
are scheduled again.

Nothing of an ended incarnation stays behind: its lease is returned and the cached gRPC
channel to its worker is closed (a channel holds tens of KB of gRPC core state: one per
actor ever created was most of the GCS's growth over 1,000 actors). The table forgets
the oldest DEAD rows past maximum_gcs_destroyed_actor_cached_count.
"""
import asyncio
import logging
from typing import Dict, Optional

from ray_common import rpc
from ray_common.config import config
from ray_common.ids import ActorID, UniqueID
from ray_common.protocol import (common_pb2, core_worker_pb2, core_worker_pb2_grpc,
                                 gcs_service_pb2 as pb, gcs_service_pb2_grpc,
                                 node_manager_pb2 as nm, node_manager_pb2_grpc as nm_grpc)
from ray_gcs import errors
from ray_gcs.actor_table import GcsActorTable

logger = logging.getLogger(__name__)

State = pb.ActorTableData
_GRANTED = nm.RequestWorkerLeaseReply.GRANTED
_SPILLBACK = nm.RequestWorkerLeaseReply.SPILLBACK
_REJECTED = nm.RequestWorkerLeaseReply.REJECTED


class _Incarnation:
    """The worker one incarnation of an actor runs on (and the lease that holds it)."""
    __slots__ = ("lease_id", "raylet", "worker_id", "node_id", "worker", "task")

    def __init__(self):
        self.lease_id = b""
        self.raylet = ""
        self.worker_id = b""
        self.node_id = b""
        self.worker = ""    # "ip:port" of its worker, once leased
        self.task: Optional[asyncio.Task] = None


def _worker_address(address: common_pb2.Address) -> str:
    return f"{address.ip_address}:{address.port}"


class GcsActorManager(gcs_service_pb2_grpc.ActorInfoGcsServiceServicer):
    def __init__(self, table: GcsActorTable, nodes, publisher):
        self._table = table
        self._nodes = nodes
        self._publisher = publisher
        self._incarnations: Dict[bytes, _Incarnation] = {}
        self._watch: Optional[asyncio.Task] = None
        self._background = set()
        nodes.add_death_listener(self._on_node_dead)

    def num_incarnations(self) -> int:
        """Actors the manager is creating or running (a gauge: 0 once all are DEAD)."""
        return len(self._incarnations)

    # ---- start-up ------------------------------------------------------------------
    def start(self) -> None:
        """Listen for worker failures and finished jobs; resume what a restart interrupted."""
        subscriber = self._publisher.add_subscriber(
            b"gcs_actor_manager", [pb.WORKER_FAILURE_CHANNEL, pb.JOB_CHANNEL], [])
        self._watch = asyncio.ensure_future(self._watch_events(subscriber))
        for actor in self._table.all():
            if actor.state in (State.PENDING_CREATION, State.RESTARTING):
                logger.info("Resuming the creation of actor %s after a GCS restart",
                            actor.actor_id.hex())
                self._schedule(actor)
            elif actor.state == State.ALIVE:
                inc = self._incarnations[actor.actor_id] = _Incarnation()
                inc.worker_id = actor.address.worker_id
                inc.node_id = actor.address.node_id
                inc.worker = _worker_address(actor.address)
                node = self._nodes.get(actor.address.node_id)
                if node is not None:
                    inc.raylet = f"{node.node_manager_address}:{node.node_manager_port}"

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for inc in self._incarnations.values():
            if inc.task is not None:
                inc.task.cancel()

    async def _watch_events(self, subscriber) -> None:
        async for message in subscriber.messages():
            try:
                if message.channel_type == pb.WORKER_FAILURE_CHANNEL:
                    await self._on_worker_failed(message.worker_failure_message)
                elif message.channel_type == pb.JOB_CHANNEL and \
                        message.job_message.state == pb.JOB_FINISHED:
                    await self._on_job_finished(message.job_message)
            except Exception:
                logger.exception("Handling %s failed", pb.ChannelType.Name(message.channel_type))

    # ---- RPCs ----------------------------------------------------------------------
    @errors.handler
    async def RegisterActor(self, request, context):
        spec = request.task_spec
        creation = spec.actor_creation_task_spec
        actor_id = errors.check_id(creation.actor_id, ActorID, "RegisterActor actor_id")
        existing = self._table.get(actor_id)
        if existing is not None:
            return pb.RegisterActorReply()       # a retried registration
        actor = pb.ActorTableData(
            actor_id=actor_id, job_id=spec.job_id, state=State.PENDING_CREATION,
            owner_address=spec.caller_address, name=creation.name,
            ray_namespace=creation.ray_namespace,
            class_name=spec.function_descriptor.class_name,
            max_restarts=creation.max_restarts, is_detached=creation.is_detached,
            task_spec=spec)
        actor.required_resources.update(spec.required_resources)
        await self._table.put(actor)     # raises ALREADY_EXISTS for a taken name
        logger.info("Registered actor %s (%s%s) of job %s", actor_id.hex(), actor.class_name,
                    f", name {creation.name!r}" if creation.name else "", spec.job_id.hex())
        self._schedule(actor)
        return pb.RegisterActorReply()

    @errors.handler
    async def KillActorViaGcs(self, request, context):
        actor_id = errors.check_id(request.actor_id, ActorID, "KillActorViaGcs actor_id")
        actor = self._table.get(actor_id)
        if actor is None:
            raise errors.not_found(f"KillActorViaGcs: unknown actor {actor_id.hex()}")
        if actor.state == State.DEAD:
            return pb.KillActorViaGcsReply()
        await self._end(actor, common_pb2.ACTOR_DIED,
                        request.reason or "it was killed by ray_core.kill()",
                        restart=not request.no_restart, force=request.force_kill,
                        wait_for_worker=True)
        return pb.KillActorViaGcsReply()

    # Reads are the table's.
    async def GetActorInfo(self, request, context):
        return await self._table.GetActorInfo(request, context)

    async def GetNamedActorInfo(self, request, context):
        return await self._table.GetNamedActorInfo(request, context)

    async def ListNamedActors(self, request, context):
        return await self._table.ListNamedActors(request, context)

    async def GetAllActorInfo(self, request, context):
        return await self._table.GetAllActorInfo(request, context)

    # ---- scheduling ----------------------------------------------------------------
    def _schedule(self, actor: pb.ActorTableData) -> None:
        inc = self._incarnations[actor.actor_id] = _Incarnation()
        inc.task = asyncio.ensure_future(self._create(actor.actor_id, inc))

    def _local_raylet(self, actor: pb.ActorTableData) -> Optional[str]:
        node = self._nodes.get(actor.owner_address.node_id)
        if node is None or node.state == node.DEAD:
            alive = self._nodes.alive_nodes()
            if not alive:
                return None
            node = alive[0]
        return f"{node.node_manager_address}:{node.node_manager_port}"

    async def _create(self, actor_id: bytes, inc: _Incarnation) -> None:
        actor = self._table.get(actor_id)
        try:
            reply = await self._lease(actor, inc)
            if reply is None or self._incarnations.get(actor_id) is not inc:
                return
            address = reply.worker_address
            inc.worker_id = address.worker_id
            inc.node_id = address.node_id
            inc.worker = _worker_address(address)
            spec = common_pb2.TaskSpec()
            spec.CopyFrom(actor.task_spec)
            spec.attempt_number = actor.num_restarts
            stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub, inc.worker)
            push = core_worker_pb2.PushTaskRequest(intended_worker_id=address.worker_id,
                                                   task_spec=spec)
            push.resource_mapping.extend(reply.resource_mapping)
            logger.info("Pushing the creation task of actor %s to worker %s (pid %d) on "
                        "node %s", actor_id.hex(), address.worker_id.hex(), reply.worker_pid,
                        address.node_id.hex())
            try:
                result = await stub.PushTask(push, timeout=None)
            except Exception as e:
                if self._incarnations.get(actor_id) is not inc:
                    return
                await self._end(self._table.get(actor_id), common_pb2.WORKER_DIED,
                                f"its worker (pid {reply.worker_pid}) died while running the "
                                f"constructor ({type(e).__name__})", restart=True)
                return
            actor = self._table.get(actor_id)
            if self._incarnations.get(actor_id) is not inc or actor.state == State.DEAD:
                return
            if result.is_application_error:
                dead = pb.ActorTableData()
                dead.CopyFrom(actor)
                dead.state = State.DEAD
                dead.death_cause.error_type = common_pb2.TASK_EXECUTION_EXCEPTION
                dead.death_cause.error_message = "its constructor raised an exception"
                if result.return_objects:
                    dead.death_cause.creation_exception = result.return_objects[0].object.data
                await self._table.put(dead)
                logger.info("Actor %s is DEAD: its constructor raised", actor_id.hex())
                await self._release(inc, "the actor's constructor raised")
                self._forget_worker(inc.worker)
                return
            alive = pb.ActorTableData()
            alive.CopyFrom(actor)
            alive.state = State.ALIVE
            alive.address.CopyFrom(address)
            alive.pid = reply.worker_pid
            await self._table.put(alive)
            logger.info("Actor %s is ALIVE on worker %s (pid %d), node %s", actor_id.hex(),
                        address.worker_id.hex(), reply.worker_pid, address.node_id.hex())
        except asyncio.CancelledError:
            raise
        except Exception as e:
            logger.exception("Creating actor %s failed", actor_id.hex())
            actor = self._table.get(actor_id)
            if actor is not None and actor.state != State.DEAD and \
                    self._incarnations.get(actor_id) is inc:
                await self._end(actor, common_pb2.ACTOR_DIED,
                                f"the GCS could not create it: {type(e).__name__}: {e}",
                                restart=False)

    async def _lease(self, actor: pb.ActorTableData, inc: _Incarnation):
        """Lease a worker for the actor; None when none can be had (the actor is DEAD then)."""
        raylet = self._local_raylet(actor)
        spec = actor.task_spec
        if actor.is_detached:
            # A detached actor must outlive its job: lease a worker no job owns, so that
            # the raylet does not kill it with the job's workers.
            spec = common_pb2.TaskSpec()
            spec.CopyFrom(actor.task_spec)
            spec.job_id = b""
        grant_or_reject = False
        while True:
            if raylet is None:
                await asyncio.sleep(config.gcs_actor_schedule_retry_ms / 1000.0)
                raylet = self._local_raylet(actor)
                continue
            inc.lease_id = UniqueID.from_random().binary()
            inc.raylet = raylet
            request = nm.RequestWorkerLeaseRequest(resource_spec=spec, lease_id=inc.lease_id,
                                                   grant_or_reject=grant_or_reject)
            stub = rpc.stub(nm_grpc.NodeManagerServiceStub, raylet)
            try:
                reply = await stub.RequestWorkerLease(request, timeout=None)
            except Exception as e:
                logger.info("Lease request for actor %s at %s failed (%s); retrying",
                            actor.actor_id.hex(), raylet, e)
                await asyncio.sleep(config.gcs_actor_schedule_retry_ms / 1000.0)
                raylet, grant_or_reject = self._local_raylet(actor), False
                continue
            if reply.status == _GRANTED:
                return reply
            if reply.status == _SPILLBACK:
                addr = reply.retry_at_raylet_address
                raylet, grant_or_reject = f"{addr.ip_address}:{addr.port}", True
                continue
            if reply.status == _REJECTED:
                raylet, grant_or_reject = self._local_raylet(actor), False
                continue
            why = reply.failure_message or nm.RequestWorkerLeaseReply.Status.Name(reply.status)
            if reply.runtime_env_setup_failed:
                await self._end(actor, common_pb2.RUNTIME_ENV_SETUP_FAILED,
                                f"its runtime_env could not be set up: {why}", restart=False)
            else:
                await self._end(actor, common_pb2.ACTOR_DIED,
                                f"no worker could be leased for it: {why}", restart=False)
            return None

    async def _release(self, inc: _Incarnation, reason: str) -> None:
        """Give the actor's worker back to its raylet, which kills it."""
        if not inc.lease_id or not inc.raylet:
            return
        stub = rpc.stub(nm_grpc.NodeManagerServiceStub, inc.raylet)
        try:
            await rpc.call_with_retry(stub.ReturnWorker, nm.ReturnWorkerRequest(
                lease_id=inc.lease_id, worker_id=inc.worker_id, disconnect_worker=True,
                disconnect_reason=reason))
        except Exception as e:
            logger.info("ReturnWorker for lease %s failed: %s", inc.lease_id.hex(), e)

    async def _kill_worker(self, actor: pb.ActorTableData, inc: Optional[_Incarnation],
                           reason: str, force: bool = True) -> None:
        """Stop the actor's worker: ask it to exit (at once if `force`), then return its
        lease. A graceful exit finishes the running call and sends its replies first; the
        raylet frees the lease when the process ends."""
        address = actor.address
        if address.worker_id and address.port:
            worker = _worker_address(address)
            stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub, worker)
            try:
                await stub.Exit(core_worker_pb2.ExitRequest(force_exit=force),
                                timeout=config.rpc_default_deadline_s)
            except Exception:
                pass    # it exits before it answers
            self._forget_worker(worker)
            if not force:
                return
        if inc is not None:
            if inc.task is not None and not inc.task.done():
                inc.task.cancel()
            # (Resumed after a GCS restart the lease id is unknown: the worker has exited
            # and its raylet frees the lease on its own.)
            await self._release(inc, reason)
            self._forget_worker(inc.worker)

    def _forget_worker(self, worker: str) -> None:
        """Close the cached channel to an ended incarnation's worker, unless a live
        incarnation was given a worker at that address since (its port reused)."""
        if worker and all(inc.worker != worker for inc in self._incarnations.values()):
            rpc.forget_channel(worker)

    # ---- endings -------------------------------------------------------------------
    async def _end(self, actor: pb.ActorTableData, error_type: int, reason: str,
                   restart: bool, force: bool = True, wait_for_worker: bool = False) -> None:
        """End the current incarnation: restart if allowed, else DEAD with the reason.

        A kill waits until the old worker was told to stop (`wait_for_worker`), so calls
        made after kill() returns cannot reach it; other endings stop it in the background."""
        actor_id = actor.actor_id
        inc = self._incarnations.pop(actor_id, None)
        old = pb.ActorTableData()
        old.CopyFrom(actor)
        if actor.address.worker_id:
            await self._end_owned_by(actor.address.worker_id,
                                     f"its owner, actor {actor_id.hex()} "
                                     f"({actor.class_name}), ended")
        can_restart = restart and (actor.max_restarts < 0 or
                                   actor.num_restarts < actor.max_restarts)
        row = pb.ActorTableData()
        row.CopyFrom(actor)
        row.ClearField("address")
        row.pid = 0
        if can_restart:
            row.state = State.RESTARTING
            row.num_restarts = actor.num_restarts + 1
            await self._table.put(row)
            logger.info("Actor %s is RESTARTING (restart %d of %s): %s", actor_id.hex(),
                        row.num_restarts,
                        "unlimited" if actor.max_restarts < 0 else actor.max_restarts, reason)
            self._schedule(row)
            await self._stop_worker(old, inc, reason, force, wait_for_worker)
            return
        if restart and actor.max_restarts != 0:
            reason += (f", and it has no restarts left (max_restarts={actor.max_restarts}, "
                       f"restarted {actor.num_restarts} time(s))")
        row.state = State.DEAD
        row.death_cause.error_type = error_type
        row.death_cause.error_message = reason
        await self._table.put(row)
        logger.info("Actor %s is DEAD: %s", actor_id.hex(), reason)
        await self._stop_worker(old, inc, reason, force, wait_for_worker)

    async def _stop_worker(self, actor, inc, reason: str, force: bool, wait: bool) -> None:
        """Stopping an old worker may wait on an unreachable node: unless asked to wait,
        do it in the background (which also never cancels the caller, which may be that
        incarnation's own creation coroutine)."""
        if wait:
            await self._kill_worker(actor, inc, reason, force)
            return
        task = asyncio.ensure_future(self._kill_worker(actor, inc, reason, force))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _on_worker_failed(self, worker: pb.WorkerTableData) -> None:
        for actor in list(self._table.all()):
            if actor.state == State.DEAD:
                continue
            inc = self._incarnations.get(actor.actor_id)
            on_it = (actor.address.worker_id == worker.worker_id or
                     (inc is not None and inc.worker_id == worker.worker_id))
            if on_it and worker.exit_intended:
                continue    # its end was asked for (kill, exit_actor): handled there
            if on_it:
                detail = worker.exit_detail or "no detail"
                await self._end(actor, common_pb2.WORKER_DIED,
                                f"its worker process (pid {worker.pid}) died unexpectedly: "
                                f"{detail}", restart=True)
            elif actor.owner_address.worker_id == worker.worker_id and not actor.is_detached:
                await self._end(actor, common_pb2.OWNER_DIED,
                                f"its owner (worker {worker.worker_id.hex()}, pid "
                                f"{worker.pid}) died", restart=False)

    async def _end_owned_by(self, worker_id: bytes, why: str) -> None:
        """An actor's worker is gone: the actors it created (and owns) go with it."""
        for actor in list(self._table.all()):
            if actor.state != State.DEAD and not actor.is_detached and \
                    actor.owner_address.worker_id == worker_id:
                await self._end(actor, common_pb2.OWNER_DIED, why, restart=False)

    async def _on_node_dead(self, node: common_pb2.NodeInfo) -> None:
        for actor in list(self._table.all()):
            if actor.state == State.DEAD:
                continue
            inc = self._incarnations.get(actor.actor_id)
            if actor.address.node_id == node.node_id or \
                    (inc is not None and inc.node_id == node.node_id):
                await self._end(actor, common_pb2.NODE_DIED,
                                f"the node it ran on ({node.node_id.hex()}) died: "
                                f"{node.death_reason or 'no reason given'}", restart=True)
            elif actor.owner_address.node_id == node.node_id and not actor.is_detached:
                await self._end(actor, common_pb2.OWNER_DIED,
                                f"its owner's node ({node.node_id.hex()}) died", restart=False)

    async def _on_job_finished(self, job: pb.JobTableData) -> None:
        for actor in list(self._table.all()):
            if actor.state != State.DEAD and actor.job_id == job.job_id and \
                    not actor.is_detached:
                await self._end(actor, common_pb2.OWNER_DIED,
                                f"its job {job.job_id.hex()} finished (the driver that owns it "
                                f"exited)", restart=False)
