"""The node table: raylets register here, and die here (unregistered or health check).

A node id is used once: a node marked DEAD stays DEAD, and its raylet re-registering
gets FAILED_PRECONDITION (it must come back with a new node id). Registering an id that
is ALIVE again with the same address is accepted as a retry of the same registration;
with another address it is a clash (ALREADY_EXISTS). Each change is written to storage,
then published on NODE_INFO_CHANNEL, then passed to the death listeners (the job
manager finishes the jobs whose driver ran on a dead node).
"""
import logging
import time
from typing import Awaitable, Callable, Dict, List, Optional

from ray_common.ids import NodeID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb, gcs_service_pb2_grpc
from ray_gcs import errors
from ray_gcs.health_check import GcsHealthCheckManager
from ray_gcs.pubsub import GcsPublisher
from ray_gcs.resource_view import ResourceView
from ray_gcs.storage import Storage, Table, load_rows

logger = logging.getLogger(__name__)

ALIVE = common_pb2.NodeInfo.ALIVE
DEAD = common_pb2.NodeInfo.DEAD
DRAINING = common_pb2.NodeInfo.DRAINING


def now_ms() -> int:
    return int(time.time() * 1000)


def node_address(info: common_pb2.NodeInfo) -> str:
    return f"{info.node_manager_address}:{info.node_manager_port}"


class GcsNodeManager(gcs_service_pb2_grpc.NodeInfoGcsServiceServicer):
    def __init__(self, storage: Storage, publisher: GcsPublisher):
        self._storage = storage
        self._publisher = publisher
        self._nodes: Dict[bytes, common_pb2.NodeInfo] = {}
        self._death_listeners: List[Callable[[common_pb2.NodeInfo], Awaitable[None]]] = []
        self.resource_view = ResourceView(publisher, self._nodes.get)
        self.health_checks = GcsHealthCheckManager(self.mark_dead)

    def num_rows(self) -> int:
        """Rows in the table (nodes registered, alive or dead): a metrics gauge."""
        return len(self._nodes)

    def add_death_listener(self, listener: Callable[[common_pb2.NodeInfo], Awaitable[None]]):
        self._death_listeners.append(listener)

    def get(self, node_id: bytes) -> Optional[common_pb2.NodeInfo]:
        return self._nodes.get(node_id)

    def alive_nodes(self) -> List[common_pb2.NodeInfo]:
        return [n for n in self._nodes.values() if n.state != DEAD]

    async def load(self) -> None:
        """Rebuild from storage after a restart; alive nodes are health-checked again."""
        for key, info in (await load_rows(self._storage, Table.NODE, common_pb2.NodeInfo)).items():
            self._nodes[key] = info
            if info.state != DEAD:
                self.resource_view.add_node(info)
                self.health_checks.add_node(key, node_address(info))
        logger.info("Recovered %d node(s), %d alive", len(self._nodes), len(self.alive_nodes()))

    async def _save_and_publish(self, info: common_pb2.NodeInfo) -> None:
        await self._storage.put(Table.NODE, info.node_id, info.SerializeToString())
        self._publisher.publish(pb.NODE_INFO_CHANNEL, info.node_id, node_info_message=info)

    def _known(self, node_id: bytes, what: str) -> common_pb2.NodeInfo:
        errors.check_id(node_id, NodeID, f"{what} node_id")
        info = self._nodes.get(node_id)
        if info is None:
            raise errors.not_found(f"{what}: unknown node {node_id.hex()}")
        return info

    async def mark_dead(self, node_id: bytes, reason: str) -> None:
        info = self._nodes.get(node_id)
        if info is None or info.state == DEAD:
            return
        info.state = DEAD
        info.death_reason = reason
        info.end_time_ms = now_ms()
        self.health_checks.remove_node(node_id)
        self.resource_view.remove_node(node_id)
        logger.warning("Node %s at %s is DEAD: %s", node_id.hex(), node_address(info), reason)
        await self._save_and_publish(info)
        for listener in self._death_listeners:
            try:
                await listener(info)
            except Exception:  # noqa: BLE001 - one listener must not stop the others
                logger.exception("Death listener of node %s failed", node_id.hex())

    @errors.handler
    async def RegisterNode(self, request, context):
        info = common_pb2.NodeInfo()
        info.CopyFrom(request.node_info)
        node_id = errors.check_id(info.node_id, NodeID, "RegisterNode node_id")
        if not info.node_manager_address or not 0 < info.node_manager_port < 65536:
            raise errors.invalid(f"RegisterNode: node {node_id.hex()} needs a "
                                 f"node_manager_address and a port in 1..65535, got "
                                 f"{info.node_manager_address!r}:{info.node_manager_port}")
        existing = self._nodes.get(node_id)
        if existing is not None:
            if existing.state == DEAD:
                raise errors.failed_precondition(
                    f"RegisterNode: node {node_id.hex()} was marked DEAD "
                    f"({existing.death_reason or 'no reason recorded'}); a dead node cannot "
                    f"come back, restart its raylet with a new node id")
            if node_address(existing) == node_address(info):
                return pb.RegisterNodeReply()  # a retried registration
            raise errors.already_exists(
                f"RegisterNode: node {node_id.hex()} is already registered at "
                f"{node_address(existing)}; refused the same id from {node_address(info)}")
        info.state = ALIVE
        info.death_reason = ""
        info.end_time_ms = 0
        if not info.start_time_ms:
            info.start_time_ms = now_ms()
        self._nodes[node_id] = info
        logger.info("Node %s registered at %s with resources %s", node_id.hex(),
                    node_address(info), dict(info.resources_total))
        self.resource_view.add_node(info)
        self.health_checks.add_node(node_id, node_address(info))
        await self._save_and_publish(info)
        return pb.RegisterNodeReply()

    @errors.handler
    async def UnregisterNode(self, request, context):
        self._known(request.node_id, "UnregisterNode")
        await self.mark_dead(request.node_id, request.reason or "unregistered by its raylet")
        return pb.UnregisterNodeReply()

    @errors.handler
    async def DrainNode(self, request, context):
        info = self._known(request.node_id, "DrainNode")
        if info.state == DEAD:
            return pb.DrainNodeReply(accepted=False)
        if info.state != DRAINING:
            info.state = DRAINING
            logger.info("Node %s is draining: %s", info.node_id.hex(), request.reason)
            await self._save_and_publish(info)
        return pb.DrainNodeReply(accepted=True)

    @errors.handler
    async def GetAllNodeInfo(self, request, context):
        nodes = self.alive_nodes() if request.only_alive else list(self._nodes.values())
        return pb.GetAllNodeInfoReply(node_info_list=nodes)

    @errors.handler
    async def CheckAlive(self, request, context):
        return pb.CheckAliveReply(alive=[
            (n := self._nodes.get(node_id)) is not None and n.state != DEAD
            for node_id in request.node_ids])
