"""timeline(): the cluster's tasks as a Chrome trace (chrome://tracing, Perfetto).

One process track per node, one thread track per worker (named by its pid), a complete
event ("ph": "X") per task attempt that ran, from its RUNNING to its FINISHED/FAILED
time as recorded (microseconds), named after the task and carrying its id, state and
error type. Built from the GCS task table, like every other state read.
"""
import json
from typing import List, Optional

from ray_common.protocol import common_pb2

from ray_core.util.state.state_manager import StateDataSource


def chrome_trace(entries, nodes) -> List[dict]:
    """Trace events of TaskInfoEntry protos on NodeState rows."""
    node_index = {node.node_id: i for i, node in enumerate(nodes)}
    events, threads = [], set()
    for i, node in enumerate(nodes):
        role = "head" if node.is_head_node else "node"
        events.append({"ph": "M", "name": "process_name", "pid": i,
                       "args": {"name": f"{role} {node.node_id[:12]} ({node.node_ip})"}})
    for entry in entries:
        times = entry.state_times_us
        start = times.get(common_pb2.RUNNING)
        pid = node_index.get(entry.node_id.hex())
        if not start or pid is None:
            continue        # never ran, or on a node the GCS no longer lists
        tid = entry.worker_pid
        if (pid, tid) not in threads:
            threads.add((pid, tid))
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                           "args": {"name": f"worker pid {tid} "
                                            f"({entry.worker_id.hex()[:12]})"}})
        end = times.get(common_pb2.FINISHED) or times.get(common_pb2.FAILED) or start
        events.append({
            "ph": "X", "cat": common_pb2.TaskType.Name(entry.type).lower(),
            "name": entry.name or entry.task_id.hex(), "pid": pid, "tid": tid, "ts": start,
            "dur": max(end - start, 0),
            "args": {"task_id": entry.task_id.hex(), "attempt_number": entry.attempt_number,
                     "state": common_pb2.TaskStatus.Name(entry.state),
                     "func_or_class_name": entry.func_or_class_name,
                     "error_type": entry.error_type or None,
                     "actor_id": entry.actor_id.hex() or None}})
    return events


def timeline(filename: Optional[str] = None, address: Optional[str] = None,
             timeout: Optional[float] = None) -> List[dict]:
    """The trace events (Ray's ray.timeline); written as JSON to `filename` if given."""
    source = StateDataSource(address)
    entries = source.run(source.task_entries(), timeout).tasks
    events = chrome_trace(entries, source.run(source.nodes(), timeout))
    if filename is not None:
        with open(filename, "w") as f:
            json.dump(events, f)
    return events
