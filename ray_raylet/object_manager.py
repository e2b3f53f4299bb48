"""The ObjectManager: moves sealed objects between nodes' plasma stores.

Pull model, as in Ray: the node that needs an object asks the nodes that have it and
receives it in slices over several TCP connections to their TransferServers at once
(chunk_pull.py, object_transfer.py; a server's port is its node's object_manager_port),
written straight into a plasma buffer that is created when the first header arrives and
sealed after the last byte. A holder sends from its own plasma store under a get
reference, so the copy cannot be evicted mid-stream.
`ObjectManagerService.Push` takes an object pushed as a stream of ObjectChunk messages.

- One transfer per object at a time on a node: concurrent pulls of the same object share
  one future.
- Locations come from the caller, else from the object's owner
  (CoreWorkerService.GetObjectLocationsOwner); a pull takes slices from every live
  location, dropping one that fails, and all of them are tried `object_pull_retry_rounds`
  times before the pull fails. While the owner knows no copy yet, it is re-asked every
  `object_pull_location_poll_ms`.
- A pulled copy is reported to its owner (UpdateObjectLocationBatch), best effort.
All coroutines run on the raylet's io loop.
"""
import asyncio
import logging
import time
from typing import Callable, Dict, List, Optional

import grpc

from ray_common import rpc
from ray_common.config import config
from ray_common.protocol import (core_worker_pb2, core_worker_pb2_grpc, object_manager_pb2,
                                 object_manager_pb2_grpc)
from ray_plasma.errors import ObjectExistsError, ObjectStoreFullError
from ray_raylet import chunk_pull, object_transfer

logger = logging.getLogger(__name__)


class PullError(RuntimeError):
    """An object could not be made local; the message says why."""


class ObjectManager(object_manager_pb2_grpc.ObjectManagerServiceServicer):
    def __init__(self, *, node_id: bytes, plasma, node_address: Callable[[bytes], Optional[str]]):
        """`plasma` is a ray_plasma PlasmaClient; `node_address(node_id)` -> "ip:port" of
        that node's TransferServer, or None when the node is not alive."""
        self.node_id = node_id
        self.plasma = plasma
        self._node_address = node_address
        self._inflight: Dict[bytes, asyncio.Future] = {}
        self.num_pulls_served = 0
        self.num_objects_pulled = 0
        self.num_bytes_pulled = 0
        self.spills = None   # the node's SpillManager: spilled objects are restored, not pulled
        self._transfers: Optional[object_transfer.TransferServer] = None

    # ---- serving ------------------------------------------------------------------

    def serve_transfers(self, host: str) -> int:
        """Start answering pulls from other nodes; returns the TCP port."""
        self._transfers = object_transfer.TransferServer(host, self._serve_pull)
        self._transfers.start()
        return self._transfers.port

    def close(self) -> None:
        if self._transfers is not None:
            self._transfers.close()
            self._transfers = None
        object_transfer.abort_all()

    async def _serve_pull(self, request):
        """(header, data, release) of an object another node pulls, for one connection
        of that pull (TransferServer)."""
        object_id = request.object_id
        found = self.plasma.get([object_id], timeout_ms=0)[0]
        if found is None and self.spills is not None and await self.spills.restore(object_id):
            found = self.plasma.get([object_id], timeout_ms=0)[0]
        if found is None:
            raise object_transfer.TransferError(
                f"object {object_id.hex()} is not in the plasma store of node "
                f"{self.node_id.hex()}")
        data = found.data
        if request.offset == 0:     # a pull's first connection; its others ask for later slices
            self.num_pulls_served += 1
            logger.info("Sending object %s (%d bytes) to node %s", object_id.hex(), len(data),
                        request.requester_node_id.hex())
        header = object_manager_pb2.ObjectChunk(
            object_id=object_id, data_size=len(data), metadata_size=len(found.metadata),
            metadata=found.metadata, has_metadata=True)
        return header, data, lambda: self.plasma.release(object_id)

    async def Push(self, request_iterator, context):
        try:
            await self._receive(_with_payloads(request_iterator))
            return object_manager_pb2.PushReply(success=True)
        except (PullError, ValueError) as e:
            return object_manager_pb2.PushReply(success=False, message=str(e))

    async def FreeObjects(self, request, context):
        self.plasma.delete(list(request.object_ids))
        return object_manager_pb2.FreeObjectsOnNodeReply()

    # ---- pulling ------------------------------------------------------------------

    def is_pulling(self, object_id: bytes) -> bool:
        """Whether a pull of the object to this node is in progress (`ray_core explain`)."""
        return object_id in self._inflight

    async def pull(self, object_id: bytes, owner_address=None,
                   locations: Optional[List[bytes]] = None) -> None:
        """Make `object_id` local; raises PullError with the reason when it cannot."""
        if self.plasma.contains(object_id):
            return
        if self.spills is not None and await self.spills.restore(object_id):
            return
        future = self._inflight.get(object_id)
        if future is None:
            future = asyncio.ensure_future(self._pull(object_id, owner_address, locations))
            future.waiters = 0
            self._inflight[object_id] = future
            future.add_done_callback(lambda _: self._inflight.pop(object_id, None))
        future.waiters += 1
        try:
            await asyncio.shield(future)
        finally:
            future.waiters -= 1
            if not future.waiters and not future.done():
                # Nobody wants it any more (every caller gave up): stop asking and pulling.
                future.cancel()
                logger.info("Pull of object %s canceled: no one waits for it", object_id.hex())

    async def _pull(self, object_id: bytes, owner_address, locations) -> None:
        failures = []
        rounds = 0
        poll = config.object_pull_location_poll_ms / 1000.0
        while rounds < config.object_pull_retry_rounds:
            nodes = list(locations) if locations else await self._ask_owner(object_id,
                                                                          owner_address)
            if self.node_id in nodes and self.plasma.contains(object_id):
                return
            nodes = [n for n in nodes if n != self.node_id]
            if not nodes and locations:
                raise PullError(f"object {object_id.hex()} is neither in the plasma store of "
                                f"node {self.node_id.hex()} nor spilled there")
            if not nodes:
                await asyncio.sleep(poll)  # the owner knows no copy yet: it may be in the making
                continue
            rounds += 1
            holders = []
            for node_id in nodes:
                address = self._node_address(node_id)
                if address is None:
                    failures.append(f"node {node_id.hex()} is not alive")
                else:
                    holders.append((node_id, address))
            if holders:
                try:
                    size = await self._fetch(object_id, holders)
                except (PullError, object_transfer.TransferError, OSError) as e:
                    failures.append(f"from {_names(holders)}: {e}")
                    logger.warning("Pull of object %s from %s failed: %s", object_id.hex(),
                                   _names(holders), e)
                else:
                    self._tell_owner(object_id, owner_address, size)
                    return
            await asyncio.sleep(poll * rounds)
        raise PullError(f"object {object_id.hex()} could not be pulled to node "
                        f"{self.node_id.hex()}: " + "; ".join(failures[-6:]))

    async def _ask_owner(self, object_id: bytes, owner_address) -> List[bytes]:
        if owner_address is None or not owner_address.port:
            raise PullError(f"object {object_id.hex()}: no location given and no owner "
                            f"address to ask for one")
        address = f"{owner_address.ip_address}:{owner_address.port}"
        stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub, address)
        try:
            reply = await rpc.call_with_retry(
                stub.GetObjectLocationsOwner,
                core_worker_pb2.GetObjectLocationsOwnerRequest(object_ids=[object_id]))
        except grpc.aio.AioRpcError as e:
            raise PullError(f"object {object_id.hex()}: its owner {owner_address.worker_id.hex()} "
                            f"at {address} is unreachable (OWNER_DIED?): {e.details()}") from None
        for info in reply.object_location_infos:
            if info.object_id == object_id:
                return list(info.node_ids)
        return []

    async def _fetch(self, object_id: bytes, holders) -> int:
        """Pull from the (node_id, address) `holders`: slices from all of them at once."""
        start = time.monotonic()
        created = False

        async def create(header):
            nonlocal created
            if header.object_id != object_id:
                raise PullError(f"{_names(holders)} answered a pull of object "
                                f"{object_id.hex()} with object {header.object_id.hex()}")
            buffer = await self._create(object_id, header.data_size, header.metadata)
            created = buffer is not None
            return buffer

        request = object_manager_pb2.PullRequest(object_id=object_id,
                                                 requester_node_id=self.node_id)
        try:
            size = await chunk_pull.pull(
                [address for _, address in holders], request, create,
                {address: f"node {node_id.hex()}" for node_id, address in holders})
        except BaseException:
            if created:
                self._abort(object_id)
            raise
        if created:
            self.plasma.seal(object_id)
        elapsed = time.monotonic() - start
        self.num_objects_pulled += 1
        self.num_bytes_pulled += size
        logger.info("Pulled object %s (%d bytes) from %s in %.3fs", object_id.hex(), size,
                    _names(holders), elapsed)
        return size

    def _abort(self, object_id: bytes) -> None:
        try:
            self.plasma.abort(object_id)
        except Exception:  # the store may be gone at shutdown
            logger.exception("Abort of object %s failed", object_id.hex())

    async def _receive(self, chunks) -> int:
        """Write (header, payload) pairs into a new plasma object, seal it; returns its size."""
        buffer = None
        object_id = b""
        offset = expected = 0
        try:
            async for chunk, payload in chunks:
                if buffer is None:
                    object_id = chunk.object_id
                    if chunk.chunk_index != 0 or not chunk.has_metadata:
                        raise PullError(f"object {object_id.hex()}: stream did not start "
                                        f"with chunk 0")
                    expected = chunk.data_size
                    buffer = await self._create(object_id, expected, chunk.metadata)
                    if buffer is None:
                        return expected  # already here: someone else made it local
                end = offset + len(payload)
                if end > expected:
                    raise PullError(f"object {object_id.hex()}: stream sent more than its "
                                    f"{expected} bytes")
                buffer[offset:end] = payload
                offset = end
            if buffer is None:
                raise PullError("empty object stream")
            if offset != expected:
                raise PullError(f"object {object_id.hex()}: stream ended after {offset} of "
                                f"{expected} bytes")
            buffer = None       # the view goes before the seal
            self.plasma.seal(object_id)
            return expected
        except BaseException:
            if buffer is not None:
                buffer = None
                self._abort(object_id)
            raise

    async def _create(self, object_id: bytes, size: int, metadata: bytes):
        attempts = config.object_store_full_max_retries
        for attempt in range(attempts + 1):
            try:
                return self.plasma.create(object_id, size, metadata)
            except ObjectExistsError:
                return None
            except ObjectStoreFullError:
                if self.spills is None or attempt == attempts:
                    raise
                spilled, _, message = await self.spills.spill(
                    size, f"pulling object {object_id.hex()}")
                if not spilled:
                    raise PullError(f"object {object_id.hex()} ({size} bytes) does not fit in "
                                    f"the plasma store of node {self.node_id.hex()}: "
                                    f"{message}") from None

    def _tell_owner(self, object_id: bytes, owner_address, size: int) -> None:
        if owner_address is None or not owner_address.port:
            return
        address = f"{owner_address.ip_address}:{owner_address.port}"
        update = core_worker_pb2.ObjectLocationUpdate(object_id=object_id, node_id=self.node_id,
                                                      added=True, object_size=size)

        async def send():
            try:
                stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub, address)
                await stub.UpdateObjectLocationBatch(
                    core_worker_pb2.UpdateObjectLocationBatchRequest(updates=[update]),
                    timeout=config.rpc_default_deadline_s)
            except grpc.aio.AioRpcError as e:
                logger.info("Could not tell owner at %s about the copy of object %s: %s",
                            address, object_id.hex(), e.details())

        asyncio.ensure_future(send())


SERVICE = "ray_core.rpc.ObjectManagerService"


def _names(holders) -> str:
    return "node " + ", ".join(node_id.hex() for node_id, _ in holders)


async def _with_payloads(chunks):
    async for chunk in chunks:
        yield chunk, memoryview(chunk.payload)


def add_to_server(manager: ObjectManager, server) -> None:
    """Register ObjectManagerService (Push, FreeObjects; pulls go over TransferServer)."""
    pb = object_manager_pb2
    handlers = {
        "Push": grpc.stream_unary_rpc_method_handler(
            manager.Push, request_deserializer=pb.ObjectChunk.FromString,
            response_serializer=pb.PushReply.SerializeToString),
        "FreeObjects": grpc.unary_unary_rpc_method_handler(
            manager.FreeObjects, request_deserializer=pb.FreeObjectsOnNodeRequest.FromString,
            response_serializer=pb.FreeObjectsOnNodeReply.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
