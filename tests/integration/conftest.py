"""Fixtures that own real clusters: whatever a test file starts, its fixture stops."""
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import psutil
import pytest

import ray_core as ray
from ray_common.config import config
from ray_core.cluster_utils import Cluster

CLUSTER_CPUS = 2
STORE_BYTES = 600 * 1024 ** 2
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_script(code: str, timeout: float = 120, args=()) -> subprocess.CompletedProcess:
    """Run `code` as a driver script (sys.argv[1:] = args) in a fresh interpreter that
    imports this checkout."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def sigkilled_driver(code: str, ready: str):
    """Run `code` as a driver script until it prints the line `ready`; SIGKILL it when the
    block ends (pass or fail), as a crash would end it."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        line = proc.stdout.readline().strip()
        assert line == ready, f"the driver printed {line!r} instead of {ready!r}"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _ray_children():
    me = psutil.Process()
    return [p for p in me.children(recursive=True) if p.is_running()]


def _short_temp_dir():
    """A temp dir short enough for Unix socket paths (pytest's tmp_path is not)."""
    path = tempfile.mkdtemp(prefix="rc_", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


short_temp_dir = pytest.fixture(scope="module")(_short_temp_dir)
own_temp_dir = pytest.fixture(scope="function")(_short_temp_dir)


def _new_live_children(before):
    out = []
    for p in _ray_children():
        try:
            if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


@contextlib.contextmanager
def shut_down_cleanly():
    """ray.shutdown() on exit, then fail if a process started inside is still alive.
    init(_system_config=...) overrides are undone too, so they reach no later test."""
    before = {p.pid for p in _ray_children()}   # other fixtures' processes are not ours
    overrides = dict(config._system_config)
    try:
        yield
    finally:
        ray.shutdown()
        config._system_config.clear()
        config._system_config.update(overrides)
        leftover = _new_live_children(before)
        for p in leftover:
            p.kill()
        assert not leftover, f"processes left after shutdown: {[p.cmdline() for p in leftover]}"


@pytest.fixture(scope="module")
def cluster(short_temp_dir):
    """One head node per test module (GCS + raylet + plasma + workers)."""
    with shut_down_cleanly():
        yield ray.init(num_cpus=CLUSTER_CPUS, object_store_memory=STORE_BYTES,
                       _temp_dir=short_temp_dir)


def session_logs(context):
    return os.path.join(context["session_dir"], "logs")


@pytest.fixture(scope="module")
def fast_health_cluster(short_temp_dir):
    """A head node (2 CPUs) whose GCS notices a dead node within ~2 s even if it never
    says goodbye."""
    saved = config.overrides()
    context = ray.init(num_cpus=2, object_store_memory=200 * 1024 ** 2,
                       _temp_dir=short_temp_dir,
                       _system_config={"health_check_initial_delay_ms": 0,
                                       "health_check_period_ms": 500,
                                       "health_check_timeout_ms": 1000,
                                       "health_check_failure_threshold": 3})
    try:
        yield context
    finally:
        ray.shutdown()
        config._system_config = saved     # later modules' clusters get the defaults


@pytest.fixture(scope="module")
def two_nodes(short_temp_dir):
    """A head with 1 CPU, a second node with 2 CPUs and the resource 'far'; task events
    sent every 100 ms so tests wait little for them."""
    saved = os.environ.get("RAY_CORE_TASK_EVENTS_REPORT_INTERVAL_MS")
    os.environ["RAY_CORE_TASK_EVENTS_REPORT_INTERVAL_MS"] = "100"
    try:
        with shut_down_cleanly():
            cluster = Cluster(initialize_head=True, temp_dir=short_temp_dir,
                              head_node_args={"num_cpus": 1, "object_store_memory": 100 << 20})
            try:
                far = cluster.add_node(num_cpus=2, resources={"far": 2},
                                       object_store_memory=100 << 20)
                cluster.connect()
                yield cluster, far
            finally:
                ray.shutdown()
                cluster.shutdown()
    finally:
        if saved is None:
            os.environ.pop("RAY_CORE_TASK_EVENTS_REPORT_INTERVAL_MS", None)
        else:
            os.environ["RAY_CORE_TASK_EVENTS_REPORT_INTERVAL_MS"] = saved


@pytest.fixture(scope="module")
def dashboard_cluster(short_temp_dir):
    """A 2-node cluster_utils.Cluster (1 CPU each) whose head serves the dashboard on a
    free port, with a driver connected; task events every 100 ms."""
    env = {"RAY_CORE_TASK_EVENTS_REPORT_INTERVAL_MS": "100"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        with shut_down_cleanly():
            cluster = Cluster(initialize_head=True, temp_dir=short_temp_dir, head_node_args={
                "num_cpus": 1, "object_store_memory": 100 << 20, "dashboard_port": 0})
            try:
                cluster.add_node(num_cpus=1, object_store_memory=100 << 20)
                cluster.connect()
                yield cluster
            finally:
                ray.shutdown()
                cluster.shutdown()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
