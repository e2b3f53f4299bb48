"""CoreWorkerService: what other processes ask a CoreWorker, answered on its io loop.

As an owner: the status (and value, if small) of an object it owns, waiting until the
object exists; where its plasma objects live; location updates. As a worker: cancel a
task (queued: skipped when reached; running: TaskCancelledError raised in it, or the
process exits with force), exit, and where its framed task socket listens.
"""
import asyncio
import json
import logging
import os

from ray_common.config import config
from ray_common.ids import ObjectID
from ray_common.protocol import core_worker_pb2, core_worker_pb2_grpc

from ray_core._private import hang_report
from ray_core._private.background import background_pool

logger = logging.getLogger(__name__)


class CoreWorkerServicer(core_worker_pb2_grpc.CoreWorkerServiceServicer):
    """What other processes ask this CoreWorker (on the io loop)."""

    def __init__(self, core):
        self._core = core

    async def GetObjectStatus(self, request, context):
        core = self._core
        object_id = ObjectID(request.object_id)
        if request.copy_lost:
            await asyncio.get_running_loop().run_in_executor(
                background_pool(), core.lifetime.recover_reported, object_id)
        obj = core.memory_store.get_if_exists(object_id)
        if obj is None:
            if not core.reference_counter.is_owned(object_id) and \
                    not core.task_manager.is_pending(object_id.task_id()):
                return core_worker_pb2.GetObjectStatusReply(
                    status=core_worker_pb2.GetObjectStatusReply.OUT_OF_SCOPE)
            loop = asyncio.get_running_loop()
            future = loop.create_future()

            def arrived(o):
                loop.call_soon_threadsafe(lambda: future.done() or future.set_result(o))

            core.memory_store.add_callback(object_id, arrived)
            obj = await future
        reply = core_worker_pb2.GetObjectStatusReply(
            status=core_worker_pb2.GetObjectStatusReply.CREATED, object_size=obj.size)
        if obj.in_plasma:
            reply.node_ids.append(obj.plasma_node or core.node_id)
        else:
            reply.object.data = obj.data
            reply.object.metadata = obj.metadata
        return reply

    async def GetObjectLocationsOwner(self, request, context):
        core = self._core
        reply = core_worker_pb2.GetObjectLocationsOwnerReply()
        for key in request.object_ids:
            info = reply.object_location_infos.add(object_id=key)
            obj = core.memory_store.get_if_exists(ObjectID(key))
            if obj is not None and obj.in_plasma:
                info.node_ids.append(obj.plasma_node or core.node_id)
                info.object_size = obj.size
        return reply

    async def UpdateObjectLocationBatch(self, request, context):
        core = self._core
        for update in request.updates:
            object_id = ObjectID(update.object_id)
            obj = core.memory_store.get_if_exists(object_id)
            if update.added and obj is not None and obj.in_plasma and not obj.plasma_node:
                obj.plasma_node = update.node_id
            if update.added:
                core.lifetime.add_copy(object_id, update.node_id)
        return core_worker_pb2.UpdateObjectLocationBatchReply()

    async def GetObjectsInfo(self, request, context):
        rows = self._core.lifetime.objects_info()
        return core_worker_pb2.GetObjectsInfoReply(rows_json=json.dumps(rows))

    async def ExplainObject(self, request, context):
        explanation, node_id = await hang_report.explain_owned(self._core,
                                                               ObjectID(request.object_id))
        return core_worker_pb2.ExplainObjectReply(explanation=explanation,
                                                  plasma_node_id=node_id)

    async def ReportGeneratorItem(self, request, context):
        self._core.generator_streams.report(request)
        return core_worker_pb2.ReportGeneratorItemReply()

    async def UpdateRefCounts(self, request, context):
        self._core.lifetime.handle_update(request)
        return core_worker_pb2.UpdateRefCountsReply()

    async def AssignObjectOwner(self, request, context):
        self._core.lifetime.adopt(ObjectID(request.object_id), request.node_id,
                                  request.object_size, request.borrower_address)
        return core_worker_pb2.AssignObjectOwnerReply(owner_address=self._core.address)

    async def CancelTask(self, request, context):
        core = self._core
        task_id = request.intended_task_id
        running = False
        if core.actor_runtime is not None:
            running = core.actor_runtime.cancel(task_id)
        elif core.executor is not None:
            if core.executor.current_task_id == task_id:
                running = True
                if request.force_kill:
                    logger.info("Force-cancelling task %s: exiting the worker", task_id.hex())
                    os._exit(1)
                core.interrupt_task(task_id)
            else:
                core.executor.cancelled.add(task_id)
        if request.recursive:
            core.cancel_children(task_id, request.force_kill)
        return core_worker_pb2.CancelTaskReply(requested_task_running=running,
                                               attempt_succeeded=True)

    async def Exit(self, request, context):
        core = self._core
        logger.info("Asked to exit (force=%s)", request.force_exit)
        if request.force_exit:
            try:    # its last tasks' events, or `list tasks` never learns how they ended
                await asyncio.wait_for(core.task_events.drain(),
                                       config.task_events_report_interval_ms / 1000.0)
            except Exception as e:  # noqa: BLE001 - exiting is what was asked
                logger.info("Sending the last task events failed: %s", e)
            os._exit(0)
        if request.if_owns_nothing:
            owned = core.what_it_owns()
            if owned:
                return core_worker_pb2.ExitReply(success=False, refusal=f"it owns {owned}")
        core.request_exit()
        return core_worker_pb2.ExitReply(success=True)

    async def PushTask(self, request, context):
        """The GCS pushes an actor's creation task here (actor calls use the task socket)."""
        from ray_core._private import actor_runtime
        return await actor_runtime.push_creation_task(self._core, request)

    async def GetTaskEndpoint(self, request, context):
        server = self._core.task_server
        if server is None:
            return core_worker_pb2.GetTaskEndpointReply()
        return core_worker_pb2.GetTaskEndpointReply(tcp_port=server.tcp_port,
                                                    unix_socket=server.unix_name)
