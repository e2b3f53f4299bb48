"""The raylet's memory monitor: a task that allocates past the configured limit gets
OutOfMemoryError naming the task and its memory; the node keeps serving. The limit is a
small configured per-worker fraction (about 400 MB), never real memory exhaustion."""
import time

import numpy as np
import psutil
import pytest

import ray_core as ray
from tests.integration.conftest import shut_down_cleanly

LIMIT_BYTES = 400 * 1024 ** 2


@pytest.fixture(scope="module")
def limited(short_temp_dir):
    fraction = LIMIT_BYTES / psutil.virtual_memory().total
    with shut_down_cleanly():
        yield ray.init(num_cpus=1, object_store_memory=100 * 1024 ** 2, _temp_dir=short_temp_dir,
                       _system_config={"worker_memory_usage_threshold": fraction,
                                       "memory_monitor_refresh_ms": 100})


@ray.remote
def hog(n_bytes):
    block = np.ones(n_bytes // 8)            # touches every page
    time.sleep(30)                           # the monitor kills us long before this
    return int(block[0])


@ray.remote
def small(x):
    return x + 1


def test_task_past_the_memory_limit_gets_out_of_memory_error(limited):
    ref = hog.remote(3 * LIMIT_BYTES)
    with pytest.raises(ray.exceptions.OutOfMemoryError) as info:
        ray.get(ref, timeout=60)
    message = str(info.value)
    assert "hog" in message and ref.task_id().hex() in message
    assert "MB" in message and "worker_memory_usage_threshold" in message
    assert ray.get([small.remote(i) for i in range(20)]) == list(range(1, 21))
