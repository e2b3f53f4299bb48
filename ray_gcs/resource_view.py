"""The cluster resource view: each alive node's total and available resources.

Raylets report (ReportResourceUsage) periodically or on change; the view is pushed to
every raylet on RESOURCE_VIEW_CHANNEL whenever it changed, at most once per
raylet_report_resources_period_milliseconds (changes in between are coalesced into the
next push); a raylet subscribing (again) gets the current view first. The view is not
stored: after a restart it is seeded from the recovered node table (available = total,
as for a just-registered node) until the raylets report.
"""
import asyncio
import logging
from typing import Callable, Dict, List, Optional

from ray_common.config import config
from ray_common.ids import NodeID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb, gcs_service_pb2_grpc
from ray_gcs import errors
from ray_gcs.pubsub import GcsPublisher

logger = logging.getLogger(__name__)


class ResourceView(gcs_service_pb2_grpc.NodeResourceInfoGcsServiceServicer):
    def __init__(self, publisher: GcsPublisher,
                 node_lookup: Callable[[bytes], Optional[common_pb2.NodeInfo]]):
        self._publisher = publisher
        self._node_lookup = node_lookup
        self._nodes: Dict[bytes, common_pb2.ResourcesData] = {}
        self._push_handle: Optional[asyncio.TimerHandle] = None
        self._last_push = 0.0
        self._change_listeners: List[Callable[[], None]] = []
        publisher.set_snapshot(pb.RESOURCE_VIEW_CHANNEL, self.snapshot_message)

    def add_node(self, info: common_pb2.NodeInfo) -> None:
        self._nodes[info.node_id] = common_pb2.ResourcesData(
            node_id=info.node_id, resources_total=info.resources_total,
            resources_available=info.resources_total)
        self._changed()

    def remove_node(self, node_id: bytes) -> None:
        if self._nodes.pop(node_id, None) is not None:
            self._changed()

    def add_change_listener(self, listener: Callable[[], None]) -> None:
        """`listener()` runs (on the loop) each time any node's resources change."""
        self._change_listeners.append(listener)

    def nodes(self) -> Dict[bytes, common_pb2.ResourcesData]:
        return dict(self._nodes)

    def snapshot(self) -> pb.GetClusterResourceViewReply:
        return pb.GetClusterResourceViewReply(nodes=list(self._nodes.values()))

    def _changed(self) -> None:
        for listener in self._change_listeners:
            listener()
        if self._push_handle is not None:
            return
        loop = asyncio.get_running_loop()
        period = config.raylet_report_resources_period_milliseconds / 1000.0
        delay = max(0.0, self._last_push + period - loop.time())
        self._push_handle = loop.call_later(delay, self._push)

    def _push(self) -> None:
        self._push_handle = None
        self._last_push = asyncio.get_running_loop().time()
        self._publisher.publish_message(self.snapshot_message())

    def snapshot_message(self) -> pb.PubMessage:
        return pb.PubMessage(channel_type=pb.RESOURCE_VIEW_CHANNEL,
                             resource_view_message=self.snapshot())

    def stop(self) -> None:
        if self._push_handle is not None:
            self._push_handle.cancel()
            self._push_handle = None

    @errors.handler
    async def ReportResourceUsage(self, request, context):
        data = request.resources
        node_id = errors.check_id(data.node_id, NodeID, "ReportResourceUsage node_id")
        current = self._nodes.get(node_id)
        if current is None:
            info = self._node_lookup(node_id)
            if info is None:
                raise errors.not_found(f"ReportResourceUsage: unknown node {node_id.hex()}; "
                                       f"register the node first")
            raise errors.failed_precondition(
                f"ReportResourceUsage: node {node_id.hex()} is "
                f"{common_pb2.NodeInfo.NodeState.Name(info.state)} "
                f"({info.death_reason or 'no reason recorded'})")
        if data.version and current.version and data.version < current.version:
            return pb.ReportResourceUsageReply()  # a stale report overtaken by a newer one
        if data != current:
            updated = common_pb2.ResourcesData()
            updated.CopyFrom(data)
            if not updated.resources_total:
                updated.resources_total.update(current.resources_total)
            self._nodes[node_id] = updated
            self._changed()
        return pb.ReportResourceUsageReply()

    @errors.handler
    async def GetClusterResourceView(self, request, context):
        return self.snapshot()
