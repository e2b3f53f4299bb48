"""The state commands of the `ray_core` CLI, as Ray's: list, get, summary, logs,
timeline, stack and explain. Each is a thin printer over ray_core.util.state (the same
calls and the same StateDataSource a program or a dashboard uses).

  ray_core list tasks|actors|objects|nodes|workers|jobs|placement-groups
                [--filter "k=v"|"k!=v" ...] [--limit N] [--detail] [--format F]
  ray_core get <resource> ID
  ray_core summary tasks|actors|objects
  ray_core logs [cluster|worker|actor|task|raylet|gcs|FILE] [--id ID] [--pid PID]
                [--node-id N] [--err] [--follow] [--tail N]
  ray_core timeline [--output F]
  ray_core stack [--node N]
  ray_core explain ID
"""
import datetime
import json
import os
import re
import sys
from typing import List

from ray_common.config import config

RESOURCE_NAMES = ["tasks", "actors", "objects", "nodes", "workers", "jobs", "placement-groups"]
FORMATS = ["default", "json", "yaml", "table"]
_FILTER = re.compile(r"^\s*([A-Za-z_]+)\s*(!=|=)\s*(.*?)\s*$")


def _filter(text: str):
    match = _FILTER.match(text)
    if not match:
        raise ValueError(f"--filter {text!r} is not KEY=VALUE or KEY!=VALUE")
    return match.group(1), match.group(2), match.group(3).strip("\"'")


def add_parsers(sub, address_type) -> None:
    """Add the state commands to the `ray_core` subcommand parser."""
    def common(parser):
        parser.add_argument("--address", type=address_type, default=None,
                            help="GCS HOST:PORT (default: this machine's cluster, or "
                                 "RAY_CORE_ADDRESS)")
        parser.add_argument("--temp-dir", default=None)
        parser.add_argument("--auth-token", default=None)
        parser.add_argument("--timeout", type=float, default=None,
                            help=f"seconds (default {config.state_api_timeout_s:g})")

    ls = sub.add_parser("list", help="list tasks, actors, objects, nodes, workers, jobs or "
                                     "placement groups", description="Rows of one resource "
                                     "(ray_core.util.state.list_*), as `ray list`.")
    ls.add_argument("resource", choices=RESOURCE_NAMES)
    ls.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                    help='e.g. --filter "state=RUNNING" or --filter "state!=FINISHED"')
    ls.add_argument("--limit", type=int, default=None,
                    help=f"most rows (default {config.state_api_default_limit})")
    ls.add_argument("--detail", action="store_true", help="every column")
    ls.add_argument("--format", choices=FORMATS, default="default")
    common(ls)

    get = sub.add_parser("get", help="one task, actor, object, node, worker, job or "
                                     "placement group", description="One row by id, as "
                                     "`ray get`.")
    get.add_argument("resource", choices=RESOURCE_NAMES)
    get.add_argument("id")
    get.add_argument("--format", choices=FORMATS, default="default")
    common(get)

    summary = sub.add_parser("summary", help="tasks, actors or objects counted by state",
                             description="As `ray summary`.")
    summary.add_argument("resource", choices=["tasks", "actors", "objects"])
    summary.add_argument("--format", choices=FORMATS, default="default")
    common(summary)

    logs = sub.add_parser("logs", help="list or print log files of any node",
                          description="Without a target: every node's log files. worker "
                                      "--pid P, actor --id A or task --id T: that worker's "
                                      "stdout (--err: stderr); raylet or gcs: their logs; "
                                      "anything else: a file name (glob to list).")
    logs.add_argument("target", nargs="?", default="cluster")
    logs.add_argument("--id", default=None, help="actor or task id")
    logs.add_argument("--pid", type=int, default=None)
    logs.add_argument("--node-id", default=None, help="node id or a unique prefix of it")
    logs.add_argument("--err", action="store_true", help="stderr instead of stdout")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    logs.add_argument("--tail", type=int, default=1000, help="last N lines (-1: all)")
    common(logs)

    timeline = sub.add_parser("timeline", help="tasks as a Chrome trace (chrome://tracing, "
                                               "Perfetto)", description="As `ray timeline`.")
    timeline.add_argument("--output", default=None,
                          help="file (default ray_core-timeline-<time>.json in the temp dir)")
    common(timeline)

    stack = sub.add_parser("stack", help="Python stacks of every worker and driver",
                           description="py-spy dump of each worker and driver of each node "
                                       "(or one), with the task each runs.")
    stack.add_argument("--node-id", "--node", default=None,
                       help="one node's processes (an id or a unique prefix of it)")
    common(stack)

    explain = sub.add_parser("explain", help="where a task, object or actor is and what it "
                                             "waits for", description="One paragraph per id.")
    explain.add_argument("id")
    common(explain)


def _setup(args) -> None:
    if getattr(args, "temp_dir", None):
        config.update({"temp_dir": args.temp_dir})
    if getattr(args, "auth_token", None):
        config.update({"auth_token": args.auth_token})


# ---- printing ---------------------------------------------------------------------
def _plain(value):
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_plain(v) for v in value)
    return "" if value is None else str(value)


def format_table(rows: List[dict]) -> str:
    if not rows:
        return "(none)"
    columns = list(rows[0])
    cells = [[c.upper() for c in columns]] + [[_plain(r[c]) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in cells)


def _dump(rows: List[dict], fmt: str, default: str) -> str:
    fmt = default if fmt == "default" else fmt
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt == "yaml":
        import yaml
        return yaml.safe_dump(rows, sort_keys=False, default_flow_style=False).rstrip()
    return format_table(rows)


def _rows(rows, detail: bool) -> List[dict]:
    out = []
    for row in rows:
        data = row.asdict()
        out.append({k: v for k, v in data.items() if k in type(row).columns(detail)})
    return out


# ---- commands ---------------------------------------------------------------------
def cmd_list(args) -> int:
    from ray_core.util.state import api
    resource = args.resource.replace("-", "_")
    rows = getattr(api, f"list_{resource}")(
        address=args.address, filters=[_filter(f) for f in args.filter], limit=args.limit,
        timeout=args.timeout, detail=args.detail, raise_on_missing_output=False)
    print(_dump(_rows(rows, args.detail), args.format, "table"))
    return 0


_ID_COLUMN = {"tasks": "task_id", "actors": "actor_id", "objects": "object_id",
              "nodes": "node_id", "workers": "worker_id", "jobs": "job_id",
              "placement_groups": "placement_group_id"}


def cmd_get(args) -> int:
    from ray_core.util.state import api
    resource = args.resource.replace("-", "_")
    rows = api.list_resource_rows(resource, _ID_COLUMN[resource], args.id, args.address,
                                  args.timeout)
    if not rows:
        print(f"ray_core: error: no {resource[:-1].replace('_', ' ')} has id {args.id}",
              file=sys.stderr)
        return 1
    print(_dump(_rows(rows, True), args.format, "yaml"))
    return 0


def cmd_summary(args) -> int:
    from ray_core.util.state import api
    summary = getattr(api, f"summarize_{args.resource}")(
        address=args.address, timeout=args.timeout, raise_on_missing_output=False)
    if args.format in ("json", "yaml"):
        print(_dump(summary, args.format, args.format))
        return 0
    cluster = summary["cluster"]
    stamp = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")
    lines = [f"======== {args.resource.capitalize()} Summary: {stamp} ========", "Stats:",
             "-" * 36]
    lines += [f"{k}: {v}" for k, v in cluster.items() if k != "summary"]
    lines += ["", f"Table (group by {cluster['summary_by']}):", "-" * 36]
    lines.append(format_table([dict(group, **{cluster["summary_by"]: name})
                               if args.resource == "objects" else group
                               for name, group in cluster["summary"].items()]))
    print("\n".join(lines))
    return 0


def cmd_logs(args) -> int:
    from ray_core.util.state import api
    target = args.target
    if target == "cluster" or (any(c in target for c in "*?[") and args.pid is None):
        return _list_logs(args, "" if target == "cluster" else target)
    kwargs = {"address": args.address, "follow": args.follow, "tail": args.tail,
              "timeout": args.timeout, "suffix": "err" if args.err else "out"}
    if target in ("actor", "task"):
        if not args.id:
            raise ValueError(f"`logs {target}` needs --id")
        kwargs[f"{target}_id"] = args.id
    elif target == "worker":
        if args.pid is None:
            raise ValueError("`logs worker` needs --pid (and --node-id unless on the head)")
        kwargs.update(pid=args.pid, node_id=args.node_id)
    elif target in ("raylet", "gcs"):
        kwargs.update(node_id=args.node_id, filename=api.component_log(
            target, args.node_id, args.address, args.timeout))
    else:
        kwargs.update(node_id=args.node_id, filename=target)
    try:
        for chunk in api.get_log(**kwargs):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    return 0


def _list_logs(args, glob_filter: str) -> int:
    from ray_core.util.state import api
    nodes = api.list_nodes(address=args.address, timeout=args.timeout, limit=10 ** 6,
                           filters=[("state", "=", "ALIVE")])
    for node in nodes if not args.node_id else \
            [n for n in nodes if n.node_id.startswith(args.node_id)]:
        role = "head" if node.is_head_node else "node"
        print(f"======== {role} {node.node_id} ({node.node_ip}) ========")
        files = api.list_logs(address=args.address, node_id=node.node_id,
                              glob_filter=glob_filter or None, timeout=args.timeout)
        for category, names in sorted(files.items()):
            print(f"{category}:")
            print("\n".join(f"  {name}" for name in names))
    return 0


def cmd_timeline(args) -> int:
    from ray_core.util.state.timeline import timeline
    output = args.output or os.path.join(
        config.temp_dir, f"ray_core-timeline-{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}.json")
    events = timeline(output, address=args.address, timeout=args.timeout)
    slices = sum(e["ph"] == "X" for e in events)
    print(f"Wrote {slices} task slices to {output}: open it in chrome://tracing or "
          f"https://ui.perfetto.dev")
    return 0


def cmd_stack(args) -> int:
    from ray_core.util.state.stacks import cluster_stacks
    print(cluster_stacks(args.node_id, args.address, args.timeout))
    return 0


def cmd_explain(args) -> int:
    from ray_core.util.state.explain import explain
    print(explain(args.id, address=args.address, timeout=args.timeout))
    return 0


COMMANDS = {"list": cmd_list, "get": cmd_get, "summary": cmd_summary, "logs": cmd_logs,
            "timeline": cmd_timeline, "stack": cmd_stack, "explain": cmd_explain}


def run(args) -> int:
    """Run a state command; errors are one line on stderr and exit code 1."""
    from ray_core.util.state.common import RayStateApiException
    _setup(args)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, ConnectionError, FileNotFoundError, RayStateApiException) as e:
        print(f"ray_core: error: {e}", file=sys.stderr)
        return 1
