"""Where a placement group's bundles go: Ray's four strategies over the cluster view.

A pure function of the bundles still to place, the nodes already holding the group's
other bundles (after a node died, only its bundles move) and each alive node's
available resources as last reported. Amounts are compared in fixed point so 0.1 CPU
bundles add up exactly. The raylets have the last word: a stale view only means a
prepare is refused and the group is tried again.

PACK: all on one node if one fits them, else as few nodes as first-fit manages.
SPREAD: each bundle on the node holding fewest of the group's bundles that fits it.
STRICT_PACK: all on one node (the one already holding some, if any), or wait.
STRICT_SPREAD: every bundle on a node of its own, or wait.
"""
from typing import Dict, List, Mapping, Optional, Tuple

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
_UNIT = 10000

Shape = Dict[str, int]


def shape(amounts: Mapping[str, float]) -> Shape:
    return {name: int(round(amount * _UNIT)) for name, amount in amounts.items() if amount > 0}


def _only(amounts: Mapping[str, float], names) -> Shape:
    """The fixed-point amounts of just `names`: a node's view also lists every group's
    own resources (four per bundle), which no bundle asks for."""
    return {name: int(round(amounts.get(name, 0.0) * _UNIT)) for name in names}


def _fits(need: Shape, free: Shape) -> bool:
    return all(free.get(name, 0) >= units for name, units in need.items())


def _take(need: Shape, free: Shape) -> None:
    for name, units in need.items():
        free[name] = free.get(name, 0) - units


def _total(shapes: List[Shape]) -> Shape:
    out: Shape = {}
    for one in shapes:
        for name, units in one.items():
            out[name] = out.get(name, 0) + units
    return out


def _describe(need: Shape) -> str:
    return "{" + ", ".join(f"{name}: {units / _UNIT:g}" for name, units in sorted(need.items())) + "}"


def plan(bundles: Mapping[int, Mapping[str, float]], strategy: str,
         available: Mapping[bytes, Mapping[str, float]],
         placed: Optional[Mapping[int, bytes]] = None,
         totals: Optional[Mapping[bytes, Mapping[str, float]]] = None
         ) -> Tuple[Optional[Dict[int, bytes]], str]:
    """(bundle index -> node id, "") for `bundles`, or (None, why they cannot go now).

    `available` maps each alive node to what it has free; `placed` the group's bundles
    that stay where they are; `totals` (optional) tells "never fits" from "not now".
    """
    placed = dict(placed or {})
    need = {index: shape(amounts) for index, amounts in bundles.items()}
    names = {name for one in need.values() for name in one}
    free = {node: _only(amounts, names) for node, amounts in available.items()}
    order = sorted(free)
    if strategy == "STRICT_PACK":
        result = _strict_pack(need, free, order, placed)
    elif strategy == "STRICT_SPREAD":
        result = _strict_spread(need, free, order, placed)
    elif strategy == "SPREAD":
        result = _spread(need, free, order, placed)
    else:
        result = _pack(need, free, order)
    if result is not None:
        return result, ""
    return None, _why(need, strategy, totals or available, names)


def _pack(need, free, order) -> Optional[Dict[int, bytes]]:
    whole = _total(list(need.values()))
    for node in order:
        if _fits(whole, free[node]):
            return {index: node for index in need}
    out = {}
    # Biggest bundles first, each onto the first node with room: few nodes, no backtracking.
    for index in sorted(need, key=lambda i: -sum(need[i].values())):
        node = next((n for n in order if _fits(need[index], free[n])), None)
        if node is None:
            return None
        _take(need[index], free[node])
        out[index] = node
    return out


def _strict_pack(need, free, order, placed) -> Optional[Dict[int, bytes]]:
    whole = _total(list(need.values()))
    homes = set(placed.values())
    candidates = [n for n in order if not homes or n in homes]
    for node in candidates:
        if _fits(whole, free[node]):
            return {index: node for index in need}
    return None


def _spread(need, free, order, placed) -> Optional[Dict[int, bytes]]:
    count = {node: 0 for node in order}
    for node in placed.values():
        if node in count:
            count[node] += 1
    out = {}
    for index in sorted(need):
        fitting = [n for n in order if _fits(need[index], free[n])]
        if not fitting:
            return None
        node = min(fitting, key=lambda n: count[n])
        _take(need[index], free[node])
        count[node] += 1
        out[index] = node
    return out


def _strict_spread(need, free, order, placed) -> Optional[Dict[int, bytes]]:
    used = set(placed.values())
    out = {}
    # Bundles with the fewest fitting nodes choose first.
    for index in sorted(need, key=lambda i: sum(_fits(need[i], free[n]) for n in order)):
        node = next((n for n in order if n not in used and _fits(need[index], free[n])), None)
        if node is None:
            return None
        used.add(node)
        out[index] = node
    return out


def _why(need, strategy, totals, names) -> str:
    capacity = {node: _only(amounts, names) for node, amounts in totals.items()}
    for index in sorted(need):
        if not any(_fits(need[index], cap) for cap in capacity.values()):
            return (f"bundle {index} {_describe(need[index])} fits no node of the cluster, "
                    f"even an idle one")
    if strategy == "STRICT_SPREAD" and len(need) > len(capacity):
        return (f"STRICT_SPREAD needs {len(need)} nodes for its bundles, the cluster has "
                f"{len(capacity)} alive")
    if strategy == "STRICT_PACK":
        whole = _total(list(need.values()))
        if not any(_fits(whole, cap) for cap in capacity.values()):
            return f"STRICT_PACK needs one node with {_describe(whole)}; no node has that many"
    return f"the bundles do not fit what the nodes have available now ({strategy})"
