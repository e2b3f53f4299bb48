"""Resource amounts in fixed point, and one node's totals, availability and GPU instances.

Amounts are held as integers in units of 1/RESOURCE_UNIT (like Ray's FixedPoint), so that
granting and returning 0.1 CPU ten thousand times leaves exactly what was there: floats
would drift and a node could end up "almost" but not quite able to fit a task.

Unit-instance resources (GPUs) are tracked per instance as well, because a lease must be
told *which* GPUs it holds (they become CUDA_VISIBLE_DEVICES in the worker). A request of
n >= 1 GPUs takes n whole free instances; a request below 1 takes a share of one instance.
"""
import math
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from ray_common.bundle_resources import most_specific

RESOURCE_UNIT = 10000
UNIT_INSTANCE_RESOURCES = ("GPU",)
NODE_RESOURCE_PREFIX = "node:"
# Ray's resource of the head node only (programs pin a task there with a sliver of it).
HEAD_NODE_RESOURCE = NODE_RESOURCE_PREFIX + "__internal_head__"
# Resources that describe a node rather than a load on it: left out of utilization.
_NOT_LOAD = ("object_store_memory",)

FixedSet = Dict[str, int]


def to_fixed(name: str, amount: float) -> int:
    if not isinstance(amount, (int, float)) or isinstance(amount, bool) or math.isnan(amount):
        raise ValueError(f"resource {name!r} must be a number, got {amount!r}")
    if amount < 0:
        raise ValueError(f"resource {name!r} must not be negative, got {amount}")
    if math.isinf(amount):
        raise ValueError(f"resource {name!r} must be finite, got {amount}")
    return int(round(amount * RESOURCE_UNIT))


def from_fixed(units: int) -> float:
    return units / RESOURCE_UNIT


def fixed_set(amounts: Mapping[str, float]) -> FixedSet:
    """Validated fixed-point copy of a name -> amount map; zero amounts are dropped."""
    out = {}
    for name, amount in amounts.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"resource names must be non-empty strings, got {name!r}")
        units = to_fixed(name, amount)
        if units:
            out[name] = units
    return out


def demand_set(amounts: Mapping[str, float]) -> FixedSet:
    """A lease request's shape; rejects GPU amounts no set of instances could hold."""
    demand = fixed_set(amounts)
    for name in UNIT_INSTANCE_RESOURCES:
        units = demand.get(name, 0)
        if units > RESOURCE_UNIT and units % RESOURCE_UNIT:
            raise ValueError(f"{name} requests above 1 must be whole numbers, got "
                             f"{from_fixed(units)}")
    return demand


def to_floats(fixed: Mapping[str, int]) -> Dict[str, float]:
    return {name: from_fixed(units) for name, units in fixed.items()}


def describe(fixed: Mapping[str, int]) -> str:
    """`{CPU: 0.5, GPU: 1}` for log lines and error messages."""
    parts = []
    for name in sorted(fixed):
        value = from_fixed(fixed[name])
        parts.append(f"{name}: {int(value) if value.is_integer() else value}")
    return "{" + ", ".join(parts) + "}"


class Allocation:
    """What one lease holds: amounts per resource and, for GPUs, (instance, units) pairs."""

    __slots__ = ("amounts", "instances")

    def __init__(self, amounts: FixedSet, instances: Dict[str, List[Tuple[int, int]]]):
        self.amounts = amounts
        self.instances = instances

    def instance_ids(self, name: str) -> List[int]:
        return [index for index, _ in self.instances.get(name, ())]

    def to_proto_fields(self) -> List[Tuple[str, List[int], List[float]]]:
        """(name, instance_ids, quantities) rows for common_pb2.ResourceAllocation."""
        rows = []
        for name in sorted(self.amounts):
            if name in self.instances:
                pairs = self.instances[name]
                rows.append((name, [i for i, _ in pairs], [from_fixed(u) for _, u in pairs]))
            else:
                rows.append((name, [], [from_fixed(self.amounts[name])]))
        return rows


def cuda_visible_devices(resource_mapping: Iterable) -> Optional[str]:
    """The CUDA_VISIBLE_DEVICES value for a lease's resource_mapping (None: no GPU held).

    Accepts common_pb2.ResourceAllocation messages; a worker sets this in its environment
    before running a task of the lease, as Ray's workers do.
    """
    for entry in resource_mapping:
        if entry.name == "GPU" and entry.instance_ids:
            return ",".join(str(i) for i in entry.instance_ids)
    return None


class NodeResources:
    """Totals and availability of one node; the local node also tracks GPU instances.

    Availability may go below zero only through `acquire_forced` (a blocked worker that
    wakes up takes its CPU back even if a queued lease took it meanwhile, as in Ray).
    """

    def __init__(self, total: Mapping[str, float], available: Optional[Mapping[str, float]] = None,
                 track_instances: bool = False):
        self.total: FixedSet = fixed_set(total)
        self.available: FixedSet = dict(self.total) if available is None else {
            name: to_fixed(name, amount) if amount >= 0 else -to_fixed(name, -amount)
            for name, amount in available.items()}
        self.instances: Dict[str, List[int]] = {}
        # For instance lists of added resources: position -> the node's own instance.
        self.instance_backing: Dict[str, List[int]] = {}
        if track_instances:
            for name in UNIT_INSTANCE_RESOURCES:
                count = self.total.get(name, 0)
                if count % RESOURCE_UNIT:
                    raise ValueError(f"a node's {name} total must be whole, got "
                                     f"{from_fixed(count)}")
                if count:
                    self.instances[name] = [RESOURCE_UNIT] * (count // RESOURCE_UNIT)

    # ---- questions -------------------------------------------------------------

    def is_feasible(self, demand: FixedSet) -> bool:
        """Could this node ever fit the demand (with nothing else running)?"""
        return all(self.total.get(name, 0) >= units for name, units in demand.items())

    def is_available(self, demand: FixedSet) -> bool:
        """Does the demand fit right now?"""
        for name, units in demand.items():
            if self.available.get(name, 0) < units:
                return False
            if name in self.instances and self._pick_instances(name, units) is None:
                return False
        return True

    def utilization(self) -> float:
        """Critical-resource utilization in [0, 1+]: the busiest resource's used fraction."""
        worst = 0.0
        for name, total in self.total.items():
            if total <= 0 or name in _NOT_LOAD or name.startswith(NODE_RESOURCE_PREFIX):
                continue
            worst = max(worst, (total - self.available.get(name, 0)) / total)
        return worst

    def available_floats(self) -> Dict[str, float]:
        return to_floats(self.available)

    def total_floats(self) -> Dict[str, float]:
        return to_floats(self.total)

    # ---- changes ---------------------------------------------------------------

    def allocate(self, demand: FixedSet) -> Optional[Allocation]:
        """Take the demand if it fits now; None otherwise (nothing taken)."""
        if not self.is_available(demand):
            return None
        instances = {}
        for name, units in demand.items():
            self.available[name] = self.available.get(name, 0) - units
            if name in self.instances:
                picked = self._pick_instances(name, units)
                for index, share in picked:
                    self.instances[name][index] -= share
                instances[name] = picked
        return Allocation(dict(demand), instances)

    def release(self, allocation: Allocation) -> None:
        """Give back what a lease held; resources removed meanwhile (a placement group's
        bundle cancelled under a running lease) are not brought back."""
        for name, units in allocation.amounts.items():
            if name in self.total:
                self.available[name] = self.available.get(name, 0) + units
        for name, picked in allocation.instances.items():
            free = self.instances.get(name)
            if free is None:
                continue
            for index, share in picked:
                if index < len(free):
                    free[index] += share

    def add(self, amounts: FixedSet, instance_ids: Optional[Dict[str, List[int]]] = None) -> None:
        """New resources on this node (a committed bundle's group resources).

        `instance_ids[name]` lists the node's own instances (e.g. GPU 3) that back a
        unit-instance resource, so a lease of it learns which devices it holds.
        """
        for name, units in amounts.items():
            self.total[name] = self.total.get(name, 0) + units
            self.available[name] = self.available.get(name, 0) + units
        for name, ids in (instance_ids or {}).items():
            self.instances.setdefault(name, []).extend([RESOURCE_UNIT] * len(ids))
            self.instance_backing.setdefault(name, []).extend(ids)

    def remove(self, amounts: FixedSet, instance_ids: Optional[Dict[str, List[int]]] = None) -> None:
        """Undo `add`: a name whose total reaches zero is gone from the node."""
        for name, units in amounts.items():
            left = self.total.get(name, 0) - units
            if left <= 0:
                self.total.pop(name, None)
                self.available.pop(name, None)
                self.instances.pop(name, None)
                self.instance_backing.pop(name, None)
                continue
            self.total[name] = left
            self.available[name] = self.available.get(name, 0) - units
            backing = self.instance_backing.get(name)
            for device in (instance_ids or {}).get(name, ()):
                if backing and device in backing:
                    at = backing.index(device)
                    del backing[at]
                    del self.instances[name][at]

    def devices(self, allocation: Allocation, kind: str = "GPU") -> List[int]:
        """The node's `kind` instances an allocation holds, through group names too
        (a bundle's own name wins over its group-wide one: they share the devices)."""
        name = most_specific(allocation.instances, kind)
        return [] if name is None else self.backing(name, allocation.instance_ids(name))

    def backing(self, name: str, positions: List[int]) -> List[int]:
        """The node's own instances behind positions in `name`'s instance list."""
        backing = self.instance_backing.get(name)
        return [backing[i] for i in positions] if backing else list(positions)

    def release_part(self, allocation: Allocation, name: str) -> int:
        """Give back one resource of an allocation (a blocked worker's CPU); returns units."""
        units = allocation.amounts.get(name, 0)
        if units and name not in self.instances:
            self.available[name] = self.available.get(name, 0) + units
            return units
        return 0

    def acquire_forced(self, name: str, units: int) -> None:
        """Take back what `release_part` gave, even past zero."""
        self.available[name] = self.available.get(name, 0) - units

    def subtract_estimate(self, demand: FixedSet) -> None:
        """For a remote node's view: assume a spilled lease will take this until the next report."""
        for name, units in demand.items():
            self.available[name] = self.available.get(name, 0) - units

    def _pick_instances(self, name: str, units: int) -> Optional[List[Tuple[int, int]]]:
        free = self.instances[name]
        if units >= RESOURCE_UNIT:
            whole = [i for i, left in enumerate(free) if left == RESOURCE_UNIT]
            count = units // RESOURCE_UNIT
            return [(i, RESOURCE_UNIT) for i in whole[:count]] if len(whole) >= count else None
        # A fraction: the fullest instance that still fits it, to keep whole GPUs free.
        best = None
        for i, left in enumerate(free):
            if left >= units and (best is None or left < free[best]):
                best = i
        return None if best is None else [(best, units)]
