"""Start a raylet process and wait until it has registered with the GCS."""
import json
import os
import subprocess
import sys
import uuid
from typing import Dict, Optional, Tuple

from ray_common.config import config
from ray_common.process import popen, wait_for_file


def start_raylet(gcs_address: str, session_dir: str, node_ip: str = "127.0.0.1",
                 num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
                 resources: Optional[Dict[str, float]] = None,
                 object_store_memory: Optional[int] = None, env: Optional[Dict[str, str]] = None,
                 port: int = 0, head: bool = False, die_with_parent: bool = True,
                 labels: Optional[Dict[str, str]] = None) -> Tuple[subprocess.Popen, dict]:
    """Start `python -m ray_raylet.main` and return (process, info).

    info: {"node_id": hex, "raylet_address": "ip:port", "object_store_socket": path,
    "node_ip": ip, "pid": int, "log_file": path}. The raylet dies with the calling process
    unless `die_with_parent` is False (a CLI that starts a node and exits). Raises
    RuntimeError with the raylet's stderr tail if it exits before it is ready.
    """
    session_dir = os.path.abspath(session_dir)
    logs_dir = os.path.join(session_dir, "logs")
    os.makedirs(logs_dir, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    info_file = os.path.join(session_dir, f"raylet_info_{token}.json")
    cmd = [sys.executable, "-m", "ray_raylet.main", "--gcs-address", gcs_address,
           "--node-ip", node_ip, "--port", str(port), "--session-dir", session_dir,
           "--info-file", info_file]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        cmd += ["--num-gpus", str(num_gpus)]
    if resources:
        cmd += ["--resources", json.dumps(resources)]
    if object_store_memory is not None:
        cmd += ["--object-store-memory", str(int(object_store_memory))]
    if labels:
        cmd += ["--labels", json.dumps(labels)]
    if head:
        cmd.append("--head")
    if die_with_parent:
        cmd.append("--die-with-parent")
    child_env = dict(os.environ if env is None else env)
    child_env.update(config.child_env())
    err_path = os.path.join(logs_dir, f"raylet_{token}.err")
    with open(os.path.join(logs_dir, f"raylet_{token}.out"), "ab") as out, \
            open(err_path, "ab") as err:
        proc = popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=child_env, close_fds=True,
                                start_new_session=not die_with_parent)
    try:
        text = wait_for_file(info_file, config.raylet_start_timeout_s, proc, "raylet")
    except (RuntimeError, TimeoutError) as e:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise RuntimeError(f"{e}; raylet stderr ({err_path}):\n{_tail(err_path)}") from None
    return proc, json.loads(text)


def _tail(path: str, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return "(unreadable)"
