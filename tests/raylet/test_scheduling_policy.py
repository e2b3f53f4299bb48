"""The cluster scheduling policy as a pure function of the view and the request."""
from ray_common.protocol import common_pb2
from ray_raylet.resources import NodeResources, demand_set
from ray_raylet.scheduling_policy import FAILED, GRANT_OR_QUEUE, INFEASIBLE, SchedulingPolicy

LOCAL, A, B = b"\x01" * 28, b"\x02" * 28, b"\x03" * 28


def view(local_cpus=4, a_cpus=4, b_cpus=None, **extra):
    nodes = {LOCAL: NodeResources({"CPU": local_cpus}), A: NodeResources({"CPU": a_cpus, **extra})}
    if b_cpus is not None:
        nodes[B] = NodeResources({"CPU": b_cpus})
    return nodes


def take(node, cpus):
    node.allocate(demand_set({"CPU": cpus}))


def test_hybrid_prefers_local_until_threshold_then_least_loaded():
    policy = SchedulingPolicy(LOCAL)
    nodes = view(b_cpus=4)
    one = demand_set({"CPU": 1})
    assert policy.schedule(nodes, one) == (GRANT_OR_QUEUE, LOCAL, "")
    take(nodes[LOCAL], 2)  # 50% used: at the default threshold of 0.5
    take(nodes[A], 1)
    assert policy.schedule(nodes, one).node_id == A  # under the threshold: first in order
    take(nodes[A], 2)
    assert policy.schedule(nodes, one).node_id == B  # A is 75% busy, B idle
    take(nodes[B], 3)
    assert policy.schedule(nodes, one).node_id == LOCAL  # 50% beats 75%


def test_hybrid_queues_locally_when_nothing_is_free_but_local_fits_some_day():
    policy = SchedulingPolicy(LOCAL)
    nodes = view(local_cpus=2, a_cpus=2)
    take(nodes[LOCAL], 2)
    take(nodes[A], 2)
    assert policy.schedule(nodes, demand_set({"CPU": 1})).node_id == LOCAL


def test_infeasible_and_remote_only_resources():
    policy = SchedulingPolicy(LOCAL)
    nodes = view(accel=1)
    assert policy.schedule(nodes, demand_set({"accel": 1})).node_id == A
    assert policy.schedule(nodes, demand_set({"CPU": 64})).kind == INFEASIBLE
    assert policy.schedule(nodes, demand_set({"accel": 1}), local_only=True).kind == INFEASIBLE


def test_spread_rotates_over_available_nodes():
    policy = SchedulingPolicy(LOCAL)
    nodes = view(b_cpus=4)
    spread = common_pb2.SchedulingStrategy(spread_scheduling_strategy={})
    picks = [policy.schedule(nodes, demand_set({"CPU": 1}), spread).node_id for _ in range(6)]
    assert set(picks) == {LOCAL, A, B}
    assert picks[:3] == picks[3:]


def test_node_affinity_hard_and_soft():
    policy = SchedulingPolicy(LOCAL)
    nodes = view()
    take(nodes[A], 4)

    def affinity(node, soft):
        return common_pb2.SchedulingStrategy(node_affinity_scheduling_strategy=
                                             common_pb2.NodeAffinitySchedulingStrategy(
                                                 node_id=node, soft=soft))
    one = demand_set({"CPU": 1})
    assert policy.schedule(nodes, one, affinity(A, False)).node_id == A  # waits there
    dead = b"\x09" * 28
    failed = policy.schedule(nodes, one, affinity(dead, False))
    assert failed.kind == FAILED and "not alive" in failed.reason
    assert policy.schedule(nodes, one, affinity(dead, True)).node_id == LOCAL
    too_big = demand_set({"CPU": 8})
    assert policy.schedule(nodes, too_big, affinity(A, False)).kind == FAILED
