"""Placement group bundles this node holds, reserved in two phases by the GCS.

Prepare takes a bundle's resources out of what the node has available, all bundles of
the request or none, so the GCS can place a whole group without half-placing it on a
node that filled up since its last resource report. Commit then gives those resources
back under the group's names (ray_common.bundle_resources), which only the group's
tasks ask for. Cancel undoes either phase; the workers of leases that hold the group's
resources are killed first, as Ray does when a group is removed.

Every call is idempotent: the GCS retries them after a lost reply or its own restart.
"""
import logging
from typing import Callable, Dict, List, Optional, Tuple

from ray_common import bundle_resources as names
from ray_raylet import resources as res

logger = logging.getLogger(__name__)


class _Bundle:
    __slots__ = ("index", "allocation", "committed", "added", "devices")

    def __init__(self, index: int, allocation: res.Allocation):
        self.index = index
        self.allocation = allocation
        self.committed = False
        self.added: res.FixedSet = {}             # group resources committing added
        self.devices: Dict[str, List[int]] = {}   # ... and the instances behind them


class BundleReservations:
    def __init__(self, local: res.NodeResources, on_change: Callable[[], None],
                 kill_group_leases: Callable[[str, str], None]):
        """`on_change()` runs when the node's resources changed (dispatch, report);
        `kill_group_leases(group_hex, why)` kills the workers of leases holding the group's
        resources."""
        self._local = local
        self._on_change = on_change
        self._kill_group_leases = kill_group_leases
        self._groups: Dict[bytes, Dict[int, _Bundle]] = {}

    def held(self, group_id: bytes) -> List[int]:
        return sorted(self._groups.get(group_id, {}))

    def prepare(self, group_id: bytes, bundles) -> Tuple[bool, str]:
        """Reserve every bundle (common_pb2.Bundle) not held yet, or none of them."""
        held = self._groups.setdefault(group_id, {})
        taken: List[_Bundle] = []
        for bundle in bundles:
            if bundle.bundle_index in held:
                continue
            try:
                demand = res.demand_set(dict(bundle.unit_resources))
            except ValueError as e:
                why = f"bundle {bundle.bundle_index}: {e}"
                break
            allocation = self._local.allocate(demand)
            if allocation is None:
                why = (f"bundle {bundle.bundle_index} needs {res.describe(demand)}; available "
                       f"{res.describe(self._available_of(demand))}")
                break
            taken.append(_Bundle(bundle.bundle_index, allocation))
        else:
            for bundle in taken:
                held[bundle.index] = bundle
            logger.info("Prepared bundles %s of placement group %s", [b.index for b in taken],
                        group_id.hex())
            self._on_change()
            return True, ""
        for bundle in taken:
            self._local.release(bundle.allocation)
        if not held:
            del self._groups[group_id]
        logger.info("Could not prepare placement group %s here: %s", group_id.hex(), why)
        return False, why

    def commit(self, group_id: bytes, indices: List[int]) -> None:
        group_hex = group_id.hex()
        for index in indices:
            bundle = self._groups.get(group_id, {}).get(index)
            if bundle is None or bundle.committed:
                continue
            shape = res.to_floats(bundle.allocation.amounts)
            added = names.for_bundle(shape, group_hex, index)
            for renamed in (added["indexed"], added["wildcard"]):
                amounts = res.fixed_set(renamed)
                devices = {}
                for name in amounts:
                    backing = self._local.devices(bundle.allocation, names.base_name(name))
                    if backing and names.base_name(name) in res.UNIT_INSTANCE_RESOURCES:
                        devices[name] = backing
                self._local.add(amounts, devices)
                for name, units in amounts.items():
                    bundle.added[name] = bundle.added.get(name, 0) + units
                for name, ids in devices.items():
                    bundle.devices.setdefault(name, []).extend(ids)
            bundle.committed = True
            logger.info("Committed bundle %d of placement group %s: %s", index, group_hex,
                        res.describe(bundle.allocation.amounts))
        self._on_change()

    def cancel(self, group_id: bytes, indices: Optional[List[int]] = None,
               why: str = "the group was removed") -> List[int]:
        """Give back the bundles (all of the group's here when `indices` is empty)."""
        held = self._groups.get(group_id)
        if not held:
            return []
        chosen = [i for i in (indices or list(held)) if i in held]
        if any(held[i].committed for i in chosen):
            self._kill_group_leases(group_id.hex(), why)
        for index in chosen:
            bundle = held.pop(index)
            if bundle.committed:
                self._local.remove(bundle.added, bundle.devices)
            self._local.release(bundle.allocation)
        if not held:
            del self._groups[group_id]
        if chosen:
            logger.info("Returned bundles %s of placement group %s: %s", chosen, group_id.hex(),
                        why)
            self._on_change()
        return chosen

    def _available_of(self, demand: res.FixedSet) -> res.FixedSet:
        return {name: self._local.available.get(name, 0) for name in demand}
