"""Bin packing of waiting demand onto node types (demand.plan_launches), no processes."""
from ray_core.autoscaler.cluster_config import NodeType
from ray_core.autoscaler.demand import PendingGroup, holds, plan_launches

CPU2 = NodeType("cpu2", {"CPU": 2.0}, max_workers=10)
BIG = NodeType("big", {"CPU": 1.0, "big": 1.0}, max_workers=10)


def plan(types, demands=(), groups=(), requested=(), counts=None, free=None, totals=None,
         max_workers=100):
    free = [{"CPU": 0.0}] if free is None else free
    return plan_launches({t.name: t for t in types}, counts or {}, free,
                         totals if totals is not None else free, list(demands),
                         list(groups), list(requested), max_workers)


def test_demand_that_fits_what_is_free_launches_nothing():
    result = plan([CPU2], demands=[{"CPU": 1.0}] * 2, free=[{"CPU": 2.0}])
    assert result.launch == {} and not result.infeasible


def test_the_fewest_nodes_of_the_type_that_holds_the_shape():
    result = plan([CPU2, BIG], demands=[{"CPU": 1.0}] * 5)
    assert result.launch == {"cpu2": 3}
    result = plan([CPU2, BIG], demands=[{"CPU": 1.0, "big": 1.0}] * 3)
    assert result.launch == {"big": 3}


def test_max_workers_per_type_and_in_all_caps_the_launch():
    capped_type = NodeType("big", {"CPU": 1.0, "big": 1.0}, max_workers=2)
    result = plan([capped_type], demands=[{"big": 1.0}] * 5)
    assert result.launch == {"big": 2} and len(result.capped) == 3
    result = plan([CPU2], demands=[{"CPU": 2.0}] * 5, max_workers=1)
    assert result.launch == {"cpu2": 1}
    # Nodes already there count against the limit.
    result = plan([capped_type], demands=[{"big": 1.0}] * 5, counts={"big": 2})
    assert result.launch == {} and len(result.capped) == 5


def test_a_shape_no_type_holds_is_infeasible_and_launches_nothing():
    result = plan([CPU2, BIG], demands=[{"GPU": 1.0}, {"CPU": 4.0}])
    assert result.launch == {}
    assert sorted(map(str, result.infeasible)) == ["{'CPU': 4.0}", "{'GPU': 1.0}"]


def test_min_workers_come_first_and_take_the_demand():
    keep = NodeType("cpu2", {"CPU": 2.0}, min_workers=2, max_workers=4)
    result = plan([keep], demands=[{"CPU": 1.0}] * 4)
    assert result.launch == {"cpu2": 2}


def test_a_strict_spread_group_gets_one_node_per_bundle():
    group = PendingGroup("g", "STRICT_SPREAD", [{"CPU": 1.0}, {"CPU": 1.0}])
    assert plan([CPU2], groups=[group]).launch == {"cpu2": 2}
    # One node that is there already with room takes one bundle.
    assert plan([CPU2], groups=[group], free=[{"CPU": 1.0}]).launch == {"cpu2": 1}


def test_a_strict_pack_group_needs_one_node_that_holds_it_all():
    group = PendingGroup("g", "STRICT_PACK", [{"CPU": 1.0}, {"CPU": 1.0}])
    assert plan([CPU2], groups=[group]).launch == {"cpu2": 1}
    too_big = PendingGroup("g", "STRICT_PACK", [{"CPU": 2.0}, {"CPU": 1.0}])
    result = plan([CPU2], groups=[too_big])
    assert result.launch == {} and result.infeasible == [{"CPU": 3.0}]


def test_requested_resources_size_the_cluster_total_not_what_is_free():
    busy_head = [{"CPU": 0.0}]
    result = plan([CPU2], requested=[{"CPU": 1.0}] * 3, free=busy_head,
                  totals=[{"CPU": 2.0}])
    assert result.launch == {"cpu2": 1}     # the head's 2 CPUs count, used or not


def test_holds():
    assert holds([{"CPU": 1.0}] * 2, [{"CPU": 1.0}, {"CPU": 1.0}])
    assert not holds([{"CPU": 2.0}], [{"CPU": 1.0}, {"CPU": 1.0}])
