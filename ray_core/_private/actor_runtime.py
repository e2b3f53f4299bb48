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
import inspect
import logging
import os
import threading

from ray_common import rpc
from ray_common.config import config
from ray_common.ids import ActorID
from ray_common.protocol import core_worker_pb2

from ray_core._private.actor_call_order import ActorCallOrder
from ray_core._private.task_executor import _ArgError
from ray_core._private.task_log import task_log

logger = logging.getLogger(__name__)


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
        self.concurrent = self.is_asyncio or self.max_concurrency > 1
        self._methods = {}
        self.resources = {}
        self.placement = spec.scheduling_strategy   # its placement group, if any, is ours
        os.environ["RAY_CORE_ACTOR_ID"] = self.actor_id.hex()
        logger.info("Actor %s (%s) created in worker %s (pid %d)%s", self.actor_id.hex(),
                    self.class_name, core.worker_id.hex(), os.getpid(),
                    " [async]" if self.is_asyncio else
                    f" [threaded, max_concurrency={self.max_concurrency}]"
                    if self.concurrent else "")

    def handle(self):
        from ray_core.actor import handle_from_blob
        return handle_from_blob(self.actor_id.binary(), self.class_name, self._handle_blob)

    def method(self, name: str):
        fn = self._methods.get(name)
        if fn is None:
            if name == "__ray_terminate__":
                return self._terminate
            try:
                fn = getattr(self.instance, name)
            except AttributeError:
                raise AttributeError(f"actor class {self.class_name} has no method "
                                     f"{name!r}") from None
            self._methods[name] = fn
        return fn

    def _terminate(self) -> None:
        """Every handle of the actor is gone (its owner says): end after the calls before."""
        logger.info("Actor %s: all its handles went out of scope; exiting",
                    self.actor_id.hex())
        try:
            rpc.run_sync(self.core.gcs.kill_actor(
                self.actor_id.binary(), force_kill=False, no_restart=True,
                reason="all its handles went out of scope"),
                timeout=config.rpc_default_deadline_s)
        except Exception as e:
            logger.info("Telling the GCS about the actor's end failed: %s", e)
            self.core.request_exit()

    # ---- threaded and async actors ------------------------------------------------
    def serve(self, server) -> None:
        """The worker's main loop once it hosts a concurrent actor."""
        core = self.core
        poll_s = config.worker_poll_timeout_s
        if self.is_asyncio:
            loop = asyncio.new_event_loop()
            semaphore_box = []

            def run_loop():
                asyncio.set_event_loop(loop)
                semaphore_box.append(asyncio.Semaphore(self.max_concurrency))
                loop.run_forever()

            thread = threading.Thread(target=run_loop, name="ray_core_actor_loop", daemon=True)
            thread.start()
            while not semaphore_box:
                threading.Event().wait(0.001)
            semaphore = semaphore_box[0]
            try:
                while not core._exit:
                    for conn, request in server.poll(poll_s):
                        self._start_async(server, loop, semaphore, conn, request)
            finally:
                loop.call_soon_threadsafe(loop.stop)
            return
        pool = concurrent.futures.ThreadPoolExecutor(self.max_concurrency,
                                                     thread_name_prefix="ray_core_actor")
        try:
            while not core._exit:
                for conn, request in server.poll(poll_s):
                    pool.submit(self._run_threaded, server, conn, request)
        finally:
            pool.shutdown(wait=False)

    def _send(self, server, conn, reply) -> None:
        server.send_replies(conn, [reply])

    def _run_threaded(self, server, conn, request) -> None:
        try:
            reply = self.core.executor.execute(request)
        except BaseException as e:  # never lose a reply: the caller would wait forever
            logger.exception("Actor task %s failed in the executor",
                             request.task_spec.task_id.hex())
            reply = self._error(request.task_spec, e)
        self._send(server, conn, reply)

    def _error(self, spec, error, skip=0) -> core_worker_pb2.PushTaskReply:
        executor = self.core.executor
        reply = core_worker_pb2.PushTaskReply(task_id=spec.task_id)
        executor._error_reply(reply, spec, executor._task_error(spec, error, skip=skip))
        reply.is_application_error = True
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

        async def run():
            async with semaphore:
                reply = core_worker_pb2.PushTaskReply(task_id=spec.task_id)
                executor.record_running(spec)
                try:
                    result = fn(*args, **kwargs)
                    if spec.streaming_generator:
                        result = await executor.stream_async(spec, result)
                    elif inspect.isawaitable(result):
                        result = await result
                except Exception as e:
                    reply = self._error(spec, e, skip=1)
                else:
                    try:
                        executor._returns(reply, spec, result)
                    except Exception as e:
                        reply = self._error(spec, e)
                executor.record_end(spec, reply)
            self._send(server, conn, reply)

        asyncio.run_coroutine_threadsafe(run(), loop)


def exit_actor() -> None:
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
    logger.info("Actor %s called exit_actor(): exiting", runtime.actor_id.hex())
    try:
        rpc.run_sync(core.gcs.kill_actor(runtime.actor_id.binary(), force_kill=False,
                                         no_restart=True,
                                         reason="it called exit_actor()"),
                     timeout=config.rpc_default_deadline_s)
    except Exception as e:
        logger.info("Telling the GCS about exit_actor() failed: %s", e)
    core.request_exit()
    raise exceptions.ActorDiedError(
        f"The actor {runtime.class_name} (actor_id={runtime.actor_id.hex()}) is dead: it "
        f"called exit_actor().", runtime.actor_id.hex())
