"""The task table: every task attempt's state, aggregated from the rows workers and
drivers report (AddTaskEventData), read by the state API, `list tasks`, `timeline` and
`explain` (GetTaskEvents).

Rows of one attempt come from two processes in any order: its owner (the times it
reached PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, and how it
ended; with what the task is in its first row) and the worker that runs it (RUNNING,
how it ended: where it ran and why it failed). A reporter's later row of an attempt
holds every time its earlier rows did, so folding a row is keeping it: the attempt's
state and times are worked out when read (TaskStatus numbers grow with progress, so the
state is the largest reached; FAILED above FINISHED: an owner that could not store what
the worker made fails it). One update per row, not per state: folding six events a
task cost ~8 us of the GCS's CPU, which on a 2-core machine comes off the driver's.

Memory is bounded per job: past `task_events_max_num_task_in_gcs` attempts of a job the
oldest finished (or failed) one is forgotten first, and only when none has ended the
oldest of all; each forgotten attempt counts in the job's drop count, with the events
the reporting processes dropped themselves. Nothing here is persisted: a restarted GCS
starts with an empty table (as Ray's).
"""
import collections
import logging
from typing import Dict, Optional, Tuple

from ray_common.config import config
from ray_common.ids import JobID, TaskID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb, gcs_service_pb2_grpc
from ray_gcs import errors

logger = logging.getLogger(__name__)
_JOB_ID_AT = TaskID.size() - JobID.size()    # a task id ends with its job's id


_ARGS, _NODE, _SUBMITTED, _RUNNING = (common_pb2.PENDING_ARGS_AVAIL,
                                      common_pb2.PENDING_NODE_ASSIGNMENT,
                                      common_pb2.SUBMITTED_TO_WORKER, common_pb2.RUNNING)


class _Attempt:
    """One task attempt: the latest row of its owner and of its executor, turned into a
    TaskInfoEntry when read."""
    __slots__ = ("task_id", "attempt", "owned", "ran", "definition", "parent_task_id",
                 "node_id", "worker_id", "pid", "error_type", "error_message", "owner")

    def __init__(self, task_id: bytes, attempt: int):
        self.task_id = task_id
        self.attempt = attempt
        # The owner's times (args available, node assignment, submitted, ended) and end
        # state; the executor's (running, ended) and end state.
        self.owned: Optional[tuple] = None
        self.ran: Optional[tuple] = None
        self.definition: Optional[pb.TaskDefinition] = None
        self.parent_task_id = b""
        self.node_id = b""
        self.worker_id = b""
        self.pid = 0
        self.error_type = ""
        self.error_message = ""
        self.owner: Optional[common_pb2.Address] = None

    def times(self) -> Dict[int, float]:
        """TaskStatus -> seconds since the epoch it was reached (the executor's end
        time before the owner's: the task ended there)."""
        times = {}
        if self.owned is not None:
            args, node, submitted, ended, end_state = self.owned
            for state, time_s in ((_ARGS, args), (_NODE, node), (_SUBMITTED, submitted),
                                  (end_state, ended)):
                if time_s:
                    times[state] = time_s
        if self.ran is not None:
            running, ended, end_state = self.ran
            if running:
                times[_RUNNING] = running
            if end_state:
                times[end_state] = ended
        return times

    @property
    def state(self) -> int:
        times = self.times()
        return max(times) if times else common_pb2.NIL

    def to_entry(self) -> pb.TaskInfoEntry:
        task_id = TaskID(self.task_id)
        times = self.times()
        entry = pb.TaskInfoEntry(
            task_id=self.task_id, attempt_number=self.attempt,
            job_id=task_id.job_id().binary(), parent_task_id=self.parent_task_id,
            state=max(times) if times else common_pb2.NIL, node_id=self.node_id,
            worker_id=self.worker_id, worker_pid=self.pid, error_type=self.error_type,
            error_message=self.error_message)
        definition = self.definition
        if definition is not None:
            entry.name = definition.name
            entry.func_or_class_name = definition.func_or_class_name
            entry.type = definition.type
            entry.required_resources.update(definition.required_resources)
            entry.placement_group_id = definition.placement_group_id
            if definition.type != common_pb2.NORMAL_TASK:
                entry.actor_id = task_id.actor_id().binary()
        if self.owner is not None:
            entry.owner_address.CopyFrom(self.owner)
        for state, time_s in times.items():
            entry.state_times_us[state] = int(time_s * 1e6)
        return entry


class _JobTasks:
    """One job's attempts, oldest first, and the ended ones in the order they ended."""
    __slots__ = ("attempts", "ended", "dropped")

    def __init__(self):
        self.attempts: "collections.OrderedDict[Tuple[bytes, int], _Attempt]" = \
            collections.OrderedDict()
        self.ended: "collections.OrderedDict[Tuple[bytes, int], None]" = \
            collections.OrderedDict()
        self.dropped = 0

    def evict(self, limit: int) -> None:
        while len(self.attempts) > limit:
            if self.ended:
                key, _ = self.ended.popitem(last=False)
                del self.attempts[key]
            else:
                key, _ = self.attempts.popitem(last=False)
            self.dropped += 1


class GcsTaskManager(gcs_service_pb2_grpc.TaskInfoGcsServiceServicer):
    def __init__(self):
        self._jobs: Dict[bytes, _JobTasks] = {}
        self._reporter_dropped = 0    # events the reporting processes dropped

    def _job(self, task_id: bytes) -> _JobTasks:
        job_id = task_id[_JOB_ID_AT:]     # TaskID(task_id).job_id(), without the object
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = _JobTasks()
        return job

    @staticmethod
    def _new_attempt(job: _JobTasks, task_id: bytes, attempt: int) -> _Attempt:
        entry = job.attempts[(task_id, attempt)] = _Attempt(task_id, attempt)
        earlier = job.attempts.get((task_id, attempt - 1)) if attempt else None
        if earlier is not None:   # a retry is the same task: same definition and parent
            entry.definition = earlier.definition
            entry.parent_task_id = earlier.parent_task_id
            entry.owner = earlier.owner
        return entry

    def _entry(self, task_id: bytes, attempt: int) -> _Attempt:
        job = self._job(task_id)
        entry = job.attempts.get((task_id, attempt))
        return entry if entry is not None else self._new_attempt(job, task_id, attempt)

    def add(self, data: pb.TaskEventData) -> None:
        """Fold one batch of rows into the table."""
        self._reporter_dropped += data.num_dropped
        owner = data.address if data.address.port else None
        touched = set()
        attempts = None
        last_job_key = None
        node_id, worker_id, pid = data.node_id, data.worker_id, data.pid
        definitions = list(data.definitions)     # one wrapper each, not one per row
        parents = iter(data.described_parents)
        for task_id, attempt, executed, args, node, submitted, running, ended, end_state, \
                described in zip(data.task_ids, data.attempts, data.executed,
                                 data.args_avail_s, data.node_assignment_s,
                                 data.submitted_s, data.running_s, data.ended_s,
                                 data.end_states, data.definition_of):
            job_key = task_id[_JOB_ID_AT:]   # a batch is mostly of one job
            if job_key != last_job_key:
                job, last_job_key = self._job(task_id), job_key
                attempts = job.attempts
                touched.add(job)
            key = (task_id, attempt)
            entry = attempts.get(key)
            if entry is None:
                entry = self._new_attempt(job, task_id, attempt) if attempt else \
                    attempts.setdefault(key, _Attempt(task_id, 0))
            if executed:
                entry.ran = (running, ended, end_state)
                entry.node_id, entry.worker_id, entry.pid = node_id, worker_id, pid
            else:
                entry.owned = (args, node, submitted, ended, end_state)
                if entry.owner is None:
                    entry.owner = owner
            if end_state:
                job.ended[key] = None    # (an ended one keeps its place)
            if described:
                entry.definition = definitions[described - 1]
                entry.parent_task_id = next(parents)
        for task_id, attempt, error_type, message in zip(
                data.error_task_ids, data.error_attempts, data.error_types,
                data.error_messages):
            entry = self._entry(task_id, attempt)
            if not entry.error_type or error_type != "TASK_EXECUTION_EXCEPTION":
                entry.error_type = error_type
            if message and (not entry.error_message or
                            error_type == "TASK_EXECUTION_EXCEPTION"):
                entry.error_message = message
        limit = config.task_events_max_num_task_in_gcs
        for job in touched:
            if len(job.attempts) > limit:
                job.evict(limit)

    def count_by_state(self) -> Dict[str, int]:
        """Task attempts per TaskStatus name, all jobs together (a metrics gauge)."""
        counts = collections.Counter(entry.state for job in self._jobs.values()
                                     for entry in job.attempts.values())
        return {common_pb2.TaskStatus.Name(state): n for state, n in counts.items()}

    def num_dropped(self) -> int:
        """Attempts forgotten past the per-job bound, and events reporters dropped."""
        return self._reporter_dropped + sum(job.dropped for job in self._jobs.values())

    @errors.handler
    async def AddTaskEventData(self, request, context):
        self.add(request.data)
        return pb.AddTaskEventDataReply()

    @errors.handler
    async def GetTaskEvents(self, request, context):
        if request.job_id:
            jobs = [self._jobs[request.job_id]] if request.job_id in self._jobs else []
        else:
            jobs = list(self._jobs.values())
        wanted = set(request.task_ids)
        actor_id = request.actor_id
        reply = pb.GetTaskEventsReply(
            num_status_task_events_dropped=self._reporter_dropped + sum(j.dropped for j in jobs))
        total = 0
        for job in jobs:
            for (task_id, _), entry in job.attempts.items():
                if wanted and task_id not in wanted:
                    continue
                if actor_id and TaskID(task_id).actor_id().binary() != actor_id:
                    continue
                total += 1
                if not request.limit or len(reply.tasks) < request.limit:
                    reply.tasks.append(entry.to_entry())
        reply.num_total = total
        return reply
