"""The actor and placement group tables keep only the newest ended rows (their bound, on
both storage backends), forget the oldest first, and a GCS restart that loads more than
the bound forgets the oldest of those too."""
import asyncio

import pytest

from ray_common.config import config
from ray_common.ids import JobID, PlacementGroupID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb
from ray_gcs.actor_table import GcsActorTable
from ray_gcs.placement_group_table import GcsPlacementGroupTable
from ray_gcs.pubsub import GcsPublisher
from ray_gcs.storage import Table, open_storage
from tests.gcs.test_recovery import make_actor
from tests.gcs.test_storage import run

JOB = JobID.from_int(7)


@pytest.fixture
def bounds():
    """Set the two bounds for one test (the tables read them at each ending)."""
    saved = dict(config._system_config)

    def set_bounds(n):
        config._system_config.update({"maximum_gcs_destroyed_actor_cached_count": n,
                                      "maximum_gcs_removed_placement_group_cached_count": n})
    yield set_bounds
    config._system_config.clear()
    config._system_config.update(saved)


def test_dead_actors_past_the_bound_are_forgotten_oldest_first(storage_url, bounds):
    bounds(3)
    alive = [make_actor(JOB, i, name=f"alive{i}") for i in range(2)]
    dead = [make_actor(JOB, 10 + i, name=f"dead{i}", state=pb.ActorTableData.DEAD)
            for i in range(7)]

    async def body(storage):
        table = GcsActorTable(storage, GcsPublisher())
        for actor in alive + dead:
            await table.put(actor)
            await asyncio.sleep(0.002)   # end times in ms: ties may load in either order
        kept = {a.actor_id for a in table.all()}
        assert kept == {a.actor_id for a in alive + dead[-3:]}
        assert set(await storage.scan_keys(Table.ACTOR)) == kept
        assert table.num_dead() == 3 and table.num_named() == 2
        assert table.get(dead[0].actor_id) is None
        assert table.get_named("dead6", "ns") is None      # a DEAD actor gives its name up
        assert table.get_named("alive1", "ns").actor_id == alive[1].actor_id
        assert all(table.get(a.actor_id).end_time_ms > 0 for a in dead[-3:])

        bounds(1)                        # a restart with a lower bound forgets the oldest
        recovered = GcsActorTable(storage, GcsPublisher())
        await recovered.load()
        assert {a.actor_id for a in recovered.all()} == {a.actor_id for a in alive + dead[-1:]}
        assert len(await storage.scan_keys(Table.ACTOR)) == 3
    run(open_storage(storage_url), body)


def group_row(i):
    return pb.PlacementGroupTableData(
        placement_group_id=PlacementGroupID.of(JOB).binary(), creator_job_id=JOB.binary(),
        name=f"g{i}", bundles=[common_pb2.Bundle(unit_resources={"CPU": 1.0})])


def test_removed_groups_past_the_bound_are_forgotten_oldest_first(storage_url, bounds):
    bounds(2)
    rows = [group_row(i) for i in range(6)]

    async def body(storage):
        table = GcsPlacementGroupTable(storage)
        for row in rows:
            assert await table._create(row) == ""
        for row in rows[:5]:
            assert await table._remove_by_id(row.placement_group_id) == ""
            await asyncio.sleep(0.002)
        kept = {g.placement_group_id for g in table.all()}
        assert kept == {r.placement_group_id for r in rows[3:]}
        assert set(await storage.scan_keys(Table.PLACEMENT_GROUP)) == kept
        assert table.num_removed() == 2
        assert table.gone(rows[0].placement_group_id) and table.gone(rows[4].placement_group_id)
        assert not table.gone(rows[5].placement_group_id)

        bounds(1)
        recovered = GcsPlacementGroupTable(storage)
        await recovered.load()
        assert {g.placement_group_id for g in recovered.all()} == \
            {rows[4].placement_group_id, rows[5].placement_group_id}
    run(open_storage(storage_url), body)
