"""Process hygiene shared by every launcher: children die with their parent, a launcher
waits for a child's ready file instead of sleeping, and a pid is asked whether it runs."""
import concurrent.futures
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Optional

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux).

    Called first thing in every child process (store, raylet, worker) rather than from a
    preexec_fn, which is unsafe in a parent that runs threads. If the parent already died
    before the call, exit at once.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if parent == 1 or os.getppid() != parent:
        os._exit(1)


_spawner: Optional[concurrent.futures.ThreadPoolExecutor] = None
_spawner_lock = threading.Lock()


def popen(*args, **kwargs) -> subprocess.Popen:
    """subprocess.Popen for a child that calls die_with_parent().

    Linux sends the parent-death signal when the *thread* that forked the child ends, not
    the process: a node started from a short-lived thread (a test's helper, a supervisor)
    would die with that thread. So a child is forked on the main thread, or on one
    spawner thread that lives as long as this process."""
    if threading.current_thread() is threading.main_thread():
        return subprocess.Popen(*args, **kwargs)
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="ray_core_spawner")
    return _spawner.submit(subprocess.Popen, *args, **kwargs).result()


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not; another user's process does)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def write_file_atomically(path: str, text: str) -> None:
    """Readers see the whole file or none of it."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def wait_for_file(path: str, timeout_s: float, proc=None, what: Optional[str] = None) -> str:
    """Wait until `path` exists and return its contents; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while True:
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what or 'process'} (pid {proc.pid}) exited with code "
                               f"{proc.returncode} before writing {path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or 'process'} did not write {path} within {timeout_s}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
