"""The `ray_core` command (also `python -m ray_core`): what an operator touches.

  ray_core start --head [...]         a head node on this machine (GCS, raylet, store)
  ray_core start --address HOST:PORT  join this machine to that cluster
  ray_core stop [--force]             stop every node started under the temp dir, and
                                      remove session folders beyond max_sessions
  ray_core status                     nodes, resources used/total, pending demands
  ray_core memory                     object store use per node, objects and their refs
  ray_core microbenchmark [...]       the core microbenchmark
  ray_core up / down CLUSTER.yaml     a cluster from a cluster file, autoscaled
  ray_core exec CLUSTER.yaml CMD      run CMD on that cluster's head
  ray_core list|get|summary|logs|timeline|stack|explain   the cluster's state (Ray's
                                      state CLI; ray_core/util/state/state_cli.py)

Nodes are started by ray_core.node (the same path as init() and cluster_utils), detached
so they outlive this command, and written down in `<temp_dir>/nodes/` for `stop`. Bad
flags or values print one error line and the usage, and exit 2.
"""
import argparse
import json
import os
import signal
import socket
import sys
import threading
from typing import Dict, List, Optional

from ray_common import bundle_resources
from ray_common.config import config

from ray_core.autoscaler import KV_NAMESPACE, STATUS_KEY
from ray_core.autoscaler.cluster_config import ClusterConfigError, load as load_cluster_file
from ray_core.autoscaler.commands import (add_commands, cmd_down, cmd_exec, cmd_up,
                                          format_autoscaler)
from ray_core.util.state import state_cli

PROG = "ray_core"


class _Parser(argparse.ArgumentParser):
    """argparse, with the error line first and the usage after it (exit 2)."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        self.print_usage(sys.stderr)
        sys.exit(2)


# ---- value checks ----------------------------------------------------------------------

def _non_negative(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}")
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _port(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {text!r}")
    return value


def _positive_int(text):
    value = _non_negative(int)(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _json_object(text, valid, expected: str):
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e}): {text!r}")
    if not isinstance(value, dict) or not all(valid(k, v) for k, v in value.items()):
        raise argparse.ArgumentTypeError(f"expected a JSON object of {expected}, got {text!r}")
    return value


def _resources(text):
    value = _json_object(text, lambda k, v: isinstance(k, str) and isinstance(v, (int, float))
                         and not isinstance(v, bool) and v >= 0,
                         'names to amounts >= 0, like {"accel": 2}')
    if {"CPU", "GPU"} & set(value):
        raise argparse.ArgumentTypeError("give CPU and GPU through --num-cpus / --num-gpus")
    return value


def _labels(text):
    return _json_object(text, lambda k, v: isinstance(k, str) and isinstance(v, str),
                        'names to strings, like {"zone": "a"}')


def _boolean(text):
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes")


def _address(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text


def _ip(text):
    try:
        socket.inet_aton(text)
    except OSError:
        raise argparse.ArgumentTypeError(f"expected an IPv4 address, got {text!r}")
    return text


# ---- the parser -----------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Start, stop and inspect ray_core clusters.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    start = sub.add_parser("start", help="start a head node, or join a cluster",
                           description="Start ray_core's processes for one node here.")
    where = start.add_mutually_exclusive_group(required=True)
    where.add_argument("--head", action="store_true", help="start a new cluster's head node")
    where.add_argument("--address", type=_address, help="join the cluster at HOST:PORT")
    start.add_argument("--port", type=_port, default=None,
                       help=f"GCS port of a head (default {config.gcs_server_port}; 0 picks one)")
    start.add_argument("--node-ip-address", type=_ip, default=None,
                       help="the IP other nodes reach this one at (head default 127.0.0.1; "
                            "a joining node defaults to its IP that routes to the head)")
    start.add_argument("--num-cpus", type=_non_negative(float), default=None)
    start.add_argument("--num-gpus", type=_non_negative(float), default=None)
    start.add_argument("--resources", type=_resources, default=None,
                       help='custom resources as JSON, e.g. \'{"accel": 2}\'')
    start.add_argument("--object-store-memory", type=_positive_int, default=None,
                       help="plasma store capacity in bytes")
    start.add_argument("--temp-dir", default=None,
                       help=f"root of sessions, address and process files (default "
                            f"{config.temp_dir})")
    start.add_argument("--storage", default=None,
                       help="GCS tables in Redis: 'redis' (a private redis-server) or "
                            "redis://HOST:PORT; default in memory (head only)")
    start.add_argument("--auth-token", default=None,
                       help="the cluster token (default: a new random one for a head; for "
                            "a joining node RAY_CORE_AUTH_TOKEN or this machine's token file)")
    start.add_argument("--disable-auth", action="store_true",
                       help="no cluster token: only for trusted networks")
    start.add_argument("--labels", type=_labels, default=None,
                       help='node labels as JSON, e.g. \'{"zone": "a"}\'')
    start.add_argument("--autoscaling-config", default=None,
                       help="a cluster file: the head runs an autoscaler for its node types")
    start.add_argument("--include-dashboard", type=_boolean, default=None,
                       help="serve the dashboard on the head: true (default) or false")
    start.add_argument("--dashboard-host", type=_ip, default=None,
                       help="the dashboard's interface (default 127.0.0.1; 0.0.0.0: all)")
    start.add_argument("--dashboard-port", type=_port, default=None,
                       help="the dashboard's port (default 8265)")
    start.add_argument("--block", action="store_true",
                       help="stay in the foreground; Ctrl-C stops the node")

    stop = sub.add_parser("stop", help="stop every ray_core node started on this machine",
                          description="Stop every node written down under the temp dir.")
    stop.add_argument("--force", action="store_true", help="SIGKILL at once")
    stop.add_argument("--temp-dir", default=None)

    status = sub.add_parser("status", help="nodes, resources and pending demands",
                            description="Print the cluster's nodes, resources and demands.")
    status.add_argument("--address", type=_address, default=None,
                        help="GCS HOST:PORT (default: this machine's cluster, or "
                             "RAY_CORE_ADDRESS)")
    status.add_argument("--temp-dir", default=None)
    status.add_argument("--auth-token", default=None)

    memory = sub.add_parser("memory", help="objects in the object store and why they live",
                            description="Per node store and spill usage, then the objects "
                                        "(ray_core.internal.memory_summary()).")
    memory.add_argument("--address", type=_address, default=None,
                        help="GCS HOST:PORT (default: this machine's cluster)")
    memory.add_argument("--temp-dir", default=None)
    memory.add_argument("--auth-token", default=None)
    memory.add_argument("--stats-only", action="store_true", help="only the per-node figures")

    bench = sub.add_parser("microbenchmark", help="run the core microbenchmark",
                           description="Tasks and objects rows beside Ray's figures.")
    bench.add_argument("--quick", action="store_true", help="shorter windows")
    bench.add_argument("--json", action="store_true", help="print rows as JSON")
    add_commands(sub, _port)
    state_cli.add_parsers(sub, _address)
    for name, command_parser in sub.choices.items():
        command_parser.set_defaults(command_parser=command_parser)
    return parser


# ---- commands -------------------------------------------------------------------------

def _temp_dir(args) -> str:
    return os.path.abspath(args.temp_dir or config.temp_dir)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _route_ip(host: str) -> str:
    """The local IP that packets to `host` leave from (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 1))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def cmd_start(args, parser) -> int:
    from ray_core.node import Node, running_head
    temp_dir = _temp_dir(args)
    if args.disable_auth and args.auth_token:
        parser.error("--auth-token and --disable-auth contradict each other")
    if args.address and (args.port is not None or args.storage or args.autoscaling_config
                         or args.include_dashboard is not None or args.dashboard_host
                         or args.dashboard_port is not None):
        parser.error("--port, --storage, --autoscaling-config and the dashboard's flags "
                     "apply to a head node (--head), not to --address")
    if args.autoscaling_config:
        try:
            load_cluster_file(args.autoscaling_config)
        except ClusterConfigError as e:
            parser.error(str(e))
    storage = args.storage or "memory"
    if storage not in ("memory", "redis") and not storage.startswith("redis://"):
        parser.error(f"--storage must be 'redis' or redis://HOST:PORT, got {storage!r}")
    if args.disable_auth:
        print(f"{PROG}: warning: authentication is disabled and ray_core's ports listen on "
              f"all interfaces (0.0.0.0): anyone who can reach this machine can run code "
              f"on the cluster. Use --disable-auth only on a trusted network.",
              file=sys.stderr)
    resources = dict(num_cpus=args.num_cpus, num_gpus=args.num_gpus, resources=args.resources,
                     object_store_memory=args.object_store_memory)
    token = args.auth_token or config.auth_token or None
    try:
        if args.head:
            running = running_head(temp_dir)
            if running is not None:
                print(f"{PROG}: error: a ray_core cluster already runs under {temp_dir} at "
                      f"{running['gcs_address']}; run `{PROG} stop` first, or give another "
                      f"--temp-dir", file=sys.stderr)
                return 1
            port = config.gcs_server_port if args.port is None else args.port
            if port and not _port_free(port):
                print(f"{PROG}: error: port {port} is in use (another ray_core head, or "
                      f"another program); stop what holds it (`{PROG} stop`) or choose "
                      f"another with --port", file=sys.stderr)
                return 1
            if args.dashboard_port and args.include_dashboard is not False and \
                    not _port_free(args.dashboard_port):
                print(f"{PROG}: error: the dashboard's port {args.dashboard_port} is in use; "
                      f"choose another with --dashboard-port (or leave it out: 8265, or a "
                      f"free port when that is taken)", file=sys.stderr)
                return 1
            node = Node.start_head(temp_dir, node_ip=args.node_ip_address or "127.0.0.1",
                                   port=port, storage=storage, token=token,
                                   auth=not args.disable_auth, detached=True,
                                   labels=args.labels,
                                   autoscaling_config=args.autoscaling_config,
                                   include_dashboard=args.include_dashboard,
                                   dashboard_host=args.dashboard_host,
                                   dashboard_port=args.dashboard_port, **resources)
        else:
            host = args.address.rpartition(":")[0]
            node = Node.start_worker(args.address, temp_dir,
                                     node_ip=args.node_ip_address or _route_ip(host),
                                     token="" if args.disable_auth else token, detached=True,
                                     labels=args.labels, **resources)
    except (PermissionError, ConnectionError, ValueError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except (RuntimeError, TimeoutError, OSError) as e:
        print(f"{PROG}: error: the node did not start: {e}", file=sys.stderr)
        return 1
    _print_started(node, temp_dir)
    if args.block:
        return _block(node)
    return 0


def _print_started(node, temp_dir: str) -> None:
    info = node.raylet_info
    lines = [f"ray_core node {info.get('node_id', '?')} started at {info.get('node_ip', '?')}",
             f"  session: {node.session_dir}"]
    if node.head:
        lines += [f"  cluster address: {node.gcs_address}",
                  "  connect a driver on this machine:  ray_core.init(address=\"auto\")",
                  f"  elsewhere:  ray_core.init(address=\"{node.gcs_address}\") with "
                  f"RAY_CORE_AUTH_TOKEN set"]
        if node.token:
            token_path = os.path.join(node.session_dir, "auth_token")
            lines += [f"  join another machine:  {PROG} start --address {node.gcs_address} "
                      f"--auth-token $(cat {token_path})",
                      f"  the cluster token is in {token_path} (mode 0600)"]
        else:
            lines += [f"  join another machine:  {PROG} start --address {node.gcs_address} "
                      f"--disable-auth"]
        if node.dashboard_url:
            lines += [f"  dashboard: {node.dashboard_url}",
                      f"  one-time dashboard login link: {node.dashboard_login_link()}"]
        if node.gcs_address.startswith("127."):
            lines.append("  (this head advertises a loopback address: start it with "
                         "--node-ip-address IP to let other machines join)")
    else:
        lines.append(f"  joined the cluster at {node.gcs_address}")
    lines.append(f"  stop this machine's nodes:  {PROG} stop"
                 + (f" --temp-dir {temp_dir}" if temp_dir != os.path.abspath(config.temp_dir)
                    else ""))
    print("\n".join(lines), flush=True)


def _block(node) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    procs = [p for p in (node.gcs_proc, node.raylet_proc) if p is not None]
    code = 0
    while not stop.wait(config.shutdown_grace_s / 10):
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            print(f"{PROG}: pid {dead[0].pid} exited with code {dead[0].returncode}; see "
                  f"{node.logs_dir}; stopping the node", file=sys.stderr)
            code = 1
            break
    node.kill()
    return code


def cmd_stop(args, parser) -> int:
    from ray_core.node import prune_sessions, stop_recorded
    temp_dir = _temp_dir(args)
    stopped = stop_recorded(temp_dir, force=args.force)
    if not stopped:
        print(f"No ray_core processes were running under {temp_dir}.")
    else:
        heads = sum(1 for r in stopped if r.get("head"))
        print(f"Stopped {len(stopped)} node(s) ({heads} head) under {temp_dir}.")
    pruned = prune_sessions(temp_dir)
    if pruned:
        print(f"Removed {len(pruned)} old session folder(s), keeping the newest "
              f"{config.max_sessions} (max_sessions).")
    return 0


def _client_token(args, temp_dir: str, address: str) -> Optional[str]:
    from ray_core.node import local_cluster_token
    return args.auth_token or config.auth_token or local_cluster_token(temp_dir, address)


def cmd_status(args, parser) -> int:
    from ray_core.node import check_gcs, read_current_cluster
    temp_dir = _temp_dir(args)
    address = args.address or os.environ.get("RAY_CORE_ADDRESS") or config.address or \
        (read_current_cluster(temp_dir) or {}).get("gcs_address")
    if not address:
        print(f"{PROG}: error: no cluster found: none was started under {temp_dir}; pass "
              f"--address HOST:PORT or set RAY_CORE_ADDRESS", file=sys.stderr)
        return 1
    current = read_current_cluster(temp_dir) or {}
    if current.get("gcs_address") == address:
        from ray_gcs.supervisor import death_note
        note = death_note(current.get("session_dir", ""))
        if note:
            print(f"{PROG}: error: {note}", file=sys.stderr)
            return 1
    token = _client_token(args, temp_dir, address)
    try:
        nodes = check_gcs(address, token=token)
        view = _resource_view(address, token)
    except (PermissionError, ConnectionError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    print(format_status(address, nodes, view))
    print(format_endpoints(sorted({n.session_dir for n in nodes if n.state == n.ALIVE
                                   and n.session_dir and os.path.isdir(n.session_dir)})))
    autoscaler = _autoscaler_status(address, token)
    if autoscaler is not None:
        print(format_autoscaler(autoscaler))
    return 0


def _resource_view(address: str, token: Optional[str]):
    from ray_common import rpc
    from ray_common.protocol import gcs_service_pb2, gcs_service_pb2_grpc

    async def fetch():
        stub = rpc.stub(gcs_service_pb2_grpc.NodeResourceInfoGcsServiceStub, address,
                        token=token)
        return await rpc.call_with_retry(stub.GetClusterResourceView,
                                         gcs_service_pb2.GetClusterResourceViewRequest(),
                                         timeout=config.cluster_connect_timeout_s)
    return list(rpc.run_sync(fetch()).nodes)


def _autoscaler_status(address: str, token: Optional[str]) -> Optional[dict]:
    from ray_common import rpc
    from ray_common.protocol import gcs_service_pb2, gcs_service_pb2_grpc

    async def fetch():
        stub = rpc.stub(gcs_service_pb2_grpc.InternalKVGcsServiceStub, address, token=token)
        return await rpc.call_with_retry(
            stub.InternalKVGet, gcs_service_pb2.InternalKVGetRequest(
                key=STATUS_KEY, namespace=KV_NAMESPACE),
            timeout=config.cluster_connect_timeout_s)
    reply = rpc.run_sync(fetch())
    return json.loads(reply.value) if reply.value else None


def _amount(name: str, value: float) -> str:
    if "memory" in name:
        return f"{value / 1024 ** 3:.2f}GiB"
    return f"{value:g}"


def _used_total(total: Dict[str, float], available: Dict[str, float]) -> List[str]:
    # A placement group's own resources are left out: what its bundles reserve shows as
    # used CPU/GPU already, and each group would add a line per resource and bundle.
    return [f"{name} {_amount(name, total[name] - available.get(name, 0.0))}/"
            f"{_amount(name, total[name])}" for name in sorted(total)
            if not bundle_resources.is_group_resource(name)]


def format_status(address: str, nodes, view) -> str:
    """The text of `ray_core status` (pure, so it is tested without a cluster)."""
    by_node = {data.node_id: data for data in view}
    alive = [n for n in nodes if n.state == n.ALIVE]
    dead = [n for n in nodes if n.state != n.ALIVE]
    lines = [f"======== ray_core cluster at {address} ========",
             f"Nodes: {len(alive)} alive, {len(dead)} dead"]
    cluster_total: Dict[str, float] = {}
    cluster_available: Dict[str, float] = {}
    pending: Dict[str, int] = {}
    infeasible: Dict[str, int] = {}
    in_groups: Dict[str, int] = {}   # placement group hex -> requests waiting in it
    for node in alive:
        data = by_node.get(node.node_id)
        total = dict(data.resources_total) if data else dict(node.resources_total)
        available = dict(data.resources_available) if data else dict(total)
        for name, amount in total.items():
            cluster_total[name] = cluster_total.get(name, 0.0) + amount
            cluster_available[name] = cluster_available.get(name, 0.0) + available.get(name, 0.0)
        role = " (head)" if node.is_head_node else ""
        lines.append(f"  ALIVE {node.node_id.hex()} {node.node_manager_address}{role}: "
                     + ", ".join(_used_total(total, available)))
        for demand in (data.resource_load if data else ()):
            group = next(filter(None, map(bundle_resources.group_of, demand.shape)), "")
            if group:
                in_groups[group] = in_groups.get(group, 0) + \
                    demand.num_ready_requests_queued + demand.num_infeasible_requests_queued
                continue
            shape = json.dumps(dict(sorted(demand.shape.items())))
            # The owners' backlog waits behind the queued requests it came with.
            ready, stuck = demand.num_ready_requests_queued, demand.num_infeasible_requests_queued
            if ready:
                pending[shape] = pending.get(shape, 0) + ready + demand.backlog_size
            if stuck:
                infeasible[shape] = infeasible.get(shape, 0) + stuck + \
                    (0 if ready else demand.backlog_size)
    for node in dead:
        reason = f": {node.death_reason}" if node.death_reason else ""
        lines.append(f"  DEAD  {node.node_id.hex()} {node.node_manager_address}{reason}")
    lines.append("Resources (used/total, cluster-wide):")
    lines += [f"  {entry}" for entry in _used_total(cluster_total, cluster_available)] or \
        ["  (none)"]
    lines.append("Demands:")
    if not pending and not infeasible and not in_groups:
        lines.append("  (no pending or infeasible requests)")
    lines += [f"  pending {shape}: {count}" for shape, count in sorted(pending.items())]
    lines += [f"  infeasible {shape}: {count} (no node can ever fit it)"
              for shape, count in sorted(infeasible.items())]
    lines += [f"  in placement group {group}: {count} waiting for its bundles"
              for group, count in sorted(in_groups.items())]
    return "\n".join(lines)


def format_endpoints(session_dirs: List[str]) -> str:
    """The metrics endpoints and the dashboard written down in the session folders of
    this machine (another machine's nodes write theirs in their own folders)."""
    from ray_common.metrics import metrics_files
    from ray_core.dashboard.launcher import read_dashboard_url
    lines = ["Metrics (Prometheus, this machine's processes):"]
    entries = [entry for session_dir in session_dirs for entry in metrics_files(session_dir)]
    lines += [f"  {e['component']} pid {e['pid']}"
              + (f" node {e['node_id'][:12]}" if e.get("node_id") else "")
              + f": http://{e['address']}/metrics" for e in entries] or ["  (none)"]
    urls = list(filter(None, map(read_dashboard_url, session_dirs)))
    lines.append(f"Dashboard: {urls[0] if urls else '(not running)'}")
    return "\n".join(lines)


def cmd_memory(args, parser) -> int:
    import ray_core
    from ray_core import internal
    from ray_common import rpc
    if args.auth_token:
        rpc.set_auth_token(args.auth_token)
    try:
        ray_core.init(address=args.address or "auto", _temp_dir=_temp_dir(args),
                      log_to_driver=False)
    except (PermissionError, ConnectionError, ValueError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    try:
        print(internal.memory_summary(stats_only=args.stats_only))
    finally:
        ray_core.shutdown()
    return 0


def cmd_microbenchmark(args, parser) -> int:
    from ray_core._private import microbenchmark
    argv = (["--quick"] if args.quick else []) + (["--json"] if args.json else [])
    return microbenchmark.main(argv)


COMMANDS = {"start": cmd_start, "stop": cmd_stop, "status": cmd_status, "memory": cmd_memory,
            "microbenchmark": cmd_microbenchmark, "up": cmd_up, "down": cmd_down,
            "exec": cmd_exec}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.error("a command is required")
    if args.command in state_cli.COMMANDS:
        return state_cli.run(args)
    return COMMANDS[args.command](args, args.command_parser)


if __name__ == "__main__":
    sys.exit(main())
