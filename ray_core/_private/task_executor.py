"""Step 7 of a task's life, on the worker: run a pushed task and build its reply.

The executor runs on the worker's main thread, fed by TaskServer.poll(): arguments
inlined in the spec are deserialized in place, ref arguments are read from plasma
(zero-copy) or fetched through their owner; the function runs; each return value comes
back inline when small, or is sealed in this node's plasma store and pinned by the
raylet on behalf of its owner when large. An exception becomes a RayTaskError carrying
the remote traceback, the function name, the pid and the node.
"""
import inspect
import logging
import os

from ray_common.config import config
from ray_common.ids import ObjectID, TaskID
from ray_common.protocol import common_pb2, core_worker_pb2

from ray_core import exceptions
from ray_core._private import generator_streams, serialization
from ray_core._private.serialization import META_ERROR
from ray_core._private.task_event_buffer import FINISHED, RUNNING, error_type_of
from ray_core._private.task_log import task_log

logger = logging.getLogger(__name__)
_KINDS = {common_pb2.NORMAL_TASK: "task", common_pb2.ACTOR_CREATION_TASK: "actor creation task",
          common_pb2.ACTOR_TASK: "actor task"}


class _ArgError(Exception):
    """An argument is itself an error (its upstream task failed): the task fails with it."""

    def __init__(self, error):
        self.error = error


def _not_a_generator(spec, value) -> TypeError:
    return TypeError(f"{spec.function_descriptor.function_name} runs with "
                     f"num_returns='streaming' but returned a {type(value).__name__}, not a "
                     f"generator: use yield (or another num_returns)")


async def _iterate_async(items):
    for value in items:
        yield value


class TaskExecutor:
    def __init__(self, core_worker):
        self._core = core_worker
        self._inline_limit = config.max_direct_call_object_size
        self.cancelled = set()          # task ids cancelled before they started
        self.current_task_id = None     # bytes, while a task runs
        self.cancel_requested = None    # task id a SIGINT is on its way to cancel
        self.cancelled_running = None   # the running task's id once cancel() reached it
        self.exiting = False            # a max_calls limit was reached: exit after replying
        self._calls = {}                # function hash -> tasks run (for max_calls)
        self._records = {}              # task id -> its task event record, while it runs

    def execute(self, request) -> core_worker_pb2.PushTaskReply:
        spec = request.task_spec
        reply = core_worker_pb2.PushTaskReply(task_id=spec.task_id)
        task_id = TaskID(spec.task_id)
        fd = spec.function_descriptor
        if task_log.enabled:
            # The task id holds its job id (and an actor task's, its actor id): not repeated.
            task_log.line(f"Received {_KINDS.get(spec.type, 'task')} {task_id.hex()} "
                          f"{fd.module_name}.{fd.class_name + '.' if fd.class_name else ''}"
                          f"{fd.function_name}")
        if spec.task_id in self.cancelled:
            self.cancelled.discard(spec.task_id)
            reply.was_cancelled = True
            return reply
        if spec.max_calls > 0:
            calls = self._calls.get(fd.function_hash, 0) + 1
            self._calls[fd.function_hash] = calls
            if calls >= spec.max_calls:
                # This worker retires after this task (max_calls): the owner re-queues
                # anything else it pushed here.
                reply.worker_exiting = True
                self.exiting = True
        core = self._core
        core.enter_task(spec, request.resource_mapping)
        self.current_task_id = spec.task_id
        self.record_running(spec)
        try:
            try:
                if spec.type == common_pb2.ACTOR_TASK:
                    fn = core.actor_runtime.method(fd.function_name)
                else:
                    fn = core.function_manager.load(fd.function_hash, fd.function_name)
                capture = core.lifetime.begin_arg_capture()
                try:
                    args, kwargs = self._load_args(spec)
                finally:
                    core.lifetime.end_arg_capture(capture)
            except _ArgError as e:
                self._error_reply(reply, spec, e.error)
                return reply
            except Exception as e:
                self._error_reply(reply, spec, self._task_error(spec, e, skip=0))
                return reply
            try:
                result = fn(*args, **kwargs)
                if inspect.iscoroutine(result):
                    import asyncio
                    result = asyncio.run(result)
                if spec.type == common_pb2.ACTOR_CREATION_TASK:
                    from ray_core._private import actor_runtime
                    result = actor_runtime.install(core, spec, result)
                elif spec.streaming_generator:
                    result = self._stream(spec, result)
            except exceptions.TaskCancelledError as e:
                # Interrupted mid-run: as in Ray, get() raises the error as raised in the
                # task (a RayTaskError that is also a TaskCancelledError).
                reply.was_cancelled = True
                if not spec.streaming_generator:
                    self._error_reply(reply, spec, self._task_error(spec, e, skip=1))
                logger.info("Task %s was cancelled while running: %s", task_id.hex(), e)
                return reply
            except Exception as e:
                self._error_reply(reply, spec, self._task_error(spec, e, skip=1))
                reply.is_application_error = True
                return reply
            if spec.type == common_pb2.ACTOR_TASK and spec.task_id in self.cancelled:
                # A plain or threaded actor call runs on when cancelled (it may watch
                # is_canceled()); as in Ray, its caller gets TaskCancelledError, not the value.
                reply.was_cancelled = True
                logger.info("Actor task %s was cancelled while running", task_id.hex())
                return reply
            del args, kwargs
            try:
                self._returns(reply, spec, result)
            except Exception as e:
                del reply.return_objects[:]
                self._error_reply(reply, spec, self._task_error(spec, e, skip=0))
                reply.is_application_error = True
            # Drop the result before exit_task: refs inside it would else look borrowed
            # by this worker past the task (one needless UpdateRefCounts round trip).
            del result
            return reply
        finally:
            self.current_task_id = None
            self.record_end(spec, reply)
            self.cancelled_running = None
            self.cancelled.discard(spec.task_id)
            core.exit_task()

    def was_cancelled(self, task_id: bytes) -> bool:
        return task_id in (self.cancelled_running, self.cancel_requested) or \
            task_id in self.cancelled

    # -- arguments -------------------------------------------------------------------
    def _load_args(self, spec):
        values = []
        by_ref = []
        for i, arg in enumerate(spec.args):
            if arg.is_inlined:
                value = serialization.deserialize(arg.inlined.data, arg.inlined.metadata)
                if arg.inlined.metadata == META_ERROR:
                    raise _ArgError(value)
                values.append(value)
            else:
                values.append(None)
                by_ref.append(i)
        if by_ref:
            refs = [self._core.ref_from_reference(spec.args[i].object_ref) for i in by_ref]
            try:
                fetched = self._core.get_objects(refs, timeout=None, raise_errors=False)
            except exceptions.RayError as e:
                raise _ArgError(e)
            for i, (value, is_error) in zip(by_ref, fetched):
                if is_error:
                    raise _ArgError(value)
                values[i] = value
        n_kw = len(spec.kwarg_names)
        if n_kw:
            return values[:-n_kw], dict(zip(spec.kwarg_names, values[-n_kw:]))
        return values, {}

    # -- returns ---------------------------------------------------------------------
    def _returns(self, reply, spec, result) -> None:
        n = spec.num_returns
        if n == 0:
            return
        if inspect.isgenerator(result):     # its n values, as in Ray (n == 1 included)
            self._generator_returns(reply, spec, result)
            return
        if n == 1:
            values = (result,)
        else:
            try:
                values = tuple(result)
            except TypeError:
                raise ValueError(f"task {spec.function_descriptor.function_name} declares "
                                 f"num_returns={n} but returned a {type(result).__name__}, "
                                 f"not a sequence of {n} values") from None
            if len(values) != n:
                raise ValueError(f"task {spec.function_descriptor.function_name} declares "
                                 f"num_returns={n} but returned {len(values)} values")
        task_id = TaskID(spec.task_id)
        for index, value in enumerate(values, start=1):
            self._fill_return(reply.return_objects.add(), spec,
                              ObjectID.from_index(task_id, index), value)

    def _generator_returns(self, reply, spec, items) -> None:
        """A generator with num_returns=n: as in Ray, the values it yielded before raising
        stay readable, and the returns it did not reach hold the error (all of them when
        it yields more than n)."""
        n, task_id = spec.num_returns, TaskID(spec.task_id)
        made = 0
        try:
            for value in items:
                if made == n:       # too many: no return holds a value then
                    del reply.return_objects[:]
                    made = 0
                    raise ValueError(f"task {spec.function_descriptor.function_name} declares "
                                     f"num_returns={n} but yielded more values")
                made += 1
                self._fill_return(reply.return_objects.add(), spec,
                                  ObjectID.from_index(task_id, made), value)
        except Exception as e:
            self._error_reply(reply, spec, self._task_error(spec, e, skip=1), first=made + 1)
            reply.is_application_error = True
            return
        if made < n:
            raise ValueError(f"task {spec.function_descriptor.function_name} declares "
                             f"num_returns={n} but yielded {made} values")

    def _fill_return(self, ret, spec, object_id: ObjectID, value) -> None:
        """One value for the caller: inline when small, else sealed in plasma here."""
        ser = serialization.serialize(value)
        ret.object_id = object_id.binary()
        ret.size = ser.total_size
        if ser.nested_refs:
            # The caller will hold these inside the return: register it as their
            # borrower before the reply leaves (this process may drop them next).
            self._core.lifetime.register_for_caller(ser.nested_refs, spec.caller_address)
            for ref in ser.nested_refs:
                nested = ret.object.nested_refs.add()
                nested.object_id = ref.binary()
                nested.owner_address.MergeFromString(ref.owner_address())
        if ser.total_size <= self._inline_limit:
            ret.object.data = ser.to_bytes()
            ret.object.metadata = ser.metadata
        else:
            self._core.put_return_in_plasma(object_id, ser, spec.caller_address)
            ret.in_plasma = True
            ret.plasma_node_id = self._core.node_id

    def _stream(self, spec, items) -> int:
        """Report each value a streaming generator task yields; its return is the count."""
        if inspect.isasyncgen(items):
            import asyncio
            return asyncio.run(self.stream_async(spec, items))
        if not inspect.isgenerator(items):
            raise _not_a_generator(spec, items)
        count = 0
        for value in items:
            self._core.report_generator_item(spec, count, self._item(spec, count, value))
            count += 1
        return count

    async def stream_async(self, spec, items) -> int:
        """_stream for an async generator (or a plain one), on the caller's event loop."""
        if inspect.isgenerator(items):
            items = _iterate_async(items)
        elif not inspect.isasyncgen(items):
            raise _not_a_generator(spec, items)
        count = 0
        async for value in items:
            await self._core.report_generator_item_async(spec, count,
                                                         self._item(spec, count, value))
            count += 1
        return count

    def _item(self, spec, index: int, value) -> core_worker_pb2.ReturnObject:
        object_id = generator_streams.item_id(TaskID(spec.task_id), index)
        item = core_worker_pb2.ReturnObject()
        self._fill_return(item, spec, object_id, value)
        if task_log.enabled:
            task_log.line(f"Reporting generator item {index} of task {spec.task_id.hex()}, "
                          f"object {object_id.hex()}")
        return item

    def _task_error(self, spec, error: BaseException, skip: int) -> exceptions.RayError:
        """The error get() raises for `error` raised in the task: a RayTaskError around
        it, except for an exit_actor() death, which is sent as it is."""
        if isinstance(error, exceptions.RayTaskError) or getattr(error, "ends_the_actor", False):
            return error
        tb = exceptions.format_remote_traceback(error, skip_frames=skip)
        return exceptions.RayTaskError(spec.function_descriptor.function_name, tb, error,
                                       pid=os.getpid(), ip=self._core.node_ip,
                                       node_id=self._core.node_id.hex(),
                                       task_id=spec.task_id.hex())

    def _error_reply(self, reply, spec, error: BaseException, first: int = 1) -> None:
        """The error as every return of the task from index `first` on."""
        payload = serialization.serialize_error(error).to_bytes()
        task_id = TaskID(spec.task_id)
        for index in range(first, max(spec.num_returns, 0) + 1):
            ret = reply.return_objects.add()
            ret.object_id = ObjectID.from_index(task_id, index).binary()
            ret.object.data = payload
            ret.object.metadata = META_ERROR
            ret.size = len(payload)
        logger.info("Task %s failed: %s", task_id.hex(), type(error).__name__)
        events = self._core.task_events
        if events.enabled:
            record = self._records.get(spec.task_id)
            if record is None:      # it failed before it ran (a record of its own)
                record = events.new_record(spec.task_id, spec.attempt_number, 0,
                                           executed=True)
            events.fail(record, error_type_of(error), str(error))

    def record_running(self, spec) -> None:
        """A task event: this worker runs the task now (an actor's creation task with
        what it is: the GCS, not a process with task events, submits it)."""
        events = self._core.task_events
        if events.enabled:
            if spec.type == common_pb2.ACTOR_CREATION_TASK:
                record = events.new_record(spec.task_id, spec.attempt_number, RUNNING, spec,
                                           spec.parent_task_id, True)
            else:
                record = events.new_record(spec.task_id, spec.attempt_number, RUNNING,
                                           executed=True)
            self._records[spec.task_id] = record

    def record_end(self, spec, reply) -> None:
        """A task event: the task ended here, FINISHED unless _error_reply said FAILED (a
        cancelled task is the owner's to report)."""
        record = self._records.pop(spec.task_id, None)
        if record is not None and not reply.was_cancelled:
            self._core.task_events.end(record, FINISHED)
