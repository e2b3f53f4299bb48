"""Start a plasma store process and wait until it accepts connections.

The store calls die_with_parent(), and Linux ties that to the *thread* that forked it:
start the store from a thread that lives as long as its owner (the main thread).
"""
import os
import subprocess
import sys
import time

from ray_common.config import config


def start_plasma_store(socket_path, memory_bytes, logs_dir=None, env=None,
                       hugepages=False) -> subprocess.Popen:
    """Popen of a store serving `socket_path`; raises with the reason if it cannot start."""
    cmd = [sys.executable, "-m", "ray_plasma.store", "--socket", socket_path,
           "--memory-bytes", str(int(memory_bytes))]
    if hugepages:
        cmd.append("--hugepages")
    if logs_dir:
        cmd += ["--logs-dir", logs_dir]
    child_env = dict(os.environ if env is None else env)
    child_env.update(config.child_env())
    try:
        os.unlink(socket_path)  # so that its appearance means this store is ready
    except FileNotFoundError:
        pass
    proc = subprocess.Popen(cmd, env=child_env, stdin=subprocess.DEVNULL,
                            stderr=subprocess.PIPE if not logs_dir else None)
    deadline = time.monotonic() + config.plasma_store_startup_timeout_s
    delay = 0.001
    while not os.path.exists(socket_path):
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise RuntimeError(f"plasma store (pid {proc.pid}) exited with code "
                               f"{proc.returncode} before serving {socket_path}"
                               + (f": {err}" if err else f"; see {logs_dir}/plasma_store.log"))
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise TimeoutError(f"plasma store (pid {proc.pid}) did not serve {socket_path} "
                               f"within plasma_store_startup_timeout_s="
                               f"{config.plasma_store_startup_timeout_s}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return proc
