"""The per-task log lines of the hot path, written cheaply into the process's log file.

Each line carries its task's id (which holds the job id, and an actor task's actor id),
so that `grep <task_id> logs/*` follows a task across processes; a line about objects
carries their ids. One line per step, and none for a step with nothing to say:
  owner:  Submit task <id> / Pushing normal task <id> / Completing task <id>, and,
          only when an argument was not ready, Task <id> waits for objects <ids> /
          Task dependencies resolved <id>;
  worker: Received task <id> <module>.<function>;
  raylet: its lease lines (ray_raylet, through logging), per lease, not per task.
Before, six lines per task wrote 834 log bytes per task in all (driver 598, worker
236: 20k small tasks, benchmarks/bench_task_log.py); these write 476 (349 and 127).

Through the logging module (a RotatingFileHandler formats each record twice and
flushes each line) such lines cost ~300 us per task, more than the task itself. So they
bypass it: the same glog format, buffered in memory, appended to the same file (O_APPEND,
whole lines) at most every log_flush_interval_ms, when the buffer fills, and at exit.
A line is kept as (time, call site, message) and formatted when flushed, off the task's
path: formatting it in line() cost ~7 us, three or four times per sync task.
They are written when the project's log level is INFO or finer.
"""
import atexit
import collections
import logging
import logging.handlers
import os
import sys
import threading
import time
from typing import Optional

from ray_common.config import config

# A backstop for bursts: the flush thread formats and writes the lines every
# log_flush_interval_ms (72k lines/s at 18k tasks/s), so line() itself seldom does.
_MAX_BUFFERED = 16384
_WRITE_LINES = 512


class TaskLog:
    def __init__(self):
        self._path: Optional[str] = None
        self._fd = -1
        self._buffer = collections.deque()     # (time, code, line number, message)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._second = -1
        self._prefix = ""
        self._where = {}    # (code, line) -> "file.py:line": a handful of call sites
        self._timer: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self.enabled = False

    def open(self, path: str) -> None:
        """Write to `path` (the log file setup_process_logging made) from now on."""
        self.close()
        self.enabled = logging.getLogger("ray_core").isEnabledFor(logging.INFO)
        if not self.enabled:
            return
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._path = path
        self._pid = os.getpid()
        self._stop.clear()
        self._timer = threading.Thread(target=self._flush_periodically,
                                       name="ray_core_task_log", daemon=True)
        self._timer.start()
        atexit.register(self.flush)

    def line(self, message: str) -> None:
        """Buffer `I<mmdd hh:mm:ss.uuuuuu> <pid> <file>:<line>] <message>` (the caller's file:line)."""
        frame = sys._getframe(1)
        buffer = self._buffer
        buffer.append((time.time(), frame.f_code, frame.f_lineno, message))
        if len(buffer) >= _MAX_BUFFERED:
            self.flush()

    def _format(self, now: float, code, lineno: int, message: str) -> str:
        where = self._where.get((code, lineno))
        if where is None:
            where = self._where[code, lineno] = f"{os.path.basename(code.co_filename)}:{lineno}"
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("I%m%d %H:%M:%S", time.localtime(second))
        return (f"{self._prefix}.{int((now - second) * 1e6):06d} {self._pid} "
                f"{where}] {message}\n")

    def flush(self) -> None:
        if not self._buffer or self._fd < 0:
            return
        with self._lock:
            buffer = self._buffer
            while buffer:   # popleft: a line appended meanwhile by another thread stays
                # At most _WRITE_LINES a write, each followed by the rotation check, so a
                # big backlog rolls the file over where it grows past its limit.
                lines = [self._format(*buffer.popleft())
                         for _ in range(min(len(buffer), _WRITE_LINES))]
                try:
                    os.write(self._fd, "".join(lines).encode())
                    self._rotate_if_needed()
                except OSError as e:
                    print(f"ray_core: could not write task log lines to {self._path}: {e}",
                          file=sys.stderr)
                    return

    def _rotate_if_needed(self) -> None:
        """Keep size-based rotation (log_rotation_max_bytes) working for these lines: roll
        the file over through the process's RotatingFileHandler once it is too big, and
        follow the new file when that handler rolled it over first."""
        same_file = os.stat(self._path).st_ino == os.fstat(self._fd).st_ino
        if same_file and os.fstat(self._fd).st_size < config.log_rotation_max_bytes:
            return
        if same_file:
            for handler in logging.getLogger("ray_core").handlers:
                if isinstance(handler, logging.handlers.RotatingFileHandler) and \
                        handler.baseFilename == os.path.abspath(self._path):
                    with handler.lock:
                        handler.doRollover()
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _flush_periodically(self) -> None:
        period = config.log_flush_interval_ms / 1000.0
        while not self._stop.wait(period):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
            self._timer = None
        self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.enabled = False


task_log = TaskLog()
