"""The wire of object transfers: TCP connections that carry slices of one object.

Why not a gRPC stream: measured on the 2-core dev VM, 128 MB between two raylets moved at
0.4-0.8 GB/s as a server stream of 5 MB chunks (each chunk copied into a message, through
gRPC's buffers and out again), against 2.3-3.7 GB/s for a plain TCP copy of the same
bytes. Here the holder writes the object from its shared memory straight into the socket
and the puller reads it straight into the new plasma buffer: one copy each way, as in the
plain copy. Which slices to ask for, of whom, and how many at once is chunk_pull.py's;
control (which nodes, retries, owners) stays with the ObjectManager.

Wire, all integers little endian. The puller sends, once per connection,
    u32 n | n bytes: the cluster token (what gRPC calls carry as metadata)
then any number of
    u32 n | n bytes: a PullRequest (the object, and the slice of its data wanted)
and the holder answers each with
    u8 status | u32 n | n bytes: an ObjectChunk header (data_size, metadata), or on
        status ERROR the reason as UTF-8 text, after which it closes the connection
    then, on status OK, the slice's bytes.
A connection carries one object: its holder takes a plasma reference at the first
request and drops it when the connection closes.

Threads: the socket calls that move an object's bytes are blocking calls made on threads
(SEND_THREADS here, RECEIVE_THREADS in chunk_pull.py), which release the GIL, so that
several slices move on several cores at once and the io loop stays free; the handshake and
the plasma calls stay on the io loop.
"""
import asyncio
import contextlib
import hmac
import logging
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable, Optional, Tuple

from google.protobuf.message import DecodeError

from ray_common import rpc
from ray_common.config import config
from ray_common.protocol import object_manager_pb2

logger = logging.getLogger(__name__)

OK = 0
ERROR = 1
_LEN = struct.Struct("<I")
_STATUS = struct.Struct("<BI")


class TransferError(RuntimeError):
    """The transfer could not complete; the message says where it stopped."""


class Refused(TransferError):
    """The holder answered that it cannot serve the object (it has no copy)."""


class Unreachable(TransferError):
    """No connection to the holder could be made (its node is gone, or its port closed)."""


class _Executors:
    """Thread pools made on first use (a raylet that never transfers starts none)."""

    def __init__(self, prefix: str):
        self._prefix = prefix
        self._pool: Optional[ThreadPoolExecutor] = None

    def get(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(config.object_transfer_threads,
                                            thread_name_prefix=self._prefix)
        return self._pool


# Apart, so that sends never wait behind receives: two raylets pulling from each other
# with every receive thread busy would otherwise wait on each other's sends for ever.
SEND_THREADS = _Executors("transfer-send")
RECEIVE_THREADS = _Executors("transfer-receive")

# Serve(request) -> (header, data view, done callback) or raises TransferError(reason).
Serve = Callable[[object_manager_pb2.PullRequest],
                 Awaitable[Tuple[object_manager_pb2.ObjectChunk, memoryview, Callable[[], None]]]]


def chunk_bounds(request: object_manager_pb2.PullRequest, size: int) -> Tuple[int, int]:
    """[start, end) of the object's data that `request` asks for."""
    if request.offset < 0 or request.offset > size or request.length < 0:
        raise TransferError(f"slice at {request.offset} of {request.length} bytes is outside "
                            f"object {request.object_id.hex()} of {size} bytes")
    end = size if request.length == 0 else min(size, request.offset + request.length)
    return request.offset, end


async def _recv_exactly(loop, sock: socket.socket, n: int, what: str,
                        end_ok: bool = False) -> Optional[bytes]:
    """n bytes; None if `end_ok` and the peer closed before sending any."""
    out = bytearray(n)
    view = memoryview(out)
    got = 0
    while got < n:
        count = await loop.sock_recv_into(sock, view[got:])
        if not count:
            if end_ok and not got:
                return None
            raise TransferError(f"connection closed after {got} of {n} bytes of {what}")
        got += count
    return bytes(out)


async def _recv_frame(loop, sock: socket.socket, what: str, limit: int, limit_name: str,
                      end_ok: bool = False) -> Optional[bytes]:
    """A length-prefixed frame; None if `end_ok` and the peer closed before it."""
    prefix = await _recv_exactly(loop, sock, _LEN.size, what, end_ok)
    if prefix is None:
        return None
    (length,) = _LEN.unpack(prefix)
    if length > limit:
        raise TransferError(f"{what} of {length} bytes is over {limit_name} ({limit})")
    return await _recv_exactly(loop, sock, length, what)


def _parse_request(body: bytes) -> object_manager_pb2.PullRequest:
    try:
        return object_manager_pb2.PullRequest.FromString(body)
    except DecodeError as e:
        raise TransferError(f"the pull request's {len(body)} bytes are not a "
                            f"PullRequest ({e})") from None


def _send_blocking(conn: socket.socket, head: bytes, data: memoryview) -> None:
    conn.settimeout(config.object_transfer_stall_timeout_s)
    try:
        conn.sendall(head)
        if len(data):
            conn.sendall(data)
    finally:
        conn.setblocking(False)


class TransferServer:
    """Accepts pullers on a TCP port and streams them slices of the objects `serve` hands out.

    A connection that sends anything but a token frame and a PullRequest, or not both
    within object_transfer_handshake_timeout_s, is closed with one log line naming the
    peer; the others go on. The token frame's length is checked before it is read, so a
    stranger's length field cannot make the raylet allocate more than MAX_TOKEN_BYTES.
    """

    def __init__(self, host: str, serve: Serve):
        self._serve = serve
        self._token = (rpc.auth_token() or "").encode()   # this node's cluster token
        self._handshake_timeout = config.object_transfer_handshake_timeout_s
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host if host not in ("", "localhost") else "0.0.0.0", 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._accepting: Optional[asyncio.Task] = None
        self._connections = set()

    def start(self) -> None:
        self._accepting = asyncio.ensure_future(self._accept_loop())

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, peer = await loop.sock_accept(self._listener)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.ensure_future(self._handle(conn, f"{peer[0]}:{peer[1]}"))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _read_handshake(self, loop, conn: socket.socket) -> object_manager_pb2.PullRequest:
        sent_token = await _recv_frame(loop, conn, "the token", rpc.MAX_TOKEN_BYTES,
                                       "the longest token")
        if self._token and not hmac.compare_digest(sent_token, self._token):
            raise TransferError("wrong cluster token")
        return await self._read_request(loop, conn)

    @staticmethod
    async def _read_request(loop, conn: socket.socket, end_ok: bool = False):
        """The connection's next PullRequest; None if `end_ok` and the puller closed it."""
        body = await _recv_frame(loop, conn, "the pull request",
                                 config.object_transfer_max_header_bytes,
                                 "object_transfer_max_header_bytes", end_ok)
        return None if body is None else _parse_request(body)

    async def _handle(self, conn: socket.socket, peer: str) -> None:
        loop = asyncio.get_running_loop()
        served = None
        try:
            try:
                request = await asyncio.wait_for(self._read_handshake(loop, conn),
                                                 self._handshake_timeout)
            except asyncio.TimeoutError:
                logger.warning("Refused an object transfer from %s: no token and pull request "
                               "within %g s (object_transfer_handshake_timeout_s)", peer,
                               self._handshake_timeout)
                return
            except (OSError, TransferError) as e:
                logger.warning("Refused an object transfer from %s: %s", peer, e)
                return
            while request is not None:
                try:
                    if served is None:
                        served = await self._serve(request)
                    header, data, _ = served
                    if request.object_id != header.object_id:
                        raise TransferError(f"object {request.object_id.hex()} asked for on "
                                            f"a connection that carries object "
                                            f"{header.object_id.hex()}")
                    start, end = chunk_bounds(request, header.data_size)
                except TransferError as e:
                    reason = str(e).encode()
                    await loop.sock_sendall(conn, _STATUS.pack(ERROR, len(reason)) + reason)
                    return
                head = header.SerializeToString()
                piece = data[start:end]
                await loop.run_in_executor(SEND_THREADS.get(), _send_blocking, conn,
                                           _STATUS.pack(OK, len(head)) + head, piece)
                if len(piece) < end - start:
                    raise TransferError(f"object {header.object_id.hex()} has only "
                                        f"{start + len(piece)} of its {header.data_size} bytes")
                del piece
                request = await self._read_request(loop, conn, end_ok=True)
        except (OSError, TransferError) as e:
            logger.info("Object transfer to %s ended early: %s", peer, e)
        finally:
            if served is not None:
                served[2]()
            try:
                conn.shutdown(socket.SHUT_RDWR)   # ends a send thread still blocked on it
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        for task in list(self._connections):
            task.cancel()
        self._listener.close()


_open_lock = threading.Lock()
_open_connections: set = set()


def abort_all() -> None:
    """Make every puller thread blocked on a connection return now (the raylet stops:
    its threads must not hold up the process's exit)."""
    with _open_lock:
        for conn in _open_connections:
            conn.abort()


class Connection:
    """A puller's blocking connection to one TransferServer, used by one thread at a time."""

    def __init__(self, address: str):
        self.address = address
        host, port = address.rsplit(":", 1)
        timeout = config.object_transfer_stall_timeout_s
        try:
            self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        except OSError as e:    # refused, unreachable: the holder is gone
            raise Unreachable(f"connection to {address} failed: {e}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._greeted = False
        with _open_lock:
            _open_connections.add(self)

    def ask(self, request: object_manager_pb2.PullRequest) -> object_manager_pb2.ObjectChunk:
        """Send `request`; returns the header of the answer, whose slice follows."""
        body = request.SerializeToString()
        frame = _LEN.pack(len(body)) + body
        if not self._greeted:
            token = (rpc.auth_token() or "").encode()
            frame = _LEN.pack(len(token)) + token + frame
            self._greeted = True
        with self._errors():
            self.sock.sendall(frame)
            status, length = _STATUS.unpack(self._exactly(_STATUS.size, "the answer"))
            if length > config.object_transfer_max_header_bytes:
                raise TransferError(f"answer of {length} bytes exceeds "
                                    f"object_transfer_max_header_bytes")
            answer = self._exactly(length, "the answer")
        if status != OK:
            raise Refused(answer.decode(errors="replace"))
        return object_manager_pb2.ObjectChunk.FromString(answer)

    def receive_into(self, view: memoryview, what: str) -> None:
        """Fill `view` from the connection (the slice an ask() announced)."""
        got, size = 0, len(view)
        with self._errors():
            while got < size:
                count = self.sock.recv_into(view[got:])
                if not count:
                    raise TransferError(f"connection closed after {got} of {size} bytes "
                                        f"of {what}")
                got += count

    def _exactly(self, n: int, what: str) -> bytes:
        out = bytearray(n)
        self.receive_into(memoryview(out), what)
        return bytes(out)

    @contextlib.contextmanager
    def _errors(self):
        """Socket errors become TransferErrors that name the holder's address."""
        try:
            yield
        except socket.timeout:
            raise TransferError(f"no bytes from {self.address} for "
                                f"{config.object_transfer_stall_timeout_s:g} s "
                                f"(object_transfer_stall_timeout_s)") from None
        except OSError as e:
            raise TransferError(f"connection to {self.address} broke: {e}") from None

    def abort(self) -> None:
        """Make a blocking call on this connection in another thread return at once."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        with _open_lock:
            _open_connections.discard(self)
        self.sock.close()

