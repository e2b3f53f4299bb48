"""Start a plasma store process and wait until it accepts connections.

The store calls die_with_parent(), and Linux ties that to the *thread* that forked it:
process.popen forks it on a thread that lives as long as its owner.
"""
import os
import subprocess
import sys
import time

from ray_common.config import config
from ray_common.process import popen


def start_plasma_store(socket_path, memory_bytes, logs_dir=None, env=None,
                       hugepages=False) -> subprocess.Popen:
    """Popen of a store serving `socket_path`; raises with the reason if it cannot start.

    With `logs_dir`, the store logs to <logs_dir>/plasma_store.log and its stderr goes to
    <logs_dir>/plasma_store.err; without, both go to this process's stderr.
    """
    if int(memory_bytes) <= 0:
        raise ValueError(f"plasma store memory_bytes must be positive, got {memory_bytes}")
    cmd = [sys.executable, "-m", "ray_plasma.store", "--socket", socket_path,
           "--memory-bytes", str(int(memory_bytes))]
    if hugepages:
        cmd.append("--hugepages")
    err_path = None
    if logs_dir:
        os.makedirs(logs_dir, exist_ok=True)
        cmd += ["--logs-dir", logs_dir]
        err_path = os.path.join(logs_dir, "plasma_store.err")
    child_env = dict(os.environ if env is None else env)
    child_env.update(config.child_env())
    try:
        os.unlink(socket_path)  # so that its appearance means this store is ready
    except FileNotFoundError:
        pass
    stderr = open(err_path, "ab") if err_path else None
    try:
        proc = popen(cmd, env=child_env, stdin=subprocess.DEVNULL, stderr=stderr)
    finally:
        if stderr is not None:
            stderr.close()
    deadline = time.monotonic() + config.plasma_store_startup_timeout_s
    delay = 0.001
    while not os.path.exists(socket_path):
        if proc.poll() is not None:
            raise RuntimeError(f"plasma store (pid {proc.pid}) exited with code "
                               f"{proc.returncode} before serving {socket_path}"
                               + _tail(err_path))
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise TimeoutError(f"plasma store (pid {proc.pid}) did not serve {socket_path} "
                               f"within plasma_store_startup_timeout_s="
                               f"{config.plasma_store_startup_timeout_s}s" + _tail(err_path))
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return proc


def _tail(path, lines=5):
    if not path:
        return " (its stderr is above)"
    try:
        with open(path, errors="replace") as f:
            text = "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return ""
    return f": {text}" if text else f"; see {path}"
