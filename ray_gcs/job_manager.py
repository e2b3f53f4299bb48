"""The job table: a job per driver, with ids the GCS assigns in increasing order.

The id counter lives in storage (Table.COUNTER), so a GCS restarted on Redis keeps
counting where it stopped instead of handing out an id twice. A job is finished by
MarkJobFinished (driver shutdown, or its raylet seeing the driver die) or when the node
its driver ran on dies. Finishing twice is harmless.
"""
import logging
import time
from typing import Dict

from ray_common.ids import JobID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb, gcs_service_pb2_grpc
from ray_gcs import errors
from ray_gcs.pubsub import GcsPublisher
from ray_gcs.storage import Storage, Table, load_rows

logger = logging.getLogger(__name__)

JOB_COUNTER_KEY = b"job_id"


class GcsJobManager(gcs_service_pb2_grpc.JobInfoGcsServiceServicer):
    def __init__(self, storage: Storage, publisher: GcsPublisher):
        self._storage = storage
        self._publisher = publisher
        self._jobs: Dict[bytes, pb.JobTableData] = {}

    def num_rows(self) -> int:
        """Rows in the table (jobs): a metrics gauge."""
        return len(self._jobs)

    async def load(self) -> None:
        self._jobs = await load_rows(self._storage, Table.JOB, pb.JobTableData)
        logger.info("Recovered %d job(s)", len(self._jobs))

    async def _save_and_publish(self, job: pb.JobTableData) -> None:
        await self._storage.put(Table.JOB, job.job_id, job.SerializeToString())
        self._publisher.publish(pb.JOB_CHANNEL, job.job_id, job_message=job)

    async def _finish(self, job: pb.JobTableData, why: str) -> None:
        if job.state == pb.JOB_FINISHED:
            return
        job.state = pb.JOB_FINISHED
        job.end_time_ms = int(time.time() * 1000)
        logger.info("Job %s finished: %s", job.job_id.hex(), why)
        await self._save_and_publish(job)

    async def on_node_dead(self, node: common_pb2.NodeInfo) -> None:
        for job in list(self._jobs.values()):
            if job.state == pb.JOB_RUNNING and job.driver_address.node_id == node.node_id:
                await self._finish(job, f"its driver's node {node.node_id.hex()} died")

    @errors.handler
    async def AddJob(self, request, context):
        number = await self._storage.increment(Table.COUNTER, JOB_COUNTER_KEY)
        job = pb.JobTableData()
        job.CopyFrom(request.data)
        job.job_id = JobID.from_int(number).binary()
        job.state = pb.JOB_RUNNING
        job.end_time_ms = 0
        if not job.start_time_ms:
            job.start_time_ms = int(time.time() * 1000)
        self._jobs[job.job_id] = job
        logger.info("Job %s added (driver pid %d, entrypoint %r)", job.job_id.hex(),
                    job.driver_pid, job.entrypoint)
        await self._save_and_publish(job)
        return pb.AddJobReply(job_id=job.job_id)

    @errors.handler
    async def MarkJobFinished(self, request, context):
        job_id = errors.check_id(request.job_id, JobID, "MarkJobFinished job_id")
        job = self._jobs.get(job_id)
        if job is None:
            raise errors.not_found(f"MarkJobFinished: unknown job {job_id.hex()}")
        await self._finish(job, "marked finished")
        return pb.MarkJobFinishedReply()

    @errors.handler
    async def GetAllJobInfo(self, request, context):
        return pb.GetAllJobInfoReply(
            job_info_list=sorted(self._jobs.values(), key=lambda j: j.job_id))
