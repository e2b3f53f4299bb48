"""GcsPlacementGroupScheduler against fake raylets: the two phases, and what an attempt
leaves behind when a raylet refuses, a node dies between the phases, or the group is
removed while it is being placed."""
import asyncio

import pytest

from ray_common.protocol import common_pb2, gcs_service_pb2 as pb, node_manager_pb2 as nm
from ray_gcs.placement_group_scheduler import GcsPlacementGroupScheduler
from ray_gcs.placement_group_table import GcsPlacementGroupTable
from ray_gcs.pubsub import GcsPublisher
from ray_gcs.storage import InMemoryStorage

A, B = b"a" * 28, b"b" * 28
GROUP = bytes(range(18))


class FakeNodes:
    """Two alive nodes with one CPU each, as the node manager and resource view show them."""

    def __init__(self):
        self.resource_view = self
        self.infos = {n: common_pb2.NodeInfo(node_id=n, state=common_pb2.NodeInfo.ALIVE)
                      for n in (A, B)}

    def add_death_listener(self, listener):
        pass

    def add_change_listener(self, listener):
        pass

    def alive_nodes(self):
        return list(self.infos.values())

    def get(self, node_id):
        return self.infos.get(node_id)

    def nodes(self):
        return {n: common_pb2.ResourcesData(node_id=n, resources_total={"CPU": 1},
                                            resources_available={"CPU": 1}) for n in self.infos}


class FakeRaylets:
    """Records every call; `refuse`/`fail_commit` name nodes that say no or are gone."""

    def __init__(self, refuse=(), fail_commit=(), during_prepare=None):
        self.calls = []
        self.reserved, self.returned = [], []   # (node, group ids) of the batched calls
        self.refuse, self.fail_commit, self.during_prepare = refuse, fail_commit, during_prepare

    async def __call__(self, node_id, method, request):
        self.calls.append((node_id, method, list(getattr(request, "bundle_indices", ()))))
        if method == "PrepareBundleResources":
            if self.during_prepare is not None:
                await self.during_prepare()
            return pb_reply(node_id not in self.refuse)
        if method == "ReserveBundles":
            self.reserved.append((node_id, [g.placement_group_id for g in request.groups]))
            return nm.ReserveBundlesReply(replies=[pb_reply(node_id not in self.refuse)
                                                   for _ in request.groups])
        if method == "ReturnBundles":
            self.returned.append((node_id, list(request.placement_group_ids)))
        if method == "CommitBundleResources" and node_id in self.fail_commit:
            raise ConnectionError("node died")
        return None

    def methods(self, node_id):
        return [(method, indices) for node, method, indices in self.calls if node == node_id]


def pb_reply(success):
    return nm.PrepareBundleResourcesReply(success=success, failure_message="" if success
                                          else "bundle 0 needs {CPU: 1}; available {CPU: 0}")


async def make(raylets, strategy="STRICT_SPREAD", bundles=2, groups=(GROUP,)):
    table = GcsPlacementGroupTable(InMemoryStorage())
    table.scheduler = GcsPlacementGroupScheduler(table, FakeNodes(), GcsPublisher())
    table.scheduler._call = raylets
    for group_id in groups:
        await table.put(pb.PlacementGroupTableData(
            placement_group_id=group_id, strategy=strategy,
            bundles=[common_pb2.Bundle(bundle_index=i, unit_resources={"CPU": 1})
                     for i in range(bundles)]))
    return table


async def place(raylets):
    table = await make(raylets)
    return table, await table.scheduler._try_place(table.get(GROUP))


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def test_both_phases_place_the_group():
    table, placed = run(place(FakeRaylets()))
    row = table.get(GROUP)
    assert placed and row.state == pb.PG_CREATED
    assert sorted(b.node_id for b in row.bundles) == [A, B]


@pytest.mark.parametrize("how", ["refused", "commit failed"])
def test_a_failed_attempt_returns_what_it_reserved(how):
    raylets = FakeRaylets(refuse=(B,)) if how == "refused" else FakeRaylets(fail_commit=(B,))
    table, placed = run(place(raylets))
    row = table.get(GROUP)
    assert not placed and row.state == pb.PG_PENDING and how in row.scheduling_detail
    assert not any(b.node_id for b in row.bundles)
    for node in (A, B):
        if how == "refused" and node == B:
            continue    # B reserved nothing
        assert raylets.methods(node)[-1][0] == "CancelResourceReserve"


@pytest.mark.parametrize("strategy,bundles", [("PACK", 1), ("STRICT_SPREAD", 2)])
def test_a_group_removed_while_being_placed_keeps_nothing(strategy, bundles):
    holder = {}

    async def remove_now():
        await holder["table"].remove(holder["table"].get(GROUP), "removed by its user")

    async def scenario():
        raylets = FakeRaylets(during_prepare=remove_now)
        table = holder["table"] = await make(raylets, strategy=strategy, bundles=bundles)
        await table.scheduler._try_place(table.get(GROUP))
        await asyncio.sleep(0.01)    # the removal's own cancel runs in the background
        return table, raylets

    table, raylets = run(scenario())
    assert table.get(GROUP).state == pb.PG_REMOVED
    assert "CommitBundleResources" not in [method for _, method, _ in raylets.calls]
    for node in {node for node, method, _ in raylets.calls if method.startswith("Prepare")}:
        assert raylets.methods(node)[-1][0] == "CancelResourceReserve"


THREE = [bytes([n]) * 18 for n in (1, 2, 3)]


def test_one_pass_reserves_each_nodes_groups_in_one_call():
    """Three one-CPU groups on two one-CPU nodes: the first two go one to each node (the
    second planned on what the first left), the third waits; every first try ends."""
    async def scenario():
        raylets = FakeRaylets()
        table = await make(raylets, strategy="PACK", bundles=1, groups=THREE)
        tried = [table.scheduler.schedule(group_id) for group_id in THREE]
        await table.scheduler._place(THREE)
        for group_id in THREE:
            table.scheduler._settle(group_id)
        assert all(future.done() for future in tried)
        return table, raylets

    table, raylets = run(scenario())
    assert sorted(raylets.reserved) == [(A, [THREE[0]]), (B, [THREE[1]])]
    assert [table.get(g).state for g in THREE] == [pb.PG_CREATED, pb.PG_CREATED, pb.PG_PENDING]
    assert "do not fit" in table.get(THREE[2]).scheduling_detail


def test_a_refused_reservation_leaves_the_group_waiting_with_the_reason():
    async def scenario():
        raylets = FakeRaylets(refuse=(A, B))
        table = await make(raylets, strategy="PACK", bundles=1, groups=THREE[:1])
        await table.scheduler._place(THREE[:1])
        return table

    row = run(scenario()).get(THREE[0])
    assert row.state == pb.PG_PENDING and "a raylet refused" in row.scheduling_detail
    assert not any(b.node_id for b in row.bundles)


def test_removals_made_together_return_their_bundles_in_one_call_per_node():
    async def scenario():
        raylets = FakeRaylets()
        table = await make(raylets, strategy="PACK", bundles=1, groups=THREE)
        for group_id in THREE:
            await table.remove(table.get(group_id), "removed by its user")
        for _ in range(10):
            await asyncio.sleep(0)
        return raylets

    returned = run(scenario()).returned
    for node in (A, B):
        calls = [group_ids for to, group_ids in returned if to == node]
        assert sorted(g for group_ids in calls for g in group_ids) == THREE and len(calls) < 3
