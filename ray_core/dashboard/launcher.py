"""Start a head's dashboard process, and find a running one.

The head binds the listening socket itself and hands it to the child (pass_fds): its
URL is known, and good, before the child has imported anything, so init() does not wait
for the dashboard (connections queue in the socket's backlog until it serves). The URL
and pid go to `<session>/dashboard.json`, where `ray_core status` finds them.
"""
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from typing import Dict, Optional, Tuple

from ray_common.config import config
from ray_common.process import pid_alive, popen, write_file_atomically

logger = logging.getLogger(__name__)
INFO_FILE = "dashboard.json"


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or on a free port when that one is taken: a
    second cluster on the machine, or a driver that asked for a port another holds, must
    still start (`ray_core start --head --dashboard-port` refuses a taken port first)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        logger.warning("The dashboard cannot listen on %s:%d (%s): it takes a free port",
                       host, port, e.strerror)
        sock.bind((host, 0))
    sock.listen(128)
    return sock


def start_dashboard(session_dir: str, gcs_address: str, node_ip: str, env: Dict[str, str],
                    host: Optional[str] = None, port: Optional[int] = None,
                    detached: bool = False) -> Tuple[subprocess.Popen, str]:
    """Start the dashboard of the cluster at `gcs_address`; returns (process, URL).

    `host` None: dashboard_host (loopback); `port` None: dashboard_port; a taken port
    gives way to a free one."""
    host = config.dashboard_host if host is None else host
    sock = _listen(host, config.dashboard_port if port is None else port)
    try:
        url_host = node_ip if host in ("0.0.0.0", "::", "") else host
        url = f"http://{url_host}:{sock.getsockname()[1]}"
        command = [sys.executable, "-m", "ray_core.dashboard.server", "--gcs-address",
                   gcs_address, "--session-dir", session_dir, "--fd", str(sock.fileno())]
        if config.dashboard_niceness and shutil.which("nice"):
            # nice execs the command: the pid stays the dashboard's.
            command = ["nice", "-n", str(config.dashboard_niceness)] + command
        if not detached:
            command.append("--die-with-parent")
        logs = os.path.join(session_dir, "logs")
        with open(os.path.join(logs, "dashboard.err"), "ab") as err:
            proc = popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=err, pass_fds=(sock.fileno(),), start_new_session=detached)
    finally:
        sock.close()
    write_file_atomically(os.path.join(session_dir, INFO_FILE),
                          json.dumps({"url": url, "pid": proc.pid}))
    return proc, url


def read_dashboard_url(session_dir: str) -> Optional[str]:
    """The URL of the dashboard running for this session folder, if any."""
    try:
        with open(os.path.join(session_dir, INFO_FILE)) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info.get("url") if pid_alive(int(info.get("pid", 0))) else None
