"""A node's logs folder kept within its disk budget (log_dir_max_bytes), with nothing
added to any process's write path.

Each process caps its own files: its .log rotates at log_rotation_max_bytes and keeps
log_rotation_backup_count backups (ray_common.logging; TaskLog follows), and the log
monitor rotates each worker's .out/.err the same way. The budget is for the folder as a
whole, across every process that writes there: the folder's one active log monitor calls
`enforce()` every log_dir_sweep_interval_ms, which, while the folder holds more than the
budget, removes

1. closed files, oldest first: rotated backups (`raylet.log.2`, `worker-...out.1`) and
   the files of processes that have exited (their pid is in the file name). This is
   history, and it is what goes in any ordinary run;
2. then, only if the live files alone are over the budget (log_rotation_max_bytes too
   large for the number of busy processes), the largest live files are emptied in place.
   Every writer appends through O_APPEND (logging's "a" mode, TaskLog's os.open, the
   raylet's redirection of a worker's stdout/stderr), so a file truncated under its
   writer goes on from its start: no write position is lost and no process needs
   telling. What goes is that file's older lines, as rotation would have dropped them.

Files the caller still has to read (the log monitor's unpublished worker output) are
spared, and hidden files (the folder's locks) are never touched. Nodes that share one
logs folder (cluster_utils on one machine) share its budget and its one monitor.
"""
import os
import re
from typing import Callable, List, NamedTuple

from ray_common.process import pid_alive

_BACKUP = re.compile(r"\.\d+$")
# The files of one process, pid in the name: drivers, workers' logs, workers' stdout/err.
_OWNED = [re.compile(r"^python-core-driver-(\d+)\.log$"),
          re.compile(r"^python-core-worker-[0-9a-f]+_(\d+)\.log$"),
          re.compile(r"^worker-[0-9a-f]+-(\d+)\.(?:out|err)$")]


class Swept(NamedTuple):
    """What one `enforce()` did: bytes before and after, files removed and emptied."""
    before: int
    after: int
    removed: List[str]
    truncated: List[str]


class _File(NamedTuple):
    path: str
    size: int
    mtime: float
    closed: bool


def _closed(name: str) -> bool:
    """Whether no running process writes `name` any more."""
    if _BACKUP.search(name):
        return True
    for pattern in _OWNED:
        match = pattern.match(name)
        if match:
            return not pid_alive(int(match.group(1)))
    return False


def _scan(logs_dir: str) -> List[_File]:
    files = []
    try:
        entries = list(os.scandir(logs_dir))
    except OSError:
        return files
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        files.append(_File(entry.path, st.st_size, st.st_mtime, _closed(entry.name)))
    return files


def enforce(logs_dir: str, max_bytes: int,
            spare: Callable[[str], bool] = lambda path: False) -> Swept:
    """Bring `logs_dir` to at most `max_bytes` (see the module's docstring for the order)."""
    files = _scan(logs_dir)
    total = before = sum(f.size for f in files)
    removed, truncated = [], []
    if total <= max_bytes:
        return Swept(before, total, removed, truncated)
    for f in sorted((f for f in files if f.closed), key=lambda f: f.mtime):
        if total <= max_bytes:
            break
        if spare(f.path):
            continue
        try:
            os.unlink(f.path)
        except OSError:     # gone already: its writer rotated it away meanwhile
            continue
        total -= f.size
        removed.append(f.path)
    for f in sorted((f for f in files if not f.closed), key=lambda f: -f.size):
        if total <= max_bytes or f.size == 0:
            break
        try:
            os.truncate(f.path, 0)
        except OSError:
            continue
        total -= f.size
        truncated.append(f.path)
    return Swept(before, total, removed, truncated)
