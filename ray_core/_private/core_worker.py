"""The CoreWorker: one per driver or worker process, the owner of its tasks and objects.

It ties the pieces of "A task's life" together: submission (TaskManager ->
DependencyResolver -> NormalTaskSubmitter -> framed push), the memory store and plasma
for values, the reference counter for freeing, the function manager, and in worker
mode the TaskServer + TaskExecutor loop on the main thread. Its gRPC service answers
what other processes ask an owner (object status and locations) or a worker (cancel,
exit, where its task socket listens).

Threads: user threads call submit_task/put/get_objects; the io loop thread
(ray_common.rpc) runs the submitter, every socket and the gRPC server; in a worker the
main thread runs tasks. A submission crosses to the io loop through a deque and at most
one wake-up per burst, so a loop of .remote() calls costs one thread hop, not one each.
"""
import asyncio
import collections
import concurrent.futures
import contextvars
import itertools
import logging
import math
import os
import signal
import time
from typing import Dict, List, Optional, Tuple

from ray_common import bundle_resources, rpc
from ray_common.config import config
from ray_common.ids import JobID, ObjectID, TaskID, WorkerID
from ray_common.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc

from ray_core import exceptions
from ray_core._private import (_object_ref, hang_report, log_monitor, runtime_env,
                               serialization, task_transport)
from ray_core._private.background import background_pool
from ray_core._private.core_worker_service import CoreWorkerServicer
from ray_core._private.dependency_resolver import DependencyResolver
from ray_core._private.function_manager import KV_NAMESPACE, FunctionManager
from ray_core._private.lease_client import LeaseClient
from ray_core._private.generator_streams import GeneratorStreams
from ray_core._private.memory_store import MemoryStore, StoredObject
from ray_core._private.normal_task_submitter import NormalTaskSubmitter
from ray_core._private.object_lifetime import ObjectLifetime, borrow_capture
from ray_core._private.plasma_objects import PlasmaObjects
from ray_core._private.reference_counter import ReferenceCounter
from ray_core._private.task_event_buffer import TaskEventBuffer
from ray_core._private.task_executor import TaskExecutor
from ray_core._private.task_manager import PendingTask, TaskManager
from ray_core._private.task_log import task_log
from ray_core.object_ref import ObjectRef

logger = logging.getLogger(__name__)

DRIVER = "driver"
WORKER = "worker"
# The spec of the actor call running in this thread or asyncio task: a threaded or async
# actor runs several calls at once, so their task context cannot be the process's.
CALL_SPEC = contextvars.ContextVar("ray_core_call_spec", default=None)


class _TaskContext:
    """What the code running right now is part of: its task, job, counters, resources."""
    __slots__ = ("task_id", "job_id", "task_counter", "put_counter", "depth", "resources", "spec",
                 "captured_group")

    def __init__(self, task_id: TaskID, job_id: JobID, put_offset: int = 1, depth: int = 0,
                 resources=None, spec=None):
        self.task_id = task_id
        self.job_id = job_id
        self.task_counter = itertools.count(1)
        self.put_counter = itertools.count(put_offset)
        self.depth = depth
        self.resources = resources or {}
        self.spec = spec
        self.captured_group = None   # captured_placement_group(), worked out once per task


def _instances_of(resources: Dict[str, list], kind: str) -> list:
    """A task's [(instance, quantity)] of `kind` (CPU, GPU), in a placement group too."""
    name = bundle_resources.most_specific(resources, kind)
    return resources[name] if name is not None else []


class CoreWorker:
    def __init__(self, *, mode: str, worker_id: WorkerID, node_id: bytes, node_ip: str,
                 raylet_address: str, gcs_address: str, plasma_socket: str, session_dir: str,
                 job_id: Optional[JobID] = None, gcs_client=None, namespace: str = ""):
        self.mode = mode
        self.worker_id = worker_id
        self.node_id = node_id
        self.node_ip = node_ip
        self.raylet_address = raylet_address
        self.gcs_address = gcs_address
        self.plasma_socket = plasma_socket
        self.session_dir = session_dir
        self.namespace = namespace
        self.job_id = job_id or JobID.nil()
        self.loop = rpc.io_loop()
        if gcs_client is None:
            from ray_gcs.client import GcsClient
            from ray_gcs.supervisor import death_note
            gcs_client = GcsClient(gcs_address, why_unreachable=lambda: death_note(session_dir))
        self.gcs = gcs_client
        self.memory_store = MemoryStore()
        self.reference_counter = ReferenceCounter(self._on_ref_zero, self._on_borrow_released,
                                                  self.loop)
        self.lifetime = ObjectLifetime(self)
        self.generator_streams = GeneratorStreams(self)
        self.task_manager = TaskManager(self.memory_store, self._resubmit,
                                        self.reference_counter.has_reference,
                                        self._on_plasma_return)
        self.task_manager.on_return_nested = self.lifetime.on_return_nested
        self.task_events = self.task_manager.events = TaskEventBuffer(self.gcs, self.loop)
        self.task_manager.on_dynamic_end = self.generator_streams.end_dynamic
        self.task_manager.remember_lineage = self.lifetime.remember
        self.lease_client = LeaseClient(raylet_address)
        self.function_manager = FunctionManager(self._kv_put, self._kv_get)
        self.resolver = DependencyResolver(self.memory_store, self.reference_counter.is_owned,
                                           self.loop.call_soon_threadsafe)
        self.submitter = NormalTaskSubmitter(self.task_manager, self.lease_client,
                                             self._connect_worker, self._cancel_remote,
                                             self.job_id.binary())
        self.executor = TaskExecutor(self) if mode == WORKER else None
        self.actor_runtime = None       # the actor this worker hosts (actor_runtime.py)
        self.make_actor_handle = None   # (actor id, class name, blob) -> ActorHandle
        from ray_core._private.actor_submitter import ActorTaskSubmitter
        self.actor_submitter = ActorTaskSubmitter(self)
        self.task_server: Optional[task_transport.TaskServer] = None
        self.address = common_pb2.Address(node_id=node_id, ip_address=node_ip,
                                          worker_id=worker_id.binary())
        self.address_bytes = b""
        self._owner_addresses: Dict[bytes, common_pb2.Address] = {}
        self._idle_ctx = _TaskContext(TaskID.for_driver_task(self.job_id), self.job_id)
        self._ctx = self._idle_ctx
        self._submissions = collections.deque()
        self._wakeup_pending = False
        self.plasma_objects = PlasmaObjects(plasma_socket, node_id, self.lease_client,
                                            self.gcs, self.loop)
        self.plasma_objects.on_lost = self._lost_value
        self.plasma_objects.owner_address = self.address
        self._owner_fetches = set()
        self._server = None
        self._exit = False
        self._blocked = False
        self._inline_limit = config.max_direct_call_object_size
        self._closed = False
        self._idle_env = common_pb2.RuntimeEnv()      # a driver's: its job's (init)
        self.inherited_env = self._idle_env            # what a task submitted now inherits
        self.inherited_env_key = b""
        self.runtime_envs = runtime_env.Packager(self._kv_put_env, self._kv_exists_env)
        self._saved_env = None
        self._announced_job = b""  # the job whose output this worker's stdout now carries

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Serve CoreWorkerService, open the task socket (workers), register with the raylet."""
        servicer = CoreWorkerServicer(self)
        self._server, port = rpc.run_sync(rpc.start_server(
            [(core_worker_pb2_grpc.add_CoreWorkerServiceServicer_to_server, servicer)],
            port=0, host="0.0.0.0"))
        self.address.port = port
        self.address_bytes = self.address.SerializeToString()
        self._owner_addresses[self.address_bytes] = self.address
        if self.mode == WORKER:
            self.task_server = task_transport.TaskServer(self.worker_id.hex(), self.node_ip,
                                                         rpc.auth_token())
        worker_type = common_pb2.WORKER if self.mode == WORKER else common_pb2.DRIVER
        reply = rpc.run_sync(self.lease_client.register_worker(
            self.worker_id.binary(), os.getpid(), port, worker_type,
            self.job_id.binary() if self.mode == DRIVER else b"", self.node_ip))
        if not reply.success:
            raise exceptions.RaySystemError(
                f"the raylet at {self.raylet_address} refused to register this "
                f"{self.mode}: {reply.failure_message}")
        if reply.object_store_socket_name:
            self.plasma_socket = reply.object_store_socket_name
            self.plasma_objects.socket_path = self.plasma_socket
        self.loop.call_soon_threadsafe(self._flush_refs_periodically)
        self.task_events.start(self.worker_id.binary(), self.node_id, self.address)
        logger.info("Initializing worker %s (%s, pid %d), listening on port %d",
                    self.worker_id.hex(), self.mode, os.getpid(), port)

    def shutdown(self) -> None:
        if self._closed:
            return
        try:
            self.lifetime.release_all_borrowed()
        except Exception as e:
            logger.info("Releasing borrowed refs at shutdown failed: %s", e)
        self._closed = True
        self.loop.call_soon_threadsafe(self.lifetime.close)
        try:
            self.actor_submitter.close()
            rpc.run_sync(self.submitter.close(), timeout=config.rpc_default_deadline_s + 1)
        except Exception as e:
            logger.info("Returning leases at shutdown failed: %s", e)
        if self._server is not None:
            try:
                rpc.run_sync(self._server.stop(grace=None), timeout=config.shutdown_grace_s)
            except Exception:
                pass
        if self.task_server is not None:
            self.task_server.close()
        self.task_events.close()
        self.plasma_objects.close()

    def _flush_refs_periodically(self) -> None:
        if self._closed:
            return
        try:
            self.reference_counter.try_flush()
        finally:
            self.loop.call_later(config.ref_count_flush_interval_ms / 1000.0,
                                 self._flush_refs_periodically)

    # ---- runtime_env ---------------------------------------------------------------------
    def set_job_runtime_env(self, env: Optional[dict]) -> None:
        """A driver's init(runtime_env=...): packaged once, inherited by every task."""
        self._idle_env = self.runtime_envs.to_proto(env)
        self._set_inherited_env(self._idle_env)

    def _set_inherited_env(self, env: common_pb2.RuntimeEnv) -> None:
        self.inherited_env = env
        self.inherited_env_key = env.SerializeToString()

    def runtime_env_for(self, task_env: Optional[dict]) -> common_pb2.RuntimeEnv:
        """The RuntimeEnv of a task or actor submitted now with this runtime_env option."""
        if not task_env:
            return self.inherited_env
        return runtime_env.merged(self.inherited_env, self.runtime_envs.to_proto(task_env))

    def _kv_put_env(self, key: bytes, value: bytes):
        return self.gcs.sync.kv_put(key, value, overwrite=False,
                                    namespace=runtime_env.KV_NAMESPACE)

    def _kv_exists_env(self, key: bytes) -> bool:
        return self.gcs.sync.kv_exists(key, namespace=runtime_env.KV_NAMESPACE)

    # ---- GCS KV for the function manager ------------------------------------------------
    def _kv_put(self, key: bytes, value: bytes):
        return self.gcs.sync.kv_put(key, value, overwrite=True, namespace=KV_NAMESPACE)

    def _kv_get(self, key: bytes):
        return self.gcs.sync.kv_get(key, namespace=KV_NAMESPACE)

    # ---- task context ------------------------------------------------------------------
    def enter_task(self, spec, resource_mapping) -> None:
        if spec.job_id != self._announced_job or spec.type:
            # Output from here on is this job's (and this actor's: its class name).
            self._announced_job = spec.job_id
            log_monitor.announce(spec.job_id.hex(),
                                 spec.function_descriptor.class_name if spec.type else "")
        resources = {}
        for alloc in resource_mapping:
            resources[alloc.name] = [(int(i), float(q)) for i, q in
                                     zip(alloc.instance_ids, alloc.quantities)] or \
                list(enumerate(alloc.quantities))
        if not resources:
            resources = {k: [(0, v)] for k, v in spec.required_resources.items()}
        if not resources and self.actor_runtime is not None:
            resources = self.actor_runtime.resources    # what the actor holds for its life
        self._ctx = _TaskContext(TaskID(spec.task_id), JobID(spec.job_id),
                                 put_offset=max(spec.num_returns, 0) + 1, depth=spec.depth + 1,
                                 resources=resources, spec=spec)
        actor = self.actor_runtime
        self._set_inherited_env(actor.runtime_env if actor is not None and spec.type ==
                                common_pb2.ACTOR_TASK else spec.runtime_env)
        env_vars = dict(spec.runtime_env.env_vars)
        gpus = _instances_of(resources, "GPU")
        if gpus:
            # The GPUs the raylet assigned to this lease, as CUDA numbers them.
            env_vars["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i, _ in gpus)
        if env_vars:
            # Workers are shared between tasks: apply the task's env vars only while it runs.
            self._saved_env = {name: os.environ.get(name) for name in env_vars}
            os.environ.update(env_vars)

    def exit_task(self) -> None:
        self._ctx = self._idle_ctx
        if self._saved_env is not None:
            for name, old in self._saved_env.items():
                if old is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = old
            self._saved_env = None
        self._set_inherited_env(self._idle_env)
        self.lifetime.register_arg_borrows()
        self.plasma_objects.drain_releases()

    @property
    def current_task_id(self) -> TaskID:
        return self._ctx.task_id

    def current_spec(self):
        """The spec of the task or actor call running here (None between tasks)."""
        return CALL_SPEC.get() or self._ctx.spec

    @property
    def current_job_id(self) -> JobID:
        return self._ctx.job_id

    def assigned_resources(self) -> Dict[str, float]:
        return {name: sum(q for _, q in inst) for name, inst in self._ctx.resources.items()}

    def assigned_gpus(self) -> list:
        """[(GPU id, quantity)] the running task holds, in a placement group's bundle too."""
        return _instances_of(self._ctx.resources, "GPU")

    def current_placement_group(self) -> Tuple[bytes, bool]:
        """(group id, capture child tasks) of this worker's actor or the running task;
        (b"", False) outside any group."""
        if self.actor_runtime is not None:
            strategy = self.actor_runtime.placement
        elif self._ctx.spec is not None:
            strategy = self._ctx.spec.scheduling_strategy
        else:
            return b"", False
        if strategy.WhichOneof("strategy") != "placement_group_scheduling_strategy":
            return b"", False
        group = strategy.placement_group_scheduling_strategy
        return group.placement_group_id, group.placement_group_capture_child_tasks

    def captured_placement_group(self) -> bytes:
        """The group a task submitted now without a strategy joins (its parent's, when
        the parent was placed with placement_group_capture_child_tasks)."""
        ctx = self._ctx
        captured = ctx.captured_group
        if captured is None:
            group_id, capture = self.current_placement_group()
            captured = group_id if capture else b""
            if ctx.spec is not None:     # a running task's: fixed until it ends
                ctx.captured_group = captured
        return captured

    # ---- submission (user threads) ------------------------------------------------------
    def new_task(self, template: common_pb2.TaskSpec, task_id: TaskID, counter: int, args,
                 kwargs, function_name: str):
        """(spec, argument refs, return ids, what .remote() returns) of a task or actor
        call the running code submits, from its spec template: owned refs to the returns,
        or for a streaming generator its ObjectRefGenerator (opened before the task can
        run, so no item it reports finds no stream)."""
        self.reference_counter.maybe_flush()
        ctx = self._ctx
        spec = common_pb2.TaskSpec()
        spec.CopyFrom(template)
        spec.task_id = task_id.binary()
        spec.job_id = ctx.job_id.binary()
        spec.parent_task_id = ctx.task_id.binary()
        spec.parent_counter = counter
        spec.depth = ctx.depth
        arg_refs = self._build_args(spec, args, kwargs, function_name)
        return_ids = [ObjectID.from_index(task_id, i) for i in range(1, spec.num_returns + 1)]
        rc = self.reference_counter
        refs = []
        for object_id in return_ids:
            rc.add_owned(object_id)
            refs.append(ObjectRef(object_id, self.address_bytes, rc))
        if spec.dynamic_returns:
            self.generator_streams.collect(refs[0])
        elif spec.streaming_generator:
            refs = [self.generator_streams.open(refs[0])]
        return spec, arg_refs, return_ids, refs

    def submit_task(self, template: common_pb2.TaskSpec, args, kwargs, function_name: str,
                    max_retries: int, retry_exceptions) -> List[ObjectRef]:
        ctx = self._ctx
        counter = next(ctx.task_counter)
        task_id = TaskID.for_normal_task(ctx.job_id, ctx.task_id, counter)
        spec, arg_refs, return_ids, refs = self.new_task(template, task_id, counter, args,
                                                         kwargs, function_name)
        task = PendingTask(spec, task_id, return_ids, arg_refs, max_retries, retry_exceptions,
                           function_name)
        if self.task_events.enabled:
            self.task_events.begin(task, template)
        self.task_manager.add_pending(task)
        if task_log.enabled:
            task_log.line("Submit task " + task_id.hex())
        if not self._submissions and self.resolver.ready_now(task) and \
                self.submitter.push_now(task):
            return refs
        self._submissions.append(task)
        if not self._wakeup_pending:
            self._wakeup_pending = True
            self.loop.call_soon_threadsafe(self._drain_submissions)
        return refs

    def report_generator_item(self, spec: common_pb2.TaskSpec, index: int, item) -> None:
        """Send one yielded value to the generator task's caller; returns once it holds it
        (so every item is there before the task's reply)."""
        rpc.run_sync(self._report_item(spec, index, item))

    async def report_generator_item_async(self, spec: common_pb2.TaskSpec, index: int,
                                          item) -> None:
        """report_generator_item for code on another event loop (an async actor's)."""
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            self._report_item(spec, index, item), self.loop))

    async def _report_item(self, spec: common_pb2.TaskSpec, index: int, item) -> None:
        caller = spec.caller_address   # the stub's channel belongs to the io loop: made here
        stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub,
                        f"{caller.ip_address}:{caller.port}")
        await rpc.call_with_retry(stub.ReportGeneratorItem,
                                  core_worker_pb2.ReportGeneratorItemRequest(
                                      task_id=spec.task_id, index=index, item=item))

    def _drain_submissions(self) -> None:
        self._wakeup_pending = False
        queue = self._submissions
        resolve = self.resolver.resolve
        submit = self.submitter.submit
        while queue:
            resolve(queue.popleft(), submit)

    def _resubmit(self, task: PendingTask) -> None:
        if rpc.in_io_thread():
            self.submitter.submit(task)
        else:
            self.loop.call_soon_threadsafe(self.submitter.submit, task)

    def _owner_pb(self, owner: bytes) -> common_pb2.Address:
        address = self._owner_addresses.get(owner)
        if address is None:
            address = common_pb2.Address.FromString(owner)
            self._owner_addresses[owner] = address
        return address

    def _build_args(self, spec, args, kwargs, function_name) -> list:
        arg_refs = []
        inline_limit = self._inline_limit
        values = list(args)
        if kwargs:
            values.extend(kwargs.values())
            spec.kwarg_names.extend(kwargs.keys())
        n_pos = len(args)
        for position, value in enumerate(values):
            arg = spec.args.add()
            if isinstance(value, ObjectRef):
                arg.object_ref.object_id = value.binary()
                arg.object_ref.owner_address.CopyFrom(self._owner_pb(value.owner_address()))
                arg_refs.append(value)
                continue
            try:
                ser = serialization.serialize(value)
            except Exception as e:
                name = (f"argument {position}" if position < n_pos
                        else f"keyword argument {list(kwargs)[position - n_pos]!r}")
                raise TypeError(
                    f"Could not serialize {name} of {function_name}.remote(): "
                    f"{serialization.describe_unpicklable(value, e)}. Pass only picklable "
                    f"values (or create the object inside the task).") from e
            if ser.total_size <= inline_limit:
                arg.is_inlined = True
                arg.inlined.data = ser.to_bytes()
                arg.inlined.metadata = ser.metadata
                if ser.nested_refs:
                    self._note_nested(arg.inlined, ser.nested_refs)
                    arg_refs.extend(ser.nested_refs)
            else:
                ref = self._put_serialized(ser)
                arg.object_ref.object_id = ref.binary()
                arg.object_ref.owner_address.CopyFrom(self.address)
                arg_refs.append(ref)
        return arg_refs

    def _note_nested(self, ray_object, nested_refs) -> None:
        # The pending task's arg_refs hold these until it is done; an executor that
        # keeps one registers itself at the owner before replying.
        for ref in nested_refs:
            entry = ray_object.nested_refs.add()
            entry.object_id = ref.binary()
            entry.owner_address.CopyFrom(self._owner_pb(ref.owner_address()))

    # ---- cancel ------------------------------------------------------------------------
    def cancel(self, ref: ObjectRef, force: bool, recursive: bool) -> None:
        task = self.task_manager.get(ref.task_id())
        if task is None:
            return
        task.cancelled = True
        if task.spec.type == common_pb2.ACTOR_TASK:
            self.loop.call_soon_threadsafe(self.actor_submitter.cancel, task, recursive)
        else:
            self.loop.call_soon_threadsafe(self.submitter.cancel, task, force, recursive)

    async def _cancel_remote(self, worker, task_id: bytes, force: bool, recursive: bool) -> None:
        await self.cancel_on_worker(worker.address, task_id, force, recursive)

    async def cancel_on_worker(self, address: common_pb2.Address, task_id: bytes, force: bool,
                               recursive: bool) -> None:
        """Ask the worker at `address` to cancel a task it was pushed (CancelTask)."""
        stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub,
                        f"{address.ip_address}:{address.port}")
        try:
            await rpc.call_with_retry(stub.CancelTask, core_worker_pb2.CancelTaskRequest(
                intended_task_id=task_id, force_kill=force, recursive=recursive), retry=False)
        except Exception as e:
            logger.info("CancelTask %s failed (the worker may have exited): %s", task_id.hex(), e)

    def cancel_children(self, parent_task_id: bytes, force: bool) -> None:
        """Cancel the tasks this worker submitted from inside the given task (io loop)."""
        for task in self.task_manager.pending_tasks():
            if task.spec.parent_task_id == parent_task_id:
                self.submitter.cancel(task, force, True)

    # ---- connecting to leased workers (io loop) ----------------------------------------
    async def _connect_worker(self, address: common_pb2.Address, on_replies, on_lost):
        if address.node_id == self.node_id:
            target = task_transport.abstract_socket_name(address.worker_id.hex())
        else:
            stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub,
                            f"{address.ip_address}:{address.port}")
            reply = await rpc.call_with_retry(stub.GetTaskEndpoint,
                                              core_worker_pb2.GetTaskEndpointRequest())
            target = f"{address.ip_address}:{reply.tcp_port}"
        return await task_transport.connect(target, rpc.auth_token(), on_replies, on_lost)

    # ---- objects: put ------------------------------------------------------------------
    def put(self, value, owner: Optional[common_pb2.Address] = None) -> ObjectRef:
        if isinstance(value, ObjectRef):
            raise TypeError("Calling put() on an ObjectRef is not allowed: pass the ref itself "
                            "(or get() its value first).")
        try:
            ser = serialization.serialize(value)
        except Exception as e:
            raise TypeError(f"Could not serialize the value passed to put(): "
                            f"{serialization.describe_unpicklable(value, e)}") from e
        if owner is not None and owner.worker_id != self.worker_id.binary():
            return self._put_for_owner(ser, owner)
        return self._put_serialized(ser)

    def _put_for_owner(self, ser, owner: common_pb2.Address) -> ObjectRef:
        """put(value, _owner=actor): the value goes into this node's store, pinned there for
        the actor, which owns it from then on; this process borrows it. Its lifetime is
        the owner's, not this process's (the value is lost with its node, as any put)."""
        if ser.nested_refs:
            raise ValueError("put(_owner=...) of a value that holds ObjectRefs is not "
                             "supported: put the value without _owner, or pass the refs "
                             "to the owner separately")
        self.reference_counter.maybe_flush()
        object_id = self._next_put_id()
        key = object_id.binary()
        self.plasma_objects.write(object_id, ser, self._copy_threads())
        self.plasma_objects.pin([key], owner)
        request = core_worker_pb2.AssignObjectOwnerRequest(
            object_id=key, node_id=self.node_id, object_size=ser.total_size,
            borrower_address=self.address)

        async def assign():
            stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub,
                            f"{owner.ip_address}:{owner.port}")
            return await rpc.call_with_retry(stub.AssignObjectOwner, request,
                                             timeout=config.rpc_default_deadline_s)
        try:
            reply = rpc.run_sync(assign())
        except Exception as e:
            self.plasma_objects.queue_free(key, self.node_id)
            raise exceptions.RaySystemError(
                f"put(_owner=...) could not hand object {object_id.hex()} to its owner "
                f"(worker {owner.worker_id.hex()} at {owner.ip_address}:{owner.port}): "
                f"{e}") from e
        owner_bytes = reply.owner_address.SerializeToString()
        self._owner_addresses[owner_bytes] = reply.owner_address
        ref = ObjectRef(object_id, owner_bytes, self.reference_counter)
        self.reference_counter.note_borrowed(object_id, owner_bytes, 1)
        return ref

    def _next_put_id(self) -> ObjectID:
        ctx = self._ctx
        return ObjectID.from_index(ctx.task_id, next(ctx.put_counter))

    def _put_serialized(self, ser) -> ObjectRef:
        self.reference_counter.maybe_flush()
        object_id = self._next_put_id()
        if ser.nested_refs:
            self.lifetime.hold_contained(object_id, list(ser.nested_refs))
        if ser.total_size <= self._inline_limit:
            self.memory_store.put(object_id, StoredObject(ser.to_bytes(), ser.metadata))
        else:
            self.reference_counter.try_flush()   # so what was just dropped is freed first
            self.plasma_objects.write(object_id, ser, self._copy_threads())
            self.plasma_objects.hold_primary(object_id.binary())
            self.memory_store.put(object_id, StoredObject.plasma_marker(self.node_id,
                                                                        ser.total_size))
        self.reference_counter.add_owned(object_id)
        return ObjectRef(object_id, self.address_bytes, self.reference_counter)

    def future_ref(self, coroutine) -> ObjectRef:
        """A ref this process owns whose value `coroutine` (run on the io loop) returns; an
        exception it raises is what get() raises (a RayError as it is, others wrapped)."""
        object_id = self._next_put_id()
        self.reference_counter.add_owned(object_id)

        async def fill():
            try:
                ser = serialization.serialize(await coroutine)
                stored = StoredObject(ser.to_bytes(), ser.metadata)
            except Exception as e:  # noqa: BLE001 - the ref carries it to get()
                stored = StoredObject.error(e if isinstance(e, exceptions.RayError) else
                                            exceptions.RaySystemError(f"{type(e).__name__}: {e}"))
            self.memory_store.put(object_id, stored)

        asyncio.run_coroutine_threadsafe(fill(), self.loop)
        return ObjectRef(object_id, self.address_bytes, self.reference_counter)

    def _copy_threads(self) -> int:
        """Threads that may copy one large value into plasma. A task uses the CPUs it was
        granted: more would take cores the raylet gave to other tasks (two workers each
        copying with two threads on the 2-core dev machine put 28-32 GB/s, with one
        thread each 45 GB/s). A driver's cores are not the raylet's to give."""
        if self.mode == DRIVER:
            return config.copy_threads
        cpus = sum(q for _, q in _instances_of(self._ctx.resources, "CPU"))
        return max(1, min(config.copy_threads, math.ceil(cpus)))

    @property
    def plasma(self):
        """This node's plasma client (connected on first use)."""
        return self.plasma_objects.client

    def put_return_in_plasma(self, object_id: ObjectID, ser, owner: common_pb2.Address) -> None:
        """A large return value: seal it here, and have the raylet pin it for its owner."""
        self.plasma_objects.write(object_id, ser, self._copy_threads())
        self.plasma_objects.pin([object_id.binary()], owner)

    # ---- objects: get ------------------------------------------------------------------
    def ref_from_reference(self, reference: common_pb2.ObjectReference) -> ObjectRef:
        return self.deserialized_ref(ObjectID(reference.object_id),
                                     reference.owner_address.SerializeToString())

    def deserialized_ref(self, object_id: ObjectID, owner: bytes) -> ObjectRef:
        if owner != self.address_bytes:
            borrow_capture.refs.append((object_id, owner))
        return ObjectRef(object_id, owner, self.reference_counter)

    def get_objects(self, refs: List[ObjectRef], timeout: Optional[float] = None,
                    raise_errors: bool = True, ids: Optional[List[ObjectID]] = None):
        """Values of the refs, in order; raises the first error (or returns (value, is_error))."""
        self.reference_counter.maybe_flush()
        store = self.memory_store
        if ids is None:
            ids = _object_ref.ids_of(refs)
        found = {}
        missing = []
        for ref, object_id in zip(refs, ids):
            obj = store.get_if_exists(object_id)
            if obj is None:
                missing.append(ref)
            else:
                found[object_id] = obj
        if missing:
            found.update(self._wait_for(missing, len({r.object_id() for r in missing}), timeout,
                                        for_get=True))
        values = self._values(ids, found, raise_errors, timeout)
        capture = borrow_capture
        if capture.refs and not capture.deferred:
            # The refs nested in these values are vouched for by their container only
            # while it lives: register as their borrower before the caller can drop it.
            # (A task's arguments are registered when the task ends instead.)
            captured, capture.refs = capture.refs, []
            self.lifetime.register_borrows(captured)
        return values

    def _wait_for(self, refs: List[ObjectRef], num_required: int, timeout: Optional[float],
                  for_get: bool) -> Dict[ObjectID, StoredObject]:
        unique = {}
        for ref in refs:
            unique.setdefault(ref.object_id(), ref)
        for object_id, ref in unique.items():
            if not self.reference_counter.is_owned(object_id) and \
                    not self.task_manager.is_pending(object_id.task_id()):
                self._fetch_from_owner(ref)
        got = self._wait_reporting(unique, num_required, timeout,
                                   "get()" if for_get else "wait()")
        if len(got) < num_required and for_get:
            missing = [oid.hex() for oid in unique if oid not in got]
            raise exceptions.GetTimeoutError(
                f"get() timed out after {timeout}s waiting for {len(missing)} "
                f"object(s), e.g. {missing[0]}")
        return got

    def _wait_reporting(self, refs: Dict[ObjectID, ObjectRef], num_required: int,
                        timeout: Optional[float], what: str) -> Dict[ObjectID, StoredObject]:
        """wait_in_store, saying once why, if it waits longer than get_hang_warning_s."""
        ids = list(refs)
        threshold = config.get_hang_warning_s
        if threshold <= 0 or (timeout is not None and timeout <= threshold) or \
                rpc.in_io_thread():
            return self.wait_in_store(ids, num_required, timeout)
        got = self.wait_in_store(ids, num_required, threshold)
        if len(got) >= num_required:
            return got
        hang_report.report_wait(self, what, [ref for oid, ref in refs.items()
                                             if oid not in got], threshold)
        return self.wait_in_store(ids, num_required,
                                  None if timeout is None else timeout - threshold)

    def wait_in_store(self, ids: List[ObjectID], num_required: int,
                      timeout: Optional[float]) -> Dict[ObjectID, StoredObject]:
        """Wait for objects this process will hold; a task waiting here lends its CPU
        to the raylet meanwhile (nested tasks must not deadlock on it)."""
        blocked = self.mode == WORKER and self.executor.current_task_id is not None and \
            not self._blocked
        if blocked:
            self._set_blocked(True)
        try:
            # A cancel reaches a task blocked here as SIGINT (interrupt_task).
            return self.memory_store.wait(ids, num_required, timeout)
        finally:
            if blocked:
                self._set_blocked(False)

    def _set_blocked(self, blocked: bool) -> None:
        self._blocked = blocked
        try:
            rpc.run_sync(self.lease_client.notify_worker_blocked(self.worker_id.binary(), blocked))
        except Exception as e:
            logger.warning("NotifyWorkerBlocked(%s) failed: %s", blocked, e)

    def _values(self, ids, found, raise_errors, timeout):
        out = []
        plasma_wanted = [oid for oid in ids if found[oid].in_plasma]
        if plasma_wanted:
            plasma_values = self.plasma_objects.read(plasma_wanted, found, timeout)
        else:
            plasma_values = {}
        for object_id in ids:
            obj = found[object_id]
            if obj.in_plasma:
                value, is_error = plasma_values[object_id]
            else:
                value = serialization.deserialize(obj.data, obj.metadata)
                is_error = obj.is_error
            if raise_errors:
                if is_error:
                    raise value
                out.append(value)
            else:
                out.append((value, is_error))
        return out

    def _fetch_from_owner(self, ref: ObjectRef) -> None:
        object_id = ref.object_id()
        if object_id in self._owner_fetches or self.memory_store.contains(object_id):
            return
        self._owner_fetches.add(object_id)
        rpc.spawn(self._fetch_from_owner_async(object_id, ref.owner_address()))

    async def _fetch_from_owner_async(self, object_id: ObjectID, owner: bytes,
                                      copy_lost: bool = False) -> None:
        try:
            if not owner:
                raise exceptions.OwnerDiedError(object_id.hex(), message=(
                    f"Object {object_id.hex()} has no known owner in this process."))
            address = self._owner_pb(owner)
            stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub,
                            f"{address.ip_address}:{address.port}")
            reply = await stub.GetObjectStatus(core_worker_pb2.GetObjectStatusRequest(
                owner_worker_id=address.worker_id, object_id=object_id.binary(),
                copy_lost=copy_lost), timeout=None)
            if reply.status != core_worker_pb2.GetObjectStatusReply.CREATED:
                raise exceptions.ObjectLostError(object_id.hex(), message=(
                    f"Object {object_id.hex()} was already freed by its owner "
                    f"(worker {address.worker_id.hex()[:16]}): nothing held a ref to it."))
            if reply.node_ids:
                obj = StoredObject.plasma_marker(reply.node_ids[0], reply.object_size)
                self.lifetime.fetched_owner[object_id] = owner
            else:
                obj = StoredObject(reply.object.data, reply.object.metadata)
        except Exception as e:
            error = e if isinstance(e, exceptions.RayError) else exceptions.OwnerDiedError(
                object_id.hex(), message=f"Object {object_id.hex()} is lost: its owner could not be "
                f"reached ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).")
            obj = StoredObject.error(error)
        finally:
            self._owner_fetches.discard(object_id)
        self.memory_store.put(object_id, obj)

    def wait(self, refs: List[ObjectRef], num_returns: int, timeout: Optional[float],
             fetch_local: bool):
        ready, not_ready = _object_ref.split_ready(refs, self.memory_store._objects,
                                                   num_returns)
        if len(ready) >= num_returns or timeout == 0:
            return ready, not_ready
        got = self._wait_for(refs, num_returns, timeout, for_get=False)
        return _object_ref.split_ready(refs, got, num_returns)

    def get_future(self, ref: ObjectRef) -> concurrent.futures.Future:
        future = concurrent.futures.Future()
        object_id = ref.object_id()
        if not self.reference_counter.is_owned(object_id) and \
                not self.task_manager.is_pending(object_id.task_id()):
            self._fetch_from_owner(ref)

        def done(_obj):
            # Reading the value may touch plasma; keep that off the io loop.
            background_pool().submit(self._complete_future, future, ref)

        self.memory_store.add_callback(object_id, done)
        return future

    def _complete_future(self, future, ref) -> None:
        try:
            future.set_result(self.get_objects([ref])[0])
        except BaseException as e:
            future.set_exception(e)

    # ---- freeing ----------------------------------------------------------------------
    def _on_ref_zero(self, object_id: ObjectID, owned: bool) -> None:
        if owned:
            self.lifetime.on_owned_freed(object_id)
        obj = self.memory_store.get_if_exists(object_id)
        if obj is None:
            return
        if not owned and self.task_manager.is_pending(object_id.task_id()):
            return
        self.memory_store.delete((object_id,))
        if not owned and self.lifetime.fetched_owner:
            self.lifetime.fetched_owner.pop(object_id, None)
        if owned and obj.in_plasma:
            self.plasma_objects.queue_free(object_id.binary(), obj.plasma_node)
            for node_id in self.lifetime.pop_copies(object_id):
                if node_id != obj.plasma_node:
                    self.plasma_objects.queue_free(object_id.binary(), node_id)

    def _on_borrow_released(self, object_id: ObjectID, owner: bytes, n: int) -> None:
        self.lifetime.queue_ref_update(owner, object_id, False, n)

    def _lost_value(self, object_id: ObjectID, obj: StoredObject, why: str,
                    timeout: Optional[float]):
        """(value, is_error) for a plasma object no node could provide: rebuilt by
        re-running its task when this process owns it and may, else the error; a rebuild
        is waited for within the get's `timeout`."""
        node_id = obj.plasma_node or self.node_id
        if self.reference_counter.is_owned(object_id) and \
                not self.lifetime.node_alive(node_id):
            error = self.lifetime.recover(object_id, node_id, f"node {node_id.hex()[:12]} "
                                          f"died; {why}")
            if error is None:
                return self._read_again(object_id, self.address_bytes, timeout)
        else:
            owner = self.lifetime.fetched_owner.get(object_id)
            if owner is not None and not borrow_capture.asked_owner:
                # Borrowed: its owner may rebuild it (lineage); ask once, then read again.
                borrow_capture.asked_owner = True
                try:
                    self.memory_store.delete((object_id,))
                    self._owner_fetches.add(object_id)
                    rpc.spawn(self._fetch_from_owner_async(object_id, owner, copy_lost=True))
                    return self._read_again(object_id, owner, timeout)
                finally:
                    borrow_capture.asked_owner = False
            error = exceptions.ObjectLostError(object_id.hex(), message=(
                f"Object {object_id.hex()} is lost: it is not in the object store of node "
                f"{self.node_id.hex()[:12]} and could not be fetched from node "
                f"{node_id.hex()[:12]}: {why}"))
        self.memory_store.put(object_id, StoredObject.error(error))
        return error, True

    def _read_again(self, object_id: ObjectID, owner: bytes, timeout: Optional[float]):
        """(value, is_error) of an object being rebuilt, waited for as a get waits (a
        blocked worker gives its CPU back meanwhile, which the rebuilding task may need)."""
        got = self._wait_for([ObjectRef(object_id, owner)], 1, timeout, for_get=True)
        return self._values([object_id], got, False, timeout)[0]

    def _on_plasma_return(self, object_id: ObjectID, node_id: bytes, keep: bool) -> None:
        if not keep:
            self.plasma_objects.queue_free(object_id.binary(), node_id)

    # ---- worker main loop ---------------------------------------------------------------
    def run_task_loop(self) -> None:
        """Receive pushed tasks, execute them in order, reply (worker main thread)."""
        server = self.task_server
        execute = self.executor.execute
        ready = collections.deque()
        pending: Dict[object, list] = {}
        flush_s = config.task_reply_flush_ms / 1000.0
        poll_s = config.worker_poll_timeout_s
        monotonic = time.monotonic
        while not self._exit:
            if self.actor_runtime is not None and self.actor_runtime.concurrent:
                self.actor_runtime.serve(server)    # threaded/async actor: calls overlap
                return
            ready.extend(server.poll(0 if ready else poll_s))
            first_at = None
            while ready and not self._exit:
                conn, request = ready.popleft()
                try:
                    reply = execute(request)
                except exceptions.TaskCancelledError:
                    # A cancel that raced the task's end landed after it returned.
                    reply = core_worker_pb2.PushTaskReply(task_id=request.task_spec.task_id,
                                                          was_cancelled=True)
                replies = pending.get(conn)
                if replies is None:
                    replies = pending[conn] = []
                replies.append(reply)
                if first_at is None:
                    first_at = monotonic()
                if not ready:
                    ready.extend(server.poll(0))
                if self.executor.exiting:
                    ready.clear()       # its owner re-queues these elsewhere
                    self._exit = True
                if not ready or monotonic() - first_at >= flush_s:
                    for c, batch in pending.items():
                        server.send_replies(c, batch)
                    pending.clear()
                    first_at = None
            for c, batch in pending.items():
                server.send_replies(c, batch)
            pending.clear()

    def what_it_owns(self) -> str:
        """What would be lost if this worker exited now ("" if nothing): objects in
        scope, actors it created that live, tasks it still waits for."""
        rc = self.reference_counter
        rc.flush()
        parts = []
        if rc.num_owned():
            parts.append(f"{rc.num_owned()} object(s) in scope")
        actors = self.actor_submitter.num_owned_alive()
        if actors:
            parts.append(f"{actors} actor(s)")
        pending = len(self.task_manager.pending_tasks())
        if pending:
            parts.append(f"{pending} pending task(s)")
        return ", ".join(parts)

    def request_exit(self) -> None:
        self._exit = True
        if self.task_server is not None:
            self.task_server.wake()

    def interrupt_task(self, task_id: bytes) -> bool:
        """Raise TaskCancelledError in the main thread if it still runs this task.

        A real SIGINT (not an asynchronous exception) so that a task blocked in a system
        call (sleep, select, a lock) wakes up too; the handler raises only if the task
        it was meant for is still the one running, so a cancel that races the task's
        end is dropped.
        """
        if self.executor is None or self.executor.current_task_id != task_id:
            return False
        self.executor.cancel_requested = self.executor.cancelled_running = task_id
        os.kill(os.getpid(), signal.SIGINT)
        return True

    def install_cancel_handler(self) -> None:
        """Worker main thread: SIGINT means "cancel the running task" (interrupt_task)."""
        executor = self.executor

        def on_sigint(signum, frame):
            requested, executor.cancel_requested = executor.cancel_requested, None
            if requested is not None and requested == executor.current_task_id:
                raise exceptions.TaskCancelledError(requested.hex())

        signal.signal(signal.SIGINT, on_sigint)
