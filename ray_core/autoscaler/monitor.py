"""The head's autoscaler process: every autoscaler_update_interval_s it reads the
demand from the GCS and the raylets, lets Autoscaler decide, starts and ends nodes
through the provider (each on a thread of its own: a node takes seconds to start, and the
updates go on meanwhile), and writes the status view to the GCS for `ray_core status`.

It ends when the GCS is gone for good (its cluster is over) or on SIGTERM; the nodes it
launched are ended by `ray_core down` or `ray_core stop`, not by its own exit, so a
restarted monitor adopts them through the provider's node file.
"""
import argparse
import json
import logging
import os
import queue
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Tuple

from ray_common import bundle_resources, rpc
from ray_common.config import config
from ray_common.process import die_with_parent
from ray_common.protocol import gcs_service_pb2 as pb
from ray_common.protocol import node_manager_pb2, node_manager_pb2_grpc
from ray_common.logging import setup_process_logging
from ray_gcs.client import GcsClient
from ray_gcs.errors import GcsUnavailableError
from ray_gcs.supervisor import death_note

from ray_core.autoscaler import KV_NAMESPACE, REQUEST_KEY, STATUS_KEY
from ray_core.autoscaler.autoscaler import Autoscaler, ClusterSnapshot, NodeSnapshot
from ray_core.autoscaler.cluster_config import ClusterConfigError, load
from ray_core.autoscaler.demand import PendingGroup
from ray_core.autoscaler.node_provider import LAUNCH_ID_LABEL, NodeLaunchError, make_provider

logger = logging.getLogger("ray_core.autoscaler")

# Ray's autoscaler also looks at no more than this many waiting shapes per update.
MAX_DEMANDS = 1000


async def read_snapshot(gcs: GcsClient) -> ClusterSnapshot:
    nodes = await gcs.get_all_node_info(only_alive=True)
    view = {d.node_id: d for d in await gcs.get_cluster_resource_view()}
    demands: List[Dict[str, float]] = []
    snapshots = []
    for info in nodes:
        data = view.get(info.node_id)
        total = dict(data.resources_total) if data else dict(info.resources_total)
        free = dict(data.resources_available) if data else dict(total)
        load = list(data.resource_load) if data else []
        launch_id = info.labels.get(LAUNCH_ID_LABEL, "")
        address = f"{info.node_manager_address}:{info.node_manager_port}"
        busy, holds_objects = bool(load), False
        if launch_id and not busy:
            busy, holds_objects = await _work_held(address)
        snapshots.append(NodeSnapshot(node_id=info.node_id, launch_id=launch_id,
                                      total=total, free=free, busy=busy,
                                      is_head=info.is_head_node,
                                      holds_objects=holds_objects, address=address))
        for demand in load:
            if any(bundle_resources.group_of(name) for name in demand.shape):
                continue    # waits in a placement group: the group's bundles are its demand
            count = demand.num_ready_requests_queued + \
                demand.num_infeasible_requests_queued + demand.backlog_size
            demands += [dict(demand.shape)] * min(count, MAX_DEMANDS - len(demands))
    groups = [PendingGroup(group.placement_group_id.hex(), group.strategy or "PACK",
                           [dict(b.unit_resources) for b in group.bundles if not b.node_id])
              for group in await gcs.get_all_placement_group()
              if group.state in (pb.PG_PENDING, pb.PG_RESCHEDULING)]
    raw = await gcs.kv_get(REQUEST_KEY, namespace=KV_NAMESPACE)
    requested = json.loads(raw) if raw else []
    return ClusterSnapshot(nodes=snapshots, demands=demands, groups=groups,
                           requested=requested)


async def _work_held(raylet: str) -> Tuple[bool, bool]:
    """(busy, holds objects): a node with leased workers or a driver is not idle,
    whatever its free resources say; one with primary copies (in memory or spilled)
    must hand them over before it ends."""
    stub = rpc.stub(node_manager_pb2_grpc.NodeManagerServiceStub, raylet)
    try:
        stats = await rpc.call_with_retry(stub.GetNodeStats,
                                          node_manager_pb2.GetNodeStatsRequest(),
                                          timeout=10, retry=False)
    except Exception as e:  # noqa: BLE001 - unknown counts as busy: never end it blindly
        logger.warning("GetNodeStats of %s failed (%s); treating the node as busy", raylet, e)
        return True, True
    return (any(w.is_driver or not w.is_idle for w in stats.workers),
            stats.num_pinned_objects > 0 or stats.num_spilled_objects > 0)


class Monitor:
    def __init__(self, args):
        self.cluster = load(args.config)
        self.gcs = GcsClient(args.gcs_address,
                             why_unreachable=lambda: death_note(args.session_dir))
        self.provider = make_provider(self.cluster, args.gcs_address, args.session_dir,
                                      args.temp_dir, config.auth_token or None)
        self.scaler = Autoscaler(self.cluster)
        self.stop = threading.Event()
        self._failed: "queue.Queue[Tuple[str, str, str]]" = queue.Queue()
        self._ending: set = set()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="node-launch")

    def run(self) -> int:
        logger.info("Autoscaler of cluster %s: worker types %s, max_workers %d, provider %s",
                    self.cluster.cluster_name, sorted(self.cluster.worker_types),
                    self.cluster.max_workers, self.cluster.provider["type"])
        while not self.stop.is_set():
            try:
                self.update()
            except GcsUnavailableError as e:
                logger.error("The GCS is gone (%s); the autoscaler stops", e)
                return 1
            except Exception:  # noqa: BLE001 - one bad update must not end autoscaling
                logger.exception("Autoscaler update failed")
            self.stop.wait(config.autoscaler_update_interval_s)
        self._pool.shutdown(wait=True)
        return 0

    def update(self) -> None:
        while not self._failed.empty():
            self.scaler.launch_failed(*self._failed.get())
        snapshot = rpc.run_sync(read_snapshot(self.gcs))
        decision = self.scaler.update(snapshot, self.provider.non_terminated_nodes())
        for launch_id, node_type in decision.launch:
            logger.info("Launching a %s node (launch %s) for the waiting demand",
                        node_type, launch_id)
            self._pool.submit(self._launch, launch_id, node_type)
        by_launch = {n.launch_id: n.node_id for n in snapshot.nodes if n.launch_id}
        for launch_id, why in decision.terminate:
            if launch_id not in self._ending:
                self._ending.add(launch_id)
                logger.info("Ending node %s (launch %s): %s",
                            by_launch.get(launch_id, b"").hex() or "-", launch_id, why)
                self._pool.submit(self._terminate, launch_id, by_launch.get(launch_id), why)
        for launch_id, raylet, target in decision.drain:
            if launch_id not in self._ending:
                self._ending.add(launch_id)
                self._pool.submit(self._drain, launch_id, raylet, target)
        status = self.scaler.status()
        rpc.run_sync(self.gcs.kv_put(STATUS_KEY, json.dumps(status).encode(),
                                     namespace=KV_NAMESPACE))

    def _launch(self, launch_id: str, node_type: str) -> None:
        try:
            self.provider.create_node(launch_id, self.cluster.node_types[node_type])
            logger.info("Node of launch %s (%s) started", launch_id, node_type)
        except NodeLaunchError as e:
            logger.error("Launching a %s node (launch %s) failed: %s", node_type, launch_id, e)
            self._failed.put((launch_id, node_type, str(e)))
        except Exception as e:  # noqa: BLE001 - a provider bug is a failed launch too
            logger.exception("Launching a %s node (launch %s) failed", node_type, launch_id)
            self._failed.put((launch_id, node_type, repr(e)))

    def _drain(self, launch_id: str, raylet: str, target: str) -> None:
        """Move an idle node's primary copies to `target`; the node ends at a later
        update, once it holds none."""
        try:
            async def drain():
                stub = rpc.stub(node_manager_pb2_grpc.NodeManagerServiceStub, raylet)
                return await stub.DrainObjects(
                    node_manager_pb2.DrainObjectsRequest(target_raylet_address=target),
                    timeout=config.drain_objects_timeout_s)
            reply = rpc.run_sync(drain())
            logger.info("Node of launch %s handed %d primary copies to %s%s", launch_id,
                        reply.num_moved, target,
                        f" ({reply.num_failed} failed: {reply.message})"
                        if reply.num_failed else "")
        except Exception:  # noqa: BLE001 - tried again at the next update
            logger.exception("Moving the objects of the node of launch %s failed", launch_id)
        finally:
            self._ending.discard(launch_id)

    def _terminate(self, launch_id: str, node_id, why: str) -> None:
        try:
            if node_id:
                rpc.run_sync(self.gcs.drain_node(node_id, reason=f"autoscaler: {why}"))
            self.provider.terminate_node(launch_id)
        except Exception:  # noqa: BLE001 - tried again at the next update
            logger.exception("Ending node of launch %s failed", launch_id)
        finally:
            self._ending.discard(launch_id)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m ray_core.autoscaler.monitor")
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--config", required=True, help="the cluster file")
    parser.add_argument("--detached", action="store_true",
                        help="outlive the process that started it (a CLI-started head)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.detached:
        die_with_parent()
    setup_process_logging("autoscaler", os.path.join(args.session_dir, "logs"))
    try:
        monitor = Monitor(args)
    except ClusterConfigError as e:
        logger.error("%s", e)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: monitor.stop.set())
    return monitor.run()


if __name__ == "__main__":
    sys.exit(main())
