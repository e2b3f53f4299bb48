"""`python -m ray_gcs.server`: the GCS process.

    python -m ray_gcs.server --port P --session-dir D [--storage memory|redis://HOST:PORT[/NS]]
        [--address-file F] [--node-ip IP] [--detached]

Start-up order: open and check the storage, rebuild every table from it (a restart on
Redis recovers the cluster here), start the gRPC server, then write "IP:PORT" to the
address file (default <D>/gcs_address) atomically: a reader of that file can call at
once. SIGTERM/SIGINT stop the server (in-flight calls get gcs_server_stop_grace_s) and
exit 0. A bad storage URL or an unreachable Redis ends start-up with one error line
naming the problem, on stderr and in <D>/logs/gcs_server.log, and exit code 2.
The process dies with its parent unless --detached (the CLI's `start --head` uses it).
"""
import argparse
import asyncio
import logging
import os
import signal
import sys

from ray_common import metrics, rpc
from ray_common.config import config
from ray_common.logging import setup_process_logging
from ray_common.process import die_with_parent, write_file_atomically
from ray_common.protocol import gcs_service_pb2_grpc as grpc_pb
from ray_gcs.actor_manager import GcsActorManager
from ray_gcs.actor_table import GcsActorTable
from ray_gcs.job_manager import GcsJobManager
from ray_gcs.kv_manager import GcsKVManager
from ray_gcs.node_manager import GcsNodeManager
from ray_gcs.placement_group_scheduler import GcsPlacementGroupScheduler
from ray_gcs.placement_group_table import GcsPlacementGroupTable
from ray_gcs.pubsub import GcsPublisher, PubSubServicer
from ray_gcs.storage import Storage, StorageError, open_storage
from ray_gcs.task_manager import GcsTaskManager
from ray_gcs.worker_manager import GcsWorkerManager

logger = logging.getLogger("ray_gcs.server")  # __name__ is "__main__" under -m


class GcsServer:
    """The tables, the publisher and the gRPC server that serves them, on one loop."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self.publisher = GcsPublisher()
        self.kv = GcsKVManager(storage)
        self.nodes = GcsNodeManager(storage, self.publisher)
        self.jobs = GcsJobManager(storage, self.publisher)
        self.workers = GcsWorkerManager(storage, self.publisher)
        self.actors = GcsActorTable(storage, self.publisher)
        self.placement_groups = GcsPlacementGroupTable(storage)
        self.tasks = GcsTaskManager()
        self.nodes.add_death_listener(self.jobs.on_node_dead)
        self.actor_manager = GcsActorManager(self.actors, self.nodes, self.publisher)
        self.placement_groups.scheduler = GcsPlacementGroupScheduler(
            self.placement_groups, self.nodes, self.publisher)
        self._server = None
        self.port = None

    async def start(self, port: int = 0, host: str = "0.0.0.0") -> int:
        await self.storage.connect()
        for table in (self.jobs, self.workers, self.actors, self.placement_groups, self.nodes):
            await table.load()
        self.actor_manager.start()
        self.placement_groups.scheduler.start()
        self._server, self.port = await rpc.start_server([
            (grpc_pb.add_InternalKVGcsServiceServicer_to_server, self.kv),
            (grpc_pb.add_NodeInfoGcsServiceServicer_to_server, self.nodes),
            (grpc_pb.add_NodeResourceInfoGcsServiceServicer_to_server, self.nodes.resource_view),
            (grpc_pb.add_JobInfoGcsServiceServicer_to_server, self.jobs),
            (grpc_pb.add_WorkerInfoGcsServiceServicer_to_server, self.workers),
            (grpc_pb.add_ActorInfoGcsServiceServicer_to_server, self.actor_manager),
            (grpc_pb.add_PlacementGroupInfoGcsServiceServicer_to_server, self.placement_groups),
            (grpc_pb.add_TaskInfoGcsServiceServicer_to_server, self.tasks),
            (grpc_pb.add_InternalPubSubGcsServiceServicer_to_server,
             PubSubServicer(self.publisher)),
        ], port=port, host=host)
        logger.info("GCS serving on port %d with storage %s", self.port, self.storage.describe())
        return self.port

    def metric_samples(self):
        """The GCS's gauges, read at scrape time on its loop (ray_common.metrics)."""
        tables = {"nodes": self.nodes, "jobs": self.jobs, "workers": self.workers,
                  "actors": self.actors, "placement_groups": self.placement_groups}
        yield metrics.Sample("gcs_table_rows", "gauge", "Rows in each GCS table", ("table",),
                             {(name,): table.num_rows() for name, table in tables.items()})
        yield metrics.Sample(
            "gcs_entries", "gauge", "What the GCS holds per actor, group or peer beside the "
            "table rows: all of it must go when they end", ("kind",), {
                ("dead_actors",): self.actors.num_dead(),
                ("named_actors",): self.actors.num_named(),
                ("actor_incarnations",): self.actor_manager.num_incarnations(),
                ("removed_placement_groups",): self.placement_groups.num_removed(),
                ("placement_groups_waiting",): self.placement_groups.scheduler.num_waiting(),
                ("placement_group_waiters",): self.placement_groups.num_waiters(),
                ("subscribers",): self.publisher.num_subscribers,
                ("rpc_channels",): rpc.num_channels()})
        yield metrics.Sample("tasks", "gauge", "Task attempts in the GCS task table, by state",
                             ("state",), {(state,): n for state, n in
                                          self.tasks.count_by_state().items()})
        yield metrics.sample("task_events_dropped", "Task attempts or events the task table "
                             "lost (past its per-job bound, or dropped by reporters)",
                             self.tasks.num_dropped(), "counter")
        yield metrics.sample("nodes_alive", "Nodes the GCS holds alive",
                             len(self.nodes.alive_nodes()))

    async def stop(self, grace: float = 0.0) -> None:
        self.actor_manager.stop()
        self.placement_groups.scheduler.stop()
        self.nodes.health_checks.stop()
        self.nodes.resource_view.stop()
        self.publisher.close_all()
        if self._server is not None:
            await self._server.stop(grace)
        await self.storage.close()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m ray_gcs.server",
                                     description="The ray_core GCS server.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--storage", default="memory",
                        help="memory (default) or redis://HOST:PORT[/NAMESPACE]")
    parser.add_argument("--address-file", default=None, help="default <session-dir>/gcs_address")
    parser.add_argument("--node-ip", default="127.0.0.1", help="the IP written to the address file")
    parser.add_argument("--detached", action="store_true",
                        help="keep running when the parent process exits")
    return parser.parse_args(argv)


async def serve(args) -> int:
    try:
        storage = open_storage(args.storage)
        server = GcsServer(storage)
        metrics.serve("gcs_server", args.session_dir, args.node_ip)
        metrics.add_snapshot(asyncio.get_running_loop(), server.metric_samples)
        port = await server.start(args.port)
    except (ValueError, StorageError, OSError) as e:
        logger.error("GCS failed to start: %s", e)
        return 2
    address_file = args.address_file or os.path.join(args.session_dir, "gcs_address")
    write_file_atomically(address_file, f"{args.node_ip}:{port}")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    logger.info("GCS stopping (signal)")
    await server.stop(config.gcs_server_stop_grace_s)
    return 0


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.detached:
        die_with_parent()
    setup_process_logging("gcs_server", os.path.join(args.session_dir, "logs"))
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
