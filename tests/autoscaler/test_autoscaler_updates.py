"""Autoscaler.update on snapshots with a fake clock: launches, idle ends, failures."""
from ray_core.autoscaler.autoscaler import Autoscaler, ClusterSnapshot, NodeSnapshot
from ray_core.autoscaler.cluster_config import parse

HEAD = NodeSnapshot(node_id=b"h", launch_id="", total={"CPU": 1.0}, free={"CPU": 1.0},
                    busy=False, is_head=True)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def scaler(idle_minutes=1.0, min_workers=0, max_workers=10, speed=1.0):
    cluster = parse({
        "cluster_name": "t", "provider": {"type": "local"}, "head_node_type": "head",
        "max_workers": max_workers, "upscaling_speed": speed,
        "idle_timeout_minutes": idle_minutes,
        "available_node_types": {"head": {"resources": {"CPU": 1}},
                                 "w": {"resources": {"CPU": 1}, "min_workers": min_workers,
                                       "max_workers": max_workers}}})
    clock = Clock()
    return Autoscaler(cluster, clock=clock), clock


def worker(launch_id, busy=False, used=0.0):
    return NodeSnapshot(node_id=launch_id.encode(), launch_id=launch_id,
                        total={"CPU": 1.0}, free={"CPU": 1.0 - used}, busy=busy)


def test_launches_for_demand_then_counts_them_until_they_register():
    a, _ = scaler()
    decision = a.update(ClusterSnapshot([HEAD], demands=[{"CPU": 1.0}] * 3), {})
    assert [t for _, t in decision.launch] == ["w", "w"]     # the head takes one
    launched = {lid: "w" for lid, _ in decision.launch}
    # Next update: still launching, the same demand asks for nothing more.
    again = a.update(ClusterSnapshot([HEAD], demands=[{"CPU": 1.0}] * 3), launched)
    assert again.launch == [] and again.terminate == []
    registered = [worker(lid, busy=True, used=1.0) for lid in launched]
    a.update(ClusterSnapshot([HEAD] + registered, demands=[]), launched)
    assert a.launching == {} and a.status()["running"] == {"w": 2}


def test_upscaling_speed_bounds_the_launches_in_flight():
    a, _ = scaler(speed=1.0)
    decision = a.update(ClusterSnapshot([HEAD], demands=[{"CPU": 1.0}] * 9), {})
    assert len(decision.launch) == 5       # max(5, speed x running nodes)


def test_an_idle_node_ends_after_the_timeout_and_not_before():
    a, clock = scaler(idle_minutes=1.0)
    nodes = {"n1": "w"}
    assert a.update(ClusterSnapshot([HEAD, worker("n1")], []), nodes).terminate == []
    clock.now += 59
    assert a.update(ClusterSnapshot([HEAD, worker("n1")], []), nodes).terminate == []
    clock.now += 2
    ended = a.update(ClusterSnapshot([HEAD, worker("n1")], []), nodes).terminate
    assert [lid for lid, _ in ended] == ["n1"] and "idle for 61s" in ended[0][1]


def test_busy_nodes_and_waiting_demand_restart_the_idle_clock():
    a, clock = scaler(idle_minutes=1.0)
    nodes = {"n1": "w"}
    a.update(ClusterSnapshot([HEAD, worker("n1")], []), nodes)
    clock.now += 50
    a.update(ClusterSnapshot([HEAD, worker("n1", busy=True)], []), nodes)   # objects, a lease
    clock.now += 50
    assert a.update(ClusterSnapshot([HEAD, worker("n1")], []), nodes).terminate == []
    clock.now += 61
    # Demand waits (for a shape no node type has): nothing ends while it waits.
    assert a.update(ClusterSnapshot([HEAD, worker("n1")], [{"GPU": 1.0}]),
                    nodes).terminate == []


def test_min_workers_and_requested_resources_keep_idle_nodes():
    a, clock = scaler(idle_minutes=0.0, min_workers=1)
    assert a.update(ClusterSnapshot([HEAD, worker("n1")], []), {"n1": "w"}).terminate == []
    a, clock = scaler(idle_minutes=0.0)
    kept = ClusterSnapshot([HEAD, worker("n1")], [], requested=[{"CPU": 1.0}] * 2)
    assert a.update(kept, {"n1": "w"}).terminate == []
    freed = ClusterSnapshot([HEAD, worker("n1")], [], requested=[{"CPU": 1.0}])
    assert [lid for lid, _ in a.update(freed, {"n1": "w"}).terminate] == ["n1"]


def test_a_node_that_never_registers_is_ended_and_recorded_as_a_failure():
    a, clock = scaler()
    launch_id, _ = a.update(ClusterSnapshot([HEAD], [{"CPU": 1.0}] * 2), {}).launch[0]
    clock.now += 1000
    decision = a.update(ClusterSnapshot([HEAD], []), {launch_id: "w"})
    assert (launch_id, "never registered") in decision.terminate
    assert "did not register" in a.status()["failures"][0]["message"]


def test_a_provider_node_that_left_the_cluster_is_ended():
    a, _ = scaler()
    decision = a.update(ClusterSnapshot([HEAD], []), {"gone": "w"})
    assert decision.terminate == [("gone", "its node is no longer in the cluster")]


def test_a_failed_launch_is_shown_and_stops_counting():
    a, _ = scaler()
    launch_id, _ = a.update(ClusterSnapshot([HEAD], [{"CPU": 1.0}] * 2), {}).launch[0]
    a.launch_failed(launch_id, "w", "setup command 'false' exited with 1")
    status = a.status()
    assert status["launching"] == {} and status["failures"][0]["node_type"] == "w"


def test_status_names_infeasible_and_capped_shapes():
    a, _ = scaler(max_workers=1)
    a.update(ClusterSnapshot([HEAD], [{"GPU": 1.0}, {"CPU": 1.0}, {"CPU": 1.0},
                                      {"CPU": 1.0}]), {})
    status = a.status()
    assert status["infeasible"] == [{"shape": {"GPU": 1.0}, "count": 1}]
    assert status["capped"] == [{"shape": {"CPU": 1.0}, "count": 1}]


def test_a_type_whose_launch_failed_backs_off_before_the_next_try():
    a, clock = scaler()
    waiting = ClusterSnapshot([HEAD], [{"CPU": 1.0}] * 2)
    launch_id, _ = a.update(waiting, {}).launch[0]
    a.launch_failed(launch_id, "w", "quota exceeded")
    assert a.update(waiting, {}).launch == []           # within 2 s of the failure
    clock.now += 2.5
    launch_id, _ = a.update(waiting, {}).launch[0]
    a.launch_failed(launch_id, "w", "quota exceeded")
    clock.now += 2.5
    assert a.update(waiting, {}).launch == []           # the second wait is 4 s
    clock.now += 2
    assert len(a.update(waiting, {}).launch) == 1


def test_an_idle_node_holding_objects_hands_them_over_before_it_ends():
    a, clock = scaler(idle_minutes=0.0)
    head = NodeSnapshot(node_id=b"h", launch_id="", total={"CPU": 1.0}, free={"CPU": 1.0},
                        busy=False, is_head=True, address="10.0.0.1:5")
    holding = NodeSnapshot(node_id=b"n", launch_id="n1", total={"CPU": 1.0},
                           free={"CPU": 1.0}, busy=False, holds_objects=True,
                           address="10.0.0.2:7")
    decision = a.update(ClusterSnapshot([head, holding], []), {"n1": "w"})
    assert decision.drain == [("n1", "10.0.0.2:7", "10.0.0.1:5")] and not decision.terminate
    holding.holds_objects = False               # moved: now it ends
    assert [lid for lid, _ in a.update(ClusterSnapshot([head, holding], []),
                                       {"n1": "w"}).terminate] == ["n1"]
