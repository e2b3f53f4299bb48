"""Fixtures for the CLI and cluster tests: each test gets its own temp dir (never the
user's /tmp/ray_core), and whatever a test starts is stopped by its fixture."""
import os
import shutil
import subprocess
import sys
import tempfile

import psutil
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def child_env(**extra):
    """The environment of a CLI or driver subprocess: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("RAY_CORE_AUTH_TOKEN", "RAY_CORE_ADDRESS", "RAY_CORE_TEMP_DIR"):
        env.pop(name, None)
    env.update(extra)
    return env


def cli(*args, temp_dir=None, check=True, timeout=120, env=None):
    """Run `python -m ray_core ARGS` (with --temp-dir where the command takes it)."""
    command = [sys.executable, "-m", "ray_core", *args]
    if temp_dir is not None:
        command += ["--temp-dir", temp_dir]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env=env or child_env())
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}:\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


def run_driver(source, *args, env=None, timeout=120):
    """Run a driver script in its own interpreter; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", source, *args], capture_output=True,
                          text=True, timeout=timeout, env=env or child_env())


def recorded_pids(temp_dir):
    """The pids the node records under temp_dir list, with their descendants now."""
    from ray_core.node import read_records
    pids = set()
    for _path, record in read_records(temp_dir):
        for entry in record["processes"]:
            pids.add(entry["pid"])
            try:
                pids.update(p.pid for p in psutil.Process(entry["pid"]).children(True))
            except psutil.Error:
                pass
    return pids


def running(pids):
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            pass
    return out


def shm_files_of(pids):
    """/dev/shm files the processes map (plasma uses an anonymous memfd: none expected).

    Other programs on the machine create /dev/shm files at any time, so a test checks
    its own processes' files rather than the folder's listing."""
    files = set()
    for pid in pids:
        try:
            files.update(m.path for m in psutil.Process(pid).memory_maps(grouped=True)
                         if m.path.startswith("/dev/shm/"))
        except psutil.Error:
            pass
    return files


@pytest.fixture
def temp_dir():
    """A short temp dir (Unix socket paths must stay short); stops what it holds after."""
    yield from _short_temp_dir()


@pytest.fixture
def other_temp_dir():
    """A second node's temp dir, as if that node ran on another machine."""
    yield from _short_temp_dir()


@pytest.fixture(scope="module")
def module_temp_dir():
    yield from _short_temp_dir()


def _short_temp_dir():
    path = tempfile.mkdtemp(prefix="rcc_", dir="/tmp")
    yield path
    from ray_core.node import stop_recorded
    stop_recorded(path, force=True)
    shutil.rmtree(path, ignore_errors=True)
