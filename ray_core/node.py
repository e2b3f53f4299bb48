"""Start and stop the processes of one node: the one path behind init(), `ray_core start`
and cluster_utils.Cluster.

A head node is the GCS (tables in memory, or in Redis: then maybe a private
redis-server too), a raylet (which starts its plasma store and its workers) and a log
monitor; a node that joins a cluster is a raylet and a log monitor. Everything lives in
a session folder `<temp_dir>/session_<date>_<time>_<pid>/` (logs/, sockets/, the
cluster token), with `<temp_dir>/session_latest` pointing at the newest.

Invariants that keep a machine clean:
- attached nodes (init(), Cluster) die with the process that started them, even after
  a SIGKILL: every child asks the kernel for a parent-death signal; detached nodes
  (`ray_core start`) outlive the CLI;
- every node writes `<temp_dir>/nodes/<id>.json` listing its processes (pid and start
  time), before and after each start; `stop_recorded()` (`ray_core stop`) stops exactly
  those and their descendants, never whatever happens to match a name;
- a head writes `<temp_dir>/ray_current_cluster` (address + session) for
  init(address="auto"), and `<session>/auth_token` (mode 0600) for local clients;
- at most max_sessions session folders stay under the temp dir, plus any still in use:
  every starting head and `ray_core stop` prune the older ones (`prune_sessions`).
"""
import datetime
import glob
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from typing import Dict, List, Optional

import psutil

from ray_common import rpc
from ray_common.config import config
from ray_common.process import pid_alive, popen, write_file_atomically
from ray_raylet.spill_manager import spill_directory

logger = logging.getLogger(__name__)
CURRENT_CLUSTER_FILE = "ray_current_cluster"
NODES_DIR = "nodes"
TOKEN_FILE = "auth_token"
# new_session_dir's names: the creation time, sortable as text, then the creator's pid.
_SESSION_NAME = re.compile(r"^session_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_\d{6}_(\d+)$")


# ---- sessions, addresses, tokens ------------------------------------------------------

def new_session_dir(temp_dir: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
    session_dir = os.path.join(os.path.abspath(temp_dir), f"session_{stamp}_{os.getpid()}")
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


def prune_sessions(temp_dir: str, in_use: str = "") -> List[str]:
    """Remove the session folders under `temp_dir` beyond the newest max_sessions, and
    return them (`ray_core stop` and every starting head call this: Ray leaves old
    sessions to pile up until someone cleans /tmp/ray by hand).

    A folder in use is never removed, however old: `in_use` (the caller's own), one
    that a node record with running processes names, and one whose creating process
    (the pid that ends its name: a driver that ran init(), a head still starting up
    before its record is written) still runs. Names sort by creation time.
    """
    names = sorted((n for n in os.listdir(temp_dir) if _SESSION_NAME.match(n)),
                   reverse=True) if os.path.isdir(temp_dir) else []
    live = {os.path.realpath(in_use)} if in_use else set()
    live.update(os.path.realpath(r["session_dir"]) for _path, r in read_records(temp_dir)
                if r.get("session_dir") and _live_pids(r))
    removed = []
    for name in names[max(config.max_sessions, 0):]:
        path = os.path.join(os.path.abspath(temp_dir), name)
        if os.path.realpath(path) in live or \
                pid_alive(int(_SESSION_NAME.match(name).group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    latest = os.path.join(temp_dir, "session_latest")
    if os.path.islink(latest) and not os.path.exists(latest):
        try:
            os.unlink(latest)
        except OSError:
            pass
    return removed


def read_current_cluster(temp_dir: str) -> Optional[dict]:
    try:
        with open(os.path.join(temp_dir, CURRENT_CLUSTER_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def running_head(temp_dir: str, detached_only: bool = False) -> Optional[dict]:
    """The current cluster file's content if its head's processes still run, else None."""
    current = read_current_cluster(temp_dir)
    if current is None:
        return None
    for _path, record in read_records(temp_dir):
        if record.get("head") and record.get("session_dir") == current.get("session_dir") \
                and (record.get("detached") or not detached_only) and _live_pids(record):
            return current
    return None


def read_token(session_dir: str) -> Optional[str]:
    try:
        with open(os.path.join(session_dir, TOKEN_FILE)) as f:
            return f.read().strip() or None
    except OSError:
        return None


def local_cluster_token(temp_dir: str, address: str) -> Optional[str]:
    """The token of the cluster this machine's head wrote down, if it serves `address`."""
    current = read_current_cluster(temp_dir) or {}
    if current.get("gcs_address") != address or not current.get("session_dir"):
        return None
    return read_token(current["session_dir"])


def check_gcs(address: str, token: Optional[str] = "", timeout_s: Optional[float] = None):
    """Ask the GCS at `address` for its nodes, failing fast with an error that names it.

    `token=""` means this process's token (rpc.auth_token()). Raises PermissionError when
    the cluster refuses the token, ConnectionError when nothing answers within
    cluster_connect_timeout_s, ValueError for an address that is not host:port.
    """
    import grpc
    from ray_common.protocol import gcs_service_pb2, gcs_service_pb2_grpc

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a cluster address is host:port of its GCS, got {address!r}")
    timeout_s = config.cluster_connect_timeout_s if timeout_s is None else timeout_s

    async def probe():
        stub = rpc.stub(gcs_service_pb2_grpc.NodeInfoGcsServiceStub, address, token=token)
        # No call_with_retry: its log line per failed attempt is noise while we poll.
        return await stub.GetAllNodeInfo(gcs_service_pb2.GetAllNodeInfoRequest(),
                                         timeout=timeout_s)

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return list(rpc.run_sync(probe()).node_info_list)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise PermissionError(f"the cluster at {address} refused this client: "
                                      f"{e.details()}") from None
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise ConnectionError(
                    f"no ray_core cluster answers at {address} (tried for {timeout_s:g}s: "
                    f"{e.code().name} {e.details()}); check the address that `ray_core "
                    f"start --head` printed, and that the head is running") from None
            time.sleep(config.rpc_retry_initial_backoff_ms / 1000.0)


def requires_token(address: str) -> bool:
    """Whether the cluster at `address` checks tokens. A client of a cluster without auth
    must not use one either: its own servers would refuse the cluster's calls."""
    try:
        check_gcs(address, token=None)
    except PermissionError:
        return True
    return False


# ---- the processes of one node -----------------------------------------------------

class Node:
    """The processes of one node that this process started."""

    def __init__(self, temp_dir: str, session_dir: str, token: Optional[str], head: bool,
                 detached: bool):
        self.temp_dir = os.path.abspath(temp_dir)
        self.session_dir = session_dir
        self.token = token              # None: auth disabled
        self.head = head
        self.detached = detached
        self.gcs_address = ""
        self.gcs_proc: Optional[subprocess.Popen] = None
        self.redis = None
        self.storage = "memory"         # the GCS's storage URL (a head's)
        self.raylet_proc: Optional[subprocess.Popen] = None
        self.raylet_info: Dict = {}
        self.log_monitor_proc: Optional[subprocess.Popen] = None
        self.supervisor_proc: Optional[subprocess.Popen] = None
        self.dashboard_proc: Optional[subprocess.Popen] = None
        self.dashboard_url = ""         # a head's, when it serves the dashboard
        self.record_path = os.path.join(self.temp_dir, NODES_DIR, f"{uuid.uuid4().hex}.json")

    @property
    def logs_dir(self) -> str:
        return os.path.join(self.session_dir, "logs")

    @property
    def node_id(self) -> str:
        return self.raylet_info.get("node_id", "")

    @property
    def node_ip(self) -> str:
        return self.raylet_info.get("node_ip", "")

    def child_env(self) -> Dict[str, str]:
        """The environment of this node's processes: config overrides and the token."""
        env = dict(os.environ)
        env.update(config.child_env())
        env["RAY_CORE_TEMP_DIR"] = self.temp_dir
        env["PYTHONPATH"] = os.pathsep.join(driver_code_paths(env.get("PYTHONPATH", "")))
        if self.token:
            env["RAY_CORE_AUTH_TOKEN"] = self.token
        else:   # auth disabled: no token from the environment or a token file either
            env["RAY_CORE_AUTH_TOKEN"] = ""
            env["RAY_CORE_AUTH_TOKEN_FILE"] = os.devnull
        return env

    # -- starting --------------------------------------------------------------------

    @classmethod
    def start_head(cls, temp_dir: str, node_ip: str = "127.0.0.1", num_cpus=None,
                   num_gpus=None, resources=None, object_store_memory=None, *, port: int = 0,
                   storage: str = "memory", token: Optional[str] = None,
                   auth: bool = True, detached: bool = False,
                   labels: Optional[Dict[str, str]] = None,
                   autoscaling_config: Optional[str] = None,
                   include_dashboard: Optional[bool] = None,
                   dashboard_host: Optional[str] = None,
                   dashboard_port: Optional[int] = None) -> "Node":
        """Start GCS, raylet and log monitor; `token` None makes a random one (unless
        `auth` is False); `storage` is "memory", "redis" (a private redis-server) or a
        redis:// URL. `autoscaling_config`: a cluster file whose autoscaler runs on this
        head (ray_core/autoscaler). The dashboard (include_dashboard, default
        config.include_dashboard) listens on dashboard_host:dashboard_port (ray_core/
        dashboard/launcher.py: the default port, when taken, gives way to a free one)."""
        from ray_gcs.launcher import start_gcs

        os.makedirs(temp_dir, exist_ok=True)
        if forget_dead_nodes(temp_dir):
            logger.info("Removed what SIGKILLed nodes left under %s (sockets, spill files)",
                        temp_dir)
        session_dir = new_session_dir(temp_dir)
        pruned = prune_sessions(temp_dir, in_use=session_dir)
        if pruned:
            logger.info("Removed %d old session folder(s) under %s (max_sessions %d)",
                        len(pruned), temp_dir, config.max_sessions)
        if auth and not token:
            token = secrets.token_hex(16)
        node = cls(temp_dir, session_dir, token if auth else None, True, detached)
        if node.token:
            token_path = os.path.join(session_dir, TOKEN_FILE)
            fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(node.token)
        try:
            env = node.child_env()
            if storage == "redis":
                from ray_gcs.redis_server import start_redis
                node.redis = start_redis(os.path.join(session_dir, "redis"), detached=detached)
                node._record()
                storage = node.redis.url
            node.storage = storage
            node.gcs_proc, node.gcs_address = start_gcs(session_dir, port=port, storage=storage,
                                                        node_ip=node_ip, env=env,
                                                        detached=detached)
            node._record()
            node._start_raylet(node_ip, num_cpus, num_gpus, resources, object_store_memory,
                               labels)
            if config.include_dashboard if include_dashboard is None else include_dashboard:
                node._start_dashboard(dashboard_host, dashboard_port)
            node._start_supervisor(autoscaling_config)
        except BaseException:
            node.kill()
            raise
        write_file_atomically(os.path.join(temp_dir, CURRENT_CLUSTER_FILE), json.dumps({
            "gcs_address": node.gcs_address, "session_dir": session_dir, "pid": os.getpid(),
            "auth": bool(node.token)}))
        logger.info("Started head node %s: GCS %s, raylet %s, session %s", node.node_id,
                    node.gcs_address, node.raylet_info.get("raylet_address"), session_dir)
        return node

    @classmethod
    def start_worker(cls, gcs_address: str, temp_dir: str, node_ip: str = "127.0.0.1",
                     num_cpus=None, num_gpus=None, resources=None, object_store_memory=None,
                     *, session_dir: Optional[str] = None, token: Optional[str] = None,
                     detached: bool = False, labels: Optional[Dict[str, str]] = None) -> "Node":
        """Join the cluster at `gcs_address` with a raylet and a log monitor.

        `token` None: RAY_CORE_AUTH_TOKEN, else the token of this machine's cluster at
        that address. `session_dir` None: the local head's session when the address is
        that head's, else a new session folder.
        """
        os.makedirs(temp_dir, exist_ok=True)
        if token is None:
            token = config.auth_token or local_cluster_token(temp_dir, gcs_address)
        if not requires_token(gcs_address):
            token = None        # the cluster runs without auth, so does this node
        else:
            check_gcs(gcs_address, token=token)
        if session_dir is None:
            current = read_current_cluster(temp_dir) or {}
            session_dir = current.get("session_dir") \
                if current.get("gcs_address") == gcs_address else None
            if not session_dir or not os.path.isdir(session_dir):
                session_dir = new_session_dir(temp_dir)
        node = cls(temp_dir, session_dir, token, False, detached)
        node.gcs_address = gcs_address
        try:
            node._start_raylet(node_ip, num_cpus, num_gpus, resources, object_store_memory,
                               labels)
        except BaseException:
            node.kill()
            raise
        logger.info("Node %s joined %s: raylet %s", node.node_id, gcs_address,
                    node.raylet_info.get("raylet_address"))
        return node

    def _start_raylet(self, node_ip, num_cpus, num_gpus, resources, object_store_memory,
                      labels=None):
        from ray_raylet.launcher import start_raylet
        env = self.child_env()
        self.raylet_proc, self.raylet_info = start_raylet(
            self.gcs_address, self.session_dir, node_ip=node_ip, num_cpus=num_cpus,
            num_gpus=num_gpus, resources=resources, object_store_memory=object_store_memory,
            env=env, head=self.head, die_with_parent=not self.detached, labels=labels)
        self._record()
        command = [sys.executable, "-m", "ray_core._private.log_monitor",
                   "--logs-dir", self.logs_dir, "--gcs-address", self.gcs_address,
                   "--node-ip", self.raylet_info.get("node_ip", node_ip),
                   "--raylet-pid", str(self.raylet_proc.pid)]
        if not self.detached:
            command.append("--die-with-parent")
        with open(os.path.join(self.logs_dir, "log_monitor.err"), "ab") as err:
            self.log_monitor_proc = popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=err, start_new_session=self.detached)
        self._record()

    def _start_supervisor(self, autoscaling_config: Optional[str] = None) -> None:
        """The head's GCS (and private Redis) watcher: ray_gcs/supervisor.py. With a
        cluster file it also runs, and restarts after a crash, the head's autoscaler
        (ray_core/autoscaler/monitor.py)."""
        ip, port = self.gcs_address.rsplit(":", 1)
        command = [sys.executable, "-m", "ray_gcs.supervisor", "--session-dir", self.session_dir,
                   "--record", self.record_path, "--gcs-pid", str(self.gcs_proc.pid),
                   "--gcs-port", port, "--node-ip", ip, "--storage", self.storage,
                   "--node-pids", str(self.raylet_proc.pid), str(self.log_monitor_proc.pid)]
        if self.dashboard_proc is not None:     # ends with the node, as the raylet
            command.append(str(self.dashboard_proc.pid))
        if self.redis is not None:
            command += ["--redis-pid", str(self.redis.proc.pid), "--redis-port",
                        str(self.redis.port), "--redis-dir", self.redis.data_dir]
        if autoscaling_config:
            autoscaler = [sys.executable, "-m", "ray_core.autoscaler.monitor",
                          "--gcs-address", self.gcs_address, "--session-dir", self.session_dir,
                          "--temp-dir", self.temp_dir,
                          "--config", os.path.abspath(autoscaling_config)]
            if self.detached:
                autoscaler.append("--detached")
            command += ["--keep-running", "autoscaler", json.dumps(autoscaler)]
        if self.detached:
            command.append("--detached")
        with open(os.path.join(self.logs_dir, "gcs_supervisor.err"), "ab") as err:
            self.supervisor_proc = popen(
                command, env=self.child_env(), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err, start_new_session=self.detached)
        self._record()

    def _start_dashboard(self, host: Optional[str], port: Optional[int]) -> None:
        from ray_core.dashboard.launcher import start_dashboard
        self.dashboard_proc, self.dashboard_url = start_dashboard(
            self.session_dir, self.gcs_address, self.raylet_info.get("node_ip", "127.0.0.1"),
            self.child_env(), host, port, self.detached)
        self._record()

    def dashboard_login_link(self) -> str:
        """A one-time login link to this head's dashboard ("" without a dashboard)."""
        from ray_core.dashboard.auth import login_link
        return login_link(self.dashboard_url, self.token) if self.dashboard_url else ""

    def _record(self) -> None:
        """Write down this node's processes so that `ray_core stop` finds them."""
        procs = [("gcs_supervisor", self.supervisor_proc),
                 ("redis", self.redis.proc if self.redis is not None else None),
                 ("gcs_server", self.gcs_proc), ("raylet", self.raylet_proc),
                 ("log_monitor", self.log_monitor_proc), ("dashboard", self.dashboard_proc)]
        entries = []
        for name, proc in procs:
            if proc is None:
                continue
            try:
                entries.append({"name": name, "pid": proc.pid,
                                "create_time": psutil.Process(proc.pid).create_time()})
            except psutil.Error:
                pass
        os.makedirs(os.path.dirname(self.record_path), exist_ok=True)
        write_file_atomically(self.record_path, json.dumps({
            "session_dir": self.session_dir, "gcs_address": self.gcs_address,
            "head": self.head, "node_id": self.node_id, "owner_pid": os.getpid(),
            "detached": self.detached, "processes": entries, "spill_dir": self._spill_dir()}))

    def _spill_dir(self) -> str:
        """Its raylet's spill folder (the raylet reads the same config: child_env carries
        the overrides), for whoever cleans up after a SIGKILL."""
        return spill_directory(self.session_dir, bytes.fromhex(self.node_id)) \
            if self.node_id else ""

    def kill_gcs(self, timeout_s: float = 60.0) -> None:
        """SIGKILL this head's GCS; its supervisor starts it again on the same address from
        Redis. Returns once the new GCS answers."""
        if not self.storage.startswith("redis://"):
            raise RuntimeError("only a GCS with Redis storage comes back without losing the "
                               "cluster's state (start the head with storage='redis')")
        old = self._recorded_pid("gcs_server")
        _stop_processes([old], force=True)
        deadline = time.monotonic() + timeout_s
        while self._recorded_pid("gcs_server") in (old, 0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the supervisor did not restart the GCS within {timeout_s}s")
            time.sleep(0.02)
        check_gcs(self.gcs_address, token=self.token, timeout_s=timeout_s)

    def _recorded_pid(self, name: str) -> int:
        """A process's pid as the node record has it now (the supervisor keeps it current)."""
        try:
            with open(self.record_path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            return 0
        return next((e["pid"] for e in record.get("processes", []) if e.get("name") == name), 0)

    # -- stopping --------------------------------------------------------------------

    def stop_autoscaler(self) -> None:
        """Stop this head's autoscaler (its supervisor does not restart a clean exit),
        before the nodes it launched are ended."""
        pid = self._recorded_pid("autoscaler")
        if pid:
            _stop_processes([pid])

    def kill(self, force: bool = False) -> None:
        """Stop the supervisor (first: it would restart what follows), the dashboard, the
        log monitor, the raylet (its store and workers go with it), the GCS and Redis, then
        anything left of their process trees."""
        procs = [p for p in (self.supervisor_proc, self.dashboard_proc, self.log_monitor_proc,
                             self.raylet_proc, self.gcs_proc,
                             self.redis.proc if self.redis is not None else None)
                 if p is not None]
        # The GCS and Redis may be the supervisor's restarts by now: the record knows.
        restarted = [pid for pid in (self._recorded_pid("gcs_server"),
                                     self._recorded_pid("redis"),
                                     self._recorded_pid("autoscaler"))
                     if pid and pid not in {p.pid for p in procs}]
        _stop_processes([p.pid for p in procs] + restarted, force)
        for proc in procs:
            try:
                proc.wait(timeout=0)
            except (subprocess.TimeoutExpired, OSError):
                pass
        _remove_leftovers({"session_dir": self.session_dir, "node_id": self.node_id,
                           "spill_dir": self._spill_dir()})
        _forget(self.temp_dir, self.record_path, self.session_dir)
        self.log_monitor_proc = self.raylet_proc = self.gcs_proc = self.redis = None
        self.supervisor_proc = self.dashboard_proc = None


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


def _stop_processes(pids: List[int], force: bool = False) -> int:
    """SIGTERM (SIGKILL if `force`) each pid in order and their descendants; SIGKILL what
    is left after shutdown_grace_s. Returns how many processes were alive."""
    procs, descendants = [], []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            descendants.extend(proc.children(recursive=True))
            procs.append(proc)
        except psutil.Error:
            pass
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL if force else signal.SIGTERM)
        except psutil.Error:
            pass
        if not force:
            # In order: the raylet's workers and store stop before the GCS goes.
            alive = _wait_gone([proc], config.shutdown_grace_s)
            for p in alive:
                logger.warning("pid %d ignored SIGTERM for %.1fs; killing it", p.pid,
                               config.shutdown_grace_s)
                try:
                    p.kill()
                except psutil.Error:
                    pass
    for child in descendants:
        try:
            child.kill()
        except psutil.Error:
            pass
    _wait_gone(procs + descendants, config.shutdown_grace_s)
    return len(procs) + len(descendants)


def _wait_gone(procs: List[psutil.Process], timeout_s: float) -> List[psutil.Process]:
    """Wait until each process has exited; returns those still running after timeout_s.

    An exited process counts as gone while still a zombie: a detached node's processes
    belong to init, which may take a while to reap them. Our own children are reaped.
    """
    deadline = time.monotonic() + timeout_s
    alive = list(procs)
    delay = 0.005
    while alive:
        still = []
        for proc in alive:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    if proc.ppid() == os.getpid():
                        proc.wait(timeout=0)
                    continue
                still.append(proc)
            except (psutil.Error, psutil.TimeoutExpired):
                continue
        alive = still
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return alive


def _forget(temp_dir: str, record_path: str, session_dir: str) -> None:
    """Remove a stopped node's record, and the cluster file when it named its session."""
    try:
        os.unlink(record_path)
    except OSError:
        pass
    cluster_file = os.path.join(temp_dir, CURRENT_CLUSTER_FILE)
    current = read_current_cluster(temp_dir)
    if current and current.get("session_dir") == session_dir and not _session_alive(
            temp_dir, session_dir):
        try:
            os.unlink(cluster_file)
        except OSError:
            pass


def _session_alive(temp_dir: str, session_dir: str) -> bool:
    return any(r.get("session_dir") == session_dir and r.get("head")
               for _path, r in read_records(temp_dir))


def read_records(temp_dir: str):
    """(path, record) of every node written down under `temp_dir`."""
    out = []
    for path in sorted(glob.glob(os.path.join(temp_dir, NODES_DIR, "*.json"))):
        try:
            with open(path) as f:
                out.append((path, json.load(f)))
        except (OSError, ValueError):
            continue
    return out


def _live_pids(record: dict) -> List[int]:
    """The recorded processes still running: same pid *and* same start time."""
    pids = []
    for entry in record.get("processes", []):
        try:
            proc = psutil.Process(entry["pid"])
            if abs(proc.create_time() - entry["create_time"]) < 0.01 and \
                    proc.status() != psutil.STATUS_ZOMBIE:
                pids.append(entry["pid"])
        except (psutil.Error, KeyError, TypeError):
            continue
    # Stop order: the autoscaler (it would start nodes again), the supervisor (it would
    # restart the GCS), the log monitor and raylet,
    # the GCS and Redis last.
    order = {"autoscaler": -2, "gcs_supervisor": -1, "dashboard": 0, "log_monitor": 0,
             "raylet": 1, "gcs_server": 2, "redis": 3}
    names = {e.get("pid"): e.get("name") for e in record.get("processes", [])}
    return sorted(pids, key=lambda pid: order.get(names.get(pid), 9))


def forget_dead_nodes(temp_dir: str) -> int:
    """Drop the records of nodes none of whose processes runs any more (a driver or
    node that was SIGKILLed), with their sockets and spill files; returns how many."""
    forgotten = 0
    for path, record in read_records(temp_dir):
        if not record.get("processes") or _live_pids(record):
            continue
        _remove_leftovers(record)
        try:
            os.unlink(path)
            forgotten += 1
        except OSError:
            pass
    return forgotten


def stop_recorded(temp_dir: str, force: bool = False) -> List[dict]:
    """Stop every node written down under `temp_dir` (`ray_core stop`); returns the
    records of the nodes that still had running processes. Stale socket files and spill
    files of their sessions are removed too (a raylet removes its spill files when it
    exits, but not when it was SIGKILLed)."""
    stopped = []
    stop_autoscalers(temp_dir, force)
    records = read_records(temp_dir)
    # Joined nodes before heads: raylets unregister while their GCS still answers.
    records.sort(key=lambda pr: bool(pr[1].get("head")))
    for path, record in records:
        if stop_record(path, record, force):
            stopped.append(record)
    current = read_current_cluster(temp_dir)
    if current is not None:
        try:
            os.unlink(os.path.join(temp_dir, CURRENT_CLUSTER_FILE))
        except OSError:
            pass
    return stopped


def stop_autoscalers(temp_dir: str, force: bool = False) -> None:
    """Stop the autoscalers of the heads under `temp_dir`: before their nodes, which
    they would launch again."""
    _stop_processes([entry["pid"] for _path, record in read_records(temp_dir)
                     for entry in record.get("processes", [])
                     if entry.get("name") == "autoscaler" and entry["pid"] in
                     _live_pids(record)], force)


def stop_record(path: str, record: Optional[dict] = None, force: bool = False) -> bool:
    """Stop the node written down at `path` and forget it; False if nothing of it ran."""
    if record is None:
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            return False
    pids = _live_pids(record)
    if pids:
        _stop_processes(pids, force)
    try:
        os.unlink(path)
    except OSError:
        pass
    _remove_leftovers(record)
    return bool(pids)


def _remove_leftovers(record: dict) -> None:
    """What a node whose processes are gone may have left: its plasma socket file and its
    spill folder (a raylet removes both when it exits, not when it was SIGKILLed). Logs
    stay; other nodes sharing the session keep theirs."""
    session_dir, node_id_hex = record.get("session_dir", ""), record.get("node_id") or ""
    if not session_dir or not node_id_hex:
        return
    try:
        os.unlink(os.path.join(session_dir, "sockets", f"plasma_store_{node_id_hex[:12]}"))
    except OSError:
        pass
    shutil.rmtree(record.get("spill_dir") or
                  spill_directory(session_dir, bytes.fromhex(node_id_hex)), ignore_errors=True)
