"""The memory monitor: kill one leased worker before the node runs out of memory.

Every memory_monitor_refresh_ms the raylet reads (psutil) the node's memory use and each
leased worker's private memory (RSS minus shared pages, so the plasma pages a worker maps
do not count against it). A worker is killed when
- the node is above memory_usage_threshold (fraction of total memory in use): the leased
  worker using the most memory goes, or
- one worker alone is above worker_memory_usage_threshold of the node's memory (0 = off).
The cause (task, worker, pid, memory and threshold) is recorded before the kill, by
worker id, and answered to the task's owner through NodeManagerService.
GetWorkerFailureCause, which then fails the task with OutOfMemoryError instead of
retrying it as a crash. Everything runs on the raylet's io loop.
"""
import asyncio
import collections
import logging
from typing import Callable, Dict, Iterable, Optional, Tuple

import psutil

from ray_common.config import config

logger = logging.getLogger(__name__)

_MB = 1024 ** 2
_CAUSES_KEPT = 1000


class MemoryMonitor:
    def __init__(self, *, node_id: bytes, leased_workers: Callable[[], Iterable[Tuple[object, str]]],
                 kill: Callable[[object, str], None]):
        """leased_workers() -> (worker, task description) pairs; kill(worker, reason)."""
        self.node_id = node_id
        self._leased_workers = leased_workers
        self._kill = kill
        self.causes: Dict[bytes, str] = collections.OrderedDict()
        self.num_killed = 0
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        if config.memory_monitor_refresh_ms > 0:
            self._task = asyncio.ensure_future(self._loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        period = config.memory_monitor_refresh_ms / 1000.0
        while True:
            await asyncio.sleep(period)
            try:
                self.check()
            except Exception:
                logger.exception("Memory monitor check failed")

    def check(self) -> Optional[bytes]:
        """One round; returns the id of the worker killed, if any."""
        memory = psutil.virtual_memory()
        total = memory.total
        node_used = (total - memory.available) / total
        per_worker = config.worker_memory_usage_threshold
        node_limit = config.memory_usage_threshold
        largest = None
        for worker, task in self._leased_workers():
            used = _private_memory(worker.pid)
            if used is None:
                continue
            if per_worker > 0 and used / total > per_worker:
                return self._kill_for(worker, task, used, total,
                                      f"above worker_memory_usage_threshold={per_worker} of the "
                                      f"node's {total // _MB} MB")
            if largest is None or used > largest[1]:
                largest = (worker, used, task)
        if largest is not None and node_used > node_limit:
            worker, used, task = largest
            return self._kill_for(worker, task, used, total,
                                  f"the node's memory use {node_used:.0%} is above "
                                  f"memory_usage_threshold={node_limit}; this worker used the "
                                  f"most")
        return None

    def _kill_for(self, worker, task: str, used: int, total: int, why: str) -> bytes:
        cause = (f"the raylet of node {self.node_id.hex()[:12]} killed worker "
                 f"{worker.worker_id.hex()[:16]} (pid {worker.pid}) running {task}: it used "
                 f"{used // _MB} MB ({used / total:.1%} of the node's memory), {why}")
        self.causes[worker.worker_id] = cause
        while len(self.causes) > _CAUSES_KEPT:
            self.causes.popitem(last=False)
        self.num_killed += 1
        logger.warning("Out of memory: %s", cause)
        self._kill(worker, cause)
        return worker.worker_id


def _private_memory(pid: int) -> Optional[int]:
    try:
        info = psutil.Process(pid).memory_info()
    except (psutil.Error, ValueError):
        return None
    return max(0, info.rss - getattr(info, "shared", 0))
