"""cluster_stacks(): the Python stacks of every worker and driver of the cluster (or of
one node), on demand, with the task each process runs: each raylet runs `py-spy dump`
on its own processes (DumpStacks), so no worker is restarted or prepared for it; the
running tasks come from the GCS task table (RUNNING attempts, by worker id)."""
import asyncio
from typing import Optional

from ray_common.protocol import common_pb2

from ray_core.util.state.state_manager import StateDataSource


async def _gather(source: StateDataSource, node_id: Optional[str]):
    nodes = [n for n in await source.nodes() if n.state == "ALIVE" and
             (not node_id or n.node_id.startswith(node_id.lower()))]
    if not nodes:
        raise ValueError(f"no alive node has id {node_id}")
    replies = await asyncio.gather(*(source.stacks(n) for n in nodes), return_exceptions=True)
    tasks = await source.task_entries()
    return nodes, replies, tasks.tasks


def cluster_stacks(node_id: Optional[str] = None, address: Optional[str] = None,
                   timeout: Optional[float] = None) -> str:
    source = StateDataSource(address)
    nodes, replies, entries = source.run(_gather(source, node_id), timeout)
    running = {}
    for entry in entries:
        if entry.state == common_pb2.RUNNING:
            running.setdefault(entry.worker_id, []).append(entry)
    out = []
    for node, reply in zip(nodes, replies):
        role = "head" if node.is_head_node else "node"
        out.append(f"======== {role} {node.node_id} ({node.node_ip}) ========")
        if isinstance(reply, BaseException):
            out.append(f"  (the node's raylet did not answer: {reply})")
            continue
        for stack in sorted(reply.stacks, key=lambda s: (not s.is_driver, s.pid)):
            kind = "driver" if stack.is_driver else "worker"
            tasks = running.get(stack.worker_id, [])
            doing = ", ".join(f"task {e.task_id.hex()} ({e.name}) on its "
                              f"{'main thread' if e.type == common_pb2.NORMAL_TASK else 'actor threads'}"
                              for e in tasks) or "no task"
            out.append(f"--- {kind} pid {stack.pid} ({stack.worker_id.hex()[:12]}): "
                       f"running {doing}")
            out.append(stack.stack.rstrip() if stack.stack else f"  (no stack: {stack.error})")
    return "\n".join(out)
