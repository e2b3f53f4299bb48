"""@remote on a function: RemoteFunction, its .remote() and .options().

The function is pickled (cloudpickle) and hashed once, at its first .remote(); the
CoreWorker's function manager exports it to the GCS once per cluster. Each distinct
option set keeps a TaskSpec template (function descriptor, resources, retries,
strategy), so a call only copies the template and fills in its id and arguments.
"""
import functools
import inspect
from typing import Any, Dict

from ray_common import bundle_resources
from ray_common.config import config
from ray_common.ids import PlacementGroupID
from ray_common.protocol import common_pb2

from ray_core._private import options as options_mod
from ray_core._private.call_signature import check_call, params_of
from ray_core._private.function_manager import ExportedCode
from ray_core.util.placement_group import PlacementGroup
from ray_core.util.scheduling_strategies import (NodeAffinitySchedulingStrategy,
                                                 PlacementGroupSchedulingStrategy,
                                                 check_strategy, from_legacy_options)

TASK_OPTIONS = dict(options_mod.TASK_OPTIONS, scheduling_strategy=check_strategy)


def validate_options(options: Dict[str, Any], valid: Dict[str, Any], where: str):
    """Options of @remote/.options() checked against `valid` (name -> checker), Ray's
    deprecated placement_group options made a scheduling_strategy first."""
    return options_mod.validate_options(from_legacy_options(options), valid, where)


def validate_task_options(options: Dict[str, Any], where: str) -> Dict[str, Any]:
    return validate_options(options, TASK_OPTIONS, where)


def is_generator(function) -> bool:
    return inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function)


def check_generator_returns(generator: bool, options: Dict[str, Any], what: str) -> None:
    """As Ray: num_returns "streaming" or "dynamic" is for generator functions only,
    refused where it is set rather than when the task runs."""
    mode = options.get("num_returns")
    if mode in ("streaming", "dynamic") and not generator:
        raise ValueError(f"num_returns={mode!r} can only be used with generator functions "
                         f"(functions that use 'yield'); {what} is not one")


class RemoteFunction:
    def __init__(self, function, task_options: Dict[str, Any]):
        if not callable(function):
            raise TypeError(f"@remote needs a function, got {type(function).__name__}")
        self._function = function
        self._name = getattr(function, "__qualname__", getattr(function, "__name__", "function"))
        self._module = getattr(function, "__module__", "") or ""
        self._options = validate_task_options(task_options, f"@remote {self._name}")
        if is_generator(function):
            # As in Ray: a generator function streams its values unless told otherwise.
            self._options.setdefault("num_returns", "streaming")
        check_generator_returns(is_generator(function), self._options, self._name)
        self._code = ExportedCode(function, self._name, "remote function")
        self._params = params_of(function)
        self._templates = {}
        functools.update_wrapper(self, function, updated=())

    def __getstate__(self):
        # Tasks that call other remote functions pickle them: ship the function and
        # its options, not this process's spec templates (they name this caller).
        state = dict(self.__dict__)
        state["_templates"] = {}
        return state

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Remote functions cannot be called directly. Instead of running "
                        f"'{self._name}()', try '{self._name}.remote()'.")

    def remote(self, *args, **kwargs):
        return self._remote(args, kwargs, self._options, self._templates)

    def options(self, **task_options) -> "_BoundOptions":
        merged = dict(self._options)
        merged.update(validate_task_options(task_options,
                                                        f"{self._name}.options()"))
        check_generator_returns(is_generator(self._function), merged, self._name)
        return _BoundOptions(self, merged)

    def bind(self, *args, **kwargs):
        raise NotImplementedError("Ray DAG .bind() is not supported by ray_core")

    def _remote(self, args, kwargs, opts, templates):
        check_call(self._params, args, kwargs, f"{self._name}.remote()")
        from ray_core._private import worker
        core = worker.global_worker().core_worker
        fn_hash = self._code.export(core.function_manager)
        # Keyed by the CoreWorker's id (not id(core): a later init() may reuse the address),
        # by the placement group a parent captures the task in, and by the runtime_env it
        # inherits.
        key = (core.worker_id.binary(), core.current_job_id.binary(),
               core.captured_placement_group() if opts.get("scheduling_strategy") is None else b"",
               core.inherited_env_key)
        template = templates.get(key)
        if template is None:
            template = templates[key] = self._template(core, fn_hash, opts)
        # The template holds max_retries (the option, else the config default as it was
        # when the template was made): reading the config costs an environ lookup.
        refs = core.submit_task(template, args, kwargs, self._name, template.max_retries,
                                opts.get("retry_exceptions", False))
        n = template.num_returns
        if n == 1:
            return refs[0]
        if n == 0:
            return None
        return refs

    def _template(self, core, fn_hash: bytes, opts) -> common_pb2.TaskSpec:
        spec = common_pb2.TaskSpec(type=common_pb2.NORMAL_TASK, language=common_pb2.PYTHON,
                                   **options_mod.returns_fields(opts.get("num_returns", 1)),
                                   max_retries=opts.get("max_retries", config.task_max_retries),
                                   retry_exceptions=bool(opts.get("retry_exceptions", False)),
                                   max_calls=opts.get("max_calls", 0),
                                   name=opts.get("name") or "")
        spec.caller_address.CopyFrom(core.address)
        fd = spec.function_descriptor
        fd.module_name = self._module
        fd.function_name = self._name
        fd.function_hash = fn_hash
        fill_placement(spec, core, opts, default_cpus=1, what=f"task {self._name}")
        return spec


class _BoundOptions:
    """f.options(...): the same function with other options, .remote() to call it."""

    def __init__(self, parent: RemoteFunction, opts):
        self._parent = parent
        self._options = opts
        self._templates = {}

    def remote(self, *args, **kwargs):
        return self._parent._remote(args, kwargs, self._options, self._templates)

    def __getstate__(self):
        return {"_parent": self._parent, "_options": self._options, "_templates": {}}

    def options(self, **task_options) -> "_BoundOptions":
        merged = dict(self._options)
        merged.update(validate_task_options(
            task_options, f"{self._parent._name}.options()"))
        check_generator_returns(is_generator(self._parent._function), merged, self._parent._name)
        return _BoundOptions(self._parent, merged)

    def __call__(self, *args, **kwargs):
        return self._parent(*args, **kwargs)


def fill_placement(spec: common_pb2.TaskSpec, core, opts, default_cpus: float,
                   what: str) -> None:
    """Resources, scheduling strategy and runtime env of a task or actor from its options."""
    resources = {"CPU": float(opts.get("num_cpus", default_cpus))}
    if opts.get("num_gpus"):
        resources["GPU"] = float(opts["num_gpus"])
    if opts.get("memory"):
        resources["memory"] = float(opts["memory"])
    for name, amount in (opts.get("resources") or {}).items():
        resources[name] = float(amount)
    strategy = opts.get("scheduling_strategy")
    placed = _placement_group_of(strategy, core)
    if placed is None:
        fill_strategy(spec.scheduling_strategy, strategy)
    else:
        group, index, capture = placed
        _check_fits(group, index, resources, what)
        resources = bundle_resources.in_bundle(resources, group.id.hex(), index)
        out = spec.scheduling_strategy.placement_group_scheduling_strategy
        out.placement_group_id = group.id.binary()
        out.placement_group_bundle_index = index
        out.placement_group_capture_child_tasks = capture
    for name, amount in resources.items():
        if amount > 0:
            spec.required_resources[name] = amount
    spec.runtime_env.CopyFrom(core.runtime_env_for(opts.get("runtime_env")))


def _placement_group_of(strategy, core):
    """(group, bundle index, capture child tasks) the task goes into, or None: its own
    strategy's group, else (no strategy at all) the group its parent captures it in."""
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        group = strategy.placement_group
        if group is None or group.is_empty:
            return None   # Ray's way to say "not in the parent's group"
        return (strategy.placement_group, strategy.placement_group_bundle_index,
                bool(strategy.placement_group_capture_child_tasks))
    if strategy is None:
        captured = core.captured_placement_group()
        if captured:
            return PlacementGroup(PlacementGroupID(captured)), -1, True
    return None


def _check_fits(group, index: int, resources, what: str) -> None:
    """Refuse now what no bundle could ever run (Ray raises this at .remote() too)."""
    bundles = group.bundle_specs
    candidates = [bundles[index]] if index >= 0 else bundles
    wanted = {name: amount for name, amount in resources.items() if amount > 0}
    if any(all(bundle.get(name, 0) >= amount for name, amount in wanted.items())
           for bundle in candidates):
        return
    where = f"bundle {index}" if index >= 0 else "any bundle"
    raise ValueError(f"Cannot schedule {what} in placement group {group.id.hex()}: its "
                     f"resource request {wanted} does not fit {where} of the group "
                     f"(bundles: {bundles})")


def fill_strategy(out: common_pb2.SchedulingStrategy, strategy) -> None:
    if strategy is None or strategy == "DEFAULT" or \
            isinstance(strategy, PlacementGroupSchedulingStrategy):
        # Only a PlacementGroupSchedulingStrategy without a group gets here.
        out.default_scheduling_strategy.SetInParent()
    elif strategy == "SPREAD":
        out.spread_scheduling_strategy.SetInParent()
    elif isinstance(strategy, NodeAffinitySchedulingStrategy):
        out.node_affinity_scheduling_strategy.node_id = bytes.fromhex(strategy.node_id)
        out.node_affinity_scheduling_strategy.soft = strategy.soft
