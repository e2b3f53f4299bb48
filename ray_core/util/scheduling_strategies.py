"""Scheduling strategies a task can ask for (`scheduling_strategy=` option)."""
from typing import Union


class NodeAffinitySchedulingStrategy:
    """Run on the node with this id (hex); with soft=True, elsewhere if it cannot."""

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False):
        if not isinstance(node_id, str):
            raise TypeError(f"NodeAffinitySchedulingStrategy node_id must be a hex string, "
                            f"got {type(node_id).__name__}")
        self.node_id = node_id
        self.soft = bool(soft)

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
