"""The placement group table: rows and the RPCs that create, remove and list them.

Scheduling bundles onto nodes is the placement group scheduler's work (a later issue);
it updates rows through `put`. A created group starts PENDING; removal marks it REMOVED
and keeps the row, so a caller can tell a removed group from an unknown one.
"""
import logging
from typing import Dict

from ray_common.ids import PlacementGroupID
from ray_common.protocol import gcs_service_pb2 as pb, gcs_service_pb2_grpc
from ray_gcs import errors
from ray_gcs.storage import Storage, Table, load_rows

logger = logging.getLogger(__name__)


class GcsPlacementGroupTable(gcs_service_pb2_grpc.PlacementGroupInfoGcsServiceServicer):
    def __init__(self, storage: Storage):
        self._storage = storage
        self._groups: Dict[bytes, pb.PlacementGroupTableData] = {}

    async def load(self) -> None:
        self._groups = await load_rows(self._storage, Table.PLACEMENT_GROUP,
                                       pb.PlacementGroupTableData)
        logger.info("Recovered %d placement group(s)", len(self._groups))

    async def put(self, group: pb.PlacementGroupTableData) -> None:
        self._groups[group.placement_group_id] = group
        await self._storage.put(Table.PLACEMENT_GROUP, group.placement_group_id,
                                group.SerializeToString())

    @errors.handler
    async def CreatePlacementGroup(self, request, context):
        group = pb.PlacementGroupTableData()
        group.CopyFrom(request.placement_group)
        group_id = errors.check_id(group.placement_group_id, PlacementGroupID,
                                   "CreatePlacementGroup placement_group_id")
        if group_id in self._groups:
            raise errors.already_exists(
                f"CreatePlacementGroup: placement group {group_id.hex()} already exists")
        if not group.bundles:
            raise errors.invalid(f"CreatePlacementGroup: placement group {group_id.hex()} "
                                 f"has no bundles")
        group.state = pb.PG_PENDING
        logger.info("Placement group %s created with %d bundle(s)", group_id.hex(),
                    len(group.bundles))
        await self.put(group)
        return pb.CreatePlacementGroupReply()

    @errors.handler
    async def RemovePlacementGroup(self, request, context):
        group_id = errors.check_id(request.placement_group_id, PlacementGroupID,
                                   "RemovePlacementGroup placement_group_id")
        group = self._groups.get(group_id)
        if group is None:
            raise errors.not_found(f"RemovePlacementGroup: unknown placement group "
                                   f"{group_id.hex()}")
        if group.state != pb.PG_REMOVED:
            group.state = pb.PG_REMOVED
            await self.put(group)
        return pb.RemovePlacementGroupReply()

    @errors.handler
    async def GetAllPlacementGroup(self, request, context):
        return pb.GetAllPlacementGroupReply(placement_group_table_data=list(self._groups.values()))
