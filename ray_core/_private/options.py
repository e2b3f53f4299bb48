"""Validation of task options (@remote(...) and .options(...)), at decoration time.

Every option has one checker; an unknown name or a wrong type raises right away with
the list of valid names, instead of failing later inside a worker. The checkers of
what the public modules define (scheduling strategies, placement groups, actor
options) live with them and join these there (remote_function.TASK_OPTIONS).
"""
import difflib
from typing import Any, Dict

from ray_core._private import runtime_env



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


def _labels(name, value):
    """Node labels (init(labels=...), `start --labels`): str -> str; Ray's own
    ray.io/ prefix is reserved."""
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise TypeError(f"{name} must be a dict of str -> str, got {value!r}")
    reserved = sorted(k for k in value if k.startswith("ray.io/"))
    if reserved:
        raise ValueError(f"{name} {reserved}: the ray.io/ prefix is reserved for the labels "
                         f"ray_core sets itself")


def _retry_exceptions(name, value):
    if isinstance(value, bool):
        return
    if isinstance(value, (list, tuple)) and all(
            isinstance(c, type) and issubclass(c, BaseException) for c in value):
        return
    raise TypeError(f"option retry_exceptions must be a bool or a list of exception classes, "
                    f"got {value!r}")


def _bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"option {name} must be a bool, got {type(value).__name__}")


def _string(name, value):
    if value is not None and not isinstance(value, str):
        raise TypeError(f"option {name} must be a str, got {type(value).__name__}")


def _runtime_env(name, value):
    runtime_env.validate(value)


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
    "runtime_env": _runtime_env,
    # Accepted as in Ray, with no effect here: task events are always recorded (they
    # are cheap), and object_store_memory is deprecated in Ray.
    "enable_task_events": _bool,
    "object_store_memory": _number,
}


# Options Ray 2.60 takes that ray_core does not: refused by name, so a Ray program
# learns what to change instead of reading "invalid option".
NOT_SUPPORTED = {
    "accelerator_type": "no node advertises accelerator types",
    "label_selector": "the scheduler does not match node labels",
    "fallback_strategy": "the scheduler does not match node labels",
    "_labels": "the scheduler does not match node labels",
    "allow_out_of_order_execution": "calls from one caller run in submission order",
    "enable_tensor_transport": "there is no tensor transport",
    "tensor_transport": "there is no tensor transport",
    "_generator_backpressure_num_objects": "generators stream without backpressure",
}


def validate_options(options: Dict[str, Any], valid: Dict[str, Any],
                     where: str) -> Dict[str, Any]:
    """The options checked against `valid` (name -> checker)."""
    for name, value in options.items():
        check = valid.get(name)
        if check is None and name in NOT_SUPPORTED:
            raise ValueError(f"Option {name!r} of {where} is Ray's but not supported by "
                             f"ray_core: {NOT_SUPPORTED[name]}.")
        if check is None:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Invalid option {name!r} for {where}.{hint} Valid options are: "
                             f"{', '.join(sorted(valid))}.")
        check(name, value)
    return dict(options)
