"""The actor a worker hosts: its instance, and how its calls run.

The GCS pushes the creation task over gRPC (CoreWorkerService.PushTask); it joins the
worker's task loop through TaskServer.inject, so the constructor runs on the main
thread like any task, and `install` keeps the instance. Calls then arrive on the framed
task socket straight from callers, each caller's in its submission order (one ordered
connection per caller, which sends in sequence-number order, also after reconnects):
- a plain actor (max_concurrency 1, no async methods) runs them on the main thread in
  the ordinary task loop, one at a time in arrival order;
- a threaded actor (max_concurrency > 1) runs them on a pool of that many threads;
- an async actor (any `async def` method) runs them as tasks on one asyncio loop in its
  own thread, at most max_concurrency (default 1000) at once; its plain methods run on
  that loop too (as in Ray, a plain method blocks the loop while it runs).
"""
import asyncio
import concurrent.futures
import functools
import inspect
import logging
import os
import threading

from ray_common import rpc
from ray_common.config import config
from ray_common.ids import ActorID
from ray_common.protocol import core_worker_pb2

from ray_core._private.actor_call_order import ActorCallOrder
from ray_core._private.core_worker import CALL_SPEC
from ray_core._private.task_executor import _ArgError
from ray_core._private.task_log import task_log

logger = logging.getLogger(__name__)
_TERMINATE = "__ray_terminate__"     # every actor's graceful end, as in Ray


async def push_creation_task(core, request) -> core_worker_pb2.PushTaskReply:
    """Run the creation task in the worker's task loop; answer with its reply (io loop)."""
    if core.task_server is None:
        raise RuntimeError("a driver cannot host an actor")
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def on_reply(reply):
        loop.call_soon_threadsafe(lambda: future.done() or future.set_result(reply))

    actor_id = ActorID(request.task_spec.actor_creation_task_spec.actor_id)
    logger.info("Creating actor %s (%s), task %s", actor_id.hex(),
                request.task_spec.function_descriptor.class_name,
                request.task_spec.task_id.hex())
    core.task_server.inject(request, on_reply)
    return await future


def install(core, spec, instance) -> None:
    """The constructor returned: this worker now hosts `instance` (main thread).

    The worker is the actor's alone from now on, so what the creation task set up --
    its runtime_env env vars, CUDA_VISIBLE_DEVICES of its GPUs, its assigned resources --
    stays for every call (the task loop would undo them after the constructor)."""
    runtime = core.actor_runtime = ActorRuntime(core, spec, instance)
    runtime.resources = core._ctx.resources
    server = core.task_server
    server.call_order = ActorCallOrder(server.send_replies)
    core._saved_env = None
    return None


def is_async_class(cls) -> bool:
    return any(inspect.iscoroutinefunction(getattr(cls, name, None)) or
               inspect.isasyncgenfunction(getattr(cls, name, None))
               for name in dir(cls) if not name.startswith("__"))


class ActorRuntime:
    def __init__(self, core, spec, instance):
        creation = spec.actor_creation_task_spec
        self.core = core
        self.actor_id = ActorID(creation.actor_id)
        self.class_name = spec.function_descriptor.class_name
        self.name = creation.name
        self.num_restarts = spec.attempt_number     # the GCS counts incarnations there
        self._handle_blob = creation.serialized_actor_handle
        self.instance = instance
        self.is_asyncio = creation.is_asyncio
        self.max_concurrency = creation.max_concurrency or (
            config.async_actor_max_concurrency if self.is_asyncio else 1)
        # Group name -> its limit; "" is the default group (max_concurrency).
        self.groups = {"": self.max_concurrency, **dict(creation.concurrency_groups)}
        self.concurrent = self.is_asyncio or self.max_concurrency > 1 or len(self.groups) > 1
        self._methods = {}
        self.resources = {}
        self.placement = spec.scheduling_strategy   # its placement group, if any, is ours
        self.runtime_env = spec.runtime_env         # its calls' tasks inherit it
        self._loop = None                # an async actor's event loop
        self._async_calls = {}           # task id -> asyncio task of a running async call
        # A threaded actor's running calls (task ids), so __ray_terminate__ ends the actor
        # only after the calls that came before it, as in a plain actor.
        self._threaded_calls = set()
        self._threaded_done = threading.Condition()
        os.environ["RAY_CORE_ACTOR_ID"] = self.actor_id.hex()
        logger.info("Actor %s (%s) created in worker %s (pid %d)%s", self.actor_id.hex(),
                    self.class_name, core.worker_id.hex(), os.getpid(),
                    " [async]" if self.is_asyncio else
                    f" [threaded, max_concurrency={self.max_concurrency}]"
                    if self.concurrent else "")

    def handle(self):
        """A handle of this actor (get_runtime_context().current_actor), made by what the
        worker's entry point handed the CoreWorker (the public actor module's maker)."""
        return self.core.make_actor_handle(self.actor_id.binary(), self.class_name,
                                           self._handle_blob)

    def method(self, name: str):
        fn = self._methods.get(name)
        if fn is None:
            if name == _TERMINATE:
                return self._terminate
            if name == "__ray_ready__":         # Ray's: callers wait on it for creation
                return _ready
            if name == "__ray_call__":          # Ray's: run fn(actor, ...) in the actor
                return functools.partial(_call, self.instance)
            try:
                fn = getattr(self.instance, name)
            except AttributeError:
                raise AttributeError(f"actor class {self.class_name} has no method "
                                     f"{name!r}") from None
            self._methods[name] = fn
        return fn

    def _terminate(self, reason: str = "") -> None:
        """__ray_terminate__: end after the calls before it. The owner sends it with a
        reason once every handle is gone; a user's call ends as exit_actor() does."""
        if not reason:
            exit_actor("__ray_terminate__() was called")
        logger.info("Actor %s: %s; exiting", self.actor_id.hex(), reason)
        try:
            rpc.run_sync(self.core.gcs.kill_actor(
                self.actor_id.binary(), force_kill=False, no_restart=True, reason=reason),
                timeout=config.rpc_default_deadline_s)
        except Exception as e:
            logger.info("Telling the GCS about the actor's end failed: %s", e)
            self.core.request_exit()

    def cancel(self, task_id: bytes) -> bool:
        """ray_core.cancel() of a call pushed here (io loop); True if it is running.

        As in Ray, an actor's call is never interrupted: an async call's asyncio task is
        cancelled (CancelledError at its next await, which it may catch to clean up), a
        plain or threaded call runs on with is_canceled() True; either way its caller
        gets TaskCancelledError. A call that has not started is skipped when it comes."""
        executor = self.core.executor
        # Marked first, looked up second, while an async call registers first and checks
        # the mark second: whatever the interleaving, one of them sees the other.
        executor.cancelled.add(task_id)
        call = self._async_calls.get(task_id)
        if call is not None:
            self._loop.call_soon_threadsafe(call.cancel)
            return True
        return executor.current_task_id == task_id

    # ---- threaded and async actors ------------------------------------------------
    def serve(self, server) -> None:
        """The worker's main loop once it hosts a concurrent actor."""
        core = self.core
        poll_s = config.worker_poll_timeout_s
        if self.is_asyncio:
            loop = self._loop = asyncio.new_event_loop()
            semaphores = {}

            def run_loop():
                asyncio.set_event_loop(loop)
                semaphores.update((group, asyncio.Semaphore(limit))
                                  for group, limit in self.groups.items())
                loop.run_forever()

            thread = threading.Thread(target=run_loop, name="ray_core_actor_loop", daemon=True)
            thread.start()
            while not semaphores:
                threading.Event().wait(0.001)
            try:
                while not core._exit:
                    for conn, request in server.poll(poll_s):
                        semaphore = self._group_of(server, conn, request, semaphores)
                        if semaphore is not None:
                            self._start_async(server, loop, semaphore, conn, request)
            finally:
                loop.call_soon_threadsafe(loop.stop)
            return
        pools = {group: concurrent.futures.ThreadPoolExecutor(
                     limit, thread_name_prefix=f"ray_core_actor{'_' + group if group else ''}")
                 for group, limit in self.groups.items()}
        try:
            while not core._exit:
                for conn, request in server.poll(poll_s):
                    pool = self._group_of(server, conn, request, pools)
                    if pool is not None:
                        pool.submit(self._run_threaded, server, conn, request)
        finally:
            for pool in pools.values():
                pool.shutdown(wait=False)

    def _group_of(self, server, conn, request, runners):
        """The pool or semaphore of the call's concurrency group; None (after an error
        reply) for a group the actor does not have."""
        group = request.task_spec.actor_task_spec.concurrency_group_name
        runner = runners.get(group)
        if runner is None:
            self._send(server, conn, self._error(request.task_spec, ValueError(
                f"the actor {self.class_name} has no concurrency group {group!r} (its "
                f"groups: {sorted(g for g in self.groups if g)})")))
        return runner

    def _send(self, server, conn, reply) -> None:
        server.send_replies(conn, [reply])

    def _run_threaded(self, server, conn, request) -> None:
        spec = request.task_spec
        token = CALL_SPEC.set(spec)
        running, done = self._threaded_calls, self._threaded_done
        try:
            with done:
                if spec.function_descriptor.function_name == _TERMINATE:
                    # The pool starts calls in order: the calls before this one have
                    # started; wait for them to end.
                    before = set(running)
                    done.wait_for(lambda: not (before & running))
                running.add(spec.task_id)
            reply = self.core.executor.execute(request)
        except BaseException as e:  # never lose a reply: the caller would wait forever
            logger.exception("Actor task %s failed in the executor",
                             request.task_spec.task_id.hex())
            reply = self._error(request.task_spec, e)
        finally:
            with done:
                running.discard(spec.task_id)
                done.notify_all()
            CALL_SPEC.reset(token)
        self._send(server, conn, reply)

    def _error(self, spec, error, skip=0) -> core_worker_pb2.PushTaskReply:
        executor = self.core.executor
        reply = core_worker_pb2.PushTaskReply(task_id=spec.task_id)
        executor._error_reply(reply, spec, executor._task_error(spec, error, skip=skip))
        reply.is_application_error = True
        return reply

    def _cancelled(self, spec) -> core_worker_pb2.PushTaskReply:
        """A call cancelled once it ran: get() raises, as in Ray, a RayTaskError that is
        also a TaskCancelledError (one cancelled before it ran raises the plain one)."""
        from ray_core import exceptions
        if spec.streaming_generator:    # its stream ends as cancelled
            return core_worker_pb2.PushTaskReply(task_id=spec.task_id, was_cancelled=True)
        reply = self._error(spec, exceptions.TaskCancelledError(spec.task_id.hex()))
        reply.was_cancelled = True
        return reply

    def _start_async(self, server, loop, semaphore, conn, request) -> None:
        """Load the arguments here (main thread), then run the call on the actor's loop."""
        spec = request.task_spec
        executor = self.core.executor
        if task_log.enabled:
            task_log.line(f"Received actor task {spec.function_descriptor.function_name}, "
                          f"task_id={spec.task_id.hex()}, actor_id={self.actor_id.hex()}")
        try:
            fn = self.method(spec.function_descriptor.function_name)
            args, kwargs = executor._load_args(spec)
        except _ArgError as e:
            reply = core_worker_pb2.PushTaskReply(task_id=spec.task_id)
            executor._error_reply(reply, spec, e.error)
        except Exception as e:
            reply = self._error(spec, e)
        else:
            reply = None
        if reply is not None:
            executor.record_end(spec, reply)
            self._send(server, conn, reply)
            return
        calls = self._async_calls

        async def run():
            CALL_SPEC.set(spec)      # this asyncio task's own context
            task_id = spec.task_id
            before = list(calls.values())     # calls run in order of arrival: these came first
            calls[task_id] = asyncio.current_task()
            try:
                if task_id in executor.cancelled:
                    raise asyncio.CancelledError()
                if spec.function_descriptor.function_name == _TERMINATE and before:
                    # End the actor after the calls before this one, as a plain actor does.
                    await asyncio.wait(before)
                reply = await self._run_async(spec, fn, args, kwargs, semaphore)
            except asyncio.CancelledError:     # cancelled before the method ran
                reply = core_worker_pb2.PushTaskReply(task_id=task_id, was_cancelled=True)
            finally:
                calls.pop(task_id, None)
                executor.cancelled.discard(task_id)
            executor.record_end(spec, reply)
            self._send(server, conn, reply)

        asyncio.run_coroutine_threadsafe(run(), loop)


    async def _run_async(self, spec, fn, args, kwargs, semaphore):
        executor = self.core.executor
        async with semaphore:
            reply = core_worker_pb2.PushTaskReply(task_id=spec.task_id)
            executor.record_running(spec)
            try:
                result = fn(*args, **kwargs)
                if spec.streaming_generator:
                    result = await executor.stream_async(spec, result)
                elif inspect.isawaitable(result):
                    result = await result
            except asyncio.CancelledError:
                return self._cancelled(spec)
            except Exception as e:
                return self._error(spec, e, skip=1)
            if spec.task_id in executor.cancelled:
                # The method caught the CancelledError and returned: as in Ray (whose
                # cancel() cancels the future the caller waits on), the call is cancelled.
                return self._cancelled(spec)
            try:
                executor._returns(reply, spec, result)
            except Exception as e:
                reply = self._error(spec, e)
            return reply


def _ready() -> bool:
    return True


def _call(instance, fn, *args, **kwargs):
    return fn(instance, *args, **kwargs)


def exit_actor(_why: str = "it called exit_actor()") -> None:
    """End the actor this runs in, for good: later calls raise ActorDiedError.

    The GCS marks the actor DEAD first, then asks this worker to exit after the current
    call; this call itself ends with the ActorDiedError it raises, and the replies of the
    calls before it still go out."""
    from ray_core import exceptions
    from ray_core._private import worker
    core = worker.current_core_worker()
    runtime = getattr(core, "actor_runtime", None)
    if runtime is None:
        raise TypeError("exit_actor() can only be called inside an actor method")
    logger.info("Actor %s is exiting: %s", runtime.actor_id.hex(), _why)
    try:
        rpc.run_sync(core.gcs.kill_actor(runtime.actor_id.binary(), force_kill=False,
                                         no_restart=True, reason=_why),
                     timeout=config.rpc_default_deadline_s)
    except Exception as e:
        logger.info("Telling the GCS about exit_actor() failed: %s", e)
    core.request_exit()
    death = exceptions.ActorDiedError(
        f"The actor {runtime.class_name} (actor_id={runtime.actor_id.hex()}) is dead: "
        f"{_why}.", actor_id=runtime.actor_id.hex())
    # Its caller gets the death itself, not a RayTaskError around it (as in Ray, where
    # the worker exits under the call).
    death.ends_the_actor = True
    raise death
