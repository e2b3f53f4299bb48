"""Object lifetime (issue 8): spill/restore throughput and the footprint of put+drop.

Spill and restore: a 1-CPU head node with a 256 MB store takes puts of 3x its capacity
(32 MB numpy arrays), so the raylet spills the oldest primaries into batched files and
restores each on get. The rows are the raylet's own write and read rates (bytes over the
seconds its spill thread spent in file I/O, from GetNodeStats), beside a plain file
write / read of the same number of bytes in the same chunks, in the same directory, in
the same run (neither syncs to disk: both land in the page cache).

Footprint: 1M small puts, each dropped at once, then the memory store's object count and
plasma usage against their values before (they should be equal), and the driver's RSS
growth (reference: its RSS before).
"""
import gc
import os
import shutil
import tempfile
import time

import numpy as np
import psutil

STORE_BYTES = 256 * 1024 ** 2
CHUNK = 32 * 1024 ** 2
SMALL_PUTS = 1_000_000


def _plain_file_rates(directory: str, total: int) -> tuple:
    data = np.ones(CHUNK // 8)
    view = memoryview(data).cast("B")
    path = os.path.join(directory, "plain")
    start = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(total // CHUNK):
            f.write(view)
    write_s = time.perf_counter() - start
    out = bytearray(CHUNK)
    start = time.perf_counter()
    with open(path, "rb") as f:
        while f.readinto(out):
            pass
    read_s = time.perf_counter() - start
    os.unlink(path)
    return total / write_s / 1e9, total / read_s / 1e9


def run():
    import ray_core as ray
    from ray_common import rpc
    temp_dir = tempfile.mkdtemp(prefix="rc_bench_", dir="/tmp")
    rows = []
    try:
        ray.init(num_cpus=1, object_store_memory=STORE_BYTES, _temp_dir=temp_dir,
                 _system_config={"object_spilling_directory": os.path.join(temp_dir, "spill")})
        core = ray._private.worker.global_worker().core_worker
        n = 3 * STORE_BYTES // CHUNK
        refs = [ray.put(np.full(CHUNK // 8, i, dtype=np.int64)) for i in range(n)]
        for i, ref in enumerate(refs):
            value = ray.get(ref)
            assert value[0] == i
            del value
        stats = rpc.run_sync(core.lease_client.get_node_stats())
        plain_write, plain_read = _plain_file_rates(os.path.join(temp_dir, "spill"),
                                                    int(stats.total_spilled_bytes))
        spill_rate = stats.total_spilled_bytes / max(stats.spill_time_s, 1e-9) / 1e9
        restore_rate = stats.total_restored_bytes / max(stats.restore_time_s, 1e-9) / 1e9
        rows.append((f"spill {stats.total_spilled_bytes // 1024 ** 2} MB (raylet write)",
                     spill_rate, "GB/s", plain_write, "GB/s"))
        rows.append((f"restore {stats.total_restored_bytes // 1024 ** 2} MB (raylet read)",
                     restore_rate, "GB/s", plain_read, "GB/s"))
        del refs, ref
        # Footprint of 1M small put+drop.
        gc.collect()
        core.reference_counter.flush()
        deadline = time.monotonic() + 10        # the spill phase's frees reach the raylet
        while core.plasma.stats()["used"] and time.monotonic() < deadline:
            time.sleep(0.05)
        process = psutil.Process()
        store_before = len(core.memory_store)
        plasma_before = core.plasma.stats()["used"]
        rss_before = process.memory_info().rss
        start = time.perf_counter()
        for i in range(SMALL_PUTS):
            ref = ray.put(i)
            del ref
        elapsed = time.perf_counter() - start
        gc.collect()
        core.reference_counter.flush()
        deadline = time.monotonic() + 10
        while core.plasma.stats()["used"] > plasma_before and time.monotonic() < deadline:
            time.sleep(0.05)
        rows.append(("1M small put+drop", SMALL_PUTS / elapsed, "puts/s", None, ""))
        rows.append(("memory store objects after 1M put+drop", len(core.memory_store),
                     "objects", store_before, "objects"))
        rows.append(("plasma bytes used after 1M put+drop", core.plasma.stats()["used"],
                     "bytes", plasma_before, "bytes"))
        rows.append(("driver RSS after 1M put+drop", process.memory_info().rss / 1024 ** 2,
                     "MB", rss_before / 1024 ** 2, "MB"))
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    return rows
