"""The raylet calls a CoreWorker makes, as coroutines on the io loop.

One place that knows NodeManagerService: leases (request, return, cancel), worker
registration, blocked-in-get notifications, pinning and freeing plasma primary copies,
and pulling objects to this node.
"""
import logging
from typing import Dict, Iterable, List, Optional

from ray_common import rpc
from ray_common.config import config
from ray_common.protocol import common_pb2, node_manager_pb2 as nm, node_manager_pb2_grpc as nm_grpc

logger = logging.getLogger(__name__)


class LeaseClient:
    def __init__(self, raylet_address: str):
        self.raylet_address = raylet_address

    def _stub(self, address: Optional[str] = None):
        return rpc.stub(nm_grpc.NodeManagerServiceStub, address or self.raylet_address)

    async def request_worker_lease(self, spec: common_pb2.TaskSpec, dependencies,
                                   raylet_address: Optional[str] = None,
                                   grant_or_reject: bool = False, backlog_size: int = 0,
                                   lease_id: bytes = b"") -> nm.RequestWorkerLeaseReply:
        request = nm.RequestWorkerLeaseRequest(resource_spec=spec, grant_or_reject=grant_or_reject,
                                               backlog_size=backlog_size, lease_id=lease_id)
        request.dependencies.extend(dependencies)
        # The reply waits while the raylet queues the request: no deadline.
        return await self._stub(raylet_address).RequestWorkerLease(request, timeout=None)

    async def return_worker(self, lease_id: bytes, worker_id: bytes, disconnect: bool = False,
                            reason: str = "", raylet_address: Optional[str] = None) -> None:
        request = nm.ReturnWorkerRequest(lease_id=lease_id, worker_id=worker_id,
                                         disconnect_worker=disconnect, disconnect_reason=reason)
        await rpc.call_with_retry(self._stub(raylet_address).ReturnWorker, request)

    async def cancel_worker_lease(self, lease_id: bytes, raylet_address: Optional[str] = None) -> bool:
        reply = await rpc.call_with_retry(self._stub(raylet_address).CancelWorkerLease,
                                          nm.CancelWorkerLeaseRequest(lease_id=lease_id))
        return reply.success

    async def explain_lease(self, lease_id: bytes, raylet_address: Optional[str] = None) -> str:
        reply = await self._stub(raylet_address).ExplainLease(
            nm.ExplainLeaseRequest(lease_id=lease_id), timeout=config.rpc_default_deadline_s)
        return reply.explanation

    async def register_worker(self, worker_id: bytes, pid: int, port: int, worker_type: int,
                              job_id: bytes, ip_address: str) -> nm.RegisterWorkerReply:
        request = nm.RegisterWorkerRequest(worker_id=worker_id, pid=pid, port=port,
                                           worker_type=worker_type, job_id=job_id,
                                           ip_address=ip_address)
        return await rpc.call_with_retry(self._stub().RegisterWorker, request)

    async def disconnect_worker(self, worker_id: bytes, exit_type: int, detail: str) -> None:
        request = nm.DisconnectWorkerRequest(worker_id=worker_id, exit_type=exit_type,
                                             exit_detail=detail)
        await rpc.call_with_retry(self._stub().DisconnectWorker, request, retry=False)

    async def notify_worker_blocked(self, worker_id: bytes, blocked: bool) -> None:
        request = nm.NotifyWorkerBlockedRequest(worker_id=worker_id, blocked=blocked)
        await rpc.call_with_retry(self._stub().NotifyWorkerBlocked, request)

    async def pin_object_ids(self, owner_address: common_pb2.Address,
                             object_ids: List[bytes]) -> List[bool]:
        request = nm.PinObjectIDsRequest(owner_address=owner_address, object_ids=object_ids)
        reply = await rpc.call_with_retry(self._stub().PinObjectIDs, request)
        return list(reply.successes)

    async def free_objects(self, object_ids: Iterable[bytes],
                           raylet_address: Optional[str] = None) -> None:
        request = nm.FreeObjectsRequest(object_ids=list(object_ids))
        await rpc.call_with_retry(self._stub(raylet_address).FreeObjects, request)

    async def pull_objects(self, refs: List[common_pb2.ObjectReference],
                           locations: Optional[Dict[bytes, List[bytes]]] = None):
        """Make the objects local to this node's plasma store (the raylet's PullObjects)."""
        request = nm.PullObjectsRequest(object_refs=refs)
        for object_id, node_ids in (locations or {}).items():
            request.locations.add(object_id=object_id, node_ids=node_ids)
        return await self._stub().PullObjects(request, timeout=config.fetch_timeout_s)

    async def get_node_stats(self, raylet_address: Optional[str] = None) -> nm.GetNodeStatsReply:
        return await rpc.call_with_retry(self._stub(raylet_address).GetNodeStats,
                                         nm.GetNodeStatsRequest())

    async def health_check(self, raylet_address: str) -> None:
        await self._stub(raylet_address).HealthCheck(nm.HealthCheckRequest(),
                                                     timeout=config.raylet_health_probe_timeout_s)

    async def spill_objects(self, bytes_needed: int, object_id: bytes) -> nm.SpillObjectsReply:
        request = nm.SpillObjectsRequest(bytes_needed=bytes_needed, object_id=object_id)
        return await self._stub().SpillObjects(request, timeout=None)

    async def get_worker_failure_cause(self, lease_id: bytes, worker_id: bytes,
                                       raylet_address: Optional[str] = None):
        request = nm.GetWorkerFailureCauseRequest(lease_id=lease_id, worker_id=worker_id)
        return await rpc.call_with_retry(self._stub(raylet_address).GetWorkerFailureCause,
                                         request, timeout=config.rpc_default_deadline_s)
