"""start_gcs: run `python -m ray_gcs.server` as a child and wait until it serves.

The child's stdout/stderr go to <session_dir>/logs/gcs_server.out/.err, and when it
exits before serving, the error raised quotes the tail of its stderr (a malformed
storage URL, an unreachable Redis, a port in use), so the caller sees why.
"""
import os
import subprocess
import sys
from typing import Dict, Optional, Tuple

from ray_common.config import config
from ray_common.process import popen, wait_for_file

_STDERR_TAIL_BYTES = 2000


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _STDERR_TAIL_BYTES))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def start_gcs(session_dir: str, port: int = 0, storage: str = "memory",
              node_ip: str = "127.0.0.1", env: Optional[Dict[str, str]] = None,
              detached: bool = False) -> Tuple[subprocess.Popen, str]:
    """Start a GCS; returns (process, "ip:port") once it accepts calls."""
    logs_dir = os.path.join(session_dir, "logs")
    os.makedirs(logs_dir, exist_ok=True)
    address_file = os.path.join(session_dir, "gcs_address")
    try:
        os.unlink(address_file)  # a previous GCS of this session left it
    except FileNotFoundError:
        pass
    child_env = dict(os.environ)
    child_env.update(config.child_env())
    child_env.update(env or {})
    command = [sys.executable, "-m", "ray_gcs.server", "--port", str(port),
               "--session-dir", session_dir, "--storage", storage,
               "--address-file", address_file, "--node-ip", node_ip]
    if detached:
        command.append("--detached")
    err_path = os.path.join(logs_dir, "gcs_server.err")
    with open(os.path.join(logs_dir, "gcs_server.out"), "ab") as out, open(err_path, "ab") as err:
        proc = popen(command, env=child_env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=detached)
    try:
        address = wait_for_file(address_file, config.gcs_server_start_timeout_s, proc,
                                "GCS server").strip()
    except (RuntimeError, TimeoutError) as e:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise RuntimeError(f"{e}; its stderr ({err_path}) ends with:\n{_tail(err_path)}") from None
    return proc, address
