"""Placing placement groups: plan on the cluster view, then reserve on the raylets.

A group is placed whole or not at all, in two phases as Ray's GCS does it: every raylet
that is to hold bundles prepares them (takes the resources, or refuses); only when all
agreed does each commit (the bundles' resources appear under the group's names). A
refusal cancels what others prepared and the group waits for the next change of the
cluster view (or the retry period). A group placed on one node needs no agreement: that
raylet prepares and commits it at once, and one pass sends each raylet every such group
it planned for it in one call (a driver creating groups in a loop costs one call per
pass, not one per group). Groups are planned in creation order, each on the view less
what the groups before it in the pass took.

A node that dies takes its bundles with it: the group goes RESCHEDULING and only those
bundles are placed again. Removal, by the user or at the end of the creator's job (a
group not detached fate-shares with its job), returns every bundle and tells every
raylet, so tasks still waiting for the group fail rather than wait forever.
"""
import asyncio
import logging
from typing import Dict, List, Set

from ray_common import rpc
from ray_common.config import config
from ray_common.protocol import (common_pb2, gcs_service_pb2 as pb, node_manager_pb2 as nm,
                                 node_manager_pb2_grpc as nm_grpc)
from ray_gcs.bundle_placement import plan
from ray_gcs.node_manager import node_address

logger = logging.getLogger(__name__)


def _unplaced(group: pb.PlacementGroupTableData) -> Dict[int, Dict[str, float]]:
    """Bundle index -> resources of the group's bundles not on a node (all of a new group,
    a dead node's after a RESCHEDULING)."""
    return {b.bundle_index: dict(b.unit_resources) for b in group.bundles if not b.node_id}


def _plan(group: pb.PlacementGroupTableData, todo, available, totals):
    kept = {b.bundle_index: b.node_id for b in group.bundles if b.node_id}
    return plan(todo, group.strategy or "PACK", available, kept, totals)


class GcsPlacementGroupScheduler:
    def __init__(self, table, nodes, publisher):
        self._table = table
        self._nodes = nodes
        self._publisher = publisher
        self._waiting: Dict[bytes, None] = {}   # insertion-ordered: creation order
        self._fresh: Set[bytes] = set()         # waiting groups not tried yet
        self._retry_all = False                 # the cluster changed: try every group
        self._wake = asyncio.Event()
        self._tried: Dict[bytes, asyncio.Future] = {}   # groups not tried yet: see schedule()
        self._returning: List[bytes] = []   # removed groups whose bundles go back next
        self._return_task = None
        self._tasks: List[asyncio.Task] = []
        nodes.add_death_listener(self._on_node_dead)
        nodes.resource_view.add_change_listener(self._cluster_changed)

    def start(self) -> None:
        for group in self._table.all():
            if group.state in (pb.PG_PENDING, pb.PG_RESCHEDULING):
                self.schedule(group.placement_group_id)
        subscriber = self._publisher.add_subscriber(b"gcs_placement_groups", [pb.JOB_CHANNEL], [])
        self._tasks = [asyncio.ensure_future(self._run()),
                       asyncio.ensure_future(self._watch_jobs(subscriber))]

    def stop(self) -> None:
        for task in self._tasks + [self._return_task]:
            if task is not None:
                task.cancel()

    def schedule(self, group_id: bytes) -> asyncio.Future:
        """Queue the group for placing; the future is done after the next attempt to
        place it, whatever came of it (its row says)."""
        self._waiting[group_id] = None
        self._fresh.add(group_id)
        self._wake.set()
        tried = self._tried.get(group_id)
        if tried is None:
            tried = self._tried[group_id] = asyncio.get_running_loop().create_future()
        return tried

    def num_waiting(self) -> int:
        """Groups waiting to be placed: a gauge."""
        return len(self._waiting)

    def _cluster_changed(self) -> None:
        self._retry_all = True
        self._wake.set()

    def remove(self, group: pb.PlacementGroupTableData) -> None:
        """Return the group's bundles (the row is REMOVED already)."""
        self._waiting.pop(group.placement_group_id, None)
        self._settle(group.placement_group_id)
        self._return_everywhere(group.placement_group_id)

    def _settle(self, group_id: bytes) -> None:
        tried = self._tried.pop(group_id, None)
        if tried is not None and not tried.done():
            tried.set_result(None)

    # ---- the placing loop ------------------------------------------------------------

    async def _run(self) -> None:
        retry = config.gcs_placement_group_retry_ms / 1000.0
        while True:
            if not self._waiting:
                await self._wake.wait()
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), retry)
                except asyncio.TimeoutError:
                    self._retry_all = True
            self._wake.clear()
            # A new group alone changes nothing for the ones that already could not be
            # placed: only a change of the cluster (or the retry period) tries them again.
            todo = list(self._waiting) if self._retry_all else \
                [group_id for group_id in self._waiting if group_id in self._fresh]
            self._retry_all = False
            self._fresh.clear()
            try:
                await self._place(todo)
            except Exception:  # noqa: BLE001 - the loop must go on for later groups
                logger.exception("A placement pass over %d group(s) failed", len(todo))
            for group_id in todo:
                self._settle(group_id)

    async def _place(self, group_ids: List[bytes]) -> None:
        """One pass over the waiting groups: plan each, reserve the one-node groups in one
        call per raylet, then the groups spanning nodes one by one (two phases)."""
        available, totals = self._alive_view()
        one_node: Dict[bytes, List[tuple]] = {}
        spanning = []
        for group_id in group_ids:
            group = self._table.get(group_id)
            if group is None or group.state not in (pb.PG_PENDING, pb.PG_RESCHEDULING):
                self._waiting.pop(group_id, None)
                continue
            todo = _unplaced(group)
            placement, why = _plan(group, todo, available, totals)
            if placement is None:
                await self._note(group, why)
                continue
            for index, node in placement.items():   # later groups of the pass plan on the rest
                free = available[node]
                for name, amount in todo[index].items():
                    free[name] = free.get(name, 0.0) - amount
            nodes = set(placement.values())
            if len(nodes) == 1:
                one_node.setdefault(nodes.pop(), []).append((group, placement))
            else:
                spanning.append(group)
        await asyncio.gather(*(self._reserve_on(node, groups)
                               for node, groups in one_node.items()))
        for group in spanning:
            if self._table.gone(group.placement_group_id):
                continue
            try:
                if await self._try_place(self._table.get(group.placement_group_id)):
                    self._waiting.pop(group.placement_group_id, None)
            except Exception:  # noqa: BLE001 - one group must not stop the others
                logger.exception("Placing placement group %s failed",
                                 group.placement_group_id.hex())

    def _alive_view(self):
        """(node -> what it has available, a copy the caller may deduct from; node -> its
        total) over the alive nodes, as last reported."""
        view = self._nodes.resource_view.nodes()
        alive = {node.node_id for node in self._nodes.alive_nodes()}
        return ({n: dict(d.resources_available) for n, d in view.items() if n in alive},
                {n: d.resources_total for n, d in view.items() if n in alive})

    async def _reserve_on(self, node_id: bytes, groups: List[tuple]) -> None:
        """Prepare and commit at once each group whose bundles all go to `node_id`."""
        request = nm.ReserveBundlesRequest(groups=[
            nm.PrepareBundleResourcesRequest(
                placement_group_id=group.placement_group_id,
                bundles=[b for b in group.bundles if b.bundle_index in placement])
            for group, placement in groups])
        try:
            replies = list((await self._call(node_id, "ReserveBundles", request)).replies)
        except Exception as e:  # noqa: BLE001 - an unreachable raylet refuses them all
            replies = [nm.PrepareBundleResourcesReply(
                success=False, failure_message=f"unreachable ({e})")] * len(groups)
        for (group, placement), reply in zip(groups, replies):
            group_id = group.placement_group_id
            if not reply.success:
                await self._note(self._table.get(group_id),
                                 f"a raylet refused: node {node_id.hex()[:12]}: "
                                 f"{reply.failure_message}")
                continue
            self._waiting.pop(group_id, None)
            await self._created(group_id, placement)

    async def _try_place(self, group: pb.PlacementGroupTableData) -> bool:
        """Place a group whose bundles go to several nodes: prepare on all, then commit."""
        group_id = group.placement_group_id
        available, totals = self._alive_view()
        placement, why = _plan(group, _unplaced(group), available, totals)
        if placement is None:
            await self._note(group, why)
            return False
        by_node: Dict[bytes, List[common_pb2.Bundle]] = {}
        for bundle in group.bundles:
            if bundle.bundle_index in placement:
                by_node.setdefault(placement[bundle.bundle_index], []).append(bundle)
        nodes = list(by_node)
        indices = {node: [b.bundle_index for b in by_node[node]] for node in nodes}
        prepared = await asyncio.gather(*(self._prepare(group_id, node, by_node[node])
                                          for node in nodes))
        refusals = [why for ok, why in prepared if not ok]
        if refusals or self._table.gone(group_id):
            await self._cancel(group_id, {node: indices[node]
                                          for node, (ok, _) in zip(nodes, prepared) if ok})
            if refusals:
                await self._note(group, "a raylet refused: " + "; ".join(refusals))
            return False
        committed = await asyncio.gather(*(self._call(node, "CommitBundleResources",
                                                      nm.CommitBundleResourcesRequest(
                                                          placement_group_id=group_id,
                                                          bundle_indices=indices[node]))
                                           for node in nodes), return_exceptions=True)
        failed = [f"node {node.hex()[:12]}: {result}"
                  for node, result in zip(nodes, committed) if isinstance(result, Exception)]
        if failed:   # a node died between the phases: nothing of this attempt may stay
            await self._cancel(group_id, indices)
            await self._note(group, "commit failed: " + "; ".join(failed))
            return False
        await self._created(group_id, placement)
        return True

    async def _created(self, group_id: bytes, placement: Dict[int, bytes]) -> None:
        """Record the reserved bundles, unless the group was removed meanwhile: then its
        bundles go back."""
        if self._table.gone(group_id):
            self._return_everywhere(group_id)
            return
        current = self._table.get(group_id)
        for bundle in current.bundles:
            if bundle.bundle_index in placement:
                bundle.node_id = placement[bundle.bundle_index]
        current.state = pb.PG_CREATED
        current.scheduling_detail = ""
        await self._table.put(current)
        logger.info("Placement group %s CREATED (%s): %s", group_id.hex(),
                    current.strategy or "PACK",
                    ", ".join(f"bundle {i} on node {n.hex()[:12]}"
                              for i, n in sorted(placement.items())))

    async def _prepare(self, group_id: bytes, node_id: bytes, bundles):
        try:
            reply = await self._call(node_id, "PrepareBundleResources",
                                     nm.PrepareBundleResourcesRequest(
                                         placement_group_id=group_id, bundles=bundles))
        except Exception as e:  # noqa: BLE001 - an unreachable raylet refuses
            return False, f"node {node_id.hex()[:12]} unreachable ({e})"
        return reply.success, f"node {node_id.hex()[:12]}: {reply.failure_message}"

    async def _note(self, group, why: str) -> None:
        """Say why the group waits (not for a group removed, perhaps forgotten: None)."""
        if group is not None and group.state != pb.PG_REMOVED and \
                group.scheduling_detail != why:
            logger.info("Placement group %s waits: %s", group.placement_group_id.hex(), why)
            group.scheduling_detail = why
            await self._table.put(group)

    # ---- raylets ---------------------------------------------------------------------

    async def _call(self, node_id: bytes, method: str, request):
        info = self._nodes.get(node_id)
        if info is None or info.state == common_pb2.NodeInfo.DEAD:
            raise ConnectionError(f"node {node_id.hex()} is not alive")
        stub = rpc.stub(nm_grpc.NodeManagerServiceStub, node_address(info))
        return await rpc.call_with_retry(getattr(stub, method), request)

    async def _cancel(self, group_id: bytes, indices: Dict[bytes, List[int]]) -> None:
        """Give back the bundles of one placement attempt (node -> bundle indices)."""
        await asyncio.gather(*(self._call(node, "CancelResourceReserve",
                                          nm.CancelResourceReserveRequest(
                                              placement_group_id=group_id,
                                              bundle_indices=bundle_indices))
                               for node, bundle_indices in indices.items()),
                             return_exceptions=True)

    def _return_everywhere(self, group_id: bytes) -> None:
        """Every alive raylet returns the group's bundles and fails its waiting tasks;
        the groups removed while one such call is out go together in the next."""
        self._returning.append(group_id)
        if self._return_task is None:
            self._return_task = asyncio.ensure_future(self._return_bundles())

    async def _return_bundles(self) -> None:
        try:
            while self._returning:
                group_ids, self._returning = self._returning, []
                request = nm.ReturnBundlesRequest(placement_group_ids=group_ids)
                nodes = [node.node_id for node in self._nodes.alive_nodes()]
                results = await asyncio.gather(*(self._call(n, "ReturnBundles", request)
                                                 for n in nodes), return_exceptions=True)
                for node_id, result in zip(nodes, results):
                    if isinstance(result, Exception):
                        logger.warning("Node %s did not return the bundles of placement "
                                       "group(s) %s: %s", node_id.hex(),
                                       ", ".join(g.hex() for g in group_ids), result)
        finally:
            self._return_task = None

    # ---- events ----------------------------------------------------------------------

    async def _on_node_dead(self, node: common_pb2.NodeInfo) -> None:
        for group in self._table.all():
            if group.state not in (pb.PG_CREATED, pb.PG_RESCHEDULING):
                continue
            lost = [b for b in group.bundles if b.node_id == node.node_id]
            if not lost:
                continue
            for bundle in lost:
                bundle.node_id = b""
            group.state = pb.PG_RESCHEDULING
            group.scheduling_detail = (f"node {node.node_id.hex()} died with bundles "
                                       f"{[b.bundle_index for b in lost]}")
            logger.warning("Placement group %s RESCHEDULING: %s", group.placement_group_id.hex(),
                           group.scheduling_detail)
            await self._table.put(group)
            self.schedule(group.placement_group_id)

    async def _watch_jobs(self, subscriber) -> None:
        async for message in subscriber.messages():
            if message.job_message.state == pb.JOB_FINISHED:
                try:
                    await self._table.remove_groups_of_job(message.job_message.job_id)
                except Exception:  # noqa: BLE001
                    logger.exception("Removing the placement groups of job %s failed",
                                     message.job_message.job_id.hex())
