import os
import signal
import subprocess

import pytest

from ray_plasma.launcher import start_plasma_store

STORE_BYTES = 8 * 1024 * 1024


def stop_process(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Store:
    def __init__(self, proc, socket_path, logs_dir):
        self.proc = proc
        self.socket_path = socket_path
        self.logs_dir = logs_dir

    def log(self):
        with open(os.path.join(self.logs_dir, "plasma_store.log")) as f:
            return f.read()


@pytest.fixture
def make_store(tmp_path):
    """Start stores in this test's tmp dir; all of them are stopped afterwards."""
    procs = []

    def make(memory_bytes=STORE_BYTES, name="plasma.sock"):
        socket_path = str(tmp_path / name)
        logs_dir = str(tmp_path / "logs")
        proc = start_plasma_store(socket_path, memory_bytes, logs_dir=logs_dir)
        procs.append(proc)
        return Store(proc, socket_path, logs_dir)

    yield make
    for proc in procs:
        stop_process(proc)
    log = tmp_path / "logs" / "plasma_store.log"
    if log.exists() and "Internal error" in log.read_text():
        pytest.fail(f"the store logged an internal error:\n{log.read_text()}")


@pytest.fixture
def store(make_store):
    return make_store()


def oid(n: int) -> bytes:
    """A readable 28-byte object id."""
    return n.to_bytes(4, "big") * 7
