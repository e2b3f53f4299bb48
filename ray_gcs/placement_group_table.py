"""The placement group table: rows and the RPCs that create, remove and look them up.

Placing bundles on nodes is the scheduler's work (placement_group_scheduler.py); it
updates rows through `put`. A created group starts PENDING; removal marks it REMOVED
and keeps the row, so a caller can tell a removed group from an unknown one, but only
the newest maximum_gcs_removed_placement_group_cached_count removed rows (ended_rows.py):
a group forgotten is unknown, which every reader treats as removed. A name is unique
per namespace among groups not removed, as in Ray.
"""
import asyncio
import logging
import time
from typing import Dict, Iterable, Optional, Set

from ray_common.config import config
from ray_common.ids import PlacementGroupID
from ray_common.protocol import gcs_service_pb2 as pb, gcs_service_pb2_grpc
from ray_gcs import errors
from ray_gcs.ended_rows import EndedRows
from ray_gcs.storage import Storage, Table, load_rows

logger = logging.getLogger(__name__)


class GcsPlacementGroupTable(gcs_service_pb2_grpc.PlacementGroupInfoGcsServiceServicer):
    def __init__(self, storage: Storage):
        self._storage = storage
        self._groups: Dict[bytes, pb.PlacementGroupTableData] = {}
        self.scheduler = None   # set by the server: told of creations and removals
        self._waiters: Dict[bytes, Set[asyncio.Future]] = {}   # WaitPlacementGroupUntilReady
        self._removed = EndedRows("maximum_gcs_removed_placement_group_cached_count")

    def num_rows(self) -> int:
        """Rows in the table (placement groups): a metrics gauge."""
        return len(self._groups)

    def num_removed(self) -> int:
        """REMOVED rows kept: a gauge."""
        return len(self._removed)

    def num_waiters(self) -> int:
        """Groups a WaitPlacementGroupUntilReady call waits on: a gauge."""
        return len(self._waiters)

    def gone(self, group_id: bytes) -> bool:
        """The group was removed (its row may be forgotten already)."""
        group = self._groups.get(group_id)
        return group is None or group.state == pb.PG_REMOVED

    def get(self, group_id: bytes) -> Optional[pb.PlacementGroupTableData]:
        return self._groups.get(group_id)

    def all(self) -> Iterable[pb.PlacementGroupTableData]:
        return list(self._groups.values())

    def _named(self, name: str, namespace: str) -> Optional[pb.PlacementGroupTableData]:
        for group in self._groups.values():
            if group.name == name and group.ray_namespace == namespace and \
                    group.state != pb.PG_REMOVED:
                return group
        return None

    async def load(self) -> None:
        self._groups = await load_rows(self._storage, Table.PLACEMENT_GROUP,
                                       pb.PlacementGroupTableData)
        for group in sorted(self._groups.values(), key=lambda g: g.removal_time_ms):
            if group.state == pb.PG_REMOVED:
                self._removed.add(group.placement_group_id)
        logger.info("Recovered %d placement group(s)", len(self._groups))
        await self._forget_oldest_removed()

    async def put(self, group: pb.PlacementGroupTableData) -> None:
        group_id = group.placement_group_id
        if group.state == pb.PG_REMOVED:
            if not group.removal_time_ms:
                group.removal_time_ms = int(time.time() * 1000)
            self._removed.add(group_id)
        self._groups[group_id] = group
        await self._storage.put(Table.PLACEMENT_GROUP, group_id, group.SerializeToString())
        if group.state in (pb.PG_CREATED, pb.PG_REMOVED):
            for waiter in self._waiters.pop(group_id, ()):
                if not waiter.done():
                    waiter.set_result(None)
        await self._forget_oldest_removed()

    async def _forget_oldest_removed(self) -> None:
        old = await self._removed.forget_overflow(self._groups, self._storage,
                                                  Table.PLACEMENT_GROUP)
        if old:
            logger.debug("Forgot %d removed placement group(s), the oldest: %s", len(old),
                         old[0].hex())

    @errors.handler
    async def PlacementGroupBatch(self, request, context):
        create_errors = [await self._create(row) for row in request.create]
        remove_errors = [await self._remove_by_id(group_id) for group_id in request.remove]
        tried = [self.scheduler.schedule(row.placement_group_id)
                 for row, error in zip(request.create, create_errors)
                 if not error and self.scheduler is not None]
        if tried:
            await asyncio.wait(tried, timeout=config.placement_group_batch_reply_wait_s)
        placed = [row.placement_group_id for row in request.create
                  if self._groups.get(row.placement_group_id, row).state == pb.PG_CREATED]
        return pb.PlacementGroupBatchReply(create_error=create_errors,
                                           remove_error=remove_errors, placed=placed)

    async def _create(self, request_row: pb.PlacementGroupTableData) -> str:
        """"" when the group is registered (PENDING), else why not. A creation sent again
        (its reply was lost) finds its group and is accepted."""
        group_id = request_row.placement_group_id
        try:
            errors.check_id(group_id, PlacementGroupID, "PlacementGroupBatch placement_group_id")
        except errors.RequestError as e:
            return e.message
        known = self._groups.get(group_id)
        if known is not None:
            return "" if known.creator_job_id == request_row.creator_job_id and \
                known.name == request_row.name else \
                f"placement group {group_id.hex()} already exists"
        if not request_row.bundles:
            return f"placement group {group_id.hex()} has no bundles"
        if request_row.name and self._named(request_row.name,
                                            request_row.ray_namespace) is not None:
            return (f"a placement group named {request_row.name!r} already exists in "
                    f"namespace {request_row.ray_namespace!r}")
        group = pb.PlacementGroupTableData()
        group.CopyFrom(request_row)
        group.state = pb.PG_PENDING
        for index, bundle in enumerate(group.bundles):
            bundle.bundle_index = index
            bundle.node_id = b""
        logger.info("Placement group %s created with %d bundle(s), strategy %s", group_id.hex(),
                    len(group.bundles), group.strategy or "PACK")
        await self.put(group)
        return ""

    async def _remove_by_id(self, group_id: bytes) -> str:
        group = self._groups.get(group_id)
        if group is None:
            return f"unknown placement group {group_id.hex()}"
        await self.remove(group, "removed by its user")
        return ""

    async def remove(self, group: pb.PlacementGroupTableData, why: str) -> None:
        if group.state == pb.PG_REMOVED:
            return
        group.state = pb.PG_REMOVED
        group.scheduling_detail = why
        for bundle in group.bundles:
            bundle.node_id = b""
        logger.info("Placement group %s REMOVED: %s", group.placement_group_id.hex(), why)
        await self.put(group)
        if self.scheduler is not None:
            self.scheduler.remove(group)

    async def remove_groups_of_job(self, job_id: bytes) -> None:
        """A group not detached fate-shares with the job that created it."""
        for group in self.all():
            if group.creator_job_id == job_id and not group.is_detached:
                await self.remove(group, f"its job {job_id.hex()} finished")

    @errors.handler
    async def GetAllPlacementGroup(self, request, context):
        return pb.GetAllPlacementGroupReply(placement_group_table_data=list(self._groups.values()))

    @errors.handler
    async def GetPlacementGroup(self, request, context):
        group = self._groups.get(request.placement_group_id)
        return pb.GetPlacementGroupReply(placement_group_table_data=group)

    @errors.handler
    async def GetNamedPlacementGroup(self, request, context):
        if not request.name:
            raise errors.invalid("GetNamedPlacementGroup: the name is empty")
        group = self._named(request.name, request.ray_namespace)
        return pb.GetNamedPlacementGroupReply(placement_group_table_data=group)

    @errors.handler
    async def WaitPlacementGroupUntilReady(self, request, context):
        group_id = request.placement_group_id
        group = self._groups.get(group_id)
        if group is None:
            raise errors.not_found(f"WaitPlacementGroupUntilReady: unknown placement group "
                                   f"{group_id.hex()}")
        if group.state not in (pb.PG_CREATED, pb.PG_REMOVED) and request.timeout_ms > 0:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(group_id, set()).add(waiter)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), request.timeout_ms / 1000.0)
            except asyncio.TimeoutError:
                pass
            finally:
                waiting = self._waiters.get(group_id)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[group_id]
            group = self._groups.get(group_id, group)
        if group.state == pb.PG_REMOVED:
            raise errors.failed_precondition(f"placement group {group_id.hex()} was removed "
                                             f"({group.scheduling_detail})")
        return pb.WaitPlacementGroupUntilReadyReply(ready=group.state == pb.PG_CREATED)
