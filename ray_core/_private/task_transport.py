"""The framed socket that carries task pushes and their replies (step 6 of a task's life).

Why not gRPC: measured on the 2-core dev machine (grpcio 1.85, upb protobuf), a
PushTaskBatch/PushTaskReplyBatch round trip of one small task costs
    gRPC aio bidi stream  ~308 us     gRPC aio unary  ~680 us
    framed TCP socket, asyncio owner side, blocking worker side  ~93 us
and the targets (>= 3x Ray's 620 sync tasks/s, p50 <= ~0.5 ms) leave about 500 us for
the whole round trip including execution and (de)serialization. So the two ends
exchange the same protobuf messages, length-prefixed, over a plain socket: a Linux
abstract Unix socket when owner and worker share a node (no file to clean up), TCP
otherwise. The first frame of a connection carries the cluster token, so the socket is
as closed to strangers as the gRPC services.

Frame: u32 payload length | u8 kind | payload (a serialized protobuf).
"""
import asyncio
import collections
import hmac
import logging
import os
import selectors
import socket
import struct
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from google.protobuf.message import DecodeError

from ray_common import rpc
from ray_common.config import config
from ray_common.ids import JobID, TaskID
from ray_common.protocol import core_worker_pb2

logger = logging.getLogger(__name__)

_FRAME = struct.Struct("<IB")
_PEERCRED = struct.Struct("3i")
KIND_HELLO = 1
KIND_PUSH = 2
KIND_REPLY = 3
_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def abstract_socket_name(worker_id_hex: str) -> str:
    """The abstract-namespace Unix socket a worker listens on (leading NUL: no file)."""
    return "\0ray_core_task_" + worker_id_hex


def _tune(sock) -> None:
    """Large send buffers (a batch fits at once) and no Nagle delay on TCP."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER_BYTES)
        if sock.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


def encode_frame(kind: int, payload: bytes) -> bytes:
    return _FRAME.pack(len(payload), kind) + payload


def encode_push(batch) -> bytes:
    """The frame of a PushTaskBatch (what TaskConnection.send_batch writes)."""
    return encode_frame(KIND_PUSH, batch.SerializeToString())


def _split_frames(buffer: bytearray) -> List[Tuple[int, bytes]]:
    """Remove and return the complete frames at the start of `buffer`."""
    frames = []
    pos = 0
    end = len(buffer)
    header = _FRAME.size
    while end - pos >= header:
        length, kind = _FRAME.unpack_from(buffer, pos)
        if end - pos - header < length:
            break
        frames.append((kind, bytes(buffer[pos + header:pos + header + length])))
        pos += header + length
    if pos:
        del buffer[:pos]
    return frames


# ---- owner side (io loop) ------------------------------------------------------------

class TaskConnection(asyncio.Protocol):
    """The owner's end of one connection to a worker; lives on the io loop."""

    def __init__(self, on_replies: Callable[["TaskConnection", object], None],
                 on_lost: Callable[["TaskConnection", Optional[Exception]], None]):
        self._on_replies = on_replies
        self._on_lost = on_lost
        self._buffer = bytearray()
        self.transport: Optional[asyncio.Transport] = None
        self.closed = False
        self.peer = ""
        self.fd = -1    # the socket, for write_now from other threads
        self._tail: Optional[bytes] = None  # what the socket did not take of a write_now
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def connection_made(self, transport):
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _tune(sock)
            self.fd = sock.fileno()

    def data_received(self, data):
        self._buffer += data
        for kind, payload in _split_frames(self._buffer):
            if kind == KIND_REPLY:
                self._on_replies(self, core_worker_pb2.PushTaskReplyBatch.FromString(payload))

    def connection_lost(self, exc):
        self.closed = True
        self._on_lost(self, exc)

    def send_batch(self, batch) -> None:
        """Write a batch from the io loop, after any tail of a write_now."""
        self._write_tail()
        self.transport.write(encode_push(batch))

    def can_write_now(self) -> bool:
        """True when write_now may go: nothing of earlier writes waits to be written."""
        return self.fd >= 0 and not self.closed and self._tail is None and \
            not self.transport.get_write_buffer_size()

    def write_now(self, data: bytes) -> None:
        """Write a frame straight to the socket from any thread (the submitters' fast
        paths, under the lock their io-loop writes take too; check can_write_now first).
        What the socket does not take is written by the io loop before anything else."""
        try:
            sent = os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return      # the connection is going: its loss re-sends or fails what it held
        if sent < len(data):
            self._tail = data[sent:]
            self._loop.call_soon_threadsafe(self._write_tail)

    def _write_tail(self) -> None:
        tail = self._tail
        if tail is not None:
            if not self.closed:
                self.transport.write(tail)
            self._tail = None   # after the write: until then can_write_now stays False

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


async def connect(address: str, token: Optional[str], on_replies, on_lost) -> TaskConnection:
    """Open a connection: `address` is an abstract socket name ("\\0...") or "host:port"."""
    loop = asyncio.get_running_loop()
    factory = lambda: TaskConnection(on_replies, on_lost)  # noqa: E731
    if address.startswith("\0"):
        _, conn = await loop.create_unix_connection(factory, address)
    else:
        host, port = address.rsplit(":", 1)
        _, conn = await loop.create_connection(factory, host, int(port))
    conn.peer = address
    conn.transport.write(encode_frame(KIND_HELLO, (token or "").encode()))
    return conn


# ---- worker side (main thread, blocking) -----------------------------------------------

class InjectedPush:
    """Stands for the connection of a push that did not come over the socket."""
    __slots__ = ("on_reply",)

    def __init__(self, on_reply):
        self.on_reply = on_reply


class _Fault(Exception):
    """A peer broke the protocol; the message names how, and its connection is dropped."""


class _Peer:
    """What the worker knows of one accepted connection."""
    __slots__ = ("name", "buffer", "authed")

    def __init__(self, name: str):
        self.name = name
        self.buffer = bytearray()
        self.authed = False


def _peer_name(conn: socket.socket) -> str:
    """host:port of a TCP peer, the pid of a local one (what a log reader can find)."""
    try:
        if conn.family == socket.AF_UNIX:
            pid = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                   _PEERCRED.size))[0]
            return f"pid {pid} (local socket)"
        host, port = conn.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "an unknown peer"


class TaskServer:
    """The worker's end: listens, accepts owners, reads pushes, writes replies.

    Runs on the worker's main thread with a selector, so a task goes from the socket to
    the function without a thread hop. While a task runs, new pushes wait in the kernel
    buffer; the owner's side never blocks on them (asyncio buffers its writes).

    Bad input drops that connection only, with one log line naming the peer: a first
    frame that is not HELLO, a wrong token, a frame of a kind owners do not send, a
    length over the limit (judged from the header, before the body is awaited), a batch
    that does not parse. A peer that stays without its HELLO, or stops mid-frame, for
    task_socket_stalled_peer_timeout_s is dropped too. That clock runs only while the
    worker waits in poll(): bytes that wait in the kernel while a long task runs have
    not stalled, and are read before the clock is looked at.
    """

    def __init__(self, worker_id_hex: str, host: str, token: Optional[str]):
        self._token = (token or "").encode()
        self._max_frame = config.max_grpc_message_size
        self._stall_timeout = config.task_socket_stalled_peer_timeout_s
        self._selector = selectors.DefaultSelector()
        self._listeners = []
        self._peers: Dict[socket.socket, _Peer] = {}
        self._stalled: Dict[socket.socket, float] = {}   # conn -> deadline on _waited
        self._waited = 0.0      # seconds spent waiting in select(), the stall clock
        self.unix_name = abstract_socket_name(worker_id_hex)
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(self.unix_name)
        unix.listen(64)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind((host if host not in ("", "localhost") else "0.0.0.0", 0))
        tcp.listen(64)
        self.tcp_port = tcp.getsockname()[1]
        for sock in (unix, tcp):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, None)
            self._listeners.append(sock)
        self._injected = collections.deque()
        # Set once the worker hosts an actor (actor_call_order.ActorCallOrder).
        self.call_order = None
        self._send_lock = threading.Lock()   # threaded/async actors reply from several threads
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")

    def wake(self) -> None:
        """Make a blocked poll() return (another thread asks the main loop to exit)."""
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def inject(self, request, on_reply: Callable[[object], None]) -> None:
        """A push that came another way (the GCS's actor creation over gRPC, any thread):
        poll() returns it like a socket push, and its reply goes to on_reply."""
        self._injected.append((InjectedPush(on_reply), request))
        self.wake()

    def poll(self, timeout: Optional[float]) -> List[Tuple[socket.socket, object]]:
        """Wait up to `timeout` for pushes; returns (connection, PushTaskRequest) pairs."""
        out = []
        while self._injected:
            out.append(self._injected.popleft())
            timeout = 0
        if self._stalled:
            left = max(0.0, min(self._stalled.values()) - self._waited)
            timeout = left if timeout is None else min(timeout, left)
        started = time.monotonic()
        events = self._selector.select(timeout)
        self._waited += time.monotonic() - started
        for key, _ in events:
            obj = key.fileobj
            if key.data == "wake":
                try:
                    os.read(self._wake_r, 4096)
                except OSError:
                    pass
                continue
            if obj in self._listeners:
                self._accept(obj)
                continue
            self._read(obj, out)
        if self._stalled:
            self._drop_stalled()
        if self.call_order is not None:
            return self.call_order.admit(out)
        return out

    def _accept(self, listener) -> None:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(True)
        _tune(conn)
        self._peers[conn] = _Peer(_peer_name(conn))
        self._stalled[conn] = self._waited + self._stall_timeout   # until its HELLO
        self._selector.register(conn, selectors.EVENT_READ, "conn")

    def _read(self, conn, out) -> None:
        try:
            data = conn.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        peer = self._peers.get(conn)
        if peer is None:
            return                      # a reply's failed send dropped it meanwhile
        if not data:
            if peer.buffer:
                self._drop(conn, "closed the connection in the middle of a frame")
            elif not peer.authed:
                self._drop(conn, "closed the connection before its HELLO frame")
            else:
                self._drop(conn)
            return
        buffer = peer.buffer
        buffer += data
        header = _FRAME.size
        pos = 0
        try:
            while len(buffer) - pos >= header:
                length, kind = _FRAME.unpack_from(buffer, pos)
                self._check_header(peer, length, kind)
                end = pos + header + length
                if len(buffer) < end:
                    break
                payload = bytes(buffer[pos + header:end])
                pos = end
                self._serve_frame(conn, peer, kind, payload, out)
        except _Fault as e:
            self._drop(conn, str(e))
            return
        if pos:
            del buffer[:pos]
        if not peer.authed:
            return                          # the deadline set at accept stands
        if not buffer:
            self._stalled.pop(conn, None)
        elif pos or conn not in self._stalled:
            self._stalled[conn] = self._waited + self._stall_timeout   # a frame begun

    def _check_header(self, peer: _Peer, length: int, kind: int) -> None:
        """Judge a frame by its header, before waiting for a body that may never come."""
        if kind == KIND_HELLO:
            if peer.authed:
                raise _Fault("a second HELLO frame")
            if length > rpc.MAX_TOKEN_BYTES:
                raise _Fault(f"a HELLO frame of {length} bytes (a cluster token has at most "
                             f"{rpc.MAX_TOKEN_BYTES})")
        elif not peer.authed:
            raise _Fault(f"a frame of kind {kind} before the HELLO frame with the cluster token")
        elif kind != KIND_PUSH:
            raise _Fault(f"a frame of kind {kind}; owners send only HELLO ({KIND_HELLO}) and "
                         f"PUSH ({KIND_PUSH})")
        elif length > self._max_frame:
            raise _Fault(f"a PUSH frame of {length} bytes, over max_grpc_message_size "
                         f"({self._max_frame})")

    def _serve_frame(self, conn, peer: _Peer, kind: int, payload: bytes, out) -> None:
        if kind == KIND_HELLO:
            if self._token and not hmac.compare_digest(payload, self._token):
                raise _Fault("a wrong cluster token")
            peer.authed = True
            return
        try:
            batch = core_worker_pb2.PushTaskBatch.FromString(payload)
        except DecodeError as e:
            raise _Fault(f"a PUSH frame whose {len(payload)} bytes are not a PushTaskBatch "
                         f"({e})") from None
        for request in batch.requests:
            spec = request.task_spec
            if len(spec.task_id) != TaskID.SIZE or len(spec.job_id) != JobID.SIZE:
                # The executor builds these ids before it can turn errors into replies.
                raise _Fault(f"a task whose task_id has {len(spec.task_id)} bytes and job_id "
                             f"{len(spec.job_id)} (they have {TaskID.SIZE} and {JobID.SIZE})")
        out.extend((conn, request) for request in batch.requests)

    def _drop_stalled(self) -> None:
        now = self._waited
        for conn, deadline in list(self._stalled.items()):
            if deadline <= now:
                peer = self._peers[conn]
                what = "in the middle of a frame" if peer.authed else "without a HELLO frame"
                self._drop(conn, f"stalled {what} for {self._stall_timeout:g} s "
                                 f"(task_socket_stalled_peer_timeout_s)")

    def _drop(self, conn, fault: Optional[str] = None) -> None:
        peer = self._peers.pop(conn, None)
        if peer is None:
            return
        if fault:
            logger.warning("Dropped the task connection from %s: %s", peer.name, fault)
        try:
            self._selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        self._stalled.pop(conn, None)
        conn.close()

    def send_replies(self, conn, replies: list) -> None:
        if isinstance(conn, InjectedPush):
            for reply in replies:
                conn.on_reply(reply)
            return
        if self.call_order is not None:
            conn = self.call_order.replied(conn, replies)
        frame = encode_frame(KIND_REPLY,
                             core_worker_pb2.PushTaskReplyBatch(replies=replies).SerializeToString())
        with self._send_lock:
            if conn not in self._peers:
                return  # the owner went away; it sends again what it still waits for
            try:
                conn.sendall(frame)
            except OSError:
                # Dropped by the main thread, which owns the selector (this may be an
                # actor's pool thread): its next read of the socket sees the end.
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for conn in list(self._peers):
            self._drop(conn)
        for sock in self._listeners:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
        self._listeners = []
        try:
            self._selector.unregister(self._wake_r)
        except (KeyError, ValueError):
            pass
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._selector.close()
