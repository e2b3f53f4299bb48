"""Introspection for users and the CLI: `ray_core.internal.memory_summary()`.

What this process (normally the driver, which owns most objects) holds and why, plus
every node's plasma and spill figures (from each raylet's GetNodeStats). `ray_core
memory` (the CLI) prints memory_summary().
"""
from typing import List

from ray_common import rpc

from ray_core._private import worker as _worker


def memory_objects() -> List[dict]:
    """Rows {object_id, owner, pid, size, where, reasons, local_count} for every object this
    process owns or references; reasons among LOCAL_REFERENCE, USED_BY_PENDING_TASK(n),
    CONTAINED_IN(ids), BORROWED_BY(workers), PINNED_BY_GET(n), LINEAGE, BORROWER."""
    return _worker.global_worker().core_worker.lifetime.objects_info()


def node_memory_stats() -> List[dict]:
    """Per alive node: plasma used/capacity, pinned primaries, spilled objects and bytes."""
    core = _worker.global_worker().core_worker
    out = []
    for info in core.gcs.sync.get_all_node_info(only_alive=True):
        address = f"{info.node_manager_address}:{info.node_manager_port}"
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
    """A readable table: per node store and spill usage, then objects by owner with their
    size, where they live and why they are still referenced (largest first)."""
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
    core = _worker.global_worker().core_worker
    lines.append(f"======== Objects referenced by worker {core.worker_id.hex()[:12]} "
                 f"(pid {rows[0]['pid'] if rows else '-'}, {core.mode}) ========")
    lines.append(f"{'OBJECT ID':58} {'OWNER':12} {'SIZE':>12} {'WHERE':22} REFERENCED BY")
    for row in rows[:limit]:
        owner = "this" if row["owner_worker_id"] else "other"
        lines.append(f"{row['object_id']:58} {owner:12} {row['size']:>12} {row['where']:22} "
                     f"{' '.join(row['reasons'])}")
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more")
    total = sum(r["size"] for r in rows)
    lines.append(f"{len(rows)} objects, {_mb(total)} in total")
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1024 ** 2:.1f} MB"
