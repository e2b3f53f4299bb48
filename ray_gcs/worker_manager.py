"""The worker table: workers and drivers as raylets report them, alive or failed.

ReportWorkerFailure of a worker the table has not seen still records it (a worker may
die before anyone added it), and publishes on WORKER_FAILURE_CHANNEL so owners learn of
the death of workers they leased or borrowed from. Raylets report every worker's end
(idle ones reaped too), so only the newest `gcs_max_dead_workers` dead rows are kept:
a long-lived cluster's table must not grow with its history.
"""
import logging
import time
from typing import Dict

from ray_common.ids import WorkerID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb, gcs_service_pb2_grpc
from ray_gcs import errors
from ray_gcs.ended_rows import EndedRows
from ray_gcs.pubsub import GcsPublisher
from ray_gcs.storage import Storage, Table, load_rows

logger = logging.getLogger(__name__)


class GcsWorkerManager(gcs_service_pb2_grpc.WorkerInfoGcsServiceServicer):
    def __init__(self, storage: Storage, publisher: GcsPublisher):
        self._storage = storage
        self._publisher = publisher
        self._workers: Dict[bytes, pb.WorkerTableData] = {}
        self._dead = EndedRows("gcs_max_dead_workers")

    def num_rows(self) -> int:
        """Rows in the table (workers, alive and remembered dead): a metrics gauge."""
        return len(self._workers)

    async def load(self) -> None:
        self._workers = await load_rows(self._storage, Table.WORKER, pb.WorkerTableData)
        for worker in sorted(self._workers.values(), key=lambda w: w.timestamp_ms):
            if not worker.is_alive:
                self._dead.add(worker.worker_id)
        logger.info("Recovered %d worker(s)", len(self._workers))
        await self._forget_oldest_dead()

    async def _forget_oldest_dead(self) -> None:
        await self._dead.forget_overflow(self._workers, self._storage, Table.WORKER)

    async def _save(self, worker: pb.WorkerTableData) -> None:
        self._workers[worker.worker_id] = worker
        await self._storage.put(Table.WORKER, worker.worker_id, worker.SerializeToString())

    @errors.handler
    async def AddWorkerInfo(self, request, context):
        worker = pb.WorkerTableData()
        worker.CopyFrom(request.worker_data)
        errors.check_id(worker.worker_id, WorkerID, "AddWorkerInfo worker_id")
        worker.is_alive = True
        if not worker.timestamp_ms:
            worker.timestamp_ms = int(time.time() * 1000)
        await self._save(worker)
        return pb.AddWorkerInfoReply()

    @errors.handler
    async def ReportWorkerFailure(self, request, context):
        failure = request.worker_failure
        worker_id = errors.check_id(failure.worker_id, WorkerID, "ReportWorkerFailure worker_id")
        worker = pb.WorkerTableData()
        if worker_id in self._workers:
            worker.CopyFrom(self._workers[worker_id])
        worker.MergeFrom(failure)
        worker.is_alive = False
        if not failure.timestamp_ms:
            worker.timestamp_ms = int(time.time() * 1000)
        logger.info("Worker %s (pid %d) failed: %s %s", worker_id.hex(), worker.pid,
                    common_pb2.ErrorType.Name(worker.exit_type), worker.exit_detail)
        await self._save(worker)
        self._dead.add(worker_id)
        self._publisher.publish(pb.WORKER_FAILURE_CHANNEL, worker_id,
                                worker_failure_message=worker)
        await self._forget_oldest_dead()
        return pb.ReportWorkerFailureReply()

    @errors.handler
    async def GetAllWorkerInfo(self, request, context):
        return pb.GetAllWorkerInfoReply(worker_table_data=list(self._workers.values()))
