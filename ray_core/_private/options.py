"""Validation of task options (@remote(...) and .options(...)), at decoration time.

Every option has one checker; an unknown name or a wrong type raises right away with
the list of valid names, instead of failing later inside a worker.
"""
import difflib
import warnings
from typing import Any, Dict

from ray_core.util.scheduling_strategies import (NodeAffinitySchedulingStrategy,
                                                 PlacementGroupSchedulingStrategy)


def _number(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"option {name} must be a number, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"option {name} must be >= {minimum}, got {value!r}")


def _integer(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"option {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"option {name} must be >= {minimum}, got {value!r}")


def _resources(name, value):
    if not isinstance(value, dict):
        raise TypeError(f"option resources must be a dict of name -> amount, got "
                        f"{type(value).__name__}")
    for key, amount in value.items():
        if not isinstance(key, str):
            raise TypeError(f"option resources: resource names must be str, got {key!r}")
        if key in ("CPU", "GPU", "memory"):
            raise ValueError(f"option resources must not name {key!r}: use num_cpus, num_gpus "
                             f"or memory instead")
        _number(f"resources[{key!r}]", amount)


def _retry_exceptions(name, value):
    if isinstance(value, bool):
        return
    if isinstance(value, (list, tuple)) and all(
            isinstance(c, type) and issubclass(c, BaseException) for c in value):
        return
    raise TypeError(f"option retry_exceptions must be a bool or a list of exception classes, "
                    f"got {value!r}")


def _string(name, value):
    if value is not None and not isinstance(value, str):
        raise TypeError(f"option {name} must be a str, got {type(value).__name__}")


def _strategy(name, value):
    if value is None or value in ("DEFAULT", "SPREAD"):
        return
    if isinstance(value, PlacementGroupSchedulingStrategy):
        _placement_group_strategy(value)
        return
    if isinstance(value, NodeAffinitySchedulingStrategy):
        return
    raise TypeError(f"option scheduling_strategy must be None, \"DEFAULT\", \"SPREAD\" or a "
                    f"strategy from ray_core.util.scheduling_strategies, got {value!r}")


def _placement_group_strategy(value: PlacementGroupSchedulingStrategy) -> None:
    from ray_core.util.placement_group import PlacementGroup
    group, index = value.placement_group, value.placement_group_bundle_index
    if not isinstance(index, int) or isinstance(index, bool):
        raise TypeError(f"placement_group_bundle_index must be an int, got {index!r}")
    if group is None:
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


def _runtime_env(name, value):
    if value is None:
        return
    if not isinstance(value, dict):
        raise TypeError(f"option runtime_env must be a dict, got {type(value).__name__}")
    unknown = set(value) - {"env_vars"}
    if unknown:
        raise ValueError(f"runtime_env supports only 'env_vars' so far, got {sorted(unknown)}")
    env_vars = value.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()):
        raise TypeError("runtime_env['env_vars'] must be a dict of str -> str")


def _num_returns(name, value):
    if value in ("streaming", "dynamic"):
        return
    if isinstance(value, str):
        raise TypeError(f"option num_returns must be an int, 'streaming' or 'dynamic', got "
                        f"{value!r}")
    _integer(name, value)


def returns_fields(num_returns) -> Dict[str, Any]:
    """The TaskSpec fields of a num_returns option: "streaming" is one return (the item
    count) and the streaming_generator flag; "dynamic" streams the same way, and its one
    return becomes the list of the items' refs (generator_streams.py)."""
    if num_returns == "streaming":
        return {"num_returns": 1, "streaming_generator": True}
    if num_returns == "dynamic":
        return {"num_returns": 1, "streaming_generator": True, "dynamic_returns": True}
    return {"num_returns": num_returns}


def _max_retries(name, value):
    _integer(name, value, minimum=-1)


TASK_OPTIONS = {
    "num_cpus": _number,
    "num_gpus": _number,
    "memory": _number,
    "resources": _resources,
    "num_returns": _num_returns,
    "max_calls": _integer,
    "max_retries": _max_retries,
    "retry_exceptions": _retry_exceptions,
    "name": _string,
    "scheduling_strategy": _strategy,
    "runtime_env": _runtime_env,
}


# Ray's deprecated spelling of PlacementGroupSchedulingStrategy (still accepted by Ray,
# and used as @remote(placement_group=None) by libraries built on it).
LEGACY_GROUP_OPTIONS = ("placement_group", "placement_group_bundle_index",
                        "placement_group_capture_child_tasks")


def validate_task_options(options: Dict[str, Any], where: str) -> Dict[str, Any]:
    return validate_options(options, TASK_OPTIONS, where)


def validate_options(options: Dict[str, Any], valid: Dict[str, Any],
                     where: str) -> Dict[str, Any]:
    """The options checked against `valid` (name -> checker), legacy ones translated."""
    options = _legacy_placement_group(options)
    for name, value in options.items():
        check = valid.get(name)
        if check is None:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Invalid option {name!r} for {where}.{hint} Valid options are: "
                             f"{', '.join(sorted(valid))}.")
        check(name, value)
    return dict(options)


def _legacy_placement_group(options: Dict[str, Any]) -> Dict[str, Any]:
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
                      "capture_child_tasks)", DeprecationWarning, stacklevel=4)
    options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(group, index, capture)
    return options
