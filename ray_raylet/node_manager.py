"""The NodeManager: the raylet's gRPC face and the wiring of its parts.

It owns the node's resources, the WorkerPool, the LeaseManager and the ObjectManager, and
keeps the GCS informed: the node's registration, its resource reports (whenever they
change, at most every `raylet_report_resources_period_milliseconds`), worker failures,
jobs whose driver died, and the one warning per infeasible shape. From the GCS it takes
the node table and the cluster resource view, which feed spillback decisions.

Pinning: PinObjectIDs takes a plasma get reference on each primary copy and holds it until
FreeObjects, so the store cannot evict it while its owner needs it.
"""
import asyncio
import collections
import logging
import os
import time
from typing import Dict, List, Optional

import grpc

from ray_common import metrics, rpc
from ray_common.config import config
from ray_common.ids import JobID
from ray_common.protocol import common_pb2, gcs_service_pb2, node_manager_pb2, node_manager_pb2_grpc
from ray_gcs.errors import GcsUnavailableError
from ray_raylet import resources as res
from ray_raylet.bundles import BundleReservations
from ray_raylet.lease_manager import LeaseManager
from ray_raylet import object_manager
from ray_raylet.object_manager import ObjectManager, PullError
from ray_raylet.memory_monitor import MemoryMonitor
from ray_raylet.node_introspection import LogFiles, dump_stack, explain_object
from ray_raylet.object_owners import ObjectOwners
from ray_raylet.spill_manager import SpillManager
from ray_raylet.worker_pool import ProcessWatcher, Worker, WorkerPool

NODE_ID_LABEL = "ray.io/node-id"    # the label Ray gives every node

logger = logging.getLogger(__name__)
NM = node_manager_pb2


class NodeManager(node_manager_pb2_grpc.NodeManagerServiceServicer):
    def __init__(self, *, node_id: bytes, node_ip: str, gcs_client, gcs_address: str,
                 plasma, object_store_socket: str, session_dir: str,
                 total_resources: Dict[str, float], is_head: bool = False,
                 gpu_ids: Optional[List[int]] = None, labels: Optional[Dict[str, str]] = None):
        self.node_id = node_id
        # Ray's node labels, with its default ray.io/node-id (the scheduler does not
        # match them yet: they are what get_node_labels() and nodes() report).
        self.labels = dict(labels or {}, **{NODE_ID_LABEL: node_id.hex()})
        self.node_ip = node_ip
        self.gcs = gcs_client
        self.gcs_address = gcs_address
        self.plasma = plasma
        self.object_store_socket = object_store_socket
        self.session_dir = session_dir
        self.is_head = is_head
        self.local = res.NodeResources(total_resources, track_instances=True)
        self.gpu_ids = gpu_ids
        self.port = 0
        self.server = None
        self.pool: Optional[WorkerPool] = None
        self.leases: Optional[LeaseManager] = None
        self.objects: Optional[ObjectManager] = None
        self.node_addresses: Dict[bytes, str] = {}
        self.transfer_addresses: Dict[bytes, str] = {}   # node id -> its TransferServer
        self.transfer_port = 0
        self.pinned: Dict[bytes, object] = {}
        self.owners = ObjectOwners()
        # Called (on the io loop) when ShutdownRaylet asks this raylet to stop.
        self.on_shutdown_request = lambda: None
        self._tasks: List[asyncio.Task] = []
        self._subscription = None
        self._last_report = None
        self._store_watch: Optional[ProcessWatcher] = None
        self._store_fd: Optional[int] = None
        self.memory_monitor: Optional[MemoryMonitor] = None
        self.log_files = LogFiles(os.path.join(session_dir, "logs"))

    @property
    def address(self) -> str:
        return f"{self.node_ip}:{self.port}"

    # ---- life cycle ------------------------------------------------------------

    async def serve(self, port: int = 0) -> int:
        """Bind and start the gRPC server (both services on one port); returns the port."""
        self.spills = SpillManager(plasma=self.plasma, node_id=self.node_id,
                                   session_dir=self.session_dir, pinned=self.pinned,
                                   unpin=self._unpin)
        self.objects = ObjectManager(node_id=self.node_id, plasma=self.plasma,
                                     node_address=self.transfer_addresses.get)
        self.objects.spills = self.spills
        self.server, self.port = await rpc.start_server(
            [(node_manager_pb2_grpc.add_NodeManagerServiceServicer_to_server, self),
             (object_manager.add_to_server, self.objects)],
            port=port)
        self.node_addresses[self.node_id] = self.address
        self.transfer_port = self.objects.serve_transfers(self.node_ip)
        self.transfer_addresses[self.node_id] = f"{self.node_ip}:{self.transfer_port}"
        return self.port

    async def start(self) -> None:
        """Start the worker pool and lease manager, register with the GCS, follow its views."""
        self.pool = WorkerPool(
            node_id=self.node_id, node_ip=self.node_ip, raylet_address=self.address,
            gcs_address=self.gcs_address, object_store_socket=self.object_store_socket,
            session_dir=self.session_dir, num_cpus=res.from_fixed(self.local.total.get("CPU", 0)),
            on_worker_exit=self._on_worker_exit, kv_get=self.gcs.kv_get)
        self.pool.start()
        self.leases = LeaseManager(node_id=self.node_id, local=self.local, pool=self.pool,
                                   pull_dependencies=self._pull_dependencies,
                                   warn_infeasible=self._publish_infeasible,
                                   gpu_ids=self.gpu_ids)
        self.bundles = BundleReservations(self.local, self.leases.local_resources_changed,
                                          self._kill_group_leases)
        self.memory_monitor = MemoryMonitor(
            node_id=self.node_id, leased_workers=self._leased_workers,
            kill=lambda worker, why: self.pool.kill(worker, why, force=True))
        self.memory_monitor.start()
        await self.gcs.register_node(self._node_info())
        logger.info("Registered node %s at %s with resources %s", self.node_id.hex(),
                    self.address, res.describe(self.local.total))
        self._subscription = self.gcs.subscribe(
            [gcs_service_pb2.NODE_INFO_CHANNEL, gcs_service_pb2.RESOURCE_VIEW_CHANNEL,
             gcs_service_pb2.WORKER_FAILURE_CHANNEL, gcs_service_pb2.JOB_CHANNEL],
            self._on_gcs_message)
        for info in await self.gcs.get_all_node_info(only_alive=True):
            self._on_node_info(info)
        for data in await self.gcs.get_cluster_resource_view():
            self._on_resources(data)
        self._tasks.append(asyncio.ensure_future(self._report_loop()))
        self._tasks.append(asyncio.ensure_future(self._watch_gcs()))

    def _node_info(self) -> common_pb2.NodeInfo:
        return common_pb2.NodeInfo(
            node_id=self.node_id, node_manager_address=self.node_ip,
            node_manager_port=self.port, object_manager_port=self.transfer_port,
            object_store_socket_name=self.object_store_socket, node_name=self.node_ip,
            state=common_pb2.NodeInfo.ALIVE, resources_total=self.local.total_floats(),
            start_time_ms=int(time.time() * 1000), is_head_node=self.is_head,
            session_dir=self.session_dir, labels=self.labels)

    async def watch_store(self, pid: int) -> None:
        """A plasma store that dies under us leaves a node that cannot hold objects: stop."""
        def store_exited():
            logger.error("The plasma store (pid %d) of node %s exited; shutting the raylet "
                         "down", pid, self.node_id.hex())
            self.on_shutdown_request()
        self._store_watch = ProcessWatcher(asyncio.get_running_loop())
        self._store_fd = self._store_watch.watch(pid, store_exited)

    async def shutdown(self, unregister: bool = True, reason: str = "raylet shutting down") -> None:
        logger.info("Shutting down node %s: %s", self.node_id.hex(), reason)
        if self._store_watch is not None:
            self._store_watch.unwatch(self._store_fd)
            self._store_watch = None
        for task in self._tasks:
            task.cancel()
        if self.memory_monitor is not None:
            self.memory_monitor.stop()
        if self._subscription is not None:
            self._subscription.close()
        if self.pool is not None:
            await self.pool.shutdown()
        for object_id in list(self.pinned):
            self._unpin(object_id)
        if self.objects is not None:
            self.objects.close()
            self.spills.shutdown()
        if unregister:
            try:
                await asyncio.wait_for(self.gcs.unregister_node(self.node_id, reason),
                                       config.raylet_unregister_timeout_ms / 1000.0)
            except Exception as e:  # the GCS may be gone first
                logger.info("Could not unregister node %s: %s", self.node_id.hex(), e)
        if self.server is not None:
            await self.server.stop(grace=None)

    # ---- GCS: reports and views -----------------------------------------------------

    def _resources_data(self) -> common_pb2.ResourcesData:
        return common_pb2.ResourcesData(
            node_id=self.node_id, resources_total=self.local.total_floats(),
            resources_available=self.local.available_floats(),
            resource_load=self.leases.resource_load(), version=self.leases.version)

    async def _report_loop(self) -> None:
        period = config.raylet_report_resources_period_milliseconds / 1000.0
        while True:
            await asyncio.sleep(period)
            data = self._resources_data()
            key = (tuple(sorted(data.resources_available.items())),
                   tuple(sorted(data.resources_total.items())),
                   tuple(d.SerializeToString() for d in data.resource_load))
            if key == self._last_report:
                continue
            try:
                await self.gcs.report_resource_usage(data)
                self._last_report = key
            except Exception as e:
                logger.warning("Resource report of node %s failed: %s", self.node_id.hex(), e)

    async def _watch_gcs(self) -> None:
        """A GCS gone for good leaves this node nothing to do: shut down rather than
        linger. Gone for good: no answer for gcs_rpc_server_reconnect_timeout_s (a head
        with Redis storage restarts its GCS within seconds), or its supervisor's note
        that an in-memory GCS died (then at once)."""
        period = config.raylet_gcs_check_period_ms / 1000.0
        while True:
            await asyncio.sleep(period)
            try:
                await self.gcs.check_alive([self.node_id])
            except GcsUnavailableError as e:    # raised once the client's retries ran out
                logger.error("The GCS at %s is gone (%s); shutting down node %s",
                             self.gcs_address, e, self.node_id.hex())
                self.on_shutdown_request()
                return
            except Exception as e:  # noqa: BLE001 - anything else: it answered
                logger.warning("Checking the GCS at %s: %s", self.gcs_address, e)

    def _on_gcs_message(self, message) -> None:
        which = message.WhichOneof("inner_message")
        if which == "node_info_message":
            self._on_node_info(message.node_info_message)
        elif which == "resource_view_message":
            for data in message.resource_view_message.nodes:
                self._on_resources(data)
        elif which == "worker_failure_message":
            dead = message.worker_failure_message
            if dead.worker_address.node_id != self.node_id:   # local deaths: seen already
                self._owner_died(dead.worker_id, f"its owner, worker {dead.worker_id.hex()} "
                                                 f"on node {dead.worker_address.node_id.hex()}, "
                                                 f"died")
        elif which == "job_message" and message.job_message.state == gcs_service_pb2.JOB_FINISHED:
            job_id = message.job_message.job_id
            if self.pool.workers_of_job(job_id):
                self._end_job(job_id, "the GCS says it finished")

    def _on_node_info(self, info: common_pb2.NodeInfo) -> None:
        if info.node_id == self.node_id:
            if info.state == common_pb2.NodeInfo.DEAD:
                # The GCS gave up on this node (missed health checks): its leases and
                # objects are being failed over, so carrying on would only split the cluster.
                logger.error("The GCS marked this node %s dead (%s); shutting down",
                             self.node_id.hex(), info.death_reason or "no reason given")
                self.on_shutdown_request()
            return
        if info.state == common_pb2.NodeInfo.ALIVE:
            self.node_addresses[info.node_id] = (f"{info.node_manager_address}:"
                                                 f"{info.node_manager_port}")
            self.transfer_addresses[info.node_id] = (f"{info.node_manager_address}:"
                                                     f"{info.object_manager_port}")
            address = common_pb2.Address(node_id=info.node_id,
                                         ip_address=info.node_manager_address,
                                         port=info.node_manager_port)
            known = self.leases.remote.get(info.node_id)
            available = known.available_floats() if known else dict(info.resources_total)
            self.leases.update_node(info.node_id, address, dict(info.resources_total), available)
        else:
            self.node_addresses.pop(info.node_id, None)
            self.transfer_addresses.pop(info.node_id, None)
            self.leases.remove_node(info.node_id)
            why = f"its owner's node {info.node_id.hex()} died"
            self._reclaim(self.leases.owner_node_died(info.node_id, why))
            self._free_objects(self.owners.take_owned_on_node(info.node_id), why)

    def _on_resources(self, data: common_pb2.ResourcesData) -> None:
        if data.node_id != self.node_id and data.node_id in self.node_addresses:
            self.leases.update_node(data.node_id, None, dict(data.resources_total),
                                    dict(data.resources_available))

    def _publish_infeasible(self, message: str, job_id: bytes) -> None:
        pub = gcs_service_pb2.PubMessage(
            channel_type=gcs_service_pb2.ERROR_INFO_CHANNEL, key_id=job_id,
            error_info_message=gcs_service_pb2.ErrorTableData(
                job_id=job_id, type="infeasible_task", error_message=message,
                timestamp_ms=int(time.time() * 1000)))
        asyncio.ensure_future(self._gcs_quietly(self.gcs.publish([pub]), "publish a warning"))

    async def _gcs_quietly(self, coro, what: str) -> None:
        try:
            await coro
        except Exception as e:
            logger.warning("Could not %s at the GCS: %s", what, e)

    # ---- workers ----------------------------------------------------------------

    def _on_worker_exit(self, worker: Worker) -> None:
        """Free what the process held, and tell the GCS: owners elsewhere (of its task,
        of leases it held on other raylets, of actors it created) act on its death."""
        self._owner_died(worker.worker_id, f"its owner, "
                                           f"{'driver' if worker.is_driver else 'worker'} "
                                           f"{worker.hex} (pid {worker.pid}), exited")
        if worker.is_driver:
            logger.warning("Driver %s (pid %d) of job %s died: finishing the job and killing "
                           "its workers", worker.hex, worker.pid, worker.job_id.hex())
            self._end_job(worker.job_id, "its driver died")
            asyncio.ensure_future(self._gcs_quietly(self._mark_job_finished(worker.job_id),
                                                    "mark the job finished"))
            self._report_death(worker, None, "the driver exited", common_pb2.DRIVER)
            return
        lease = self.leases.worker_died(worker)
        if worker.exit_intended:
            self._report_death(worker, lease, "exited as intended", common_pb2.WORKER)
            return
        how = (f"was killed: {worker.kill_reason}" if worker.kill_reason else
               f"exited unexpectedly with code {worker.exit_code}")
        self._report_death(worker, lease, how, common_pb2.WORKER)

    def _report_death(self, worker: Worker, lease, how: str, worker_type: int) -> None:
        detail = (f"worker {worker.hex} (pid {worker.pid}) on node {self.node_id.hex()} {how}"
                  + (f" while holding lease {lease.lease_id.hex()} of task "
                     f"{lease.request.task_hex}" if lease else ""))
        failure = gcs_service_pb2.WorkerTableData(
            worker_id=worker.worker_id, is_alive=False, pid=worker.pid,
            worker_type=worker_type, job_id=worker.job_id,
            exit_type=common_pb2.WORKER_DIED, exit_detail=detail,
            exit_intended=worker.exit_intended or worker.is_driver,
            timestamp_ms=int(time.time() * 1000),
            worker_address=common_pb2.Address(node_id=self.node_id, ip_address=worker.ip_address,
                                              port=worker.port, worker_id=worker.worker_id))
        asyncio.ensure_future(self._gcs_quietly(self.gcs.report_worker_failure(failure),
                                                "report a worker failure"))

    def _owner_died(self, worker_id: bytes, why: str) -> None:
        self._reclaim(self.leases.owner_died(worker_id, why))
        self._free_objects(self.owners.take_owned_by(worker_id), why)

    def _free_objects(self, object_ids: List[bytes], why: str) -> None:
        """Drop primary copies nobody can ask for any more (their owner is dead)."""
        if not object_ids:
            return
        logger.info("Freeing %d object(s) (e.g. %s): %s", len(object_ids),
                    object_ids[0].hex(), why)
        for object_id in object_ids:
            self._unpin(object_id)
        self.plasma.delete(object_ids)
        self.spills.free(object_ids)

    def _reclaim(self, leases) -> None:
        """Kill the workers of a dead owner's leases; their deaths free the resources (and
        are reported, so whatever those workers owned in turn is reclaimed too)."""
        for lease in leases:
            self.pool.kill(lease.worker, f"the owner of its lease {lease.lease_id.hex()} "
                                         f"(task {lease.request.task_hex}) died",
                           force=True, report=True)

    def _kill_group_leases(self, group_hex: str, why: str) -> None:
        for lease in self.leases.leases_in_group(group_hex):
            self.pool.kill(lease.worker, f"placement group {group_hex}: {why}", force=True,
                           report=True)

    def _end_job(self, job_id: bytes, why: str) -> None:
        """Kill every worker of a job that is over (leased ones included)."""
        for worker in self.pool.workers_of_job(job_id):
            self.pool.kill(worker, f"job {job_id.hex()} is over: {why}")

    async def _mark_job_finished(self, job_id: bytes) -> None:
        await self.gcs.mark_job_finished(JobID.from_binary(job_id))

    # ---- objects ----------------------------------------------------------------

    def _leased_workers(self):
        for lease in list(self.leases.leases.values()):
            if lease.worker is not None and lease.worker.pid:
                yield lease.worker, f"task {lease.request.task_hex} (lease {lease.lease_id.hex()[:12]})"

    async def _pull_dependencies(self, refs) -> None:
        await asyncio.gather(*(self.objects.pull(ref.object_id, ref.owner_address)
                               for ref in refs), return_exceptions=True)

    def _unpin(self, object_id: bytes) -> None:
        if self.pinned.pop(object_id, None) is not None:
            try:
                self.plasma.release(object_id)
            except Exception as e:
                logger.warning("Release of pinned object %s failed: %s", object_id.hex(), e)

    # ---- the service ------------------------------------------------------------

    async def RequestWorkerLease(self, request, context):
        return await self.leases.request_lease(request)

    async def ReturnWorker(self, request, context):
        self.leases.return_worker(request.lease_id, request.worker_id,
                                  request.disconnect_worker, request.disconnect_reason)
        return NM.ReturnWorkerReply()

    async def ExplainLease(self, request, context):
        return NM.ExplainLeaseReply(explanation=self.leases.explain(request.lease_id))

    async def CancelWorkerLease(self, request, context):
        return NM.CancelWorkerLeaseReply(success=self.leases.cancel(request.lease_id))

    async def RegisterWorker(self, request, context):
        is_driver = request.worker_type == common_pb2.DRIVER
        try:
            self.pool.register(request.worker_id, request.pid, request.port, request.ip_address,
                               request.job_id, is_driver)
        except KeyError as e:
            logger.warning("Refused RegisterWorker: %s", e.args[0])
            return NM.RegisterWorkerReply(success=False, failure_message=e.args[0],
                                          node_id=self.node_id)
        if not is_driver:
            self.leases.schedule_dispatch()
        elif config.worker_prestart_on_driver and request.job_id:
            self.pool.prestart(request.job_id, self.pool.soft_limit)
        return NM.RegisterWorkerReply(node_id=self.node_id, success=True,
                                      object_store_socket_name=self.object_store_socket)

    async def DisconnectWorker(self, request, context):
        driver = self.pool.drivers.get(request.worker_id)
        if driver is not None:
            logger.info("Driver %s (pid %d) of job %s disconnected: %s", driver.hex, driver.pid,
                        driver.job_id.hex(), request.exit_detail or "shutdown")
            self.pool.forget_driver(driver)
            self._end_job(driver.job_id, "its driver disconnected")
            self._owner_died(driver.worker_id, f"its owner, driver {driver.hex}, disconnected")
            return NM.DisconnectWorkerReply()
        worker = self.pool.workers.get(request.worker_id)
        if worker is not None:
            worker.exit_intended = worker.exit_announced = True
            logger.info("Worker %s (pid %d) is exiting: %s", worker.hex, worker.pid,
                        request.exit_detail or "intended")
        return NM.DisconnectWorkerReply()

    async def NotifyWorkerBlocked(self, request, context):
        self.leases.worker_blocked(request.worker_id, request.blocked)
        return NM.NotifyWorkerBlockedReply()

    async def PinObjectIDs(self, request, context):
        ids = list(request.object_ids)
        successes = []
        found = self.plasma.get(ids, timeout_ms=0) if ids else []
        for object_id, obj in zip(ids, found):
            if obj is None:
                successes.append(False)
                continue
            if object_id in self.pinned:
                self.plasma.release(object_id)  # already held once; keep a single reference
            else:
                self.pinned[object_id] = True
            self.owners.add(object_id, request.owner_address)
            successes.append(True)
        return NM.PinObjectIDsReply(successes=successes)

    async def FreeObjects(self, request, context):
        ids = list(request.object_ids)
        for object_id in ids:
            self._unpin(object_id)
            self.owners.discard(object_id)
        if ids:
            self.plasma.delete(ids)
            self.spills.free(ids)
        return NM.FreeObjectsReply()

    async def DrainObjects(self, request, context):
        """Hand each owner's primary copies to the target raylet (it pulls them from here
        and pins them for that owner), then let go of ours. An object the target could
        not take stays primary here, and the node is not idle."""
        stub = rpc.stub(node_manager_pb2_grpc.NodeManagerServiceStub,
                        request.target_raylet_address)
        moved, failures = 0, []
        for owner, object_ids in self.owners.by_owner():
            pulled = await stub.PullObjects(NM.PullObjectsRequest(
                object_refs=[common_pb2.ObjectReference(object_id=o, owner_address=owner)
                             for o in object_ids],
                locations=[NM.ObjectLocations(object_id=o, node_ids=[self.node_id])
                           for o in object_ids]), timeout=config.drain_objects_timeout_s)
            there = [r.object_id for r in pulled.results if r.success]
            failures += [r.error_message for r in pulled.results if not r.success]
            if not there:
                continue
            pinned = await stub.PinObjectIDs(NM.PinObjectIDsRequest(
                owner_address=owner, object_ids=there), timeout=config.drain_objects_timeout_s)
            for object_id, ok in zip(there, pinned.successes):
                if not ok:
                    failures.append(f"object {object_id.hex()} was not pinned there")
                    continue
                self._unpin(object_id)
                self.owners.discard(object_id)
                self.spills.free([object_id])
                moved += 1
        logger.info("Drained %d primary copies to %s (%d failed%s)", moved,
                    request.target_raylet_address, len(failures),
                    f": {failures[0]}" if failures else "")
        return NM.DrainObjectsReply(num_moved=moved, num_failed=len(failures),
                                    message="; ".join(failures[:5]))

    async def SpillObjects(self, request, context):
        spilled, count, message = await self.spills.spill(
            request.bytes_needed, f"object {request.object_id.hex()}" if request.object_id else "")
        return NM.SpillObjectsReply(success=spilled > 0, bytes_spilled=spilled,
                                    num_spilled=count, message=message)

    async def PullObjects(self, request, context):
        explicit = {loc.object_id: list(loc.node_ids) for loc in request.locations}
        refs = list(request.object_refs)
        pulls = [self.objects.pull(ref.object_id, ref.owner_address,
                                   explicit.get(ref.object_id)) for ref in refs]
        timeout = request.timeout_ms / 1000.0 if request.timeout_ms > 0 else None
        tasks = [asyncio.ensure_future(p) for p in pulls]
        try:
            if tasks:
                await asyncio.wait(tasks, timeout=timeout)
        except asyncio.CancelledError:  # the caller went away: so do its pulls
            for task in tasks:
                task.cancel()
            raise
        reply = NM.PullObjectsReply(success=True)
        for ref, task in zip(refs, tasks):
            result = reply.results.add(object_id=ref.object_id, success=True)
            if not task.done():
                task.cancel()
                result.success = False
                result.error_message = (f"object {ref.object_id.hex()} was not local within "
                                        f"{request.timeout_ms} ms")
            elif task.exception() is not None:
                result.success = False
                error = task.exception()
                result.error_message = str(error) if isinstance(error, PullError) else repr(error)
            reply.success = reply.success and result.success
        return reply

    async def GetNodeStats(self, request, context):
        reply = NM.GetNodeStatsReply(
            node_id=self.node_id, num_pending_leases=len(self.leases.queue),
            num_infeasible_leases=len(self.leases.infeasible),
            resources_total=self.local.total_floats(),
            resources_available=self.local.available_floats(),
            num_pulls_served=self.objects.num_pulls_served,
            num_objects_pulled=self.objects.num_objects_pulled,
            num_bytes_pulled=self.objects.num_bytes_pulled,
            num_pinned_objects=len(self.pinned),
            num_spilled_objects=len(self.spills.spilled),
            spilled_bytes=self.spills.spilled_bytes(),
            total_spilled_bytes=self.spills.total_spilled_bytes,
            total_restored_bytes=self.spills.total_restored_bytes,
            spill_directory=self.spills.directory,
            num_workers_killed_for_memory=self.memory_monitor.num_killed
            if self.memory_monitor else 0,
            spill_time_s=self.spills.spill_seconds, restore_time_s=self.spills.restore_seconds)
        for worker in self.pool.workers.values():
            reply.workers.add(worker_id=worker.worker_id, pid=worker.pid,
                              is_idle=worker.state.value == "idle",
                              lease_id=worker.lease_id or b"", ip_address=worker.ip_address,
                              port=worker.port)
        for driver in self.pool.drivers.values():
            reply.workers.add(worker_id=driver.worker_id, pid=driver.pid, is_driver=True,
                              ip_address=driver.ip_address, port=driver.port)
        try:
            stats = self.plasma.stats()
            reply.object_store_used_bytes = int(stats.get("used", 0))
            reply.object_store_capacity_bytes = int(stats.get("capacity", 0))
        except Exception as e:
            logger.warning("Plasma stats failed: %s", e)
        return reply

    def metric_samples(self):
        """This node's gauges, read at scrape time on the raylet's loop
        (ray_common.metrics): what GetNodeStats answers, as Prometheus figures."""
        Sample, sample = metrics.Sample, metrics.sample
        yield Sample("scheduler_queue_length", "gauge", "Worker lease requests waiting, "
                     "per queue", ("queue",), {
                         ("ready",): len(self.leases.queue),
                         ("infeasible",): len(self.leases.infeasible),
                         ("granting",): len(self.leases.granting)})
        yield sample("leases_held", "Worker leases granted and not yet returned",
                     len(self.leases.leases))
        states = collections.Counter(w.state.value for w in self.pool.workers.values())
        states["driver"] = len(self.pool.drivers)
        yield Sample("workers", "gauge", "Worker processes of this node, by state",
                     ("state",), {(state,): n for state, n in states.items()})
        yield sample("workers_started", "Worker processes this raylet started",
                     self.pool.num_started, "counter")
        try:
            store = self.plasma.stats()
        except Exception as e:      # a store that does not answer: the rest still counts
            logger.warning("Plasma stats failed: %s", e)
            store = {}
        yield Sample("object_store_bytes", "gauge", "Object store memory of this node",
                     ("kind",), {(kind,): int(store.get(key, 0)) for kind, key in (
                         ("used", "used"), ("capacity", "capacity"),
                         ("evictable", "evictable"))})
        yield sample("object_store_objects", "Objects in this node's store",
                     int(store.get("num_objects", 0)))
        yield sample("spilled_bytes", "Bytes of objects spilled to disk now",
                     self.spills.spilled_bytes())
        yield sample("spilled_bytes_total", "Bytes spilled to disk since the node started",
                     self.spills.total_spilled_bytes, "counter")
        yield sample("restored_bytes_total", "Bytes restored from disk since the node "
                     "started", self.spills.total_restored_bytes, "counter")
        yield sample("pulled_bytes_total", "Bytes this node pulled from other nodes",
                     self.objects.num_bytes_pulled, "counter")

    async def ListLogs(self, request, context):
        files = self.log_files.list(request.glob_filter)
        return NM.ListLogsReply(log_files=[name for name, _ in files],
                                sizes=[size for _, size in files])

    async def GetLog(self, request, context):
        try:
            return self.log_files.read(request.filename, request.offset, request.tail_lines)
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except FileNotFoundError as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e))

    async def DumpStacks(self, request, context):
        processes = [(w.pid, w.worker_id, False) for w in self.pool.workers.values()] + \
            [(d.pid, d.worker_id, True) for d in self.pool.drivers.values()]
        stacks = await asyncio.gather(*(dump_stack(pid) for pid, _, _ in processes))
        reply = NM.DumpStacksReply()
        for (pid, worker_id, is_driver), (stack, error) in zip(processes, stacks):
            reply.stacks.add(pid=pid, worker_id=worker_id, is_driver=is_driver, stack=stack,
                             error=error)
        return reply

    async def ExplainNodeObject(self, request, context):
        return NM.ExplainNodeObjectReply(explanation=explain_object(self, request.object_id))

    async def GetWorkerFailureCause(self, request, context):
        cause = self.memory_monitor.causes.get(request.worker_id) if self.memory_monitor else None
        if cause is None:
            return NM.GetWorkerFailureCauseReply(known=False)
        return NM.GetWorkerFailureCauseReply(known=True, out_of_memory=True, message=cause)

    async def PrepareBundleResources(self, request, context):
        success, why = self.bundles.prepare(request.placement_group_id, request.bundles)
        return NM.PrepareBundleResourcesReply(success=success, failure_message=why)

    async def CommitBundleResources(self, request, context):
        self.bundles.commit(request.placement_group_id, list(request.bundle_indices))
        return NM.CommitBundleResourcesReply()

    async def CancelResourceReserve(self, request, context):
        self.bundles.cancel(request.placement_group_id, list(request.bundle_indices))
        return NM.CancelResourceReserveReply()

    async def ReserveBundles(self, request, context):
        replies = []
        for group in request.groups:
            success, why = self.bundles.prepare(group.placement_group_id, group.bundles)
            if success:
                self.bundles.commit(group.placement_group_id,
                                    [bundle.bundle_index for bundle in group.bundles])
            replies.append(NM.PrepareBundleResourcesReply(success=success, failure_message=why))
        return NM.ReserveBundlesReply(replies=replies)

    async def ReturnBundles(self, request, context):
        for group_id in request.placement_group_ids:
            self.bundles.cancel(group_id, [])
            self.leases.group_removed(group_id.hex())  # its waiting tasks will never run
        return NM.ReturnBundlesReply()

    async def HealthCheck(self, request, context):
        return NM.HealthCheckReply()

    async def ShutdownRaylet(self, request, context):
        self.on_shutdown_request()
        return NM.ShutdownRayletReply()

    async def UpdateResourceView(self, request, context):
        for data in request.nodes:
            self._on_resources(data)
        return NM.UpdateResourceViewReply()
