"""Placement groups on real clusters: reservation, tasks and actors in bundles, the four
strategies over two raylets, removal, a node's death, and the end of the creator's job."""
import time

import pytest

import ray_core as ray
from ray_common.ids import PlacementGroupID
from ray_core._private import worker as worker_mod
from ray_core.exceptions import ActorDiedError, RaySystemError, TaskPlacementGroupRemoved
from ray_core.util import (PlacementGroup, get_current_placement_group, get_placement_group,
                           placement_group, placement_group_table, remove_placement_group)
from ray_core.util.scheduling_strategies import PlacementGroupSchedulingStrategy as InGroup

from tests.integration.conftest import run_script

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def second_node(fast_health_cluster):
    from ray_raylet.launcher import start_raylet
    node = worker_mod.global_worker().node
    proc, info = start_raylet(node.gcs_address, node.session_dir, num_cpus=1,
                              env=node.child_env())
    info["proc"] = proc
    try:
        yield info
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
        wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 1, "the node to leave")


def wait_for(condition, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@ray.remote
def context():
    group = get_current_placement_group()
    return (ray.get_runtime_context().get_node_id(),
            ray.get_runtime_context().get_assigned_resources(),
            group.id.hex() if group else None)


@ray.remote(num_cpus=0)
def child_context():
    return ray.get(context.options(num_cpus=0).remote())[2]


@ray.remote
class Member:
    def group(self):
        group = get_current_placement_group()
        assert ray.get_runtime_context().get_placement_group_id() == (
            group.id.hex() if group else None)
        return group.id.hex() if group else None


def test_a_pack_group_reserves_its_bundles_and_runs_tasks_in_them(fast_health_cluster):
    group = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK", name="pack")
    assert ray.get(group.ready(), timeout=30) == group
    row = placement_group_table(group)
    assert row["state"] == "CREATED" and row["strategy"] == "PACK" and row["name"] == "pack"
    assert row["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 1.0}}
    assert set(row["bundles_to_node_id"].values()) == {fast_health_cluster["node_id"]}
    assert get_placement_group("pack") == group and group.bundle_count == 2

    node, assigned, inside = ray.get(context.options(
        scheduling_strategy=InGroup(group, placement_group_bundle_index=1)).remote(), timeout=30)
    gid = group.id.hex()
    assert inside == gid and node == fast_health_cluster["node_id"]
    assert assigned == {f"CPU_group_1_{gid}": 1.0, f"CPU_group_{gid}": 1.0}
    assert get_current_placement_group() is None       # the driver is in no group
    assert ray.get_runtime_context().get_placement_group_id() is None

    # The group holds both CPUs: a task outside it waits until the group is removed.
    outside = context.remote()
    ready, _ = ray.wait([outside], timeout=1.0)
    assert not ready
    remove_placement_group(group)
    assert ray.get(outside, timeout=30)[2] is None
    assert placement_group_table(group)["state"] == "REMOVED"
    with pytest.raises(ValueError, match="no placement group named 'pack'"):
        get_placement_group("pack")


def test_bad_groups_and_requests_are_refused_with_the_reason(fast_health_cluster):
    with pytest.raises(ValueError, match="empty list"):
        placement_group([])
    with pytest.raises(ValueError, match="bundle 1 reserves nothing"):
        placement_group([{"CPU": 1}, {"CPU": 0}])
    with pytest.raises(ValueError, match="invalid placement group strategy 'TIGHT'"):
        placement_group([{"CPU": 1}], strategy="TIGHT")
    with pytest.raises(ValueError, match="lifetime must be None or 'detached'"):
        placement_group([{"CPU": 1}], lifetime="forever")
    group = placement_group([{"CPU": 1}], name="taken")
    try:
        with pytest.raises(RaySystemError, match="named 'taken' already exists"):
            placement_group([{"CPU": 0.5}], name="taken")   # as Ray: raised at creation
        with pytest.raises(ValueError, match="bundle index 3 is invalid"):
            context.options(scheduling_strategy=InGroup(group, placement_group_bundle_index=3))
        with pytest.raises(ValueError, match=r"\{'CPU': 2.0\} does not fit any bundle"):
            context.options(num_cpus=2, scheduling_strategy=InGroup(group)).remote()
        with pytest.raises(TypeError, match="needs a PlacementGroup"):
            context.options(scheduling_strategy=InGroup("my group"))
    finally:
        remove_placement_group(group)


def test_a_group_that_cannot_fit_waits_and_its_tasks_fail_once_it_is_removed(fast_health_cluster):
    group = placement_group([{"CPU": 64}])
    assert group.wait(timeout_seconds=1) is False
    row = placement_group_table(group)
    assert row["state"] == "PENDING"
    assert "fits no node of the cluster" in row["stats"]["scheduling_state"]
    waiting = context.options(num_cpus=1, scheduling_strategy=InGroup(group)).remote()
    ready = group.ready()
    remove_placement_group(group)
    with pytest.raises(RaySystemError, match=f"placement group {group.id.hex()} was removed"):
        ray.get(ready, timeout=30)
    with pytest.raises(TaskPlacementGroupRemoved, match=f"placement group {group.id.hex()} "
                                                        f"was removed"):
        ray.get(waiting, timeout=30)


def test_rays_deprecated_placement_group_options_still_place_the_task(fast_health_cluster):
    group = placement_group([{"CPU": 0.5}, {"CPU": 0.5}])
    try:
        with pytest.warns(DeprecationWarning, match="placement_group option is deprecated"):
            legacy = context.options(num_cpus=0.5, placement_group=group,
                                     placement_group_bundle_index=1)
        assigned = ray.get(legacy.remote(), timeout=30)[1]
        assert assigned == {f"CPU_group_1_{group.id.hex()}": 0.5,
                            f"CPU_group_{group.id.hex()}": 0.5}
        # placement_group=None (as Ray's libraries write it): not in any group.
        assert ray.get(context.options(placement_group=None).remote(), timeout=30)[2] is None
        with pytest.raises(ValueError, match="cannot be combined with scheduling_strategy"):
            context.options(placement_group=group, scheduling_strategy="SPREAD")
        with pytest.raises(ValueError, match="need a placement_group"):
            context.options(placement_group_bundle_index=0)
    finally:
        remove_placement_group(group)


def test_child_tasks_join_the_group_only_when_captured(fast_health_cluster):
    group = placement_group([{"CPU": 1}])
    try:
        captured = child_context.options(scheduling_strategy=InGroup(
            group, placement_group_capture_child_tasks=True)).remote()
        free = child_context.options(scheduling_strategy=InGroup(group)).remote()
        assert ray.get([captured, free], timeout=30) == [group.id.hex(), None]
    finally:
        remove_placement_group(group)


def test_an_actor_in_a_group_dies_with_the_group(fast_health_cluster):
    group = placement_group([{"CPU": 1}])
    actor = Member.options(scheduling_strategy=InGroup(group, 0)).remote()
    assert ray.get(actor.group.remote(), timeout=30) == group.id.hex()
    remove_placement_group(group)
    with pytest.raises(ActorDiedError, match=f"placement group {group.id.hex()}"):
        for _ in range(100):
            ray.get(actor.group.remote(), timeout=30)
            time.sleep(0.1)


def test_strategies_over_two_nodes_and_a_node_death(fast_health_cluster, second_node):
    head, second = fast_health_cluster["node_id"], second_node["node_id"]
    wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, "the second node")

    spread = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert spread.wait(30)
    homes = placement_group_table(spread)["bundles_to_node_id"]
    assert sorted(homes.values()) == sorted([head, second])
    ran_on = ray.get([context.options(scheduling_strategy=InGroup(spread, i)).remote()
                      for i in (0, 1)], timeout=30)
    assert [node for node, _, _ in ran_on] == [homes[0], homes[1]]
    too_wide = placement_group([{"CPU": 0.1}] * 3, strategy="STRICT_SPREAD")
    assert too_wide.wait(1) is False
    assert "STRICT_SPREAD needs 3 nodes" in \
        placement_group_table(too_wide)["stats"]["scheduling_state"]
    for group in (spread, too_wide):
        remove_placement_group(group)

    # STRICT_PACK needs one node with both bundles: only the head has two CPUs.
    packed = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK")
    assert packed.wait(30)
    assert set(placement_group_table(packed)["bundles_to_node_id"].values()) == {head}
    remove_placement_group(packed)

    # SPREAD puts a bundle on each node (best effort: the GCS must first hear that the
    # CPUs are free again); when the second node dies, its bundle moves.
    wait_for(lambda: ray.available_resources().get("CPU") == 3, "the CPUs to be free")
    group = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="SPREAD")
    assert group.wait(30)
    homes = placement_group_table(group)["bundles_to_node_id"]
    assert sorted(homes.values()) == sorted([head, second])
    second_node["proc"].kill()
    wait_for(lambda: placement_group_table(group)["state"] == "CREATED" and
             set(placement_group_table(group)["bundles_to_node_id"].values()) == {head},
             "the lost bundle to be placed again on the head")
    moved = [i for i, node in homes.items() if node == second][0]
    node, _, _ = ray.get(context.options(scheduling_strategy=InGroup(group, moved)).remote(),
                         timeout=30)
    assert node == head
    remove_placement_group(group)


def test_a_group_ends_with_its_job_unless_detached(fast_health_cluster, short_temp_dir):
    result = run_script(f"""
        import ray_core as ray
        from ray_core.util import placement_group
        ray.init(address="auto", namespace="pg_jobs", _temp_dir={short_temp_dir!r})
        placement_group([{{"CPU": 0.5}}], name="mine").wait(30)
        placement_group([{{"CPU": 0.5}}], name="kept", lifetime="detached").wait(30)
        print("created")
    """)
    assert result.returncode == 0 and "created" in result.stdout, result.stderr
    by_name = {row["name"]: row for row in placement_group_table().values()}
    wait_for(lambda: {row["name"]: row["state"] for row in placement_group_table().values()
                      }.get("mine") == "REMOVED", "the job's group to be removed")
    assert by_name["kept"]["state"] == "CREATED"
    kept = PlacementGroup(PlacementGroupID(bytes.fromhex(by_name["kept"]["placement_group_id"])))
    remove_placement_group(kept)
    assert placement_group_table(kept)["state"] == "REMOVED"
