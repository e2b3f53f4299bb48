"""Which nodes to launch for what waits: bin packing of resource demands onto node types.

Pure functions of a snapshot, so every rule is unit-tested without a cluster. The order
follows Ray's resource demand scheduler: min_workers first, then what
`request_resources` asks (the cluster's total must hold it), then placement groups
(placed whole, with the same rules the GCS places them by), then task and actor shapes
(first onto what is free, then onto the fewest new nodes: each new node is of the type
that takes most of what is left).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from ray_gcs.bundle_placement import plan as place_bundles

from ray_core.autoscaler.cluster_config import NodeType

Shape = Dict[str, float]


@dataclass
class PendingGroup:
    """A placement group the GCS could not place yet: its unplaced bundles."""
    group_id: str
    strategy: str
    bundles: List[Shape]


@dataclass
class LaunchPlan:
    launch: Dict[str, int] = field(default_factory=dict)   # node type -> how many
    infeasible: List[Shape] = field(default_factory=list)  # no node type could ever fit
    capped: List[Shape] = field(default_factory=list)      # fit a type at its max_workers


def fits(shape: Shape, free: Shape) -> bool:
    return all(free.get(name, 0.0) + 1e-9 >= amount for name, amount in shape.items()
               if amount > 0)


def _take(shape: Shape, free: Shape) -> None:
    for name, amount in shape.items():
        free[name] = free.get(name, 0.0) - amount


def _size(shape: Shape) -> Tuple:
    return (len(shape), sum(shape.values()))


class _Pool:
    """The nodes a plan can use: those there are (or launching) and those it adds."""

    def __init__(self, node_types: Dict[str, NodeType], counts: Dict[str, int],
                 max_workers: int):
        self.types = node_types
        self.counts = dict(counts)      # worker nodes per type, launching included
        self.max_workers = max_workers
        self.added: Dict[str, int] = {}

    def can_add(self, name: str) -> bool:
        return (self.counts.get(name, 0) < self.types[name].max_workers and
                sum(self.counts.values()) < self.max_workers)

    def add(self, name: str) -> Shape:
        self.counts[name] = self.counts.get(name, 0) + 1
        self.added[name] = self.added.get(name, 0) + 1
        return dict(self.types[name].resources)

    def could_ever_fit(self, shape: Shape) -> bool:
        return any(fits(shape, t.resources) for t in self.types.values())


def plan_launches(node_types: Dict[str, NodeType], counts: Dict[str, int],
                  free: List[Shape], totals: List[Shape], demands: List[Shape],
                  groups: List[PendingGroup], requested: List[Shape],
                  max_workers: int) -> LaunchPlan:
    """`node_types`: the worker types; `counts`: their nodes now (launching included);
    `free`/`totals`: every node's free and total resources (the head's too; a launching
    node's free is its total); `demands`: one shape per waiting task or actor;
    `groups`: placement groups waiting; `requested`: request_resources' bundles."""
    pool = _Pool(node_types, counts, max_workers)
    result = LaunchPlan()
    free = [dict(f) for f in free]
    for name, node_type in node_types.items():
        while pool.counts.get(name, 0) < node_type.min_workers and pool.can_add(name):
            free.append(pool.add(name))

    # request_resources: the cluster's *total* must hold every bundle at once.
    capacity = [dict(t) for t in totals] + [dict(node_types[n].resources)
                                            for n, k in pool.added.items() for _ in range(k)]
    before = dict(pool.added)
    _pack(sorted(requested, key=_size, reverse=True), capacity, pool, result)
    for name, k in pool.added.items():
        free += [dict(node_types[name].resources)] * (k - before.get(name, 0))

    for group in groups:
        _place_group(group, free, pool, result)
    _pack(sorted(demands, key=_size, reverse=True), free, pool, result)
    result.launch = dict(pool.added)
    return result


def holds(shapes: List[Shape], capacities: List[Shape]) -> bool:
    """Whether `capacities` hold every shape at once, with no node added."""
    result = LaunchPlan()
    _pack(sorted(shapes, key=_size, reverse=True), [dict(c) for c in capacities],
          _Pool({}, {}, 0), result)
    return not result.infeasible and not result.capped


def _pack(shapes: List[Shape], free: List[Shape], pool: _Pool, result: LaunchPlan) -> None:
    """First fit onto `free` (grown in place with the nodes added for what is left)."""
    left = []
    for shape in shapes:
        spot = next((f for f in free if fits(shape, f)), None)
        if spot is None:
            left.append(shape)
        else:
            _take(shape, spot)
    while left:
        shape = left[0]
        if not pool.could_ever_fit(shape):
            result.infeasible.append(left.pop(0))
            continue
        best, best_fitted = None, []
        for name, node_type in pool.types.items():
            if not fits(shape, node_type.resources) or not pool.can_add(name):
                continue
            trial, fitted = dict(node_type.resources), []
            for i, other in enumerate(left):
                if fits(other, trial):
                    _take(other, trial)
                    fitted.append(i)
            if len(fitted) > len(best_fitted):
                best, best_fitted = name, fitted
        if best is None:
            result.capped.append(left.pop(0))
            continue
        node = pool.add(best)
        for i in best_fitted:
            _take(left[i], node)
        free.append(node)
        left = [s for i, s in enumerate(left) if i not in set(best_fitted)]


def _place_group(group: PendingGroup, free: List[Shape], pool: _Pool,
                 result: LaunchPlan) -> None:
    """Add nodes until the GCS's own placement rules would place the whole group."""
    bundles = dict(enumerate(group.bundles))
    need_one_node = group.strategy == "STRICT_PACK"
    whole: Shape = {}
    for b in group.bundles:
        for name, amount in b.items():
            whole[name] = whole.get(name, 0.0) + amount
    for _attempt in range(len(bundles) + 1):
        view = {i.to_bytes(4, "big"): f for i, f in enumerate(free)}
        placement, _why = place_bundles(bundles, group.strategy, view)
        if placement is not None:
            for index, node in placement.items():
                _take(bundles[index], view[node])
            return
        # The type that holds the most of the group (all of it, for STRICT_PACK).
        best, best_count = None, 0
        for name, node_type in pool.types.items():
            if not pool.can_add(name):
                continue
            if need_one_node:
                count = len(bundles) if fits(whole, node_type.resources) else 0
            else:
                trial, count = dict(node_type.resources), 0
                for b in group.bundles:
                    if fits(b, trial):
                        _take(b, trial)
                        count += 1
                        if group.strategy == "STRICT_SPREAD":
                            break
            if count > best_count:
                best, best_count = name, count
        if best is None:
            ever = pool.could_ever_fit(whole) if need_one_node else \
                all(pool.could_ever_fit(b) for b in group.bundles)
            (result.capped if ever else result.infeasible).append(
                whole if need_one_node else next(
                    (b for b in group.bundles if not pool.could_ever_fit(b)), whole))
            return
        free.append(pool.add(best))
