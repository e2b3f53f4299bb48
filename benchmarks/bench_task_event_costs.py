"""CPU time of task events per task, part by part, in this process (no cluster): what
the owner and the executing worker spend recording a task's states, what their io loops
spend turning the records into batches, and what the GCS spends folding the batches.
CPU time of one process, best of RUNS: a figure a shared machine disturbs far less than
a throughput ratio (benchmarks/README.md, "Task events on and off").

  python -m benchmarks.bench_task_event_costs [RUNS]
"""
import sys
import time

from ray_common.ids import JobID, TaskID
from ray_common.protocol import common_pb2, gcs_service_pb2
from ray_core._private import task_event_buffer as events
from ray_core._private.task_manager import PendingTask
from ray_gcs.task_manager import GcsTaskManager

TASKS = 20_000
RUNS = 5
JOB = JobID.from_int(1)


class _Loop:
    """The io loop's calls the buffer makes, done by hand here (one batch at a time)."""

    def call_soon_threadsafe(self, *args):
        pass

    call_soon = call_later = call_soon_threadsafe


def _tasks():
    driver = TaskID.for_driver_task(JOB)
    template = common_pb2.TaskSpec()
    template.function_descriptor.module_name = "__main__"
    template.function_descriptor.function_name = "small"
    template.required_resources["CPU"] = 1
    tasks = []
    for i in range(TASKS):
        task_id = TaskID.for_normal_task(JOB, driver, i)
        spec = common_pb2.TaskSpec(task_id=task_id.binary(), parent_task_id=driver.binary())
        tasks.append(PendingTask(spec, task_id, [], [], 0, False, "small"))
    return template, tasks


def _batches(buffer) -> list:
    """The buffer's batches as the GCS receives them (serialized, then parsed)."""
    buffer._batch = events.config.task_events_send_batch_size
    wire = []
    while buffer._queue:
        batch = events._Batch(buffer._reporter)
        while buffer._queue and batch.size < buffer._batch:
            count = min(len(buffer._queue), events._CHUNK, buffer._batch - batch.size)
            batch.add([buffer._queue.popleft() for _ in range(count)])
        wire.append(buffer._finish(batch).SerializeToString())
    return wire


def one_run() -> dict:
    """Seconds of CPU a task for recording, batching and folding its six states."""
    template, tasks = _tasks()
    owner, worker = events.TaskEventBuffer(None, _Loop()), events.TaskEventBuffer(None, _Loop())
    owner.enabled = worker.enabled = True
    owner._batch = worker._batch = sys.maxsize     # batches are built below, not on append
    running = {}
    clock = time.process_time
    start = clock()
    for task in tasks:
        owner.begin(task, template)
        owner.mark(task, events.PENDING_NODE_ASSIGNMENT)
        owner.mark(task, events.SUBMITTED_TO_WORKER)
    for task in tasks:
        task_id = task.spec.task_id
        running[task_id] = worker.new_record(task_id, 0, events.RUNNING, executed=True)
    for task in tasks:
        worker.end(running.pop(task.spec.task_id), events.FINISHED)
        owner.end_task(task, events.FINISHED)
    recorded = clock()
    wire = _batches(owner) + _batches(worker)
    batched = clock()
    received = [gcs_service_pb2.TaskEventData.FromString(data) for data in wire]
    table = GcsTaskManager()
    folding = clock()
    for data in received:
        table.add(data)
    folded = clock()
    return {"record (owner + worker)": recorded - start, "batch + serialize": batched - recorded,
            "GCS fold": folded - folding}


if __name__ == "__main__":
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    results = [one_run() for _ in range(runs)]
    for part in results[0]:
        best = min(r[part] for r in results)
        print(f"{part:25} {best / TASKS * 1e6:6.2f} us a task (best of {runs})")
