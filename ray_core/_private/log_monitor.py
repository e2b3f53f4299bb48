"""Worker stdout/stderr on the driver's terminal, each line prefixed `(pid=N)`.

The raylet sends each worker's stdout/stderr to `<session>/logs/worker-<id>-<pid>.out`
and `.err`. The driver tails the files of its node from where they stood when it
connected, and prints new complete lines to its own stdout/stderr. Polling (every
log_monitor_poll_ms) keeps it to one thread and no coordination with the workers.
"""
import glob
import os
import re
import sys
import threading
from typing import Dict

from ray_common.config import config

_NAME = re.compile(r"worker-(?P<id>[0-9a-f]+)-(?P<pid>\d+)\.(?P<stream>out|err)$")


class LogMonitor:
    def __init__(self, logs_dir: str, node_ip: str = ""):
        self._logs_dir = logs_dir
        self._offsets: Dict[str, int] = {}
        self._partial: Dict[str, bytes] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._suffix = f", ip={node_ip}" if node_ip and node_ip not in ("127.0.0.1", "localhost") else ""
        for path in self._files():
            try:
                self._offsets[path] = os.path.getsize(path)
            except OSError:
                pass
        self._thread = threading.Thread(target=self._run, name="ray_core_log_monitor", daemon=True)
        self._thread.start()

    def _files(self):
        return glob.glob(os.path.join(self._logs_dir, "worker-*.out")) + \
            glob.glob(os.path.join(self._logs_dir, "worker-*.err"))

    def _run(self) -> None:
        period = config.log_monitor_poll_ms / 1000.0
        while not self._stop.wait(period):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            for path in self._files():
                match = _NAME.search(os.path.basename(path))
                if match is None:
                    continue
                offset = self._offsets.get(path, 0)
                try:
                    size = os.path.getsize(path)
                    if size <= offset:
                        continue
                    with open(path, "rb") as f:
                        f.seek(offset)
                        data = f.read(size - offset)
                except OSError:
                    continue
                self._offsets[path] = offset + len(data)
                data = self._partial.pop(path, b"") + data
                lines = data.split(b"\n")
                if lines[-1]:
                    self._partial[path] = lines[-1]
                out = sys.stderr if match.group("stream") == "err" else sys.stdout
                prefix = f"(pid={match.group('pid')}{self._suffix}) "
                text = "".join(prefix + line.decode(errors="replace") + "\n" for line in lines[:-1])
                if text:
                    try:
                        out.write(text)
                        out.flush()
                    except (OSError, ValueError):
                        pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()
