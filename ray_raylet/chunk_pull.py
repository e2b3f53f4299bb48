"""One object pulled as slices over several connections at once, from every holder given.

The first connection asks the first holder that answers for slice 0; its header (size,
metadata) lets `create` make the plasma buffer. Then up to object_transfer_connections
connections, spread round-robin over the holders, each take the next slice not yet asked
for and read it with blocking recv_into calls, on RECEIVE_THREADS, straight into that
slice of the buffer: several cores copy (and fault in fresh pages) at once, and a slow
or dead holder only holds up the slices it was asked for.

No thread pre-faults the buffer's pages ahead of the receives: on the 2-core dev VM the
first touch of a fresh shared-memory page seems to cost a fault in the host as well, and
memset of 512 MB of fresh memfd pages ran at 0.11-0.20 GB/s on one thread,
0.13-0.24 on two and 0.12-0.20 on four (against 2.3-6.7 GB/s once touched): faults do not
overlap, so a pre-faulting thread would only move the same cost. The receive threads
already fault their slices in parallel.

A slice is asked for only by the thread that then reads it at once, never queued behind
other receives: a holder's send thread blocks until its slice is read, and with slices
asked for but not being read, the holders' and the pullers' thread pools could wait on
each other for ever.

A connection that fails (dropped, stalled, refused) gives its slice back to be asked for
again over a new connection; a holder that refused or could not be reached is not asked
again. After object_transfer_chunk_retries failures, or with no holder left, the pull
raises TransferError naming each failure. Whatever ends the pull (success, failure,
cancellation), every thread has stopped writing into the buffer before pull() returns or
raises, so the caller may abort (free) the buffer at once.
"""
import asyncio
import logging
import threading
from typing import Awaitable, Callable, Dict, List, Optional, Tuple

from ray_common.config import config
from ray_common.protocol import object_manager_pb2
from ray_raylet.object_transfer import (RECEIVE_THREADS, Connection, Refused, TransferError,
                                       Unreachable)

logger = logging.getLogger(__name__)

Create = Callable[[object_manager_pb2.ObjectChunk], Awaitable[Optional[memoryview]]]


class _Slices:
    """The slices of one object still to ask for, shared by its connections' threads."""

    def __init__(self, size: int, chunk: int, first_end: int):
        self._lock = threading.Lock()
        self._left: List[Tuple[int, int]] = [(start, min(size, start + chunk))
                                             for start in range(first_end, size, chunk)]
        self._stopped = False
        self._open: set = set()

    def take(self) -> Optional[Tuple[int, int]]:
        with self._lock:
            return None if self._stopped or not self._left else self._left.pop(0)

    def give_back(self, piece: Tuple[int, int]) -> None:
        with self._lock:
            self._left.insert(0, piece)

    def remaining(self) -> int:
        with self._lock:
            return len(self._left)

    def opened(self, conn: Connection) -> bool:
        """Track `conn` so stop() can interrupt it; False (and closed) after a stop."""
        with self._lock:
            if self._stopped:
                conn.close()
                return False
            self._open.add(conn)
            return True

    def closed(self, conn: Connection) -> None:
        with self._lock:
            self._open.discard(conn)
        conn.close()

    def stop(self) -> None:
        """No more slices; connections blocked in a socket call return at once."""
        with self._lock:
            self._stopped = True
            for conn in self._open:
                conn.abort()


def _receive(conn: Connection, piece: Optional[Tuple[int, int]], slices: _Slices,
             buffer: memoryview, request: object_manager_pb2.PullRequest) -> None:
    """Read slices into `buffer` over `conn` until none is left; `piece` is already
    asked for (or None)."""
    what = f"object {request.object_id.hex()}"
    try:
        while True:
            if piece is None:
                piece = slices.take()
                if piece is None:
                    return
                conn.ask(_slice_request(request, piece[0], piece[1] - piece[0]))
            conn.receive_into(buffer[piece[0]:piece[1]], what)
            piece = None
    finally:
        if piece is not None:
            slices.give_back(piece)
        slices.closed(conn)


def _slice_request(request, offset: int, length: int) -> object_manager_pb2.PullRequest:
    return object_manager_pb2.PullRequest(object_id=request.object_id,
                                          requester_node_id=request.requester_node_id,
                                          offset=offset, length=length)


class _Pull:
    """The state of one pull: its holders, slices, buffer and connection threads."""

    def __init__(self, loop, addresses: List[str], request, create: Create,
                 names: Dict[str, str]):
        self.loop = loop
        self.names = names
        self.holders = list(addresses)
        self.request = request
        self.create = create
        self.chunk = config.object_transfer_chunk_bytes
        self.failures: List[str] = []
        self.workers: Dict[asyncio.Future, str] = {}
        self.slices: Optional[_Slices] = None
        self.buffer: Optional[memoryview] = None
        self.size = -1
        self.stopping = False
        self._turn = 0

    def start(self, address: str, first: bool = False) -> None:
        body = self._first if first else self._more
        future = self.loop.run_in_executor(RECEIVE_THREADS.get(), body, address)
        self.workers[future] = address

    def start_more(self) -> None:
        """One more connection, to the next holder in turn."""
        self._turn += 1
        self.start(self.holders[self._turn % len(self.holders)])

    def _first(self, address: str) -> None:
        """Thread body: slice 0 from the first holder that answers; with its header the
        buffer is made (on the io loop) and the other connections start."""
        conn = header = None
        for holder in list(self.holders):
            try:
                conn = Connection(holder)
                header = conn.ask(_slice_request(self.request, 0, self.chunk))
                break
            except TransferError as e:
                if conn is not None:
                    conn.close()
                    conn = None
                self._failed(holder, e)
                self.holders.remove(holder)
        if conn is None:
            raise TransferError("; ".join(self.failures))
        try:
            made = asyncio.run_coroutine_threadsafe(self._made(header), self.loop).result()
        except BaseException:
            conn.close()
            raise
        if not made or not self.slices.opened(conn):   # here already, or the pull ended
            conn.close()
            return
        _receive(conn, (0, min(self.size, self.chunk)), self.slices, self.buffer, self.request)

    async def _made(self, header) -> bool:
        self.size = header.data_size
        self.buffer = await self.create(header)
        if self.buffer is None or self.stopping:
            return False
        self.slices = _Slices(self.size, self.chunk, min(self.size, self.chunk))
        for _ in range(min(config.object_transfer_connections - 1, self.slices.remaining())):
            self.start_more()
        return True

    def _more(self, address: str) -> None:
        """Thread body: one more connection, reading slices until none is left."""
        conn = Connection(address)
        if self.slices.opened(conn):
            _receive(conn, None, self.slices, self.buffer, self.request)

    def failed(self, address: str, error: BaseException) -> None:
        """A connection failed: drop a holder that cannot serve, try again elsewhere."""
        if not isinstance(error, TransferError):
            raise error
        if self.slices is None:     # no holder answered the first ask
            raise error
        self._failed(address, error)
        if isinstance(error, (Refused, Unreachable)):
            self.holders = [h for h in self.holders if h != address]
        if len(self.failures) > config.object_transfer_chunk_retries or not self.holders:
            raise TransferError("; ".join(self.failures[-6:]))
        if self.slices.remaining():
            self.start_more()

    def _failed(self, address: str, error: BaseException) -> None:
        name = self.names.get(address, address)
        self.failures.append(f"{name}: {error}")
        logger.warning("Pull of object %s from %s failed: %s", self.request.object_id.hex(),
                       name, error)

    async def stop(self) -> None:
        """Every thread out of the buffer, through any cancellation of ours (no thread
        starts once `stopping` is set, so the workers left are all there will be)."""
        self.stopping = True
        if self.slices is not None:
            self.slices.stop()
        cancelled = False
        while self.workers:
            try:
                done, _ = await asyncio.wait(self.workers)
            except asyncio.CancelledError:
                cancelled = True
                continue
            for future in done:
                del self.workers[future]
                if not future.cancelled():
                    future.exception()   # retrieved: the pull's own error is raised
        self.buffer = None
        if cancelled:
            raise asyncio.CancelledError()


async def pull(addresses: List[str], request: object_manager_pb2.PullRequest,
               create: Create, names: Optional[Dict[str, str]] = None) -> int:
    """Fetch one object from the TransferServers at "host:port" `addresses` into the
    buffer that `create(header)` returns (None: the object is here already); returns
    its size. Raises TransferError when no holder can deliver it. `names` maps an
    address to what log lines and errors call it ("node <id>")."""
    state = _Pull(asyncio.get_running_loop(), addresses, request, create, names or {})
    try:
        state.start(addresses[0], first=True)
        while state.workers:
            done, _ = await asyncio.wait(state.workers, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                address = state.workers.pop(future)
                if future.exception() is not None:
                    state.failed(address, future.exception())
        if state.slices is not None and state.slices.remaining():
            raise TransferError("; ".join(state.failures[-6:]))
        return state.size
    finally:
        await state.stop()
