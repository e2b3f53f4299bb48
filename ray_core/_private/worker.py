"""The process-global state behind the public API: one Worker per process.

In a driver, init() creates it (starting a head node, or connecting to a cluster); in a
worker process, default_worker creates it in worker mode. The module-level functions
here are what ray_core exports (init, get, put, wait, cancel, ...).
"""
import atexit
import logging
import os
import socket
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Union

from ray_common import rpc
from ray_common.config import config
from ray_common.ids import JobID, WorkerID
from ray_common.logging import close_process_logging, setup_process_logging

from ray_core import exceptions
from ray_core._private._object_ref import ids_of
from ray_core._private.generator_streams import ObjectRefGenerator
from ray_core._private.task_log import task_log
from ray_core.object_ref import ObjectRef

logger = logging.getLogger(__name__)
_lock = threading.RLock()
_global = None


class RayContext(dict):
    """What init() returns: a dict (address_info) whose keys also read as attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutdown()

    def disconnect(self):
        shutdown()


class Worker:
    def __init__(self, mode: str, core_worker, namespace: str = "", node=None,
                 session_dir: str = "", gcs_client=None, log_monitor=None):
        self.mode = mode
        self.core_worker = core_worker
        self.namespace = namespace
        self.node = node
        self.session_dir = session_dir
        self.gcs = gcs_client
        self.log_monitor = log_monitor
        self.context: Optional[RayContext] = None


def global_worker() -> Worker:
    """The process's Worker; a driver that never called init() gets a default init()."""
    worker = _global
    if worker is None:
        init()
        worker = _global
    return worker


def current_core_worker():
    worker = _global
    return worker.core_worker if worker is not None else None


def set_worker_mode(core_worker, namespace: str = "") -> Worker:
    """Install the global Worker of a worker process (default_worker)."""
    global _global
    _global = Worker("worker", core_worker, namespace, session_dir=core_worker.session_dir,
                     gcs_client=core_worker.gcs)
    return _global


def is_initialized() -> bool:
    return _global is not None


def _local_ip() -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def init(address: Optional[str] = None, *, num_cpus: Optional[int] = None,
         num_gpus: Optional[int] = None, resources: Optional[Dict[str, float]] = None,
         object_store_memory: Optional[int] = None, namespace: Optional[str] = None,
         ignore_reinit_error: bool = False, log_to_driver: bool = True,
         runtime_env: Optional[Dict[str, Any]] = None, job_config: Any = None,
         include_dashboard: Optional[bool] = None, dashboard_host: str = "127.0.0.1",
         dashboard_port: Optional[int] = None, labels: Optional[Dict[str, str]] = None,
         local_mode: bool = False, logging_level: Any = None, configure_logging: bool = True,
         _temp_dir: Optional[str] = None, _system_config: Optional[Dict[str, Any]] = None,
         _node_ip_address: Optional[str] = None) -> RayContext:
    """Connect to a cluster ("auto", "host:port"), or start a head node here: always with
    address="local", and with address=None unless RAY_CORE_ADDRESS or a cluster that
    `ray_core start --head` runs on this machine says where to connect (as in Ray).

    `labels` label the node started here. A head started here serves the dashboard
    (include_dashboard, dashboard_host, dashboard_port as Ray's); the returned context's
    dashboard_url is its address, and a one-time login link to it is printed once."""
    global _global
    with _lock:
        if _global is not None:
            if ignore_reinit_error:
                logger.info("init() called again; ignoring it (ignore_reinit_error=True)")
                return _global.context
            raise RuntimeError("Maybe you called ray_core.init twice by accident? This error "
                               "can be suppressed by passing ignore_reinit_error=True, or by "
                               "calling ray_core.shutdown() first.")
        from ray_core._private import options as options_mod
        if local_mode:
            raise RuntimeError("local_mode is no longer supported (as in Ray 2.60): tasks run "
                               "in worker processes; to debug one, run its function "
                               "directly, or set breakpoints in a worker with "
                               "RAY_CORE_LOG_LEVEL=debug logs")
        if labels is not None:
            options_mod._labels("labels", labels)
        if job_config is not None:
            # Ray's JobConfig (ray_core.job_config): init's own arguments win over it.
            runtime_env = runtime_env if runtime_env is not None else \
                (job_config.runtime_env or None)
            namespace = namespace if namespace is not None else job_config.ray_namespace
        if runtime_env is not None:
            options_mod._runtime_env("runtime_env", runtime_env)
        for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus),
                            ("object_store_memory", object_store_memory)):
            if value is not None:
                options_mod._number(name, value)
        if resources is not None:
            options_mod._resources("resources", resources)
        if _system_config:
            config.update(_system_config)
        if logging_level is not None:
            config.update({"log_level": _level_name(logging_level)})
        temp_dir = _temp_dir or config.temp_dir
        namespace = namespace if namespace is not None else ""
        node = None
        started = time.monotonic()
        if address == "local":
            address = None          # a new local cluster, whatever else runs here
        elif address is None:
            # As Ray: RAY_CORE_ADDRESS, else a cluster `ray_core start --head` runs here.
            from ray_core.node import running_head
            address = config.address or (running_head(temp_dir, detached_only=True)
                                         or {}).get("gcs_address")
        try:
            if address is None:
                node_ip = _node_ip_address or "127.0.0.1"
                from ray_core.node import Node
                node = Node.start_head(temp_dir, node_ip=node_ip, num_cpus=num_cpus,
                                       num_gpus=num_gpus, resources=resources,
                                       object_store_memory=object_store_memory,
                                       labels=labels, include_dashboard=include_dashboard,
                                       dashboard_host=dashboard_host,
                                       dashboard_port=dashboard_port)
                rpc.set_auth_token(node.token)
                gcs_address = node.gcs_address
                info = node.raylet_info
                session_dir = node.session_dir
                node_id = bytes.fromhex(info["node_id"])
                raylet_address = info["raylet_address"]
                plasma_socket = info["object_store_socket"]
                node_ip = info.get("node_ip", node_ip)
            else:
                if num_cpus is not None or num_gpus is not None or resources or labels:
                    raise ValueError("num_cpus, num_gpus, resources and labels describe a "
                                     "new node: they cannot be given when connecting to a "
                                     f"cluster (address={address!r})")
                gcs_address, session_dir = _resolve_address(address, temp_dir)
                node_id, raylet_address, plasma_socket, node_ip, session_dir = \
                    _find_local_node(gcs_address, session_dir, _node_ip_address)
            logs_dir = os.path.join(session_dir, "logs")
            if configure_logging:
                task_log.open(setup_process_logging(f"python-core-driver-{os.getpid()}",
                                                    logs_dir))
            _global = _connect_driver(gcs_address, node_id, raylet_address, plasma_socket,
                                      node_ip, session_dir, namespace, node, runtime_env,
                                      log_to_driver, job_config)
        except BaseException:
            if _global is not None:
                _global = None
            if node is not None:
                node.kill()
            raise
        core = _global.core_worker
        dashboard_url = _dashboard_url(node, session_dir)
        _global.context = RayContext(
            address=gcs_address, gcs_address=gcs_address, node_id=node_id.hex(),
            node_ip_address=node_ip, raylet_address=raylet_address,
            object_store_address=plasma_socket, session_dir=session_dir,
            job_id=core.job_id.hex(), namespace=namespace,
            # Ray's RayContext fields programs print.
            dashboard_url=dashboard_url, python_version=".".join(map(str, sys.version_info[:3])),
            ray_version=_version(), ray_commit="",
            address_info={"gcs_address": gcs_address, "node_id": node_id.hex(),
                          "raylet_address": raylet_address, "session_dir": session_dir,
                          "object_store_address": plasma_socket, "node_ip_address": node_ip,
                          "webui_url": dashboard_url})
        logger.info("init() done in %.3fs: job %s on node %s", time.monotonic() - started,
                    core.job_id.hex(), node_id.hex())
        if dashboard_url:
            from ray_core.dashboard.auth import login_link
            logger.info("Dashboard at %s", dashboard_url)
            print(f"ray_core: dashboard at {dashboard_url}; this one-time link logs a browser "
                  f"in: {login_link(dashboard_url, rpc.auth_token())}", file=sys.stderr)
        atexit.register(_shutdown_at_exit)
        return _global.context


def _dashboard_url(node, session_dir: str) -> str:
    """The dashboard of the head this driver started, or of the cluster's session."""
    from ray_core.dashboard.launcher import read_dashboard_url
    if node is not None:
        return node.dashboard_url
    return read_dashboard_url(session_dir) or ""


def _version() -> str:
    from ray_core import __version__
    return __version__


def _level_name(level) -> str:
    """init(logging_level=...) as Ray takes it: logging.INFO, 20 or "info"."""
    import logging as std_logging
    if isinstance(level, int):
        level = std_logging.getLevelName(level)
    name = str(level).lower()
    return {"warn": "warning", "critical": "error", "fatal": "error"}.get(name, name)


def _resolve_address(address: str, temp_dir: str):
    from ray_core.node import read_current_cluster, read_token, running_head
    current = read_current_cluster(temp_dir) or {}
    if address == "auto":
        address = (os.environ.get("RAY_CORE_ADDRESS") or config.address
                   or current.get("gcs_address", ""))
        if not address:
            raise ConnectionError(f"init(address='auto') found no running cluster: none was "
                                  f"started with `ray_core start --head` under {temp_dir} and "
                                  f"RAY_CORE_ADDRESS is not set")
        if address == current.get("gcs_address") and running_head(temp_dir) is None:
            from ray_gcs.supervisor import death_note
            note = death_note(current.get("session_dir", ""))
            if note:
                raise ConnectionError(f"init(address='auto'): {note}")
            raise ConnectionError(f"init(address='auto'): the cluster recorded in {temp_dir} "
                                  f"({address}) is no longer running; `ray_core stop` clears "
                                  f"what it left, `ray_core start --head` starts a new one")
    # The cluster this machine's head wrote down: its session folder holds the token.
    session_dir = current.get("session_dir", "") if current.get("gcs_address") == address else ""
    if session_dir:
        from ray_gcs.supervisor import death_note
        note = death_note(session_dir)
        if note:
            raise ConnectionError(f"init(address={address!r}): {note}")
    if address.startswith("ray://"):
        raise ValueError("ray:// client addresses are not supported; pass the GCS host:port")
    if ":" not in address:
        raise ValueError(f"address must be 'auto' or 'host:port' of the GCS, got {address!r}")
    if session_dir and rpc.auth_token() is None:
        token = read_token(session_dir)
        if token:
            rpc.set_auth_token(token)
    return address, session_dir


def _find_local_node(gcs_address: str, session_dir: str, node_ip: Optional[str]):
    from ray_core.node import check_gcs, requires_token
    nodes = [n for n in check_gcs(gcs_address) if n.state == n.ALIVE]
    if rpc.auth_token() and not requires_token(gcs_address):
        rpc.set_auth_token("")  # a cluster without auth: our servers must not ask either
    if not nodes:
        raise ConnectionError(f"the cluster at {gcs_address} has no alive node to attach to")
    ips = {node_ip} if node_ip else {"127.0.0.1", _local_ip(), socket.gethostname()}
    chosen = next((n for n in nodes if n.node_manager_address in ips), None)
    if chosen is None:
        chosen = next((n for n in nodes if n.is_head_node), nodes[0])
    if not os.path.exists(chosen.object_store_socket_name):
        raise ConnectionError(f"no node of the cluster at {gcs_address} runs on this machine "
                              f"(a driver uses its local node's object store); join one "
                              f"first: ray_core start --address {gcs_address}")
    session_dir = chosen.session_dir or session_dir
    if not session_dir:
        raise ConnectionError("the node's session directory is unknown")
    return (chosen.node_id, f"{chosen.node_manager_address}:{chosen.node_manager_port}",
            chosen.object_store_socket_name, chosen.node_manager_address, session_dir)


def _connect_driver(gcs_address, node_id, raylet_address, plasma_socket, node_ip, session_dir,
                    namespace, node, runtime_env, log_to_driver, job_config=None) -> Worker:
    from ray_gcs.client import GcsClient
    from ray_common.protocol import common_pb2, gcs_service_pb2
    from ray_core._private.core_worker import DRIVER, CoreWorker
    from ray_core._private.log_monitor import LogSubscriber

    from ray_gcs.supervisor import death_note
    gcs = GcsClient(gcs_address, why_unreachable=lambda: death_note(session_dir))
    worker_id = WorkerID.from_random()
    # Where the driver runs: `list jobs` shows it (driver_info), and the GCS finishes
    # the job when this node dies.
    driver_address = common_pb2.Address(ip_address=node_ip, node_id=node_id,
                                        worker_id=worker_id.binary())
    job_info = gcs_service_pb2.JobTableData(
        driver_pid=os.getpid(), entrypoint=" ".join(sys.argv), ray_namespace=namespace,
        start_time_ms=int(time.time() * 1000), driver_address=driver_address)
    if job_config is not None:
        job_info.metadata.update(job_config.metadata)
        job_info.default_actor_detached = job_config.default_actor_lifetime == "detached"
    job_id = gcs.sync.add_job(job_info)
    if not isinstance(job_id, JobID):
        job_id = JobID(bytes(job_id))
    core = CoreWorker(mode=DRIVER, worker_id=worker_id, node_id=node_id,
                      node_ip=node_ip, raylet_address=raylet_address, gcs_address=gcs_address,
                      plasma_socket=plasma_socket, session_dir=session_dir, job_id=job_id,
                      gcs_client=gcs, namespace=namespace)
    worker = Worker("driver", core, namespace, node, session_dir, gcs)
    try:
        core.set_job_runtime_env(runtime_env)   # its packages uploaded once, here
        core.start()
    except BaseException:
        core.shutdown()
        raise
    if log_to_driver:
        worker.log_monitor = LogSubscriber(gcs, job_id.binary())
    return worker


def _shutdown_at_exit() -> None:
    try:
        shutdown()
    except Exception:
        pass


def shutdown() -> None:
    """Disconnect this driver; stop the node processes init() started. Safe to call twice."""
    global _global
    with _lock:
        worker = _global
        if worker is None or worker.mode != "driver":
            return
        _global = None
        core = worker.core_worker
        try:
            core.shutdown()
        except Exception as e:
            logger.warning("CoreWorker shutdown failed: %s", e)
        try:
            worker.gcs.sync.mark_job_finished(core.job_id)
        except Exception as e:
            logger.info("MarkJobFinished failed: %s", e)
        if worker.log_monitor is not None:
            worker.log_monitor.stop(core.task_manager.last_completed_at)
        if worker.node is not None:
            worker.node.kill()
        try:
            worker.gcs.sync.close()
        except Exception:
            pass
        try:
            rpc.run_sync(rpc.close_channels(), timeout=config.shutdown_grace_s)
        except Exception:
            pass
        rpc.set_auth_token(None)
        logger.info("shutdown() done")
        task_log.close()
        close_process_logging()


# ---- objects ------------------------------------------------------------------------

def put(value: Any, *, _owner=None) -> ObjectRef:
    """Ray's put(); `_owner` (an actor handle) makes that actor the object's owner, so the
    object outlives this process (it is still lost with the node that stores it)."""
    core = global_worker().core_worker
    if _owner is None:
        return core.put(value)
    if not isinstance(getattr(_owner, "_actor_id", None), bytes):
        raise TypeError(f"put(_owner=...) takes an actor handle, got {type(_owner).__name__}")
    return core.put(value, owner=_alive_actor_address(core, _owner))


def _alive_actor_address(core, handle):
    """The address of the worker an actor runs on, waiting while it is being created."""
    from ray_common.protocol import common_pb2, gcs_service_pb2
    state = gcs_service_pb2.ActorTableData
    deadline = time.monotonic() + config.put_owner_wait_s
    while True:
        row = rpc.run_sync(core.gcs.get_actor_info(handle._actor_id))
        if row is not None and row.state == state.ALIVE:
            return row.address
        if row is None or row.state == state.DEAD:
            raise ValueError(f"put(_owner=...): the actor {handle!r} is dead and cannot own "
                             f"objects")
        if time.monotonic() > deadline:
            raise exceptions.GetTimeoutError(
                f"put(_owner=...): the actor {handle!r} was not alive within "
                f"put_owner_wait_s={config.put_owner_wait_s}s (it is "
                f"{state.ActorState.Name(row.state)})")
        time.sleep(0.05)


def get(object_refs: Union[ObjectRef, Sequence[ObjectRef]], *,
        timeout: Optional[float] = None) -> Any:
    core = global_worker().core_worker
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout < 0):
        raise ValueError(f"get() timeout must be None or a number >= 0, got {timeout!r}")
    if isinstance(object_refs, ObjectRef):
        return core.get_objects([object_refs], timeout)[0]
    if not isinstance(object_refs, (list, tuple)):
        raise ValueError(f"get() expects an ObjectRef or a list of ObjectRefs, got "
                         f"{type(object_refs).__name__}")
    refs = list(object_refs)
    ids = ids_of(refs)
    if not refs:
        return []
    return core.get_objects(refs, timeout, ids=ids)


def wait(object_refs: List[ObjectRef], *, num_returns: int = 1, timeout: Optional[float] = None,
         fetch_local: bool = True):
    """Ray's wait(); an ObjectRefGenerator in the list is ready when its next() would not
    block."""
    core = global_worker().core_worker
    if isinstance(object_refs, ObjectRef):
        raise TypeError("wait() expects a list of ObjectRefs, not a single ObjectRef")
    if not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expects a list of ObjectRefs, got {type(object_refs).__name__}")
    refs = list(object_refs)
    if not refs:
        return [], []
    try:
        ids, generators = ids_of(refs), ()     # the common case: refs only, checked in C
    except TypeError:
        generators = [r for r in refs if isinstance(r, ObjectRefGenerator)]
        ids = ids_of([r for r in refs if not isinstance(r, ObjectRefGenerator)])
    if len(set(ids)) != len(ids) or len(set(map(id, generators))) != len(generators):
        raise ValueError("wait() requires a list of unique ObjectRefs")
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns < 1:
        raise ValueError(f"num_returns must be an int >= 1, got {num_returns!r}")
    if num_returns > len(refs):
        raise ValueError(f"num_returns ({num_returns}) cannot exceed the number of refs "
                         f"({len(refs)})")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"wait() timeout must be None or a number >= 0, got {timeout!r}")
    if generators:
        return _wait_with_generators(core, refs, num_returns, timeout)
    return core.wait(refs, num_returns, timeout, fetch_local)


def _wait_with_generators(core, refs, num_returns: int, timeout: Optional[float]):
    plain = [r for r in refs if not isinstance(r, ObjectRefGenerator)]
    if plain:
        core._wait_for(plain, len(plain), 0, for_get=False)   # starts borrowed refs' fetches
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        ready = [r for r in refs if (r.next_is_ready() if isinstance(r, ObjectRefGenerator)
                                     else core.memory_store.contains(r.object_id()))]
        left = None if deadline is None else deadline - time.monotonic()
        done = len(ready) >= num_returns or (left is not None and left <= 0)
        ready = ready[:num_returns]
        chosen = set(map(id, ready))
        pending = [r for r in refs if id(r) not in chosen]
        if done:
            return ready, pending
        watched = [object_id for r in pending
                   for object_id in (r.watched_ids() if isinstance(r, ObjectRefGenerator)
                                     else [r.object_id()])]
        core.wait_in_store(watched, 1, left)


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    if isinstance(object_ref, ObjectRefGenerator):
        object_ref = object_ref.completed()    # the generator task's own return
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"cancel() expects an ObjectRef or ObjectRefGenerator, got "
                        f"{type(object_ref).__name__}")
    if force and _is_actor_call(object_ref):
        # As in Ray: an actor's state would not survive killing its process mid-call.
        raise ValueError(f"force=True is not supported for actor tasks (the ref "
                         f"{object_ref.hex()} is an actor call's); cancel it without force, "
                         f"or ray_core.kill() the actor")
    global_worker().core_worker.cancel(object_ref, force, recursive)


def _is_actor_call(ref: ObjectRef) -> bool:
    """Whether `ref` is the return of an actor method call: its task id carries the
    actor's unique bytes (a normal task's carry the nil ones, as in Ray)."""
    actor_id = ref.task_id().actor_id().binary()
    return actor_id[:12] != b"\xff" * 12


# ---- cluster information -----------------------------------------------------------------

def get_gpu_ids() -> List[int]:
    """The GPUs the raylet assigned to the task or actor running here (as CUDA numbers
    them; CUDA_VISIBLE_DEVICES is set to the same while it runs); [] in a driver."""
    core = global_worker().core_worker
    return [index for index, _ in core.assigned_gpus()]


def nodes() -> List[dict]:
    gcs = global_worker().gcs
    out = []
    for info in gcs.sync.get_all_node_info():
        alive = info.state == info.ALIVE
        out.append({
            "NodeID": info.node_id.hex(), "Alive": alive, "alive": alive,
            "NodeManagerAddress": info.node_manager_address,
            "NodeManagerHostname": info.node_name or info.node_manager_address,
            "NodeManagerPort": info.node_manager_port,
            "ObjectManagerPort": info.object_manager_port,
            "ObjectStoreSocketName": info.object_store_socket_name,
            "NodeName": info.node_name or info.node_manager_address,
            "Resources": dict(info.resources_total) if alive else {},
            "Labels": dict(info.labels), "IsHeadNode": info.is_head_node,
            "DeathReason": info.death_reason,
        })
    return out


def cluster_resources() -> Dict[str, float]:
    total: Dict[str, float] = {}
    for node in nodes():
        if node["Alive"]:
            for name, amount in node["Resources"].items():
                total[name] = total.get(name, 0.0) + amount
    return total


def available_resources() -> Dict[str, float]:
    gcs = global_worker().gcs
    alive = {n["NodeID"] for n in nodes() if n["Alive"]}
    total: Dict[str, float] = {}
    for data in gcs.sync.get_cluster_resource_view():
        if data.node_id.hex() not in alive:
            continue
        for name, amount in data.resources_available.items():
            if amount > 0:
                total[name] = total.get(name, 0.0) + amount
    return total
