"""`python -m ray_raylet.main`: one node's raylet process.

Order of start: the plasma store (this process owns it; it dies with us), the gRPC server
(NodeManagerService and ObjectManagerService on one port), logging to
`<session>/logs/raylet.log` (or `raylet_<port>.log` when another raylet already logs in
this session dir), registration with the GCS, and last the info file a launcher waits
for. SIGTERM (or ShutdownRaylet) stops the workers, unregisters the node and stops the
store; a SIGKILL leaves nothing behind either, since every child dies with its parent.
"""
import argparse
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading

from ray_common import metrics, rpc
from ray_common.config import config
from ray_common.ids import NodeID
from ray_common.logging import setup_process_logging
from ray_common.process import die_with_parent, write_file_atomically
from ray_raylet import machine

logger = logging.getLogger(__name__)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m ray_raylet.main",
                                     description="Start one node's raylet.")
    parser.add_argument("--gcs-address", required=True, help="GCS address, host:port")
    parser.add_argument("--node-ip", required=True, help="IP other nodes reach this one at")
    parser.add_argument("--port", type=int, default=0, help="gRPC port (0 picks a free one)")
    parser.add_argument("--num-cpus", type=float, default=None)
    parser.add_argument("--num-gpus", type=float, default=None)
    parser.add_argument("--resources", default=None, help='custom resources, JSON {"name": n}')
    parser.add_argument("--object-store-memory", type=int, default=None, help="bytes")
    parser.add_argument("--labels", default=None, help='node labels, JSON {"key": "value"}')
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--info-file", default=None,
                        help="where to write the node's JSON info once registered")
    parser.add_argument("--head", action="store_true", help="this is the head node")
    parser.add_argument("--die-with-parent", action="store_true",
                        help="exit when the process that started this one exits")
    return parser.parse_args(argv)


_log_lock = None  # held for the life of the process by the session dir's first raylet


def _log_component(logs_dir: str, port: int) -> str:
    """`raylet` for the first raylet of a session dir, `raylet_<port>` for the others."""
    global _log_lock
    os.makedirs(logs_dir, exist_ok=True)
    lock = open(os.path.join(logs_dir, ".raylet.lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return f"raylet_{port}"
    _log_lock = lock
    return "raylet"


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.die_with_parent:
        die_with_parent()
    from ray_gcs.client import GcsClient
    from ray_gcs.supervisor import death_note
    from ray_plasma.client import PlasmaClient
    from ray_plasma.launcher import start_plasma_store
    from ray_raylet.node_manager import NodeManager

    session_dir = os.path.abspath(args.session_dir)
    logs_dir = os.path.join(session_dir, "logs")
    sockets_dir = os.path.join(session_dir, "sockets")
    os.makedirs(sockets_dir, exist_ok=True)
    node_id = NodeID.from_random().binary()
    gpu_ids = machine.detect_gpu_ids()
    store_bytes = args.object_store_memory or machine.default_object_store_memory()
    try:
        total = machine.total_resources(args.node_ip, args.num_cpus, args.num_gpus,
                                        args.resources, store_bytes, gpu_ids, head=args.head)
    except ValueError as e:
        print(f"ray_raylet: {e}", file=sys.stderr)
        return 2
    socket_path = os.path.join(sockets_dir, f"plasma_store_{node_id.hex()[:12]}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    store = start_plasma_store(socket_path, store_bytes, logs_dir=logs_dir)
    node = None
    try:
        plasma = PlasmaClient(socket_path)
        gcs = GcsClient(args.gcs_address, why_unreachable=lambda: death_note(session_dir))
        node = NodeManager(node_id=node_id, node_ip=args.node_ip, gcs_client=gcs,
                           gcs_address=args.gcs_address, plasma=plasma,
                           object_store_socket=socket_path, session_dir=session_dir,
                           total_resources=total, is_head=args.head, gpu_ids=gpu_ids,
                           labels=json.loads(args.labels) if args.labels else None)
        node.on_shutdown_request = stop.set
        metrics.serve("raylet", session_dir, args.node_ip, node_id=node_id.hex())
        port = rpc.run_sync(node.serve(args.port))
        log_path = setup_process_logging(_log_component(logs_dir, port), logs_dir)
        logger.info("Raylet of node %s starting at %s:%d, plasma store pid %d at %s, log %s",
                    node_id.hex(), args.node_ip, port, store.pid, socket_path, log_path)
        rpc.run_sync(node.start())
        metrics.add_snapshot(rpc.io_loop(), node.metric_samples)
        rpc.run_sync(node.watch_store(store.pid))
        info = {"node_id": node_id.hex(), "raylet_address": f"{args.node_ip}:{port}",
                "object_store_socket": socket_path, "node_ip": args.node_ip,
                "pid": os.getpid(), "log_file": log_path}
        info_file = args.info_file or os.path.join(session_dir, f"raylet_info_{port}.json")
        write_file_atomically(info_file, json.dumps(info))
        logger.info("Raylet of node %s ready: %s", node_id.hex(), info)
        while not stop.wait(3600):
            pass
        rpc.run_sync(node.shutdown())
        return 0
    except Exception:
        logger.exception("Raylet of node %s failed", node_id.hex())
        if node is not None and node.pool is not None:
            rpc.run_sync(node.pool.shutdown())
        raise
    finally:
        store.terminate()
        try:
            store.wait(timeout=config.worker_exit_grace_ms / 1000.0)
        except subprocess.TimeoutExpired:
            store.kill()
            store.wait()


if __name__ == "__main__":
    sys.exit(main())
