"""Worker stdout/stderr on the terminal of the driver whose task printed it.

Three parts share one format:
- a worker marks its output: before the first line of a task of another job (or actor)
  than the last one, it writes the marker lines `:job_id:<hex>` and
  `:actor_name:<Class>` to its stdout and stderr (`announce()`), so the lines after them
  belong to that job;
- one log monitor process per node (`python -m ray_core._private.log_monitor`, started
  by ray_core.node) tails the raylet's redirections `<session>/logs/worker-<id>-<pid>.out`
  and `.err` every log_monitor_poll_ms and publishes new complete lines on the GCS's
  WORKER_LOG_CHANNEL (LogBatch: ip, pid, job id, actor name). Nodes that share a logs
  folder (cluster_utils on one machine) share one active monitor through a file lock;
  The monitor also rotates those files by size (log_rotation_max_bytes), as every
  process rotates its own .log, and holds the whole folder to its disk budget
  (log_dir_max_bytes, see log_budget.py);
- each driver subscribes (`LogSubscriber`) and prints the batches of its own job (and
  those of no job yet: a worker's startup errors), prefixed `(pid=N, ip=IP)`, or
  `(Class pid=N, ip=IP)` for an actor.
Going through the GCS rather than reading files is what makes it work across machines.
"""
import argparse
import fcntl
import glob
import logging
import os
import queue
import re
import shutil
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

from ray_common.config import config
from ray_common.process import pid_alive
from ray_core._private import log_budget, progress_bars

logger = logging.getLogger("ray_core.log_monitor")  # also when run as __main__

JOB_MARKER = ":job_id:"
ACTOR_MARKER = ":actor_name:"
_NAME = re.compile(r"worker-(?P<id>[0-9a-f]+)-(?P<pid>\d+)\.(?P<stream>out|err)$")
_announced = [None]


# ---- worker side ---------------------------------------------------------------------

def announce(job_hex: str, actor_name: str = "") -> None:
    """Mark what follows on stdout/stderr as output of this job (and actor)."""
    key = (job_hex, actor_name)
    if _announced[0] == key:
        return
    _announced[0] = key
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.write(f"{JOB_MARKER}{job_hex}\n{ACTOR_MARKER}{actor_name}\n")
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


# ---- node side: tail the files, publish the lines ------------------------------------

class _TailedFile:
    __slots__ = ("offset", "partial", "job_hex", "actor", "pid", "is_err")

    def __init__(self, offset: int, pid: int, is_err: bool):
        self.offset = offset
        self.partial = b""
        self.job_hex = ""
        self.actor = ""
        self.pid = pid
        self.is_err = is_err


class LogMonitor:
    """Reads new complete lines of a logs folder's worker files; `poll()` -> LogBatches."""

    def __init__(self, logs_dir: str, node_ip: str, from_end: bool = False):
        self._logs_dir = logs_dir
        self._node_ip = node_ip
        self._files: Dict[str, _TailedFile] = {}
        if from_end:  # taking over from another monitor: what exists was published
            for path in self._paths():
                self._track(path, os.path.getsize(path))

    def _paths(self) -> List[str]:
        return glob.glob(os.path.join(self._logs_dir, "worker-*.out")) + \
            glob.glob(os.path.join(self._logs_dir, "worker-*.err"))

    def _track(self, path: str, offset: int) -> Optional[_TailedFile]:
        match = _NAME.search(os.path.basename(path))
        if match is None:
            return None
        state = _TailedFile(offset, int(match.group("pid")), match.group("stream") == "err")
        self._files[path] = state
        return state

    def poll(self) -> list:
        from ray_common.protocol import gcs_service_pb2
        batches = []
        present = set()
        for path in self._paths():
            present.add(path)
            state = self._files.get(path) or self._track(path, 0)
            if state is None:
                continue
            try:
                size = os.path.getsize(path)
                if size < state.offset:          # truncated: start over
                    state.offset, state.partial = 0, b""
                if size == state.offset:
                    continue
                with open(path, "rb") as f:
                    f.seek(state.offset)
                    data = f.read(min(size - state.offset, config.log_monitor_max_read_bytes))
            except OSError:
                continue
            state.offset += len(data)
            lines = (state.partial + data).split(b"\n")
            state.partial = lines.pop()
            batch = None
            for raw in lines:
                line = raw.decode(errors="replace")
                if line.startswith(JOB_MARKER):
                    state.job_hex, batch = line[len(JOB_MARKER):].strip(), None
                    continue
                if line.startswith(ACTOR_MARKER):
                    state.actor, batch = line[len(ACTOR_MARKER):].strip(), None
                    continue
                if batch is None:
                    batch = gcs_service_pb2.LogBatch(
                        ip=self._node_ip, pid=state.pid, is_error=state.is_err,
                        job_id=bytes.fromhex(state.job_hex) if state.job_hex else b"",
                        actor_name=state.actor)
                    batches.append(batch)
                batch.lines.append(line)
            if state.offset >= config.log_rotation_max_bytes and state.offset == size:
                self._rotate(path, state)
        for gone in set(self._files) - present:
            del self._files[gone]
        return batches

    def _unpublished(self, path: str) -> bool:
        """Whether `path` is a worker file holding lines not yet published."""
        state = self._files.get(path)
        if state is None:
            return _NAME.search(os.path.basename(path)) is not None
        try:
            return os.path.getsize(path) > state.offset
        except OSError:
            return False

    def enforce_budget(self) -> log_budget.Swept:
        """Hold the folder to log_dir_max_bytes; an exited worker's output is removed
        only once published, and a live file emptied under its writer is read from 0."""
        swept = log_budget.enforce(self._logs_dir, config.log_dir_max_bytes,
                                   spare=self._unpublished)
        for path in swept.removed:
            self._files.pop(path, None)
        for path in swept.truncated:
            state = self._files.get(path)
            if state is not None:
                state.offset, state.partial = 0, b""
        return swept

    @staticmethod
    def _rotate(path: str, state: _TailedFile) -> None:
        """Size-based rotation of a worker's .out/.err once everything in it is published.

        The worker's stdout is the raylet's O_APPEND redirection, which cannot be reopened
        from here, so this copies the file to `.1` (older ones shift up to
        log_rotation_backup_count) and truncates it; the worker's next line lands at the
        start. A line written between the copy and the truncation reaches only the copy.
        """
        keep = config.log_rotation_backup_count
        try:
            for index in range(keep - 1, 0, -1):
                if os.path.exists(f"{path}.{index}"):
                    os.replace(f"{path}.{index}", f"{path}.{index + 1}")
            if keep > 0:
                shutil.copyfile(path, f"{path}.1")
            os.truncate(path, 0)
        except OSError as e:
            logger.warning("Could not rotate %s: %s", path, e)
            return
        state.offset = 0


def _wait_for_lock(logs_dir: str, alive: Callable[[], bool]):
    """The logs folder's monitor lock, once its holder is gone; None if `alive` turns false."""
    lock = open(os.path.join(logs_dir, ".log_monitor.lock"), "w")
    period = config.log_monitor_poll_ms / 1000.0
    waited = False
    while alive():
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock, waited
        except OSError:
            waited = True
            time.sleep(period * 10)
    lock.close()
    return None, waited


def _log_swept(swept: log_budget.Swept) -> None:
    if swept.removed:
        logger.info("Logs folder over its budget (%d bytes > log_dir_max_bytes %d): removed "
                    "%s", swept.before, config.log_dir_max_bytes,
                    " ".join(os.path.basename(p) for p in swept.removed))
    if swept.truncated:
        logger.warning("Live log files alone exceed log_dir_max_bytes %d (lower "
                       "log_rotation_max_bytes): emptied %s", config.log_dir_max_bytes,
                       " ".join(os.path.basename(p) for p in swept.truncated))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ray_core._private.log_monitor",
                                     description="Publish a node's worker output to drivers.")
    parser.add_argument("--logs-dir", required=True)
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--node-ip", required=True)
    parser.add_argument("--raylet-pid", type=int, required=True,
                        help="exit once this raylet is gone")
    parser.add_argument("--die-with-parent", action="store_true")
    args = parser.parse_args(argv)
    if args.die_with_parent:
        from ray_common.process import die_with_parent
        die_with_parent()

    def raylet_alive() -> bool:
        return pid_alive(args.raylet_pid)

    lock, took_over = _wait_for_lock(args.logs_dir, raylet_alive)
    if lock is None:
        return 0
    from ray_common import rpc
    from ray_common.logging import setup_process_logging
    from ray_common.protocol import gcs_service_pb2
    from ray_gcs.client import GcsClient
    setup_process_logging("log_monitor", args.logs_dir)
    logger.info("Log monitor (pid %d) tails %s for raylet pid %d, publishing to %s",
                os.getpid(), args.logs_dir, args.raylet_pid, args.gcs_address)
    monitor = LogMonitor(args.logs_dir, args.node_ip, from_end=took_over)
    gcs = GcsClient(args.gcs_address)
    period = config.log_monitor_poll_ms / 1000.0
    sweep_period = config.log_dir_sweep_interval_ms / 1000.0
    next_sweep = time.monotonic()
    running = True
    while running:
        running = raylet_alive()     # one last poll after the raylet is gone
        batches = monitor.poll()
        if config.log_dir_max_bytes > 0 and time.monotonic() >= next_sweep:
            next_sweep = time.monotonic() + sweep_period
            _log_swept(monitor.enforce_budget())
        if batches:
            messages = [gcs_service_pb2.PubMessage(
                channel_type=gcs_service_pb2.WORKER_LOG_CHANNEL, key_id=b.job_id,
                log_batch_message=b) for b in batches]
            try:
                rpc.run_sync(gcs.publish(messages), timeout=config.rpc_default_deadline_s)
            except Exception as e:  # the GCS restarting: these lines are lost, go on
                logger.warning("Could not publish %d log batches: %s", len(batches), e)
        if running:
            time.sleep(period)
    logger.info("Raylet pid %d is gone; log monitor exits", args.raylet_pid)
    return 0


# ---- driver side: print the lines of this job ---------------------------------------

class LogSubscriber:
    """Prints the worker lines of one job that the log monitors publish.

    Messages arrive on the io loop; a printer thread writes them, so a terminal or pipe
    that blocks never stalls the driver's RPCs.
    """

    def __init__(self, gcs_client, job_id: bytes):
        from ray_common import rpc
        self._job_id = job_id
        self._gcs = gcs_client
        self._pending: "queue.SimpleQueue" = queue.SimpleQueue()
        self._printer = threading.Thread(target=self._print_loop, name="ray_core_log_printer",
                                         daemon=True)
        self._printer.start()
        self._subscription = rpc.run_sync(self._subscribe(),
                                          timeout=config.rpc_default_deadline_s)

    async def _subscribe(self):
        from ray_common.protocol import gcs_service_pb2
        sub = self._gcs.subscribe([gcs_service_pb2.WORKER_LOG_CHANNEL], self._on_message)
        await sub.wait_ready(config.rpc_default_deadline_s)
        return sub

    def _on_message(self, message) -> None:
        batch = message.log_batch_message
        if batch.job_id and batch.job_id != self._job_id:
            return
        who = f"{batch.actor_name} " if batch.actor_name else ""
        prefix = f"({who}pid={batch.pid}, ip={batch.ip}) "
        text = []
        for line in batch.lines:
            bar = progress_bars.parse(line)
            if bar is None:
                text.append(f"{prefix}{line}\n")
            else:
                self._pending.put(bar)       # a tqdm_ray bar's state: drawn, not printed
        if text:
            self._pending.put((batch.is_error, "".join(text)))

    def _print_loop(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            if isinstance(item, dict):
                progress_bars.manager().update(item)
                continue
            is_error, text = item
            out = sys.stderr if is_error else sys.stdout
            try:
                out.write(text)
                out.flush()
            except (OSError, ValueError):
                pass

    def stop(self, last_task_done: float = 0.0) -> None:
        """Stop printing; first give lines written by a task that just finished time to
        travel (monitor poll + publish), so a script's last prints are not lost."""
        from ray_common import rpc
        if last_task_done:
            wait = last_task_done + 3 * config.log_monitor_poll_ms / 1000.0 - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        subscription = self._subscription
        self._subscription = None
        if subscription is not None:
            try:
                rpc.run_sync(self._close(subscription), timeout=config.shutdown_grace_s)
            except Exception:
                pass
        self._pending.put(None)
        self._printer.join(config.shutdown_grace_s)

    @staticmethod
    async def _close(subscription) -> None:
        subscription.close()


if __name__ == "__main__":
    sys.exit(main())
