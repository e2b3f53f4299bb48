"""bundle_placement.plan: the four strategies, rescheduling a lost node's bundles, and the
reasons a group waits."""
from ray_gcs.bundle_placement import plan

A, B, C = b"a" * 28, b"b" * 28, b"c" * 28


def cpus(*amounts):
    return {i: {"CPU": amount} for i, amount in enumerate(amounts)}


def test_pack_takes_one_node_when_one_fits_everything():
    placement, why = plan(cpus(1, 1), "PACK", {A: {"CPU": 1}, B: {"CPU": 2}})
    assert placement == {0: B, 1: B} and why == ""


def test_pack_falls_back_to_as_few_nodes_as_first_fit_finds():
    placement, _ = plan(cpus(2, 1, 1), "PACK", {A: {"CPU": 2}, B: {"CPU": 2}})
    assert placement[0] == A and {placement[1], placement[2]} == {B}


def test_fractions_add_up_exactly():
    placement, _ = plan(cpus(*[0.1] * 10), "STRICT_PACK", {A: {"CPU": 1.0}})
    assert set(placement.values()) == {A}


def test_spread_balances_and_strict_spread_needs_a_node_per_bundle():
    placement, _ = plan(cpus(1, 1, 1), "SPREAD", {A: {"CPU": 4}, B: {"CPU": 4}})
    assert sorted(placement.values()).count(A) in (1, 2) and len(set(placement.values())) == 2
    placement, _ = plan(cpus(1, 1), "STRICT_SPREAD", {A: {"CPU": 4}, B: {"CPU": 4}})
    assert set(placement.values()) == {A, B}
    placement, why = plan(cpus(1, 1, 1), "STRICT_SPREAD", {A: {"CPU": 4}, B: {"CPU": 4}})
    assert placement is None and "STRICT_SPREAD needs 3 nodes" in why


def test_strict_spread_lets_the_pickiest_bundle_choose_first():
    bundles = {0: {"CPU": 1}, 1: {"GPU": 1}}
    placement, _ = plan(bundles, "STRICT_SPREAD", {A: {"CPU": 1, "GPU": 1}, B: {"CPU": 1}})
    assert placement == {0: B, 1: A}


def test_rescheduling_keeps_the_placed_bundles_constraints():
    # Bundle 0 stays on A: STRICT_PACK must put bundle 1 there too, STRICT_SPREAD elsewhere.
    placement, why = plan({1: {"CPU": 1}}, "STRICT_PACK", {A: {"CPU": 0}, B: {"CPU": 8}},
                          placed={0: A})
    assert placement is None and why
    placement, _ = plan({1: {"CPU": 1}}, "STRICT_SPREAD", {A: {"CPU": 8}, B: {"CPU": 8}},
                        placed={0: A})
    assert placement == {1: B}
    placement, _ = plan({1: {"CPU": 1}}, "SPREAD", {A: {"CPU": 8}, B: {"CPU": 8}, C: {}},
                        placed={0: A})
    assert placement == {1: B}


def test_the_reason_tells_never_from_not_now():
    _, why = plan(cpus(16), "PACK", {A: {"CPU": 0}}, totals={A: {"CPU": 8}})
    assert "bundle 0 {CPU: 16} fits no node of the cluster" in why
    _, why = plan(cpus(4), "PACK", {A: {"CPU": 1}}, totals={A: {"CPU": 8}})
    assert "do not fit what the nodes have available now" in why
    _, why = plan(cpus(4, 4), "STRICT_PACK", {A: {"CPU": 4}, B: {"CPU": 4}})
    assert "STRICT_PACK needs one node with {CPU: 8}" in why
