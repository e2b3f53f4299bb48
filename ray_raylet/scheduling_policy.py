"""Which node should run a lease: Ray's hybrid, SPREAD and node-affinity policies.

The policy is a pure function of the cluster view (one NodeResources per alive node, the
local node's with live availability, remote ones as last reported) and the request; the
lease manager acts on its answer (grant here, queue here, spill back, wait as infeasible).

Hybrid: nodes are looked at local first, then in node-id order. A node whose critical
resource utilization is below `scheduler_spread_threshold` scores 0, else its
utilization; the lowest-scoring node that can fit the request now wins (so work packs
onto the local node until it is half busy, then goes to the least-loaded node). When no
node fits now, the request waits on the best feasible node, the local one if feasible.
"""
from typing import Dict, List, NamedTuple, Optional

from ray_common.config import config
from ray_raylet.resources import FixedSet, NodeResources

GRANT_OR_QUEUE = "node"
INFEASIBLE = "infeasible"
FAILED = "failed"


class Decision(NamedTuple):
    kind: str               # GRANT_OR_QUEUE, INFEASIBLE or FAILED
    node_id: Optional[bytes] = None
    reason: str = ""


class SchedulingPolicy:
    def __init__(self, local_node_id: bytes):
        self.local_node_id = local_node_id
        self._spread_next = 0

    def _order(self, nodes: Dict[bytes, NodeResources]) -> List[bytes]:
        others = sorted(n for n in nodes if n != self.local_node_id)
        return ([self.local_node_id] if self.local_node_id in nodes else []) + others

    def schedule(self, nodes: Dict[bytes, NodeResources], demand: FixedSet,
                 strategy=None, local_only: bool = False) -> Decision:
        """`strategy` is a common_pb2.SchedulingStrategy (or None for the default).

        `local_only` (a request spilled here with grant_or_reject) never picks another node.
        """
        if local_only:
            nodes = {n: r for n, r in nodes.items() if n == self.local_node_id}
        which = strategy.WhichOneof("strategy") if strategy is not None else None
        if which == "node_affinity_scheduling_strategy" and not local_only:
            return self._node_affinity(nodes, demand, strategy.node_affinity_scheduling_strategy)
        if which == "spread_scheduling_strategy":
            return self._spread(nodes, demand)
        return self._hybrid(nodes, demand)

    def _hybrid(self, nodes, demand) -> Decision:
        threshold = config.scheduler_spread_threshold
        best, best_score = None, None
        feasible = []
        for node_id in self._order(nodes):
            resources = nodes[node_id]
            if not resources.is_feasible(demand):
                continue
            feasible.append(node_id)
            if not resources.is_available(demand):
                continue
            utilization = resources.utilization()
            score = 0.0 if utilization < threshold else utilization
            if best_score is None or score < best_score:
                best, best_score = node_id, score
        if best is not None:
            return Decision(GRANT_OR_QUEUE, best)
        if not feasible:
            return Decision(INFEASIBLE)
        if feasible[0] == self.local_node_id:
            return Decision(GRANT_OR_QUEUE, self.local_node_id)
        least = min(feasible, key=lambda n: nodes[n].utilization())
        return Decision(GRANT_OR_QUEUE, least)

    def _spread(self, nodes, demand) -> Decision:
        ordered = sorted(nodes)
        available = [n for n in ordered if nodes[n].is_feasible(demand)
                     and nodes[n].is_available(demand)]
        if not available:
            return self._hybrid(nodes, demand)
        choice = available[self._spread_next % len(available)]
        self._spread_next += 1
        return Decision(GRANT_OR_QUEUE, choice)

    def _node_affinity(self, nodes, demand, affinity) -> Decision:
        target = affinity.node_id
        resources = nodes.get(target)
        if resources is not None and resources.is_feasible(demand):
            return Decision(GRANT_OR_QUEUE, target)
        if affinity.soft:
            return self._hybrid(nodes, demand)
        why = "is not alive" if resources is None else "can never fit the request"
        return Decision(FAILED, reason=f"node {target.hex()} named by a hard "
                                       f"NodeAffinitySchedulingStrategy {why}")
