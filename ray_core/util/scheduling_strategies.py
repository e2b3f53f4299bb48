"""Scheduling strategies a task can ask for (`scheduling_strategy=` option), and the
checks of that option (and of Ray's deprecated placement_group options) that
@remote/.options() run through remote_function.TASK_OPTIONS."""
import warnings
from typing import Any, Dict, Union

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


def check_strategy(name, value) -> None:
    """The scheduling_strategy option: None, "DEFAULT", "SPREAD" or a strategy above."""
    if value is None or value in ("DEFAULT", "SPREAD"):
        return
    if isinstance(value, PlacementGroupSchedulingStrategy):
        _check_group_strategy(value)
        return
    if isinstance(value, NodeAffinitySchedulingStrategy):
        return
    raise TypeError(f"option scheduling_strategy must be None, \"DEFAULT\", \"SPREAD\" or a "
                    f"strategy from ray_core.util.scheduling_strategies, got {value!r}")


def _check_group_strategy(value: PlacementGroupSchedulingStrategy) -> None:
    from ray_core.util.placement_group import PlacementGroup
    group, index = value.placement_group, value.placement_group_bundle_index
    if not isinstance(index, int) or isinstance(index, bool):
        raise TypeError(f"placement_group_bundle_index must be an int, got {index!r}")
    if group is None or getattr(group, "is_empty", False):
        if index != -1:
            raise ValueError(f"placement_group_bundle_index is {index} but no placement group "
                             f"is given; it must be -1")
        return
    if not isinstance(group, PlacementGroup):
        raise TypeError(f"PlacementGroupSchedulingStrategy needs a PlacementGroup (from "
                        f"ray_core.util.placement_group), got {type(group).__name__}")
    if index < -1 or index >= group.bundle_count:
        raise ValueError(f"placement group bundle index {index} is invalid: the group "
                         f"{group.id.hex()} has bundles 0-{group.bundle_count - 1} (or -1 for "
                         f"any)")


# Ray's deprecated spelling of PlacementGroupSchedulingStrategy (still accepted by Ray,
# and used as @remote(placement_group=None) by libraries built on it).
LEGACY_GROUP_OPTIONS = ("placement_group", "placement_group_bundle_index",
                        "placement_group_capture_child_tasks")


def from_legacy_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """The options with the deprecated placement_group ones made a scheduling_strategy."""
    if not any(name in options for name in LEGACY_GROUP_OPTIONS):
        return options
    options = dict(options)
    group = options.pop("placement_group", "default")
    index = options.pop("placement_group_bundle_index", -1)
    capture = options.pop("placement_group_capture_child_tasks", None)
    if group == "default":
        if index != -1 or capture:
            raise ValueError("placement_group_bundle_index and "
                             "placement_group_capture_child_tasks need a placement_group; "
                             "better, pass scheduling_strategy=PlacementGroupSchedulingStrategy"
                             "(group, bundle_index, capture_child_tasks)")
        return options
    if options.get("scheduling_strategy") is not None:
        raise ValueError("the placement_group option is deprecated and cannot be combined "
                         "with scheduling_strategy; pass scheduling_strategy="
                         "PlacementGroupSchedulingStrategy(...) alone")
    if group is not None:
        warnings.warn("the placement_group option is deprecated: use scheduling_strategy="
                      "PlacementGroupSchedulingStrategy(placement_group, bundle_index, "
                      "capture_child_tasks)", DeprecationWarning, stacklevel=5)
    options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(group, index, capture)
    return options
