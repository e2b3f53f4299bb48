"""Start and stop a head node's processes for init() and tests.

A head node is the GCS (in memory, via ray_gcs.launcher) and one raylet (via
ray_raylet.launcher), which starts its plasma store and its workers. The session folder
`<temp_dir>/session_<date>_<pid>` holds logs/, sockets/ and the cluster token, with a
`session_latest` link beside it. kill() takes down every process of the node: the
raylet first (its workers and store die with it), then the GCS, then anything left of
their process trees, so nothing outlives the driver that started it.
"""
import datetime
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from typing import Dict, Optional

import psutil

from ray_common.config import config
from ray_common.process import write_file_atomically

logger = logging.getLogger(__name__)
CURRENT_CLUSTER_FILE = "ray_current_cluster"


def new_session_dir(temp_dir: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
    session_dir = os.path.join(temp_dir, f"session_{stamp}_{os.getpid()}")
    os.makedirs(os.path.join(session_dir, "logs"), exist_ok=True)
    os.makedirs(os.path.join(session_dir, "sockets"), exist_ok=True)
    latest = os.path.join(temp_dir, "session_latest")
    try:
        tmp = f"{latest}.{os.getpid()}.tmp"
        os.symlink(session_dir, tmp)
        os.replace(tmp, latest)
    except OSError:
        pass
    return session_dir


class Node:
    """The processes of one node this process started (head: GCS + raylet)."""

    def __init__(self, session_dir: str, temp_dir: str, token: str):
        self.session_dir = session_dir
        self.temp_dir = temp_dir
        self.token = token
        self.gcs_proc: Optional[subprocess.Popen] = None
        self.gcs_address = ""
        self.raylet_proc: Optional[subprocess.Popen] = None
        self.raylet_info: Dict[str, str] = {}

    @property
    def logs_dir(self) -> str:
        return os.path.join(self.session_dir, "logs")

    def child_env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(config.child_env())
        env["RAY_CORE_AUTH_TOKEN"] = self.token
        env["PYTHONPATH"] = os.pathsep.join(driver_code_paths(env.get("PYTHONPATH", "")))
        return env

    @classmethod
    def start_head(cls, temp_dir: str, node_ip: str = "127.0.0.1", num_cpus=None, num_gpus=None,
                   resources=None, object_store_memory=None) -> "Node":
        from ray_gcs.launcher import start_gcs
        from ray_raylet.launcher import start_raylet

        os.makedirs(temp_dir, exist_ok=True)
        session_dir = new_session_dir(temp_dir)
        token = secrets.token_hex(16)
        token_path = os.path.join(session_dir, "auth_token")
        write_file_atomically(token_path, token)
        os.chmod(token_path, 0o600)
        node = cls(session_dir, temp_dir, token)
        try:
            env = node.child_env()
            node.gcs_proc, node.gcs_address = start_gcs(session_dir, port=0, storage="memory",
                                                        node_ip=node_ip, env=env)
            node.raylet_proc, node.raylet_info = start_raylet(
                node.gcs_address, session_dir, node_ip=node_ip, num_cpus=num_cpus,
                num_gpus=num_gpus, resources=resources,
                object_store_memory=object_store_memory, env=env)
        except BaseException:
            node.kill()
            raise
        write_file_atomically(os.path.join(temp_dir, CURRENT_CLUSTER_FILE), json.dumps({
            "gcs_address": node.gcs_address, "session_dir": session_dir,
            "pid": os.getpid()}))
        logger.info("Started head node %s: GCS %s, raylet %s, session %s",
                    node.raylet_info.get("node_id", "?"), node.gcs_address,
                    node.raylet_info.get("raylet_address", "?"), session_dir)
        return node

    def kill(self) -> None:
        """Stop the raylet (and with it the store and workers), then the GCS."""
        procs = [p for p in (self.raylet_proc, self.gcs_proc) if p is not None]
        descendants = []
        for proc in procs:
            try:
                descendants.extend(psutil.Process(proc.pid).children(recursive=True))
            except psutil.Error:
                pass
        for proc in procs:
            _terminate(proc)
        for child in descendants:
            try:
                child.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(descendants, timeout=config.shutdown_grace_s)
        cluster_file = os.path.join(self.temp_dir, CURRENT_CLUSTER_FILE)
        try:
            with open(cluster_file) as f:
                if json.load(f).get("session_dir") == self.session_dir:
                    os.unlink(cluster_file)
        except (OSError, ValueError):
            pass
        self.raylet_proc = self.gcs_proc = None


def driver_code_paths(pythonpath: str):
    """Where workers look for the driver's own modules: its PYTHONPATH, the script's
    folder and the working directory, as the driver's sys.path had them. (cloudpickle
    pickles functions of importable modules by reference, so a worker must be able to
    import the module the driver imported.)"""
    paths = [p for p in pythonpath.split(os.pathsep) if p]
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
    for extra in ((os.path.dirname(os.path.abspath(script)) if os.path.isfile(script) else ""),
                  os.getcwd()):
        if extra and extra not in paths:
            paths.append(extra)
    return paths


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=config.shutdown_grace_s)
    except subprocess.TimeoutExpired:
        logger.warning("pid %d ignored SIGTERM for %.1fs; killing it", proc.pid,
                       config.shutdown_grace_s)
        proc.kill()
        proc.wait()
    except OSError:
        pass


def read_current_cluster(temp_dir: str) -> Optional[dict]:
    try:
        with open(os.path.join(temp_dir, CURRENT_CLUSTER_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
