import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from ray_common.process import wait_for_file, write_file_atomically

PARENT = textwrap.dedent("""
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c",
        "from ray_common.process import die_with_parent; die_with_parent(); import time; time.sleep(60)"])
    print(child.pid, flush=True)
    time.sleep(60)
""")


def test_child_dies_with_killed_parent():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    time.sleep(0.5)  # let the child install its death signal
    parent.kill()
    parent.wait()
    parent.stdout.close()
    deadline = time.time() + 10
    while psutil.pid_exists(child_pid) and psutil.Process(child_pid).status() != psutil.STATUS_ZOMBIE:
        assert time.time() < deadline, "child outlived its parent"
        time.sleep(0.05)


def test_wait_for_file(tmp_path):
    path = str(tmp_path / "ready")
    write_file_atomically(path, "127.0.0.1:1234")
    assert wait_for_file(path, 1) == "127.0.0.1:1234"
    with pytest.raises(TimeoutError, match="did not write"):
        wait_for_file(str(tmp_path / "never"), 0.1, what="thing")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match="exited with code 3"):
        wait_for_file(str(tmp_path / "never"), 10, proc=proc, what="store")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
