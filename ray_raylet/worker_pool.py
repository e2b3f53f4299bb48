"""The WorkerPool: worker processes this node starts, leases out, reuses and reaps.

A worker is started by fork+exec of `python -m <config.worker_entry_module> ...` (a fresh
interpreter, never a bare fork of the raylet), with at most `maximum_startup_concurrency`
starting at once. It must call RegisterWorker within `worker_register_timeout_seconds`.
An idle worker serves the next lease of the job it last ran (or any job, if it never
ran one); idle workers beyond the soft limit (num_cpus) are asked to exit once idle
longer than `idle_worker_killing_time_threshold_ms`. A worker that still owns objects,
actors or pending tasks refuses (its exit would take them with it, as in Ray) and is
asked again after another idle period; one that does not answer is killed.

Every process the pool knows (workers, and drivers that registered) is watched through
a pidfd on the io loop, so a death is seen the moment it happens, not at the next poll.
All methods run on the raylet's io loop.
"""
import asyncio
import enum
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

from ray_common import rpc
from ray_common.config import config
from ray_common.ids import WorkerID
from ray_common.protocol import core_worker_pb2, core_worker_pb2_grpc
from ray_raylet.runtime_envs import DEFAULT, RuntimeEnvManager, WorkerEnv

logger = logging.getLogger(__name__)


class WorkerState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    LEASED = "leased"
    DEAD = "dead"


class WorkerStartError(RuntimeError):
    """A worker process could not be started or did not register in time."""


class Worker:
    """One worker or driver process known to this raylet."""

    def __init__(self, worker_id: bytes, is_driver: bool = False):
        self.worker_id = worker_id
        self.is_driver = is_driver
        self.pid: int = 0
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.ip_address = ""
        self.job_id = b""
        self.state = WorkerState.STARTING
        self.lease_id: Optional[bytes] = None
        self.idle_since = 0.0
        self.exit_intended = False
        self.kill_reason = ""   # why the raylet killed it, when its owners must be told
        self.sigkilled = False  # the raylet sent it SIGKILL (else a SIGKILL came from outside)
        self.exit_announced = False   # it said it is exiting (DisconnectWorker)
        self.exit_code: Optional[int] = None
        # True while the pop_worker that started it waits for its registration.
        self.reserved = False
        self.registered: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pidfd: Optional[int] = None
        self.log_prefix = ""
        self.env_key = ""       # the runtime env it runs in ("" the default)

    @property
    def hex(self) -> str:
        return self.worker_id.hex()

    def describe(self) -> str:
        return f"worker {self.hex} (pid {self.pid})"

    def send_sigkill(self) -> None:
        self.sigkilled = True
        self.proc.kill()


class ProcessWatcher:
    """Calls back once when a process exits, via a pidfd readable on the io loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop

    def watch(self, pid: int, on_exit: Callable[[], None]) -> Optional[int]:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._loop.call_soon(on_exit)
            return None

        def ready():
            self._loop.remove_reader(fd)
            os.close(fd)
            on_exit()

        self._loop.add_reader(fd, ready)
        return fd

    def unwatch(self, fd: Optional[int]) -> None:
        if fd is not None:
            self._loop.remove_reader(fd)
            try:
                os.close(fd)
            except OSError:
                pass


class WorkerPool:
    def __init__(self, *, node_id: bytes, node_ip: str, raylet_address: str, gcs_address: str,
                 object_store_socket: str, session_dir: str, num_cpus: float,
                 on_worker_exit: Callable[[Worker], None], kv_get=None):
        self.node_id = node_id
        self.node_ip = node_ip
        self.raylet_address = raylet_address
        self.gcs_address = gcs_address
        self.object_store_socket = object_store_socket
        self.session_dir = session_dir
        self.logs_dir = os.path.join(session_dir, "logs")
        self._on_worker_exit = on_worker_exit
        # Per machine (beside the sessions), so later sessions reuse virtualenvs.
        self.runtime_envs = RuntimeEnvManager(
            os.path.join(os.path.dirname(os.path.abspath(session_dir)), "runtime_resources"),
            kv_get)
        self._loop = asyncio.get_running_loop()
        self._watcher = ProcessWatcher(self._loop)
        cpus = max(1, int(num_cpus))
        startup = config.maximum_startup_concurrency
        self._startup_slots = asyncio.Semaphore(startup if startup > 0 else cpus)
        soft = config.num_workers_soft_limit
        self.soft_limit = soft if soft >= 0 else cpus
        self.workers: Dict[bytes, Worker] = {}
        self.drivers: Dict[bytes, Worker] = {}
        self._startup_token = 0
        self._reaper: Optional[asyncio.Task] = None
        self._closed = False
        self.num_started = 0

    def start(self) -> None:
        self._reaper = self._loop.create_task(self._reap_idle_loop())

    # ---- leasing ---------------------------------------------------------------

    async def pop_worker(self, job_id: bytes, env: Optional[Dict[str, str]] = None,
                         runtime_env=None) -> Worker:
        """An idle worker for this job and runtime env (a RuntimeEnv message), else a
        freshly started one once it registers; RuntimeEnvSetupFailed if the env cannot
        be made here."""
        worker_env = DEFAULT if runtime_env is None else \
            await self.runtime_envs.setup(runtime_env)
        worker = self._take_idle(job_id, worker_env.key)
        if worker is not None:
            return worker
        async with self._startup_slots:
            # One may have come back while we waited.
            worker = self._take_idle(job_id, worker_env.key)
            if worker is not None:
                return worker
            worker = self._start_worker(job_id, env or {}, worker_env)
            worker.reserved = True
            try:
                await asyncio.wait_for(asyncio.shield(worker.registered),
                                       config.worker_register_timeout_seconds)
            except asyncio.TimeoutError:
                self.kill(worker, "did not register in time")
                raise WorkerStartError(
                    f"{worker.describe()} did not register with the raylet within "
                    f"{config.worker_register_timeout_seconds}s; see "
                    f"{worker.log_prefix}.err") from None
            except asyncio.CancelledError:
                # The lease went away while its worker started: keep the worker for later.
                worker.reserved = False
                if worker.registered.done() and not worker.registered.exception():
                    self.push_worker(worker)
                raise
            finally:
                worker.reserved = False
        worker.state = WorkerState.LEASED
        worker.job_id = job_id   # b"" (a detached actor's): no job's end may kill it
        return worker

    def prestart(self, job_id: bytes, count: int) -> None:
        """Start up to `count` idle workers for a job in the background (its first tasks
        then find a worker ready instead of waiting for an interpreter to start)."""
        ready = sum(1 for w in self.workers.values()
                    if w.state in (WorkerState.IDLE, WorkerState.STARTING)
                    and w.job_id in (job_id, b""))
        for _ in range(max(0, count - ready)):
            self._loop.create_task(self._prestart_one(job_id))

    async def _prestart_one(self, job_id: bytes) -> None:
        async with self._startup_slots:
            if self._closed:
                return
            try:
                worker = self._start_worker(job_id, {})
            except WorkerStartError as e:
                logger.warning("Prestarting a worker for job %s failed: %s", job_id.hex(), e)
                return
            try:
                await asyncio.wait_for(asyncio.shield(worker.registered),
                                       config.worker_register_timeout_seconds)
            except asyncio.TimeoutError:
                self.kill(worker, "did not register in time")
            except WorkerStartError as e:
                logger.warning("Prestarted worker failed: %s", e)

    def _take_idle(self, job_id: bytes, env_key: str = "") -> Optional[Worker]:
        best = None
        for worker in self.workers.values():
            if worker.state is not WorkerState.IDLE or worker.exit_intended:
                continue  # a worker asked to exit may still look idle until it is gone
            if worker.env_key != env_key:
                continue
            if worker.job_id and job_id and worker.job_id != job_id:
                continue
            # The most recently used one, so that the others age and can be reaped.
            if best is None or worker.idle_since > best.idle_since:
                best = worker
        if best is not None:
            best.state = WorkerState.LEASED
            best.job_id = job_id
        return best

    def forget_driver(self, driver: Worker) -> None:
        """A driver that disconnected on purpose: stop watching its process."""
        if self.drivers.pop(driver.worker_id, None) is not None:
            self._watcher.unwatch(driver._pidfd)
            driver._pidfd = None
            driver.state = WorkerState.DEAD

    def workers_of_job(self, job_id: bytes) -> List[Worker]:
        return [w for w in self.workers.values() if w.job_id == job_id]

    def push_worker(self, worker: Worker) -> None:
        """A worker back from its lease waits idle for the next one."""
        if worker.state is WorkerState.DEAD:
            return
        worker.state = WorkerState.IDLE
        worker.lease_id = None
        worker.idle_since = time.monotonic()

    # ---- processes -------------------------------------------------------------

    def _start_worker(self, job_id: bytes, env_extra: Dict[str, str],
                      worker_env: WorkerEnv = DEFAULT) -> Worker:
        worker = Worker(WorkerID.from_random().binary())
        worker.env_key = worker_env.key
        self._startup_token += 1
        cmd = [worker_env.python, "-m", config.worker_entry_module,
               "--node-ip-address", self.node_ip,
               "--raylet-address", self.raylet_address,
               "--gcs-address", self.gcs_address,
               "--node-id", self.node_id.hex(),
               "--worker-id", worker.hex,
               "--object-store-socket", self.object_store_socket,
               "--session-dir", self.session_dir,
               "--startup-token", str(self._startup_token)]
        env = dict(os.environ)
        env.update(config.child_env())
        if job_id:
            env["RAY_CORE_JOB_ID"] = job_id.hex()
        env.update(worker_env.process_env())
        env.update(env_extra)
        os.makedirs(self.logs_dir, exist_ok=True)
        base = os.path.join(self.logs_dir, f"worker-{worker.hex}")
        with open(base + ".out", "ab") as out, open(base + ".err", "ab") as err:
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        env=env, close_fds=True)
            except OSError as e:
                raise WorkerStartError(f"could not start a worker process ({cmd[:3]}): {e}")
        worker.proc = proc
        worker.pid = proc.pid
        worker.log_prefix = f"{base}-{proc.pid}"
        for suffix in (".out", ".err"):
            os.replace(base + suffix, worker.log_prefix + suffix)
        worker.job_id = job_id
        self.workers[worker.worker_id] = worker
        self.num_started += 1
        worker._pidfd = self._watcher.watch(proc.pid, lambda: self._process_exited(worker))
        logger.info("Started worker %s with pid %d for job %s", worker.hex, proc.pid,
                    job_id.hex() if job_id else "-")
        return worker

    def register(self, worker_id: bytes, pid: int, port: int, ip_address: str,
                 job_id: bytes, is_driver: bool) -> Worker:
        """RegisterWorker from a worker this pool started, or from a driver."""
        if is_driver:
            driver = Worker(worker_id, is_driver=True)
            driver.pid, driver.port, driver.ip_address, driver.job_id = pid, port, ip_address, job_id
            driver.state = WorkerState.LEASED
            driver.registered.set_result(True)
            self.drivers[worker_id] = driver
            driver._pidfd = self._watcher.watch(pid, lambda: self._process_exited(driver))
            logger.info("Registered driver %s pid %d job %s", worker_id.hex(), pid, job_id.hex())
            return driver
        worker = self.workers.get(worker_id)
        if worker is None or worker.state is WorkerState.DEAD:
            raise KeyError(f"worker {worker_id.hex()} (pid {pid}) was not started by this "
                           f"raylet or has already exited")
        if worker.registered.done():
            raise KeyError(f"worker {worker_id.hex()} registered twice")
        if pid != worker.pid:
            logger.info("Worker %s registered with pid %d (started as pid %d)",
                        worker.hex, pid, worker.pid)
        worker.port, worker.ip_address = port, ip_address or self.node_ip
        if job_id:
            worker.job_id = job_id
        worker.registered.set_result(True)
        if worker.state is WorkerState.STARTING and not worker.reserved:
            worker.state = WorkerState.IDLE
            worker.idle_since = time.monotonic()
        logger.info("Registered worker %s pid %d port %d", worker.hex, worker.pid, port)
        return worker

    def _process_exited(self, worker: Worker) -> None:
        if worker.proc is not None:
            worker.exit_code = worker.proc.wait()
            if worker.exit_code == -signal.SIGKILL and not (worker.sigkilled or
                                                            worker.exit_announced):
                # kill -9 or the kernel's OOM killer, not this raylet: not the exit it
                # meant, even when it had asked the worker to exit (an owner returns the
                # lease of a worker whose connection dropped with disconnect_worker,
                # often before this watcher sees that the worker is already dead).
                worker.exit_intended = False
        previous = worker.state
        worker.state = WorkerState.DEAD
        if worker.is_driver:
            self.drivers.pop(worker.worker_id, None)
        else:
            self.workers.pop(worker.worker_id, None)
        worker._pidfd = None
        if not worker.registered.done():
            worker.registered.set_exception(WorkerStartError(
                f"{worker.describe()} exited with code {worker.exit_code} before registering; "
                f"see {worker.log_prefix}.err"))
            worker.registered.exception()  # retrieved here; pop_worker re-raises it
        level = logging.INFO if worker.exit_intended else logging.WARNING
        logger.log(level, "%s %s exited with code %s (was %s%s)",
                   "Driver" if worker.is_driver else "Worker", worker.hex, worker.exit_code,
                   previous.value, f", lease {worker.lease_id.hex()}" if worker.lease_id else "")
        self._on_worker_exit(worker)

    def kill(self, worker: Worker, reason: str, force: bool = False,
             report: bool = False) -> None:
        """Ask a worker to exit (SIGTERM), SIGKILL past the grace period; death is seen by the
        watcher. With `report`, its death is reported as a failure (with `reason`), so the
        GCS ends the actor it hosted."""
        if worker.state is WorkerState.DEAD or worker.is_driver or worker.proc is None:
            return
        if report:
            worker.kill_reason = reason
        else:
            worker.exit_intended = True
        logger.info("Killing %s: %s", worker.describe(), reason)
        try:
            if force:
                worker.send_sigkill()
            else:
                worker.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            return
        if not force:
            self._loop.call_later(config.worker_exit_grace_ms / 1000.0, self._force_kill, worker)

    def _force_kill(self, worker: Worker) -> None:
        if worker.state is not WorkerState.DEAD and worker.proc is not None:
            try:
                worker.send_sigkill()
            except ProcessLookupError:
                pass

    async def _reap_idle_loop(self) -> None:
        period = max(config.idle_worker_killing_time_threshold_ms / 2000.0, 0.05)
        while not self._closed:
            await asyncio.sleep(period)
            await self.reap_idle()

    async def reap_idle(self) -> None:
        """Ask the longest-idle workers beyond the soft limit to exit, once idle long enough."""
        alive = [w for w in self.workers.values() if w.state is not WorkerState.DEAD
                 and not w.exit_intended]
        surplus = len(alive) - self.soft_limit
        if surplus <= 0:
            return
        threshold = config.idle_worker_killing_time_threshold_ms / 1000.0
        now = time.monotonic()
        idle = sorted((w for w in alive if w.state is WorkerState.IDLE
                       and now - w.idle_since >= threshold), key=lambda w: w.idle_since)
        for worker in idle[:surplus]:
            why = (f"idle for {now - worker.idle_since:.1f}s beyond the soft limit of "
                   f"{self.soft_limit} workers")
            worker.exit_intended = True          # not leased while it is asked
            refusal = await self._ask_to_exit(worker)
            if refusal is None:
                logger.info("Asked %s to exit: %s", worker.describe(), why)
                self._loop.call_later(config.worker_exit_grace_ms / 1000.0,
                                      self._force_kill, worker)
            elif refusal:
                logger.info("%s stays though %s: %s", worker.describe(), why, refusal)
                worker.exit_intended = False
                worker.idle_since = time.monotonic()
            else:
                self.kill(worker, f"{why}; it did not answer a request to exit")

    async def _ask_to_exit(self, worker: Worker):
        """None if the worker agreed to exit, its reason if it refused, "" if it did not
        answer."""
        if not worker.port:
            return ""
        stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub,
                        f"{worker.ip_address or self.node_ip}:{worker.port}")
        try:
            reply = await stub.Exit(core_worker_pb2.ExitRequest(if_owns_nothing=True),
                                    timeout=config.rpc_default_deadline_s)
        except Exception:  # noqa: BLE001 - dead, hung or not a CoreWorker: killed instead
            return ""
        return None if reply.success else (reply.refusal or "it still owns something")

    async def shutdown(self) -> None:
        """Stop every worker: SIGTERM, then SIGKILL whatever is left after the grace period."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        workers = [w for w in self.workers.values() if w.proc is not None]
        for worker in workers:
            worker.exit_intended = True
            try:
                worker.proc.terminate()
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + config.worker_exit_grace_ms / 1000.0
        while time.monotonic() < deadline and any(w.proc.poll() is None for w in workers):
            await asyncio.sleep(0.01)
        for worker in workers:
            if worker.proc.poll() is None:
                worker.send_sigkill()
                worker.proc.wait()
            self._watcher.unwatch(worker._pidfd)
            worker._pidfd = None
        for driver in self.drivers.values():
            self._watcher.unwatch(driver._pidfd)
