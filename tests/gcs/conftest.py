"""Fixtures that own the processes of the GCS tests: redis-server, GCS servers, fake raylets.

`backend` parametrizes a test over both storage backends; each test that uses Redis gets
its own namespace on one shared redis-server, so tests never see each other's rows.
"""
import os
import subprocess
import sys
import uuid

import pytest

from ray_common.process import wait_for_file
from ray_gcs.client import GcsClient
from ray_gcs.launcher import start_gcs
from ray_gcs.redis_server import start_redis
from tests.waiting import wait_for  # noqa: F401  (re-exported to tests)




def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = start_redis(str(tmp_path_factory.mktemp("redis")))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """A Redis storage URL with a namespace of this test's own."""
    return f"{redis_server.url}/test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "redis"])
def backend(request):
    return request.param


@pytest.fixture
def storage_url(request, backend):
    return "memory" if backend == "memory" else request.getfixturevalue("redis_url")


class GcsProcesses:
    """Starts GCS servers for one test and kills every one it started."""

    def __init__(self, tmp_path):
        self._tmp_path = tmp_path
        self.procs = []

    def start(self, storage="memory", port=0, env=None, session="session"):
        session_dir = str(self._tmp_path / session)
        proc, address = start_gcs(session_dir, port=port, storage=storage, env=env)
        self.procs.append(proc)
        return proc, address

    def log_path(self, session="session"):
        return str(self._tmp_path / session / "logs" / "gcs_server.log")

    def stop_all(self):
        for proc in self.procs:
            stop_process(proc)


@pytest.fixture
def gcs_processes(tmp_path):
    processes = GcsProcesses(tmp_path)
    yield processes
    processes.stop_all()


@pytest.fixture
def gcs(gcs_processes, storage_url):
    """A GCS on the parametrized backend and a client of it: (process, address, client)."""
    proc, address = gcs_processes.start(storage_url)
    client = GcsClient(address)
    yield proc, address, client
    client.sync.close()


@pytest.fixture
def fake_raylets(tmp_path):
    """Start fake raylets (HealthCheck only): call it, get (process, port)."""
    procs = []

    def start():
        port_file = str(tmp_path / f"raylet_port_{len(procs)}")
        proc = subprocess.Popen([sys.executable, "-m", "tests.gcs.fake_raylet", port_file],
                                cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        procs.append(proc)
        port = int(wait_for_file(port_file, 30, proc, "fake raylet"))
        return proc, port

    yield start
    for proc in procs:
        stop_process(proc)
