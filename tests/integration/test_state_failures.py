"""The state API when things die: a node removed, a worker SIGKILLed mid-task (its task
FAILED with the right error type), a GCS address nobody answers (a clear error within the
timeout, no hang)."""
import functools
import os
import signal
import socket
import time

import pytest

import ray_core as ray
from ray_core.util import state
from ray_core.util.state import RayStateApiException

from tests import waiting

pytestmark = pytest.mark.timeout(180)
# State arrives in batches, and this machine is shared: generous deadlines, never timers.
wait_for = functools.partial(waiting.wait_for, timeout=90)


@ray.remote(max_retries=0)
def wait_gate(gate):
    while not os.path.exists(gate):
        time.sleep(0.05)
    return "opened"


def _running(ref):
    task = state.get_task(ref.task_id().hex())
    return task is not None and task.state == "RUNNING" and task.worker_pid and task


def test_a_sigkilled_worker_fails_its_task_with_worker_died(two_nodes, tmp_path):
    ref = wait_gate.options(resources={"far": 1}).remote(str(tmp_path / "gate"))
    task = wait_for(lambda: _running(ref), "the task RUNNING")
    os.kill(task.worker_pid, signal.SIGKILL)
    with pytest.raises(ray.exceptions.WorkerCrashedError):
        ray.get(ref, timeout=60)
    failed = wait_for(lambda: (lambda t: t.state == "FAILED" and t.error_type and t)(
        state.get_task(ref.task_id().hex())), "the task FAILED")
    assert failed.error_type == "WORKER_DIED", failed
    assert failed.worker_pid == task.worker_pid and failed.node_id == task.node_id
    wait_for(lambda: state.list_workers(filters=[("worker_id", "=", task.worker_id),
                                                 ("is_alive", "=", "false")]),
             "the worker's row dead")


def test_state_calls_answer_with_a_node_dead(two_nodes, tmp_path):
    """Last in this module: it removes the second node for good."""
    cluster, far = two_nodes
    ref = wait_gate.options(resources={"far": 1}).remote(str(tmp_path / "gate"))
    wait_for(lambda: _running(ref), "the task RUNNING on the far node")
    cluster.remove_node(far, allow_graceful=False)
    with pytest.raises((ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        ray.get(ref, timeout=120)
    node = wait_for(lambda: (lambda n: n.state == "DEAD" and n)(state.get_node(far.node_id)),
                    "the node DEAD", timeout=120)
    assert node.state_message, node
    failed = wait_for(lambda: (lambda t: t.state == "FAILED" and t.error_type and t)(
        state.get_task(ref.task_id().hex())), "the task FAILED")
    assert failed.error_type in ("WORKER_DIED", "NODE_DIED"), failed
    # Every call still answers, from what is left (the dead node's raylet is not asked).
    assert [n.state for n in state.list_nodes() if n.is_head_node] == ["ALIVE"]
    assert state.list_workers(filters=[("worker_type", "=", "DRIVER")])
    state.list_objects()
    state.summarize_tasks()
    assert "is FAILED" in state.explain(ref.task_id().hex())


def test_an_unreachable_gcs_fails_within_the_timeout():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RayStateApiException, match=f"127.0.0.1:{port} did not answer "
                                                   f"within 2 s"):
        state.list_nodes(address=f"127.0.0.1:{port}", timeout=2)
