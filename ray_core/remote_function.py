"""@remote on a function: RemoteFunction, its .remote() and .options().

The function is pickled (cloudpickle) and hashed once, at its first .remote(); the
CoreWorker's function manager exports it to the GCS once per cluster. Each distinct
option set keeps a TaskSpec template (function descriptor, resources, retries,
strategy), so a call only copies the template and fills in its id and arguments.
"""
import functools
from typing import Any, Dict

from ray_common.config import config
from ray_common.protocol import common_pb2

from ray_core._private import options as options_mod
from ray_core._private.function_manager import ExportedCode
from ray_core.util.scheduling_strategies import (NodeAffinitySchedulingStrategy,
                                                 PlacementGroupSchedulingStrategy)


class RemoteFunction:
    def __init__(self, function, task_options: Dict[str, Any]):
        if not callable(function):
            raise TypeError(f"@remote needs a function, got {type(function).__name__}")
        self._function = function
        self._name = getattr(function, "__qualname__", getattr(function, "__name__", "function"))
        self._module = getattr(function, "__module__", "") or ""
        self._options = options_mod.validate_task_options(task_options, f"@remote {self._name}")
        self._code = ExportedCode(function, self._name, "remote function")
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
        merged.update(options_mod.validate_task_options(task_options,
                                                        f"{self._name}.options()"))
        return _BoundOptions(self, merged)

    def bind(self, *args, **kwargs):
        raise NotImplementedError("Ray DAG .bind() is not supported by ray_core")

    def _remote(self, args, kwargs, opts, templates):
        from ray_core._private import worker
        core = worker.global_worker().core_worker
        fn_hash = self._code.export(core.function_manager)
        # Keyed by the CoreWorker's id (not id(core): a later init() may reuse the address).
        key = (core.worker_id.binary(), core.current_job_id.binary())
        template = templates.get(key)
        if template is None:
            template = templates[key] = self._template(core, fn_hash, opts)
        max_retries = opts.get("max_retries", config.task_max_retries)
        refs = core.submit_task(template, args, kwargs, self._name, max_retries,
                                opts.get("retry_exceptions", False))
        n = template.num_returns
        if n == 1:
            return refs[0]
        if n == 0:
            return None
        return refs

    def _template(self, core, fn_hash: bytes, opts) -> common_pb2.TaskSpec:
        spec = common_pb2.TaskSpec(type=common_pb2.NORMAL_TASK, language=common_pb2.PYTHON,
                                   num_returns=opts.get("num_returns", 1),
                                   max_retries=opts.get("max_retries", config.task_max_retries),
                                   retry_exceptions=bool(opts.get("retry_exceptions", False)),
                                   max_calls=opts.get("max_calls", 0),
                                   name=opts.get("name") or "")
        spec.caller_address.CopyFrom(core.address)
        fd = spec.function_descriptor
        fd.module_name = self._module
        fd.function_name = self._name
        fd.function_hash = fn_hash
        fill_placement(spec, core, opts, default_cpus=1)
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
        merged.update(options_mod.validate_task_options(
            task_options, f"{self._parent._name}.options()"))
        return _BoundOptions(self._parent, merged)

    def __call__(self, *args, **kwargs):
        return self._parent(*args, **kwargs)


def fill_placement(spec: common_pb2.TaskSpec, core, opts, default_cpus: float) -> None:
    """Resources, scheduling strategy and runtime env of a task or actor from its options."""
    resources = {"CPU": float(opts.get("num_cpus", default_cpus))}
    if opts.get("num_gpus"):
        resources["GPU"] = float(opts["num_gpus"])
    if opts.get("memory"):
        resources["memory"] = float(opts["memory"])
    for name, amount in (opts.get("resources") or {}).items():
        resources[name] = float(amount)
    for name, amount in resources.items():
        if amount > 0:
            spec.required_resources[name] = amount
    fill_strategy(spec.scheduling_strategy, opts.get("scheduling_strategy"))
    env = dict((core.job_runtime_env or {}).get("env_vars") or {})
    env.update((opts.get("runtime_env") or {}).get("env_vars") or {})
    for name, value in env.items():
        spec.runtime_env.env_vars[name] = value


def fill_strategy(out: common_pb2.SchedulingStrategy, strategy) -> None:
    if strategy is None or strategy == "DEFAULT" or \
            isinstance(strategy, PlacementGroupSchedulingStrategy):
        # A PlacementGroupSchedulingStrategy left after option checks has no group: Ray's
        # way to say "not in the parent's group", which is the default here.
        out.default_scheduling_strategy.SetInParent()
    elif strategy == "SPREAD":
        out.spread_scheduling_strategy.SetInParent()
    elif isinstance(strategy, NodeAffinitySchedulingStrategy):
        out.node_affinity_scheduling_strategy.node_id = bytes.fromhex(strategy.node_id)
        out.node_affinity_scheduling_strategy.soft = strategy.soft
