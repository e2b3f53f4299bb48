"""Tasks end to end on a real head node: values, refs, nesting, options, errors, logs."""
import glob
import os
import time

import pytest

import ray_core as ray
from ray_core import exceptions
from tests.integration.conftest import run_script, session_logs

# A hang fails this file's test fast instead of eating the suite's budget.
pytestmark = pytest.mark.timeout(120)


@ray.remote
def add(a, b=0):
    return a + b


@ray.remote
def identity(x):
    return x


def test_simple_and_kwargs(cluster):
    assert ray.get(add.remote(1, 2)) == 3
    assert ray.get(add.remote(1, b=5)) == 6
    assert ray.get([add.remote(i, i) for i in range(5)]) == [0, 2, 4, 6, 8]


def test_ten_thousand_tasks_at_once(cluster):
    refs = [add.remote(i, 1) for i in range(10_000)]
    assert ray.get(refs) == [i + 1 for i in range(10_000)]


def test_chain_of_1000_dependent_tasks(cluster):
    ref = add.remote(0, 1)
    for _ in range(999):
        ref = add.remote(ref, 1)
    assert ray.get(ref) == 1000


@ray.remote
def nested(depth):
    if depth == 0:
        return [ray.get_runtime_context().get_task_id()]
    return [ray.get_runtime_context().get_task_id()] + ray.get(nested.remote(depth - 1))


def test_nested_tasks_five_deep(cluster):
    ids = ray.get(nested.remote(5))
    assert len(ids) == 6 and len(set(ids)) == 6


def test_top_level_refs_resolved_nested_refs_passed(cluster):
    inner = ray.put(41)

    @ray.remote
    def check(value, container):
        assert isinstance(container["r"], ray.ObjectRef)
        return value + ray.get(container["r"])

    assert ray.get(check.remote(add.remote(0, 1), {"r": inner})) == 42


def test_num_returns_and_options(cluster):
    @ray.remote(num_returns=3)
    def three():
        return 1, 2, 3

    refs = three.remote()
    assert isinstance(refs, list) and ray.get(refs) == [1, 2, 3]
    assert ray.get(add.options(num_cpus=0.5, name="half").remote(2, 2)) == 4
    assert add.options(num_returns=0).remote(1) is None


def test_remote_function_direct_call_is_type_error(cluster):
    with pytest.raises(TypeError, match=r"add\.remote\(\)"):
        add(1, 2)


def test_exceptions_keep_their_class_and_traceback(cluster):
    class MyError(Exception):
        pass

    @ray.remote
    def fails():
        raise MyError("bad thing")

    with pytest.raises(MyError) as info:
        ray.get(fails.remote())
    assert isinstance(info.value, exceptions.RayTaskError)
    text = str(info.value)
    assert "fails" in text and "bad thing" in text and "pid=" in text

    @ray.remote
    def key():
        return {}["missing"]

    with pytest.raises(KeyError):
        ray.get(key.remote())
    # A failed upstream task fails the dependent task with the same error.
    with pytest.raises(MyError):
        ray.get(identity.remote(fails.remote()))


def test_unpicklable_argument_is_type_error_at_remote(cluster):
    import threading
    lock = threading.Lock()
    with pytest.raises(TypeError, match="argument 0") as info:
        identity.remote(lock)
    assert "lock" in str(info.value).lower()
    with pytest.raises(TypeError, match="keyword argument 'b'"):
        add.remote(1, b=lock)


def test_runtime_context_and_env_vars(cluster):
    @ray.remote(runtime_env={"env_vars": {"RAY_CORE_TEST_VAR": "yes"}})
    def ctx():
        c = ray.get_runtime_context()
        return (c.get_job_id(), c.get_task_id(), c.get_node_id(), c.get_worker_id(),
                c.get_assigned_resources(), os.environ.get("RAY_CORE_TEST_VAR"))

    job, task, node, worker, resources, var = ray.get(ctx.remote())
    driver = ray.get_runtime_context()
    assert job == driver.get_job_id() and node == driver.get_node_id()
    assert task and worker != driver.get_worker_id()
    assert resources == {"CPU": 1.0} and var == "yes"
    assert driver.get_task_id() is None


def test_cluster_information(cluster):
    nodes = ray.nodes()
    assert len(nodes) == 1 and nodes[0]["Alive"]
    assert nodes[0]["NodeID"] == cluster["node_id"]
    assert ray.cluster_resources()["CPU"] == 2
    deadline = time.time() + 10
    while ray.available_resources().get("CPU") != 2 and time.time() < deadline:
        time.sleep(0.1)
    assert ray.available_resources()["CPU"] == 2


def test_task_log_lines_follow_a_task(cluster):
    ref = add.remote(20, 22)
    assert ray.get(ref) == 42
    task_id = ref.task_id().hex()
    logs = session_logs(cluster)

    def read(pattern):
        return "".join(open(p).read() for p in glob.glob(f"{logs}/{pattern}"))

    # Buffered task lines reach the files within log_flush_interval_ms.
    deadline = time.time() + 15
    while time.time() < deadline:
        driver_text = read("python-core-driver-*.log")
        worker_text = read("python-core-worker-*.log")
        if f"Completing task {task_id}" in driver_text and task_id in worker_text:
            break
        time.sleep(0.1)
    # One line per step, each with the task id; steps with nothing to say (arguments
    # already there) write none.
    for line in ("Submit task", "Pushing normal task", "Completing task"):
        assert f"{line} {task_id}" in driver_text, line
    assert f"Task dependencies resolved {task_id}" not in driver_text
    assert "Lease granted" in driver_text and "Connected to" in driver_text
    assert f"Received task {task_id} tests.integration.test_tasks.add" in worker_text


def test_task_waiting_for_an_argument_logs_its_object_ids(cluster, tmp_path):
    @ray.remote
    def once_file_exists(path):
        while not os.path.exists(path):
            time.sleep(0.01)
        return 1

    go = str(tmp_path / "go")
    slow = once_file_exists.remote(go)
    ref = add.remote(slow, 1)      # its argument cannot be ready yet: the file is not there
    open(go, "w").close()
    assert ray.get(ref) == 2
    from ray_core._private.task_log import task_log
    task_log.flush()
    text = "".join(open(p).read() for p in
                   glob.glob(f"{session_logs(cluster)}/python-core-driver-*.log"))
    task_id = ref.task_id().hex()
    assert f"Task {task_id} waits for objects {slow.hex()}" in text
    assert f"Task dependencies resolved {task_id}" in text


def test_worker_output_reaches_driver_with_pid_prefix(cluster, capfd):
    @ray.remote
    def shout():
        print("hello from the worker")
        return os.getpid()

    pid = ray.get(shout.remote())
    deadline = time.time() + 10
    out = ""
    while time.time() < deadline:
        out += capfd.readouterr().out
        if f"(pid={pid}, ip=127.0.0.1) hello from the worker" in out:
            break
        time.sleep(0.1)
    assert f"(pid={pid}, ip=127.0.0.1) hello from the worker" in out


def test_gpu_tasks_see_their_assigned_gpus(short_temp_dir):
    result = run_script(f"""
        import os
        import ray_core as ray
        ray.init(num_cpus=1, num_gpus=2, _temp_dir={short_temp_dir!r} + "/gpu")

        @ray.remote(num_gpus=1, num_cpus=0)
        def gpu():
            ids = ray.get_gpu_ids()
            assert ray.get_runtime_context().get_accelerator_ids() == \
                {{"GPU": [str(i) for i in ids]}}, ids
            assert os.environ.get("CUDA_VISIBLE_DEVICES") == ",".join(map(str, ids))
            return (os.environ.get("CUDA_VISIBLE_DEVICES"),
                    ray.get_runtime_context().get_assigned_resources().get("GPU"))

        assert ray.get_gpu_ids() == []     # a driver holds no GPUs of the raylet's
        print("GPU", ray.get(gpu.remote()), ray.cluster_resources().get("GPU"))
        ray.shutdown()
    """)
    assert result.returncode == 0, result.stderr
    line = result.stdout.split("GPU ", 1)[1]
    assert ("('0', 1.0)" in line or "('1', 1.0)" in line) and line.strip().endswith("2.0")


def test_max_calls_retires_the_worker(cluster):
    @ray.remote(max_calls=2)
    def pid():
        return os.getpid()

    pids = ray.get([pid.remote() for _ in range(10)])
    assert len(pids) == 10
    from collections import Counter
    assert max(Counter(pids).values()) <= 2 and len(set(pids)) >= 5
