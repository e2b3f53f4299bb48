"""Introspection for users and the CLI: `ray_core.internal.memory_summary()`.

Every driver and worker of the cluster is asked (CoreWorkerService.GetObjectsInfo, found
through each raylet's GetNodeStats) what it owns or references and why; each raylet for
its plasma and spill figures. `ray_core memory` (the CLI) prints memory_summary().
"""
import json
from typing import List

from ray_common import rpc
from ray_common.config import config
from ray_common.protocol import core_worker_pb2, core_worker_pb2_grpc

from ray_core._private import worker as _worker


def _core():
    return _worker.global_worker().core_worker


def _alive_nodes():
    core = _core()
    for info in core.gcs.sync.get_all_node_info(only_alive=True):
        yield info, f"{info.node_manager_address}:{info.node_manager_port}"


def memory_objects(all_workers: bool = True) -> List[dict]:
    """Rows {object_id, owned, owner_worker_id, worker_id, mode, node_id, pid, size,
    where, reasons, local_count}: one per object a process owns or references (this
    process only with all_workers=False). reasons among LOCAL_REFERENCE,
    USED_BY_PENDING_TASK(n), CONTAINED_IN(ids), BORROWED_BY(workers), PINNED_BY_GET(n),
    LINEAGE, BORROWER."""
    core = _core()
    rows = core.lifetime.objects_info()
    if not all_workers:
        return rows
    me = core.worker_id.binary()
    for _, raylet in _alive_nodes():
        try:
            stats = rpc.run_sync(core.lease_client.get_node_stats(raylet))
        except Exception:
            continue
        for worker in stats.workers:
            if worker.worker_id == me or not worker.port:
                continue
            try:
                rows.extend(rpc.run_sync(_objects_of(f"{worker.ip_address}:{worker.port}")))
            except Exception:
                continue      # exited meanwhile
    return rows


async def _objects_of(address: str) -> List[dict]:
    stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub, address)
    reply = await stub.GetObjectsInfo(core_worker_pb2.GetObjectsInfoRequest(),
                                      timeout=config.rpc_default_deadline_s)
    return json.loads(reply.rows_json)


def node_memory_stats() -> List[dict]:
    """Per alive node: plasma used/capacity, pinned primaries, spilled objects and bytes."""
    core = _core()
    out = []
    for info, address in _alive_nodes():
        try:
            stats = rpc.run_sync(core.lease_client.get_node_stats(address))
        except Exception as e:
            out.append({"node_id": info.node_id.hex(), "error": str(e)})
            continue
        out.append({"node_id": info.node_id.hex(), "address": address,
                    "plasma_used": stats.object_store_used_bytes,
                    "plasma_capacity": stats.object_store_capacity_bytes,
                    "pinned_objects": stats.num_pinned_objects,
                    "spilled_objects": stats.num_spilled_objects,
                    "spilled_bytes": stats.spilled_bytes,
                    "total_spilled_bytes": stats.total_spilled_bytes,
                    "total_restored_bytes": stats.total_restored_bytes,
                    "spill_directory": stats.spill_directory,
                    "workers_killed_for_memory": stats.num_workers_killed_for_memory})
    return out


def memory_summary(stats_only: bool = False, limit: int = 1000) -> str:
    """A readable report: per node store and spill usage, then per process the objects it
    owns or references, with size, where they live and why they are still referenced."""
    lines = ["======== Object store by node ========"]
    for node in node_memory_stats():
        if "error" in node:
            lines.append(f"node {node['node_id'][:12]}: unreachable ({node['error']})")
            continue
        lines.append(
            f"node {node['node_id'][:12]} ({node['address']}): plasma "
            f"{_mb(node['plasma_used'])} / {_mb(node['plasma_capacity'])} used, "
            f"{node['pinned_objects']} pinned primaries, {node['spilled_objects']} spilled "
            f"({_mb(node['spilled_bytes'])} on disk in {node['spill_directory']}; spilled "
            f"{_mb(node['total_spilled_bytes'])}, restored {_mb(node['total_restored_bytes'])} "
            f"in total), {node['workers_killed_for_memory']} workers killed for memory")
    if stats_only:
        return "\n".join(lines)
    rows = memory_objects()
    by_process = {}
    for row in rows:
        by_process.setdefault((row["worker_id"], row["pid"], row["mode"], row["node_id"]),
                              []).append(row)
    shown = 0
    for (worker_id, pid, mode, node_id), group in sorted(by_process.items(),
                                                          key=lambda kv: kv[0][2]):
        lines.append(f"======== {mode} {worker_id[:12]} (pid {pid}, node {node_id[:12]}): "
                     f"{len(group)} objects, {_mb(sum(r['size'] for r in group))} ========")
        lines.append(f"{'OBJECT ID':58} {'OWNER':12} {'SIZE':>12} {'WHERE':22} REFERENCED BY")
        for row in group:
            if shown >= limit:
                break
            shown += 1
            owner = "this" if row["owned"] else (row["owner_worker_id"][:12] or "?")
            lines.append(f"{row['object_id']:58} {owner:12} {row['size']:>12} "
                         f"{row['where']:22} {' '.join(row['reasons'])}")
    if shown < len(rows):
        lines.append(f"... and {len(rows) - shown} more")
    lines.append(f"{len(rows)} object references in {len(by_process)} processes, "
                 f"{_mb(sum(r['size'] for r in rows))} in total")
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1024 ** 2:.1f} MB"
