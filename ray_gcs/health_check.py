"""Health checks of raylets: the GCS calls NodeManagerService.HealthCheck on each node.

A node is first checked health_check_initial_delay_ms after it registers (or after the
GCS recovered it), then every health_check_period_ms with a deadline of
health_check_timeout_ms. After health_check_failure_threshold consecutive failures the
`on_failure(node_id, reason)` coroutine runs once (the node manager marks the node DEAD
and publishes it) and checking stops. One asyncio task per node.
"""
import asyncio
import logging
from typing import Awaitable, Callable, Dict

import grpc

from ray_common import rpc
from ray_common.config import config
from ray_common.protocol import node_manager_pb2, node_manager_pb2_grpc

logger = logging.getLogger(__name__)


class GcsHealthCheckManager:
    def __init__(self, on_failure: Callable[[bytes, str], Awaitable[None]]):
        self._on_failure = on_failure
        self._tasks: Dict[bytes, asyncio.Task] = {}

    def add_node(self, node_id: bytes, address: str) -> None:
        if node_id not in self._tasks:
            self._tasks[node_id] = asyncio.get_running_loop().create_task(
                self._check_loop(node_id, address), name=f"health_check_{node_id.hex()}")

    def remove_node(self, node_id: bytes) -> None:
        task = self._tasks.pop(node_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def stop(self) -> None:
        for node_id in list(self._tasks):
            self.remove_node(node_id)

    async def _check_loop(self, node_id: bytes, address: str) -> None:
        await asyncio.sleep(config.health_check_initial_delay_ms / 1000.0)
        stub = rpc.stub(node_manager_pb2_grpc.NodeManagerServiceStub, address)
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            started = loop.time()
            try:
                await stub.HealthCheck(node_manager_pb2.HealthCheckRequest(),
                                       timeout=config.health_check_timeout_ms / 1000.0)
                if failures:
                    logger.info("Node %s answers health checks again after %d miss(es)",
                                node_id.hex(), failures)
                failures = 0
            except grpc.aio.AioRpcError as e:
                failures += 1
                last_error = f"{e.code().name}: {e.details()}"
                logger.warning("Health check %d/%d of node %s at %s failed: %s", failures,
                               config.health_check_failure_threshold, node_id.hex(), address,
                               last_error)
                if failures >= config.health_check_failure_threshold:
                    self._tasks.pop(node_id, None)
                    rpc.forget_channel(address)
                    reason = (f"the raylet at {address} failed {failures} health checks in a "
                              f"row (last: {last_error})")
                    await self._on_failure(node_id, reason)
                    return
            period = config.health_check_period_ms / 1000.0
            await asyncio.sleep(max(0.0, period - (loop.time() - started)))
