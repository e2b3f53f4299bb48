"""Scheduling strategies a task can ask for (`scheduling_strategy=` option)."""
from typing import Union

from ray_common.ids import NodeID


class NodeAffinitySchedulingStrategy:
    """Run on the node with this id; with soft=True, elsewhere if it cannot. As in Ray,
    the id is a hex string or a NodeID (get_runtime_context().node_id), kept as hex."""

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False):
        if not isinstance(node_id, str):
            hex_of = getattr(node_id, "hex", None)
            if not callable(hex_of):
                raise TypeError(f"NodeAffinitySchedulingStrategy node_id must be a hex string "
                                f"or a NodeID, got {type(node_id).__name__}")
            node_id = hex_of()
        try:
            parsed = NodeID.from_hex(node_id)
        except Exception:
            parsed = None
        if parsed is None or parsed.is_nil():
            raise ValueError(f"Invalid node_id {node_id!r}: it must be the hex id of a node "
                             f"({NodeID.SIZE * 2} hex digits); ray_core.nodes() lists them")
        if _spill_on_unavailable and not soft:
            raise ValueError("_spill_on_unavailable needs soft=True")
        if _fail_on_unavailable and soft:
            raise ValueError("_fail_on_unavailable needs soft=False")
        self.node_id = node_id
        self.soft = bool(soft)
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self):
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    """Run inside a placement group: in bundle `placement_group_bundle_index`, or any of
    its bundles with -1. With `placement_group_capture_child_tasks`, tasks and actors the
    task submits without a strategy of their own join the same group. A None group
    means "not in the parent's group"."""

    def __init__(self, placement_group, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks=None):
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self):
        return (f"PlacementGroupSchedulingStrategy(placement_group={self.placement_group!r}, "
                f"placement_group_bundle_index={self.placement_group_bundle_index}, "
                f"placement_group_capture_child_tasks="
                f"{self.placement_group_capture_child_tasks})")


SchedulingStrategyT = Union[None, str, NodeAffinitySchedulingStrategy,
                            PlacementGroupSchedulingStrategy]
