"""`ray_core up`, `down` and `exec` with a cluster file, and the autoscaler's part of
`ray_core status`.

`up` runs the file's setup commands and starts the head here (the machine it runs on),
with the autoscaler watching it; the autoscaler then launches min_workers of each type
and whatever the demand needs, through the file's provider. `down` ends every node the
provider launched, then the head. `exec` runs a shell line on the head with the cluster's
address and token in its environment, so `python script.py` there connects with init().
"""
import functools
import json
import os
import subprocess
import sys
import time
from typing import Optional

from ray_common.config import config

from ray_core.autoscaler.cluster_config import ClusterConfigError, load
from ray_core.autoscaler.node_provider import NODE_TYPE_LABEL, end_launched_nodes, make_provider

PROG = "ray_core"


def add_commands(sub, port_type) -> None:
    up = sub.add_parser("up", help="start a cluster from a cluster file (head here)",
                        description="Run the setup commands, start the head on this machine "
                                    "and its autoscaler, which launches the worker nodes.")
    up.add_argument("cluster_file")
    up.add_argument("--port", type=port_type, default=None,
                    help=f"GCS port (default {config.gcs_server_port}; 0 picks one)")
    up.add_argument("--temp-dir", default=None,
                    help="default: the file's temp_dir, else " + config.temp_dir)
    down = sub.add_parser("down", help="end a cluster started by `up`",
                          description="End every node the provider launched, then the head.")
    down.add_argument("cluster_file")
    down.add_argument("--temp-dir", default=None)
    run = sub.add_parser("exec", help="run a shell command on a cluster's head",
                         description="Run CMD on the head with RAY_CORE_ADDRESS and the "
                                     "cluster token set; exits with CMD's status.")
    run.add_argument("cluster_file")
    run.add_argument("cmd", help="the shell command line")
    run.add_argument("--temp-dir", default=None)


def _cluster_command(body):
    """Read the cluster file first: a bad one is one error line naming the key."""
    @functools.wraps(body)
    def run(args, parser) -> int:
        try:
            cluster = load(args.cluster_file)
        except ClusterConfigError as e:
            return _error(str(e))
        return body(args, cluster,
                    os.path.abspath(args.temp_dir or cluster.temp_dir or config.temp_dir))
    return run


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


@_cluster_command
def cmd_up(args, cluster, temp_dir: str) -> int:
    from ray_core.node import Node, running_head
    running = running_head(temp_dir)
    if running is not None:
        return _error(f"a ray_core cluster already runs under {temp_dir} at "
                      f"{running['gcs_address']}; `{PROG} down {args.cluster_file}` first")
    for command in cluster.setup_commands + cluster.head_setup_commands:
        done = subprocess.run(command, shell=True)
        if done.returncode:
            return _error(f"setup command {command!r} exited with {done.returncode}")
    head = cluster.node_types[cluster.head_node_type]
    port = config.gcs_server_port if args.port is None else args.port
    try:
        node = Node.start_head(temp_dir, port=port, detached=True, storage=cluster.storage,
                               token=config.auth_token or None,
                               labels={**head.labels, NODE_TYPE_LABEL: head.name},
                               autoscaling_config=cluster.path, **head.start_arguments())
    except (PermissionError, ConnectionError, ValueError, RuntimeError, TimeoutError,
            OSError) as e:
        return _error(f"the head did not start: {e}")
    workers = ", ".join(f"{name} ({t.min_workers}-{t.max_workers})"
                        for name, t in sorted(cluster.worker_types.items())) or "none"
    print(f"Cluster {cluster.cluster_name} is up: head {node.node_id} at {node.gcs_address}\n"
          f"  worker types (min-max): {workers}; at most {cluster.max_workers} workers\n"
          f"  session: {node.session_dir} (autoscaler log: logs/autoscaler.log)\n"
          f"  run a command there:  {PROG} exec {args.cluster_file} 'python script.py'\n"
          f"  end it:  {PROG} down {args.cluster_file}", flush=True)
    return 0


@_cluster_command
def cmd_down(args, cluster, temp_dir: str) -> int:
    from ray_core.node import read_current_cluster, read_token, stop_autoscalers, stop_recorded
    current = read_current_cluster(temp_dir)
    if current is None:
        print(f"No cluster runs under {temp_dir}.")
        return 0
    stop_autoscalers(temp_dir)
    ended = end_launched_nodes(make_provider(
        cluster, current["gcs_address"], current["session_dir"], temp_dir,
        read_token(current["session_dir"])))
    stopped = stop_recorded(temp_dir)
    print(f"Cluster {cluster.cluster_name} is down: {ended} launched node(s) ended, "
          f"{len(stopped)} node(s) stopped under {temp_dir}.")
    return 0


@_cluster_command
def cmd_exec(args, cluster, temp_dir: str) -> int:
    from ray_core.node import read_current_cluster, read_token
    current = read_current_cluster(temp_dir)
    if current is None:
        return _error(f"no cluster runs under {temp_dir}: `{PROG} up {args.cluster_file}` "
                      f"first")
    env = dict(os.environ, RAY_CORE_ADDRESS=current["gcs_address"],
               RAY_CORE_TEMP_DIR=temp_dir,
               RAY_CORE_AUTH_TOKEN=read_token(current["session_dir"]) or "")
    return subprocess.run(args.cmd, shell=True, env=env).returncode


def format_autoscaler(status: dict, now: Optional[float] = None) -> str:
    """The `Autoscaler:` section of `ray_core status` (pure)."""
    now = time.time() if now is None else now
    age = now - status.get("updated_at", now)
    lines = [f"Autoscaler ({status.get('cluster_name', '?')}, updated {age:.0f}s ago):"]

    def counts(key: str) -> str:
        return ", ".join(f"{n} {t}" for t, n in sorted(status.get(key, {}).items())) or "none"
    lines.append(f"  running: {counts('running')}")
    lines.append(f"  launching: {counts('launching')}")
    for idle in status.get("idle", []):
        lines.append(f"  idle: {idle['node_type']} (launch {idle['launch_id']}) for "
                     f"{idle['idle_s']:.0f}s")
    for entry in status.get("infeasible", []):
        lines.append(f"  infeasible for every node type: {json.dumps(entry['shape'])} x "
                     f"{entry['count']}")
    for entry in status.get("capped", []):
        lines.append(f"  waiting at max_workers: {json.dumps(entry['shape'])} x "
                     f"{entry['count']}")
    for failure in status.get("failures", [])[-5:]:
        when = time.strftime("%H:%M:%S", time.localtime(failure["time"]))
        lines.append(f"  failed launch {when} ({failure['node_type']}): {failure['message']}")
    return "\n".join(lines)
