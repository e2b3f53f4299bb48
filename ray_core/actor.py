"""@remote on a class: ActorClass, ActorHandle, ActorMethod, and the actor API functions.

`Cls.remote(...)` returns a handle at once: the class is exported to the GCS once (like a
remote function), the creation task's ObjectRef arguments are resolved here, then the
GCS actor manager is asked to create the actor (ray_gcs/actor_manager.py). Calls made
meanwhile queue in this process (actor_submitter.py) until the actor is ALIVE. A handle
is only (actor id, class name, method table): it pickles into tasks and other actors,
and every copy reaches the same actor.
"""
import inspect
import logging
import pickle
from typing import Any, Dict, Optional

from ray_common import rpc
from ray_common.ids import ActorID, TaskID
from ray_common.protocol import common_pb2

from ray_core import exceptions
from ray_core._private import options as options_mod
from ray_core._private.actor_runtime import exit_actor, is_async_class  # noqa: F401
from ray_core._private.actor_submitter import ActorPendingTask
from ray_core._private.call_signature import check_call, params_of
from ray_core._private.function_manager import ExportedCode
from ray_core._private.task_manager import PendingTask
from ray_core.remote_function import (TASK_OPTIONS, check_generator_returns, fill_placement,
                                      is_generator, validate_options)

logger = logging.getLogger(__name__)


# ---- options -------------------------------------------------------------------------

def _lifetime(name, value):
    if value not in (None, "detached", "non_detached"):
        raise ValueError(f"option lifetime must be None, 'detached' or 'non_detached', got "
                         f"{value!r}")


def _restarts(name, value):
    options_mod._integer(name, value, minimum=-1)


def _concurrency(name, value):
    options_mod._integer(name, value, minimum=1)


def _concurrency_groups(name, value):
    if not isinstance(value, dict) or not value:
        raise TypeError(f"option concurrency_groups must be a dict of group name -> max "
                        f"concurrency, got {value!r}")
    for group, limit in value.items():
        if not isinstance(group, str) or not group:
            raise TypeError(f"concurrency_groups: group names must be non-empty str, got "
                            f"{group!r}")
        _concurrency(f"concurrency_groups[{group!r}]", limit)


ACTOR_OPTIONS = {name: check for name, check in TASK_OPTIONS.items()
                 if name not in ("num_returns", "max_retries", "retry_exceptions")}
ACTOR_OPTIONS.update({"namespace": options_mod._string, "lifetime": _lifetime,
                      "get_if_exists": options_mod._bool, "max_restarts": _restarts,
                      "max_task_retries": _restarts, "max_concurrency": _concurrency,
                      "max_pending_calls": _restarts, "concurrency_groups": _concurrency_groups})
METHOD_OPTIONS = {"num_returns": options_mod._num_returns, "max_task_retries": _restarts,
                  "name": options_mod._string, "enable_task_events": options_mod._bool,
                  "concurrency_group": options_mod._string}


def method(*args, **kwargs):
    """@ray_core.method(num_returns=k): options of one actor method."""
    if args:
        raise TypeError("@ray_core.method takes keyword options only, e.g. "
                        "@ray_core.method(num_returns=2)")
    validate_options(kwargs, METHOD_OPTIONS, "@ray_core.method")

    def decorator(fn):
        fn.__ray_method_options__ = dict(kwargs)
        return fn
    return decorator


PARAMS = "_params"      # a method's parameters, kept in its entry of the method table
GENERATOR = "_generator"    # whether the method yields (its calls may then stream)


def _method_table(cls) -> Dict[str, Dict[str, Any]]:
    table = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("__") and name not in ("__call__",):
            continue
        if not (inspect.isfunction(member) or inspect.ismethod(member)):
            continue
        options = table[name] = dict(getattr(member, "__ray_method_options__", {}))
        if is_generator(member):
            options.setdefault("num_returns", "streaming")   # as a generator function's
            options[GENERATOR] = True
        check_generator_returns(is_generator(member), options, f"{cls.__qualname__}.{name}")
        # Checked at each call's .remote(); a classmethod is bound here already, a
        # staticmethod has no self.
        bound = inspect.ismethod(member) or \
            isinstance(inspect.getattr_static(cls, name, None), staticmethod)
        options[PARAMS] = params_of(member, skip_first=not bound)
    return table


def _check_groups(class_name: str, methods, groups) -> None:
    """Every concurrency_group a method names must be one of the actor's (at .remote())."""
    for name, options in methods.items():
        group = options.get("concurrency_group")
        if group and group not in groups:
            raise ValueError(f"{class_name}.{name} runs in concurrency group {group!r}, which "
                             f"the actor does not define (its concurrency_groups: "
                             f"{sorted(groups) or 'none'})")


def _job_row(w):
    """The GCS row of the job the running code belongs to (cached: it never changes)."""
    job_id = w.core_worker.current_job_id.binary()
    cache = _job_rows
    if job_id not in cache:
        for job in w.core_worker.gcs.sync.get_all_job_info():
            cache[job.job_id] = job
    return cache.get(job_id)


_job_rows: Dict[bytes, object] = {}


def default_namespace(w) -> str:
    """The namespace names resolve in: the driver's, or in a worker its job's driver's."""
    if w.mode == "driver" or w.namespace:
        return w.namespace
    row = _job_row(w)
    return row.ray_namespace if row is not None else ""


def _default_lifetime(w) -> str:
    """An actor that names no lifetime gets its job's JobConfig default_actor_lifetime."""
    row = _job_row(w)
    return "detached" if row is not None and row.default_actor_detached else "non_detached"


# ---- the class -----------------------------------------------------------------------

def _name_taken(name: str, namespace: str, holder: str) -> exceptions.ActorAlreadyExistsError:
    return exceptions.ActorAlreadyExistsError(
        f"The name {name!r} (namespace={namespace!r}) is already taken by actor {holder}; "
        f"pick another name, or pass get_if_exists=True to get that actor.")


class ActorClassInheritanceException(TypeError):
    """A class statement named a @remote class as a base (as in Ray, not allowed: subclass
    the plain class, then decorate the subclass)."""


class ActorClass:
    def __init__(self, cls, options: Dict[str, Any]):
        self._cls = cls
        self._name = cls.__qualname__
        self._module = cls.__module__ or ""
        self._options = validate_options(options, ACTOR_OPTIONS,
                                                     f"@remote class {self._name}")
        self._methods = _method_table(cls)
        self._init_params = params_of(cls)
        self._is_async = is_async_class(cls)
        self._code = ExportedCode(cls, self._name, "actor class")
        self.__doc__ = cls.__doc__

    def __getstate__(self):
        return dict(self.__dict__)

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actors cannot be instantiated directly. Instead of "
                        f"'{self._name}()', use '{self._name}.remote()'.")

    def __mro_entries__(self, bases):
        raise ActorClassInheritanceException(
            f"Inheriting from the @remote class {self._name} is not allowed: inherit from "
            f"the plain class, and decorate the subclass with @ray_core.remote")

    def remote(self, *args, **kwargs) -> "ActorHandle":
        return self._create(args, kwargs, self._options)

    def options(self, **actor_options) -> "_ActorClassOptions":
        merged = dict(self._options)
        merged.update(validate_options(actor_options, ACTOR_OPTIONS,
                                                   f"{self._name}.options()"))
        return _ActorClassOptions(self, merged)

    def bind(self, *args, **kwargs):
        raise NotImplementedError("Ray DAG .bind() is not supported by ray_core")

    def _create(self, args, kwargs, opts) -> "ActorHandle":
        check_call(self._init_params, args, kwargs, f"{self._name}.remote()")
        from ray_core._private import worker
        w = worker.global_worker()
        core = w.core_worker
        name = opts.get("name") or ""
        namespace = opts.get("namespace")
        if namespace is None:
            namespace = default_namespace(w)
        if name:
            existing = core.gcs.sync.get_named_actor_info(name, namespace)
            if existing is not None:
                if opts.get("get_if_exists"):
                    return _handle_from_row(existing)
                raise _name_taken(name, namespace, existing.actor_id.hex())
        fn_hash = self._code.export(core.function_manager)
        ctx = core._ctx
        counter = next(ctx.task_counter)
        actor_id = ActorID.of(ctx.job_id, ctx.task_id, counter)
        task_id = TaskID.for_actor_creation_task(actor_id)
        max_task_retries = opts.get("max_task_retries", 0)
        spec = common_pb2.TaskSpec(type=common_pb2.ACTOR_CREATION_TASK,
                                   language=common_pb2.PYTHON, job_id=ctx.job_id.binary(),
                                   task_id=task_id.binary(), parent_task_id=ctx.task_id.binary(),
                                   parent_counter=counter, num_returns=1, depth=ctx.depth,
                                   name=name)
        spec.caller_address.CopyFrom(core.address)
        fd = spec.function_descriptor
        fd.module_name = self._module
        fd.class_name = self._name
        fd.function_name = "__init__"
        fd.function_hash = fn_hash
        # Like Ray, an actor takes no CPU for its life unless it asks for some.
        fill_placement(spec, core, opts, default_cpus=0, what=f"actor {self._name}")
        creation = spec.actor_creation_task_spec
        creation.actor_id = actor_id.binary()
        creation.max_restarts = opts.get("max_restarts", 0)
        creation.max_task_retries = max_task_retries
        creation.max_concurrency = opts.get("max_concurrency", 0)
        groups = opts.get("concurrency_groups") or {}
        _check_groups(self._name, self._methods, groups)
        creation.concurrency_groups.update(groups)
        creation.is_asyncio = self._is_async
        detached = (opts.get("lifetime") or _default_lifetime(w)) == "detached"
        creation.is_detached = detached
        creation.name = name
        creation.ray_namespace = namespace
        creation.serialized_actor_handle = pickle.dumps(
            {"methods": self._methods, "max_task_retries": max_task_retries,
             "max_pending_calls": opts.get("max_pending_calls", -1)})
        arg_refs = core._build_args(spec, args, kwargs, f"{self._name}.__init__")
        task = PendingTask(spec, task_id, [], arg_refs, 0, False, self._name)
        submitter = core.actor_submitter
        if name:
            # A named actor is registered before .remote() returns, so the name is taken
            # (or the clash raised) by then.
            try:
                rpc.run_sync(submitter.register(task))
            except ValueError:      # another process took the name meanwhile
                existing = core.gcs.sync.get_named_actor_info(name, namespace)
                if existing is None:
                    raise
                if not opts.get("get_if_exists"):
                    raise _name_taken(name, namespace, existing.actor_id.hex()) from None
                return _handle_from_row(existing)
        else:
            core.loop.call_soon_threadsafe(submitter.spawn_register, task)
        return ActorHandle(actor_id.binary(), self._name, self._methods, max_task_retries,
                           owned=not name and not detached,
                           max_pending_calls=opts.get("max_pending_calls", -1))


class _ActorClassOptions:
    """Cls.options(...): the same class with other options; .remote() creates the actor."""

    def __init__(self, parent: ActorClass, opts):
        self._parent = parent
        self._options = opts

    def remote(self, *args, **kwargs) -> "ActorHandle":
        return self._parent._create(args, kwargs, self._options)

    def options(self, **actor_options) -> "_ActorClassOptions":
        merged = dict(self._options)
        merged.update(validate_options(actor_options, ACTOR_OPTIONS,
                                f"{self._parent._name}.options()"))
        return _ActorClassOptions(self._parent, merged)


# ---- handles -------------------------------------------------------------------------

class ActorMethod:
    __slots__ = ("_handle", "_name", "_options", "_templates")

    def __init__(self, handle: "ActorHandle", name: str, opts: Dict[str, Any],
                 templates: Optional[dict] = None):
        self._handle = handle
        self._name = name
        self._options = opts
        self._templates = {} if templates is None else templates

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor methods cannot be called directly. Instead of "
                        f"'{self._name}()', try '{self._name}.remote()'.")

    def remote(self, *args, **kwargs):
        return self._handle._submit(self, args, kwargs)

    def options(self, **method_options) -> "ActorMethod":
        merged = dict(self._options)
        merged.update(validate_options(method_options, METHOD_OPTIONS,
                                       f"{self._name}.options()"))
        check_generator_returns(merged.get(GENERATOR, False), merged, f"method {self._name}")
        return ActorMethod(self._handle, self._name, merged)


_TERMINATE = "__ray_terminate__"
# The methods every actor has, as in Ray: its end, a readiness probe (True once created)
# and __ray_call__(fn, *args), which runs fn(the actor instance, *args) in the actor.
_BUILTIN_METHODS = (_TERMINATE, "__ray_ready__", "__ray_call__")


def _end_actor(owner, actor_id: bytes, class_name: str, methods) -> None:
    """End an actor whose owning handles are all gone, after their calls (io loop)."""
    from ray_core._private import worker
    w = worker._global
    if w is None or w.core_worker._closed or w.core_worker.worker_id != owner:
        return
    handle = ActorHandle(actor_id, class_name, methods)
    # Submitted through this core worker: shutdown() may be clearing the global one
    # meanwhile, and asking for it then would start a new init() on the io loop.
    handle._submit(ActorMethod(handle, _TERMINATE, {"num_returns": 0}), (_UNREFERENCED,), {},
                   core=w.core_worker)


_UNREFERENCED = "all its handles went out of scope"


class ActorHandle:
    """A reference to an actor. The handle .remote() returned, in the process that made
    the actor, owns its lifetime: when it is garbage-collected and no copy was ever
    pickled (nor the actor named or detached), the actor ends after the calls already
    made (as in Ray, an actor goes when its handles go out of scope)."""

    def __init__(self, actor_id: bytes, class_name: str, methods: Dict[str, Dict[str, Any]],
                 max_task_retries: int = 0, owned: bool = False, max_pending_calls: int = -1):
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._max_task_retries = max_task_retries
        self._max_pending_calls = max_pending_calls   # -1: no limit
        # Spec templates of the methods with their declared options (ActorMethods point
        # here, not the other way round: no cycle keeps a dropped handle alive).
        self._method_templates: Dict[str, dict] = {}
        from ray_core._private import worker
        core = worker.current_core_worker()
        # The CoreWorker that owns the actor (a later init() may reuse actor ids).
        self._owned = core.worker_id if owned and core is not None else None
        if core is not None:
            core.actor_submitter.watch(actor_id)

    def __getattr__(self, name: str) -> ActorMethod:
        state = self.__dict__
        if "_method_templates" not in state:     # during unpickling
            raise AttributeError(name)
        options = state["_methods"].get(name)
        if options is None:
            if name not in _BUILTIN_METHODS:
                raise AttributeError(f"actor class {self._class_name} has no method {name!r}")
            options = {"num_returns": 1}   # every actor has it, as in Ray
        templates = state["_method_templates"].get(name)
        if templates is None:
            templates = state["_method_templates"][name] = {}
        return ActorMethod(self, name, options, templates)

    def __reduce__(self):
        # A copy may live anywhere now: this process no longer decides when the actor ends.
        self._owned = None
        return (ActorHandle, (self._actor_id, self._class_name, self._methods,
                              self._max_task_retries, False, self._max_pending_calls))

    def __del__(self):
        owner = self.__dict__.get("_owned")
        if owner is None:
            return
        try:
            from ray_core._private import worker
            w = worker._global
            if w is None or w.core_worker._closed or w.core_worker.worker_id != owner:
                return
            # The garbage collector runs __del__ wherever an allocation triggers it: on
            # any thread, even inside a lock the actor submitter holds. So the ending
            # call is made from the io loop (still after the calls made through this
            # handle, which were submitted before).
            w.core_worker.loop.call_soon_threadsafe(
                _end_actor, owner, self._actor_id, self._class_name, self._methods)
        except Exception:
            pass    # interpreter or ray_core shutting down: the job's end kills it

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __eq__(self, other) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)

    @property
    def _ray_actor_id(self) -> ActorID:
        return ActorID(self._actor_id)

    def _submit(self, method: ActorMethod, args, kwargs, core=None):
        opts = method._options
        check_call(opts.get(PARAMS), args, kwargs,
                   f"{self._class_name}.{method._name}.remote()")
        if core is None:
            from ray_core._private import worker
            core = worker.global_worker().core_worker
        limit = self._max_pending_calls
        if limit >= 0 and core.actor_submitter.pending_calls(self._actor_id) >= limit:
            raise exceptions.PendingCallsLimitExceeded(
                f"{self!r} has {limit} call(s) from this process pending already "
                f"(max_pending_calls={limit}); wait for some before calling it again")
        ctx = core._ctx
        key = (core.worker_id.binary(), ctx.job_id.binary())
        template = method._templates.get(key)
        if template is None:
            template = method._templates[key] = self._template(core, method)
        counter = next(ctx.task_counter)
        actor_id = self._actor_id
        task_id = TaskID.for_actor_task(ctx.job_id, ctx.task_id, counter, ActorID(actor_id))
        name = f"{self._class_name}.{method._name}"
        spec, arg_refs, return_ids, refs = core.new_task(template, task_id, counter, args,
                                                         kwargs, name)
        task = ActorPendingTask(spec, task_id, return_ids, arg_refs,
                                opts.get("max_task_retries", self._max_task_retries), False,
                                name)
        task.actor_id = actor_id
        if core.task_events.enabled:
            core.task_events.begin(task, template)
        core.actor_submitter.submit(task)
        n = len(refs)
        if n == 1:
            return refs[0]
        if n == 0:
            return None
        return refs

    def _template(self, core, method: ActorMethod) -> common_pb2.TaskSpec:
        opts = method._options
        spec = common_pb2.TaskSpec(type=common_pb2.ACTOR_TASK, language=common_pb2.PYTHON,
                                   **options_mod.returns_fields(opts.get("num_returns", 1)),
                                   job_id=core._ctx.job_id.binary(),
                                   name=opts.get("name") or "")
        spec.caller_address.CopyFrom(core.address)
        fd = spec.function_descriptor
        fd.class_name = self._class_name
        fd.function_name = method._name
        spec.actor_task_spec.actor_id = self._actor_id
        spec.actor_task_spec.caller_worker_id = core.worker_id.binary()
        spec.actor_task_spec.concurrency_group_name = opts.get("concurrency_group") or ""
        return spec


def handle_from_blob(actor_id: bytes, class_name: str, blob: bytes) -> ActorHandle:
    """A handle from the method table the creator stored with the actor's creation spec."""
    meta = pickle.loads(blob) if blob else {}
    return ActorHandle(actor_id, class_name, meta.get("methods", {}),
                       meta.get("max_task_retries", 0),
                       max_pending_calls=meta.get("max_pending_calls", -1))


def _handle_from_row(row) -> ActorHandle:
    return handle_from_blob(row.actor_id, row.class_name,
                            row.task_spec.actor_creation_task_spec.serialized_actor_handle)


# ---- module functions ----------------------------------------------------------------

def get_actor(name: str, namespace: Optional[str] = None) -> ActorHandle:
    """The handle of a live named actor; ValueError naming the name and namespace if none."""
    from ray_core._private import worker
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor() needs a non-empty actor name, got {name!r}")
    w = worker.global_worker()
    namespace = default_namespace(w) if namespace is None else namespace
    row = w.core_worker.gcs.sync.get_named_actor_info(name, namespace)
    if row is None:
        raise ValueError(f"Failed to look up actor with name {name!r} in namespace "
                         f"{namespace!r}: no live actor has that name there.")
    return _handle_from_row(row)


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Kill the actor at once (its running call is interrupted); no_restart=False lets the
    GCS restart it if it has restarts left."""
    from ray_core._private import worker
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"kill() expects an actor handle, got {type(actor).__name__}; use "
                        f"cancel() for tasks")
    core = worker.global_worker().core_worker
    core.gcs.sync.kill_actor(actor._actor_id, force_kill=True, no_restart=no_restart,
                             reason="" if no_restart else
                             "it was killed by ray_core.kill(no_restart=False)")
