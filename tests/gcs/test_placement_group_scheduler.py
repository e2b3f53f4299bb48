"""GcsPlacementGroupScheduler against fake raylets: the two phases, and what an attempt
leaves behind when a raylet refuses, a node dies between the phases, or the group is
removed while it is being placed."""
import asyncio

import pytest

from ray_common.protocol import common_pb2, gcs_service_pb2 as pb
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
        self.refuse, self.fail_commit, self.during_prepare = refuse, fail_commit, during_prepare

    async def __call__(self, node_id, method, request):
        self.calls.append((node_id, method, list(getattr(request, "bundle_indices", ()))))
        if method == "PrepareBundleResources":
            if self.during_prepare is not None:
                await self.during_prepare()
            return pb_reply(node_id not in self.refuse)
        if method == "CommitBundleResources" and node_id in self.fail_commit:
            raise ConnectionError("node died")
        return None

    def methods(self, node_id):
        return [(method, indices) for node, method, indices in self.calls if node == node_id]


def pb_reply(success):
    from ray_common.protocol import node_manager_pb2 as nm
    return nm.PrepareBundleResourcesReply(success=success, failure_message="" if success
                                          else "bundle 0 needs {CPU: 1}; available {CPU: 0}")


async def make(raylets, strategy="STRICT_SPREAD", bundles=2):
    table = GcsPlacementGroupTable(InMemoryStorage())
    table.scheduler = GcsPlacementGroupScheduler(table, FakeNodes(), GcsPublisher())
    table.scheduler._call = raylets
    await table.put(pb.PlacementGroupTableData(
        placement_group_id=GROUP, strategy=strategy,
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
