"""Placement group creations and removals, sent to the GCS in batches.

A program that makes groups in a loop would otherwise wait a GCS round trip for each
creation and as long again for each removal (Ray's own create/removal benchmark is bound
by exactly that). Here a call queues its request from any thread and returns; the io loop
sends all that is queued in one PlacementGroupBatch call, and what queues while that call
is out goes in the next, so the order of one client's calls holds. The GCS answers a
batch after trying to place its new groups, so the client learns which are ready without
asking (see `placed`); a read of the table waits for what was queued before it (`flush`),
so a caller always sees its own creations and removals.
"""
import asyncio
import collections
import concurrent.futures
import logging
from typing import Awaitable, Callable, Deque, Optional, Set, Tuple

from ray_common import rpc
from ray_common.protocol import gcs_service_pb2 as pb

logger = logging.getLogger(__name__)

_Entry = Tuple[str, object, concurrent.futures.Future]   # ("create", row) | ("remove", id)


class PlacementGroupBatcher:
    def __init__(self, send: Callable[[pb.PlacementGroupBatchRequest],
                                      Awaitable[pb.PlacementGroupBatchReply]],
                 fail: Callable[[str], Exception]):
        """`send` makes the call (on the io loop); `fail(message)` is the error a refused
        creation or removal raises to whoever waits on it."""
        self._send = send
        self._fail = fail
        self._queue: Deque[_Entry] = collections.deque()   # appended from any thread
        self._last: Optional[concurrent.futures.Future] = None
        self._sending = False
        self._soon: Optional[rpc.SoonOnLoop] = None
        self._placed: Set[bytes] = set()

    def create(self, row: pb.PlacementGroupTableData) -> concurrent.futures.Future:
        """Queue a creation; the future ends with None once the GCS took it."""
        return self._enqueue("create", row)

    def remove(self, group_id: bytes) -> concurrent.futures.Future:
        future = self._enqueue("remove", group_id)
        self._placed.discard(group_id)   # after queueing: see _send_one
        return future

    def placed(self, group_id: bytes) -> bool:
        """Whether the GCS said the group was placed when it answered its creation (and this
        client has not removed it since). Ready stays ready, as Ray's ready() does."""
        return group_id in self._placed

    async def flush(self) -> None:
        """Wait (on the io loop) until everything queued so far has been answered."""
        last = self._last
        if last is not None and not last.done():
            try:
                await asyncio.wrap_future(last)
            except Exception:  # noqa: BLE001 - its own caller hears of it
                pass

    def _enqueue(self, kind: str, payload) -> concurrent.futures.Future:
        future = concurrent.futures.Future()
        self._queue.append((kind, payload, future))
        self._last = future
        if self._soon is None:
            self._soon = rpc.SoonOnLoop(rpc.io_loop(), self._start)
        self._soon.request()
        return future

    def _start(self) -> None:
        if not self._sending and self._queue:
            self._sending = True
            asyncio.ensure_future(self._send_all())

    async def _send_all(self) -> None:
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(len(self._queue))]
                await self._send_one(batch)
        finally:
            self._sending = False

    async def _send_one(self, batch) -> None:
        creates = [(row, future) for kind, row, future in batch if kind == "create"]
        removes = [(group_id, future) for kind, group_id, future in batch if kind == "remove"]
        request = pb.PlacementGroupBatchRequest(create=[row for row, _ in creates],
                                                remove=[group_id for group_id, _ in removes])
        try:
            reply = await self._send(request)
        except Exception as e:  # noqa: BLE001 - every request of the batch fails with it
            logger.warning("Placement group requests (%d creation(s), %d removal(s)) failed: "
                           "%s", len(creates), len(removes), e)
            for _, _, future in batch:
                future.set_exception(e)
            return
        # A removal queued while the call was out wins over the creation's news.
        removed = {group_id for group_id, _ in removes}
        removed.update(payload for kind, payload, _ in list(self._queue) if kind == "remove")
        self._placed.update(group_id for group_id in reply.placed if group_id not in removed)
        for (_, future), error in zip(creates + removes,
                                      list(reply.create_error) + list(reply.remove_error)):
            if error:
                future.set_exception(self._fail(error))
            else:
                future.set_result(None)
