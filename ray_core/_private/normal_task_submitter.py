"""Steps 4-6 of a task's life: queue per scheduling key, lease workers, push, pipeline.

Everything here runs on the io loop thread, except `push_now`, the fast path: a task
whose arguments need no waiting, submitted while its key has nothing queued and a
leased worker has room, is written to that worker's socket from the submitting thread,
skipping the hop to the io loop (a thread wake-up each way on the 2-core machine). So
the io loop takes `_lock` wherever it changes what push_now reads: the keys' queues
and workers, a worker's in-flight tasks, its connection and its lease.

A scheduling key is (resource shape, function, scheduling strategy, runtime env): tasks
with the same key can run on each other's workers. Per key:
- a FIFO of tasks whose dependencies are resolved;
- the workers leased for it, each with up to `max_tasks_in_flight_per_worker` tasks
  pushed and not yet replied to (pipelining hides the round trip) -- but only while
  the key's tasks are short (an estimate of their service time, from the replies, under
  pipeline_max_task_ms): a long task pushed behind another would wait there while a
  worker leased a moment later sits idle, so long tasks go one per worker;
- one outstanding lease request at a time (a SPREAD key: up to
  `max_pending_lease_requests_spread`, one per queued task, so workers come up on many
  nodes at once): when the queue still holds tasks that the leased workers cannot take,
  ask the raylet for one more worker.
A worker is kept while its key has work; when it has none, it is returned to the raylet
after `worker_lease_idle_linger_ms` (a tight submit/get loop reuses it instead of paying
a lease round trip per task). A lost connection fails or retries the tasks on it.
"""
import asyncio
import collections
import functools
import logging
import threading
import time
from typing import Callable, Dict, Optional

from ray_common.config import config
from ray_common.ids import UniqueID
from ray_common.protocol import common_pb2, core_worker_pb2, node_manager_pb2

from ray_core import exceptions
from ray_core._private.task_event_buffer import PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER
from ray_core._private.task_manager import PendingTask, TaskManager
from ray_core._private.task_log import task_log
from ray_core._private.task_transport import encode_push

logger = logging.getLogger(__name__)
_GRANTED = node_manager_pb2.RequestWorkerLeaseReply.GRANTED
_SPILLBACK = node_manager_pb2.RequestWorkerLeaseReply.SPILLBACK
_CANCELED = node_manager_pb2.RequestWorkerLeaseReply.CANCELED
_SPREAD = "spread_scheduling_strategy"


class LeasedWorker:
    __slots__ = ("key", "state", "lease_id", "worker_id", "address", "raylet_address", "conn",
                 "inflight", "idle_timer", "resource_mapping", "returned", "pid",
                 "last_reply_at", "last_push_at")

    def __init__(self, key, state, lease_id, address, raylet_address, conn, resource_mapping,
                 pid):
        self.key = key
        self.state = state      # its key's _KeyState, even after the key went idle
        self.lease_id = lease_id
        self.worker_id = address.worker_id
        self.address = address
        self.raylet_address = raylet_address
        self.conn = conn
        self.inflight: Dict[bytes, PendingTask] = {}
        self.idle_timer = None
        self.resource_mapping = resource_mapping
        self.returned = False
        self.pid = pid
        self.last_reply_at = 0.0
        self.last_push_at = 0.0     # a push_now, which arms no idle timer of its own


class _KeyState:
    __slots__ = ("queue", "workers", "leasing", "task_s", "spread")

    def __init__(self, spread: bool = False):
        # SPREAD: one task per worker at a time and several lease requests out, so a
        # backlog gets workers on many nodes (the raylets' round robin), as Ray spreads.
        self.spread = spread
        self.queue = collections.deque()
        self.workers = []
        # Lease requests out: lease id -> the raylet asked (None: this node's).
        self.leasing: Dict[bytes, Optional[str]] = {}
        self.task_s = None      # moving estimate of one task's service time (seconds)


def _lease_refusal(reply, message: str) -> exceptions.RayError:
    """The error a refused lease fails its tasks with."""
    if reply.runtime_env_setup_failed:
        return exceptions.RuntimeEnvSetupError(message)
    if reply.placement_group_removed:
        return exceptions.TaskPlacementGroupRemoved(message)
    return exceptions.RaySystemError(message)


def _locked(method):
    """An io-loop method that changes what push_now reads runs under the lock."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return run


def scheduling_key(spec: common_pb2.TaskSpec):
    return (tuple(sorted(spec.required_resources.items())),
            spec.function_descriptor.function_hash,
            spec.scheduling_strategy.SerializeToString(),
            spec.runtime_env.SerializeToString())


class NormalTaskSubmitter:
    def __init__(self, task_manager: TaskManager, lease_client, connect: Callable,
                 cancel_remote: Callable, job_id: bytes):
        self._task_manager = task_manager
        self._lease_client = lease_client
        self._connect = connect            # async (Address) -> TaskConnection
        self._cancel_remote = cancel_remote  # async (LeasedWorker, task_id, force, recursive)
        self._keys: Dict[tuple, _KeyState] = {}
        self._by_conn: Dict[object, LeasedWorker] = {}
        self._running: Dict[bytes, LeasedWorker] = {}   # task_id -> worker it was pushed to
        self._depth = config.max_tasks_in_flight_per_worker
        self._pipeline_below_s = config.pipeline_max_task_ms / 1000.0
        self._spread_leases = config.max_pending_lease_requests_spread
        self._linger_s = config.worker_lease_idle_linger_ms / 1000.0
        self._closed = False
        self._job_id = job_id
        self._background = set()
        self._lock = threading.RLock()  # re-entered: a completion's callbacks may submit

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- submission ------------------------------------------------------------------
    @_locked
    def submit(self, task: PendingTask) -> None:
        """Queue a task whose dependencies are resolved (io loop)."""
        if self._closed:
            self._task_manager.fail(task, exceptions.RaySystemError(
                "ray_core is shutting down; the task was not run"))
            return
        if task.cancelled:
            self._task_manager.fail_or_retry(task, exceptions.TaskCancelledError(task.task_id.hex()))
            return
        key = task.key
        if key is None:
            key = task.key = scheduling_key(task.spec)
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState(
                task.spec.scheduling_strategy.WhichOneof("strategy") == _SPREAD)
        state.queue.append(task)
        events = self._task_manager.events
        if events is not None and events.enabled:
            events.mark(task, PENDING_NODE_ASSIGNMENT)
        self._dispatch(key, state)

    def push_now(self, task: PendingTask) -> bool:
        """Write a task whose arguments are ready straight to a leased worker with room,
        from the submitting thread; False when it must go through the io loop."""
        if self._closed or task.cancelled:
            return False
        key = task.key = scheduling_key(task.spec)
        with self._lock:
            state = self._keys.get(key)
            if state is None or state.queue or state.spread:
                return False
            depth = self._depth_for(state)
            for worker in state.workers:
                conn = worker.conn
                if not worker.returned and len(worker.inflight) < depth and \
                        conn.can_write_now():
                    break
            else:
                return False
            spec = task.spec
            task_id = spec.task_id
            events = self._task_manager.events
            if events is not None and events.enabled:
                events.mark(task, PENDING_NODE_ASSIGNMENT)
                events.mark(task, SUBMITTED_TO_WORKER)
            if task_log.enabled:
                task_log.line("Pushing normal task " + task.task_id.hex())
            worker.inflight[task_id] = task
            self._running[task_id] = worker
            task.pushed_at = worker.last_push_at = time.monotonic()
            batch = core_worker_pb2.PushTaskBatch()
            batch.requests.add(intended_worker_id=worker.worker_id, task_spec=spec,
                               resource_mapping=worker.resource_mapping)
            conn.write_now(encode_push(batch))
        return True

    def _depth_for(self, state: _KeyState) -> int:
        task_s = state.task_s
        return self._depth if task_s is not None and task_s < self._pipeline_below_s \
            and not state.spread else 1

    @_locked
    def _dispatch(self, key, state: _KeyState) -> None:
        queue = state.queue
        depth = self._depth_for(state)
        now = time.monotonic()
        events = self._task_manager.events
        mark = events.mark if events is not None and events.enabled else None
        for worker in state.workers:
            if not queue:
                break
            if worker.returned or worker.conn is None or worker.conn.closed:
                continue
            room = depth - len(worker.inflight)
            if room <= 0:
                continue
            batch = core_worker_pb2.PushTaskBatch()
            while room > 0 and queue:
                task = queue.popleft()
                if task.cancelled:
                    self._task_manager.fail_or_retry(
                        task, exceptions.TaskCancelledError(task.task_id.hex()))
                    continue
                task_id = task.spec.task_id
                worker.inflight[task_id] = task
                task.pushed_at = now
                self._running[task_id] = worker
                request = batch.requests.add()
                request.intended_worker_id = worker.worker_id
                request.task_spec.CopyFrom(task.spec)
                if worker.resource_mapping:
                    request.resource_mapping.extend(worker.resource_mapping)
                if task_log.enabled:
                    task_log.line("Pushing normal task " + task.task_id.hex())
                if mark is not None:
                    mark(task, SUBMITTED_TO_WORKER)
                room -= 1
            if batch.requests:
                if worker.idle_timer is not None:
                    worker.idle_timer.cancel()
                    worker.idle_timer = None
                worker.conn.send_batch(batch)
        if queue:
            most = min(len(queue), self._spread_leases if state.spread else 1)
            for _ in range(most - len(state.leasing)):
                first = not state.leasing
                lease_id = UniqueID.from_random().binary()
                state.leasing[lease_id] = None
                self._spawn(self._request_lease(key, state, lease_id, first))

    # -- leases ----------------------------------------------------------------------
    async def _request_lease(self, key, state: _KeyState, lease_id: bytes,
                             first: bool) -> None:
        """`first`: no other request of the key was out when this one started, so this
        one carries the key's backlog (the raylets sum it into the demand they report);
        more requests beside it count only themselves."""
        raylet = None
        asked = False
        try:
            while state.queue and not self._closed:
                head = state.queue[0]
                deps = [arg.object_ref for arg in head.spec.args if not arg.is_inlined]
                if asked:   # a new request (spilled, or one more worker): a new id
                    state.leasing.pop(lease_id, None)
                    lease_id = UniqueID.from_random().binary()
                asked = True
                state.leasing[lease_id] = raylet
                try:
                    reply = await self._lease_client.request_worker_lease(
                        head.spec, deps, raylet_address=raylet,
                        grant_or_reject=raylet is not None,
                        backlog_size=len(state.queue) if first else 1,
                        lease_id=lease_id)
                except Exception as e:
                    if raylet is None:
                        raise
                    # The node it spilled to died meanwhile: ask this node's raylet again.
                    logger.info("Lease request for task %s at %s failed (%s); asking the "
                                "local raylet again", head.task_id.hex(), raylet, e)
                    raylet = None
                    continue
                if reply.status == _CANCELED and not state.queue:
                    return
                if reply.status == _SPILLBACK:
                    addr = reply.retry_at_raylet_address
                    raylet = f"{addr.ip_address}:{addr.port}"
                    logger.info("Lease for task %s spilled back to %s", head.task_id.hex(), raylet)
                    continue
                if reply.status != _GRANTED:
                    why = reply.failure_message or node_manager_pb2.RequestWorkerLeaseReply.Status.Name(reply.status)
                    error = _lease_refusal(reply, f"the raylet refused a worker lease for task "
                                                  f"{head.task_id.hex()} ({head.function_name}): "
                                                  f"{why}")
                    while state.queue:
                        self._task_manager.fail(state.queue.popleft(), error)
                    return
                granted = await self._on_lease_granted(key, state, reply, raylet)
                raylet = None
                if not granted:
                    continue    # the leased worker died before we reached it: ask again
                # Ask for one more worker only if the leased ones are all full.
                depth = self._depth_for(state)
                if all(len(w.inflight) >= depth for w in state.workers if not w.returned):
                    continue
                return
        except Exception as e:  # the raylet is gone or refused: fail what waits
            if self._closed:
                return
            logger.warning("Worker lease request failed: %s", e)
            error = exceptions.RaySystemError(f"could not lease a worker from the raylet: {e}")
            while state.queue:
                self._task_manager.fail(state.queue.popleft(), error)
        finally:
            state.leasing.pop(lease_id, None)
            if state.queue and not self._closed:
                self._dispatch(key, state)

    async def _on_lease_granted(self, key, state, reply, raylet) -> bool:
        """Connect to the leased worker and push to it; False if it could not be reached
        (its lease is given back, nothing was pushed)."""
        head_hex = state.queue[0].task_id.hex() if state.queue else ""
        logger.info("Lease granted %s", head_hex)
        address = reply.worker_address
        raylet_address = raylet or self._lease_client.raylet_address
        try:
            worker = LeasedWorker(key, state, reply.lease_id, address, raylet_address, None,
                                  list(reply.resource_mapping), reply.worker_pid)
            worker.conn = await self._connect(address, self._on_replies, self._on_lost)
        except Exception as e:
            logger.warning("Could not connect to leased worker %s:%d: %s",
                           address.ip_address, address.port, str(e).splitlines()[0])
            try:
                await self._lease_client.return_worker(reply.lease_id, address.worker_id, True,
                                                       f"unreachable: {e}", raylet_address)
            except Exception as why:    # its raylet died with it: the lease went too
                logger.info("Returning lease %s failed: %s", reply.lease_id.hex(), why)
            return False
        logger.info("Connected to %s:%d", address.ip_address, address.port)
        with self._lock:
            self._by_conn[worker.conn] = worker
            state.workers.append(worker)
            if self._closed or not state.queue:
                # Nothing left to run (the queue drained while the request waited).
                self._return(worker)
                return True
            self._dispatch(key, state)
            self._maybe_idle(worker)
        return True

    # -- replies ---------------------------------------------------------------------
    @_locked
    def _on_replies(self, conn, batch) -> None:
        worker = self._by_conn.get(conn)
        if worker is None:
            return
        inflight = worker.inflight
        complete = self._task_manager.complete
        exiting = False
        state = worker.state
        now = time.monotonic()
        for reply in batch.replies:
            task = inflight.pop(reply.task_id, None)
            self._running.pop(reply.task_id, None)
            if task is None:
                continue
            if state is not None:
                # Service time: from the later of its push and the previous reply.
                sample = now - max(task.pushed_at, worker.last_reply_at)
                state.task_s = sample if state.task_s is None else \
                    0.8 * state.task_s + 0.2 * sample
            if reply.was_cancelled and not reply.return_objects:
                self._task_manager.fail(task, exceptions.TaskCancelledError(task.task_id.hex()))
            else:
                complete(task, reply)
            exiting = exiting or reply.worker_exiting
        worker.last_reply_at = now
        if exiting:
            # The worker retires (max_calls): what it had not run yet goes back to the
            # front of the queue, without spending a retry.
            leftover = sorted(worker.inflight.values(), key=lambda t: t.pushed_at)
            worker.inflight.clear()
            for task in leftover:
                self._running.pop(task.spec.task_id, None)
            state.queue.extendleft(reversed(leftover))
            self._return(worker, disconnect=True, reason="worker exiting (max_calls)")
            if state.queue:
                self._dispatch(worker.key, state)
            return
        if state.queue:
            self._dispatch(worker.key, state)
        self._maybe_idle(worker)

    def _maybe_idle(self, worker: LeasedWorker) -> None:
        if worker.inflight or worker.returned or worker.idle_timer is not None:
            return
        if worker.state.queue:
            return
        worker.idle_timer = asyncio.get_running_loop().call_later(
            self._linger_s, self._idle_expired, worker)

    @_locked
    def _idle_expired(self, worker: LeasedWorker) -> None:
        worker.idle_timer = None
        if worker.inflight or worker.returned or worker.state.queue:
            return
        idle_s = time.monotonic() - worker.last_push_at
        if idle_s < self._linger_s:     # push_now used it meanwhile: linger from then
            worker.idle_timer = asyncio.get_running_loop().call_later(
                self._linger_s - idle_s, self._idle_expired, worker)
            return
        self._return(worker)

    @_locked
    def _return(self, worker: LeasedWorker, disconnect: bool = False, reason: str = "") -> None:
        if worker.returned:
            return
        worker.returned = True
        if worker.idle_timer is not None:
            worker.idle_timer.cancel()
            worker.idle_timer = None
        state = worker.state
        if worker in state.workers:
            state.workers.remove(worker)
            if not state.workers and not state.queue and not state.leasing \
                    and self._keys.get(worker.key) is state:
                del self._keys[worker.key]
        self._by_conn.pop(worker.conn, None)
        if worker.conn is not None:
            worker.conn.close()
        self._spawn(self._return_quietly(worker, disconnect, reason))

    async def _return_quietly(self, worker, disconnect, reason) -> None:
        try:
            await self._lease_client.return_worker(worker.lease_id, worker.worker_id, disconnect,
                                                   reason, worker.raylet_address)
        except Exception as e:
            logger.info("ReturnWorker for lease %s failed: %s", worker.lease_id.hex(), e)

    @_locked
    def _on_lost(self, conn, exc) -> None:
        worker = self._by_conn.get(conn)
        if worker is None or worker.returned:
            return
        crashed = exceptions.WorkerCrashedError(
            f"The worker (pid={worker.pid}, worker_id={worker.worker_id.hex()[:16]}) executing "
            f"the task died unexpectedly: its connection closed"
            + (f" ({exc})" if exc else "") + ".")
        tasks = list(worker.inflight.values())
        worker.inflight.clear()
        self._drop_worker(worker, crashed, disconnect=True)
        if tasks:
            self._spawn(self._fail_lost_tasks(worker, tasks, crashed))

    async def _fail_lost_tasks(self, worker: LeasedWorker, tasks, crashed) -> None:
        """Ask the worker's raylet why it died: a worker its memory monitor killed fails
        its tasks with OutOfMemoryError (not retried: it would likely run out again)."""
        cause = None
        try:
            reply = await self._lease_client.get_worker_failure_cause(
                worker.lease_id, worker.worker_id, worker.raylet_address)
            if reply.known and reply.out_of_memory:
                cause = reply.message
        except Exception as e:
            logger.info("GetWorkerFailureCause for worker %s failed: %s",
                        worker.worker_id.hex(), e)
        for task in tasks:
            self._running.pop(task.spec.task_id, None)
            if cause is None:
                logger.info("Task %s lost its worker: %s", task.task_id.hex(), crashed)
                self._task_manager.fail_or_retry(task, crashed)
                continue
            error = exceptions.OutOfMemoryError(
                f"Task {task.function_name} ({task.task_id.hex()}) was killed because its "
                f"worker ran out of memory: {cause}. Use less memory per task, or fewer tasks "
                f"at once (num_cpus / resources).")
            self._task_manager.fail_or_retry(task, error, retryable=False)

    @_locked
    def _drop_worker(self, worker: LeasedWorker, error: BaseException, disconnect: bool) -> None:
        tasks = list(worker.inflight.values())
        worker.inflight.clear()
        self._return(worker, disconnect=disconnect, reason=str(error))
        for task in tasks:
            self._running.pop(task.spec.task_id, None)
            logger.info("Task %s lost its worker: %s", task.task_id.hex(), error)
            self._task_manager.fail_or_retry(task, error)

    # -- cancel ----------------------------------------------------------------------
    @_locked
    def cancel(self, task: PendingTask, force: bool, recursive: bool) -> None:
        """Cancel a task: drop it if queued here, else ask its worker (io loop)."""
        task.cancelled = True
        task.force_cancel = force
        state = self._keys.get(task.key) if task.key is not None else None
        if state is not None and task in state.queue:
            state.queue.remove(task)
            self._task_manager.fail(task, exceptions.TaskCancelledError(task.task_id.hex()))
            if not state.queue:
                # Nothing left to run on the workers asked for: withdraw the requests.
                for lease_id, raylet in state.leasing.items():
                    self._spawn(self._lease_client.cancel_worker_lease(lease_id, raylet))
            return
        worker = self._running.get(task.spec.task_id)
        if worker is not None:
            self._spawn(self._cancel_remote(worker, task.spec.task_id, force, recursive))
            return
        # Still waiting for its arguments: fail it now; submit() drops it when they come.
        self._task_manager.fail(task, exceptions.TaskCancelledError(task.task_id.hex()))

    # -- shutdown --------------------------------------------------------------------
    async def close(self) -> None:
        returns = []
        with self._lock:
            self._closed = True
            for state in list(self._keys.values()):
                for worker in list(state.workers):
                    if not worker.returned:
                        worker.returned = True
                        if worker.idle_timer is not None:
                            worker.idle_timer.cancel()
                        if worker.conn is not None:
                            worker.conn.close()
                        returns.append(self._return_quietly(worker, bool(worker.inflight),
                                                            "shutdown"))
            self._keys.clear()
        if returns:
            await asyncio.wait_for(asyncio.gather(*returns, return_exceptions=True),
                                   config.rpc_default_deadline_s)

    def where(self, task: PendingTask):
        """(where the task is, in words; (lease id, raylet address) of the lease request
        it waits on, or None) -- for hang reports (io loop)."""
        worker = self._running.get(task.spec.task_id)
        if worker is not None:
            return (f"is running on worker pid {worker.pid} on node "
                    f"{worker.address.node_id.hex()[:12]} (lease {worker.lease_id.hex()[:12]})",
                    None)
        state = self._keys.get(task.key) if task.key is not None else None
        if state is None or task not in state.queue:
            return "is waiting for its arguments to be resolved", None
        ahead = state.queue.index(task)
        where = (f"is queued for a worker{f' behind {ahead} task(s)' if ahead else ''}, "
                 f"with {len([w for w in state.workers if not w.returned])} leased")
        if state.leasing:
            return f"{where}; its lease request", next(iter(state.leasing.items()))
        return where, None

    def num_leased_workers(self) -> int:
        return sum(len(s.workers) for s in self._keys.values())
