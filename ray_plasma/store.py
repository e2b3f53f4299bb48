"""The plasma store process: one shared region, one thread, many clients.

`python -m ray_plasma.store --socket PATH --memory-bytes N [--hugepages] [--logs-dir D]`

The raylet starts it (ray_plasma.launcher) and owns it: the store dies with its parent.
One event loop (epoll) serves every client over a Unix stream socket; all state
lives in an ObjectTable touched only by that loop, so there are no locks. A client that
sends a frame the store cannot parse is disconnected and logged; the store goes on. So is
one that stalls: connected without HELLO (or SUBSCRIBE), or stopped in the middle of a
frame, for plasma_stalled_client_timeout_s (a client writes each frame at once).
Readiness: the socket is bound under a temporary name and renamed to PATH once it
listens, so PATH existing means the store accepts connections.

Why plain Python here (measured on the 2-core VM, 100-byte objects): a create_and_seal +
get + release cycle takes ~80 us wall, ~42 us of it store CPU for its two requests and one
release (syscalls included) and ~25 us in the Cython client; 4 client processes reach
~20k cycles/s together. That is far below the cost of the task RPC around each object, so
the store's bookkeeping stays readable Python and only the allocator is compiled.
"""
import argparse
import heapq
import itertools
import json
import logging
import os
import select
import signal
import socket
import struct
import sys
import time

from ray_common.config import config
from ray_common.process import die_with_parent
from ray_plasma import protocol, shared_memory
from ray_plasma.errors import PlasmaError, error_for_status, status_for_error
from ray_plasma.object_table import ClientRefs, ObjectTable

# Named explicitly: run with -m, __name__ is "__main__", outside the project loggers.
logger = logging.getLogger("ray_plasma.store")

_RECV_SIZE = 256 * 1024
_PEERCRED = struct.Struct("3i")
_UNIX_PATH_MAX = 107
_NO_REPLY = object()


class MalformedFrame(Exception):
    """A client broke the protocol; its connection is closed."""


class Connection:
    """One client socket: its buffers and its stake in the object table."""

    __slots__ = ("sock", "fd", "pid", "refs", "inbuf", "outbuf", "greeted", "subscriber",
                 "closed", "writing", "pending", "stall_deadline")

    def __init__(self, sock):
        self.sock = sock
        self.fd = sock.fileno()
        try:
            self.pid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                        _PEERCRED.size))[0]
        except OSError:
            self.pid = -1
        self.refs = ClientRefs(f"pid {self.pid} fd {self.fd}")
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.greeted = False
        self.subscriber = False
        self.closed = False
        self.writing = False
        self.pending = None     # the PendingGet this client waits on (one request at a time)
        self.stall_deadline = None  # dropped then unless it greets or finishes its frame


class PendingGet:
    """A get waiting for objects to be sealed; refs are taken as each one arrives."""

    __slots__ = ("conn", "ids", "entries", "missing", "done")

    def __init__(self, conn, ids):
        self.conn = conn
        self.ids = ids
        self.entries = [None] * len(ids)
        self.missing = 0
        self.done = False


class PlasmaStoreServer:
    def __init__(self, socket_path: str, memory_bytes: int, hugepages: bool = False):
        if memory_bytes <= 0:
            raise ValueError(f"--memory-bytes must be positive, got {memory_bytes}")
        if len(os.fsencode(socket_path)) > _UNIX_PATH_MAX:
            raise ValueError(f"plasma socket path is longer than the {_UNIX_PATH_MAX} bytes a "
                             f"Unix socket allows: {socket_path}")
        self.socket_path = socket_path
        self.region_fd, capacity = shared_memory.create_region(
            memory_bytes, hugepages, config.preallocate_plasma_memory)
        self.region = shared_memory.map_region(self.region_fd, capacity)
        self.table = ObjectTable(capacity, on_event=self._notify)
        self.capacity = capacity
        self._max_frame = config.plasma_max_frame_bytes
        self._max_buffered = config.plasma_subscriber_max_buffered_bytes
        self._epoll = select.epoll()
        self._handlers_by_fd = {}   # fd -> callback(fd, events)
        self._conns = {}
        self._subscribers = set()
        self._waiters = {}          # object id -> [PendingGet]
        self._timers = []           # heap of (deadline, seq, PendingGet)
        self._stalls = []           # heap of (deadline, seq, Connection), stale once moved
        self._stall_timeout = config.plasma_stalled_client_timeout_s
        self._resume = []           # clients whose get finished with frames still queued
        self._seq = itertools.count()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._watch(self._wake_r, self._on_wake)
        self._listener = self._listen()
        self._handlers = {
            protocol.OP_HELLO: self._hello,
            protocol.OP_CREATE: self._create,
            protocol.OP_CREATE_AND_SEAL: self._create_and_seal,
            protocol.OP_SEAL: self._seal,
            protocol.OP_ABORT: self._abort,
            protocol.OP_GET: self._get,
            protocol.OP_RELEASE: self._release,
            protocol.OP_CONTAINS: self._contains,
            protocol.OP_DELETE: self._delete,
            protocol.OP_LIST: self._list,
            protocol.OP_STATS: self._stats,
            protocol.OP_SUBSCRIBE: self._subscribe,
        }
        logger.info("Plasma store serving %s with %d bytes of shared memory (memfd)",
                    socket_path, capacity)

    def _watch(self, fd, handler):
        self._handlers_by_fd[fd] = handler
        self._epoll.register(fd, select.EPOLLIN)

    def _listen(self):
        # Bound under a short name beside it, then renamed: a longer one than the socket's
        # own could pass the AF_UNIX path limit where the socket's does not.
        tmp = os.path.join(os.path.dirname(self.socket_path), f".{os.getpid()}.tmp")
        for path in (tmp, self.socket_path):
            try:
                os.unlink(path)  # a store killed earlier leaves its socket file behind
            except FileNotFoundError:
                pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(tmp)
        listener.listen(config.plasma_listen_backlog)
        listener.setblocking(False)
        os.rename(tmp, self.socket_path)
        self._watch(listener.fileno(), self._on_accept)
        return listener

    # --- loop --------------------------------------------------------------------------

    def serve_forever(self):
        signal.set_wakeup_fd(self._wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            while not self._stopping:
                handlers = self._handlers_by_fd
                for fd, events in self._epoll.poll(self._next_timeout()):
                    handler = handlers.get(fd)
                    if handler is not None:
                        handler(fd, events)
                self._fire_timers()
                if self._stalls:
                    self._drop_stalled()
                self._resume_deferred()
        finally:
            self.close()

    def stop(self):
        self._stopping = True
        os.write(self._wake_w, b"x")

    def _on_signal(self, signum, frame):
        logger.info("Plasma store got signal %d; shutting down", signum)
        self._stopping = True

    def _on_wake(self, fd, mask):
        try:
            os.read(fd, 4096)
        except BlockingIOError:
            pass

    def close(self):
        for conn in list(self._conns.values()):
            self._drop(conn, None)
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self._epoll.close()
        self._listener.close()
        self.region.close()
        os.close(self.region_fd)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _next_timeout(self):
        while self._timers and self._timers[0][2].done:
            heapq.heappop(self._timers)
        while self._stalls and self._stalls[0][2].stall_deadline != self._stalls[0][0]:
            heapq.heappop(self._stalls)
        deadlines = [heap[0][0] for heap in (self._timers, self._stalls) if heap]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _fire_timers(self):
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            pending = heapq.heappop(self._timers)[2]
            if not pending.done:
                self._finish_get(pending)

    def _stall_from_now(self, conn):
        conn.stall_deadline = deadline = time.monotonic() + self._stall_timeout
        heapq.heappush(self._stalls, (deadline, next(self._seq), conn))

    def _track_stall(self, conn, served):
        """After reading: a greeted client with a partial frame (and no get of its own
        waiting) has plasma_stalled_client_timeout_s from the last whole frame to finish
        it; an ungreeted one keeps the deadline it got when it connected."""
        if not (conn.greeted or conn.subscriber):
            return
        if not conn.inbuf or conn.pending is not None:
            conn.stall_deadline = None
        elif served or conn.stall_deadline is None:
            self._stall_from_now(conn)

    def _drop_stalled(self):
        now = time.monotonic()
        while self._stalls and self._stalls[0][0] <= now:
            deadline, _, conn = heapq.heappop(self._stalls)
            if conn.stall_deadline == deadline and not conn.closed:
                what = ("stopped in the middle of a frame" if conn.greeted or conn.subscriber
                        else "sent no HELLO")
                self._drop(conn, f"{what} for {self._stall_timeout:g} s "
                                 f"(plasma_stalled_client_timeout_s)")

    def _on_accept(self, fd, mask):
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of descriptors: keep serving the clients we have
                logger.error("Plasma store cannot accept a client: %s", e)
                return
            sock.setblocking(False)
            conn = Connection(sock)
            self._conns[conn.fd] = conn
            self._watch(conn.fd, self._on_io)
            self._stall_from_now(conn)      # until its HELLO
            logger.debug("Client %s connected", conn.refs.name)

    def _on_io(self, fd, mask):
        conn = self._conns.get(fd)
        if conn is None:
            return
        try:
            if mask & select.EPOLLOUT:
                self._flush(conn)
            if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and not conn.closed:
                self._on_readable(conn)
        except Exception:  # a bug serving one client must not take the store down
            logger.exception("Internal error serving client %s", conn.refs.name)
            self._drop(conn, "internal error (see the traceback above)")

    def _on_readable(self, conn):
        try:
            data = conn.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._drop(conn, f"read failed: {e}")
            return
        if not data:
            self._drop(conn, _truncation(conn))
            return
        if conn.inbuf:
            conn.inbuf += data
            self._parse(conn, conn.inbuf)
        else:
            self._parse(conn, data)   # the common case: whole frames, parsed without a copy

    def _parse(self, conn, buf):
        """Serve the whole frames in buf and keep the rest. While a get of this client
        waits, its later frames wait too, so replies stay in request order."""
        pos = 0
        try:
            while (len(buf) - pos >= protocol.HEADER_SIZE and not conn.closed
                   and conn.pending is None):
                length, op, status = protocol.HEADER.unpack_from(buf, pos)
                handler = self._check_header(conn, length, op, status)
                end = pos + protocol.HEADER_SIZE + length
                if len(buf) < end:
                    break
                body = bytes(buf[pos + protocol.HEADER_SIZE:end])
                pos = end
                self._dispatch(conn, handler, op, status, body)
        except MalformedFrame as e:
            self._drop(conn, f"malformed frame: {e}")
            return
        if buf is conn.inbuf:
            del buf[:pos]
        elif pos < len(buf):
            conn.inbuf = bytearray(buf[pos:])
        self._track_stall(conn, pos > 0)

    def _resume_deferred(self):
        """Serve frames that arrived while their client's get was waiting."""
        while self._resume:
            conn = self._resume.pop()
            if not conn.closed and conn.pending is None and conn.inbuf:
                self._parse(conn, conn.inbuf)

    def _check_header(self, conn, length, op, status):
        """Judge a frame by its header alone, before its body arrives: a client that sent
        garbage is dropped now rather than waited on for a body it will never send."""
        if length > self._max_frame:
            raise MalformedFrame(f"frame of {length} bytes exceeds "
                                 f"plasma_max_frame_bytes ({self._max_frame})")
        handler = self._handlers.get(op)
        if handler is None:
            raise MalformedFrame(f"unknown op {op}")
        if status != 0:
            raise MalformedFrame(f"request (op {op}) with status {status}, not 0")
        if conn.subscriber:
            raise MalformedFrame(f"op {op} on a subscription connection")
        if not conn.greeted and op != protocol.OP_HELLO and op != protocol.OP_SUBSCRIBE:
            raise MalformedFrame(f"op {op} before HELLO")
        if conn.greeted and op == protocol.OP_HELLO:
            raise MalformedFrame("a second HELLO")
        return handler

    def _dispatch(self, conn, handler, op, status, body):
        try:
            reply = handler(conn, body)
        except PlasmaError as e:
            self._send(conn, op, status_for_error(e), str(e).encode())
            return
        except (struct.error, ValueError, UnicodeDecodeError) as e:
            raise MalformedFrame(f"bad body for op {op} ({len(body)} bytes): {e}") from None
        if reply is not _NO_REPLY:
            self._send(conn, op, protocol.STATUS_OK, reply)

    # --- sending -----------------------------------------------------------------------

    def _send(self, conn, op, status, body=b"", fds=None):
        frame = protocol.HEADER.pack(len(body), op, status) + body
        if conn.closed:
            return
        if fds:
            socket.send_fds(conn.sock, [frame], fds)  # tiny, first on a fresh socket
            return
        if conn.outbuf:
            conn.outbuf += frame
        else:
            try:
                sent = conn.sock.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as e:
                self._drop(conn, f"write failed: {e}")
                return
            if sent == len(frame):
                return
            conn.outbuf += frame[sent:]
        if not conn.writing:
            conn.writing = True
            self._epoll.modify(conn.fd, select.EPOLLIN | select.EPOLLOUT)
        if conn.subscriber and len(conn.outbuf) > self._max_buffered:
            self._drop(conn, f"subscriber fell {len(conn.outbuf)} bytes of notifications "
                             f"behind (plasma_subscriber_max_buffered_bytes)")

    def _flush(self, conn):
        try:
            sent = conn.sock.send(conn.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._drop(conn, f"write failed: {e}")
            return
        del conn.outbuf[:sent]
        if not conn.outbuf:
            conn.writing = False
            self._epoll.modify(conn.fd, select.EPOLLIN)

    def _drop(self, conn, reason):
        if conn.closed:
            return
        conn.closed = True
        if reason:
            logger.warning("Disconnecting client %s: %s", conn.refs.name, reason)
        else:
            logger.debug("Client %s disconnected", conn.refs.name)
        held = len(conn.refs.refs)
        self._epoll.unregister(conn.fd)
        del self._handlers_by_fd[conn.fd]
        conn.sock.close()
        del self._conns[conn.fd]
        self._subscribers.discard(conn)
        if conn.pending is not None:
            self._unwait(conn.pending)
        self.table.disconnect(conn.refs)
        if held:
            logger.info("Client %s disconnected holding %d object(s); released them",
                        conn.refs.name, held)

    def _notify(self, entry, event):
        if self._subscribers:
            body = protocol.EVENT_ENTRY.pack(entry.object_id, event, entry.data_size,
                                             entry.metadata_size)
            for conn in list(self._subscribers):
                self._send(conn, protocol.OP_EVENT, protocol.STATUS_OK, body)
        if event == protocol.EVENT_SEALED:
            self._wake_getters(entry)

    # --- requests ----------------------------------------------------------------------

    def _hello(self, conn, body):
        (version,) = protocol.HELLO.unpack(body)
        if version != protocol.PROTOCOL_VERSION:
            raise MalformedFrame(f"client speaks protocol {version}, store speaks "
                                 f"{protocol.PROTOCOL_VERSION}")
        conn.greeted = True
        self._send(conn, protocol.OP_HELLO, protocol.STATUS_OK,
                   protocol.HELLO_REPLY.pack(self.capacity), fds=[self.region_fd])
        return _NO_REPLY

    def _create(self, conn, body):
        object_id, data_size, metadata_size = protocol.CREATE.unpack(body)
        entry = self.table.create(conn.refs, object_id, data_size, metadata_size)
        return protocol.CREATE_REPLY.pack(entry.offset)

    def _create_and_seal(self, conn, body):
        object_id, data_size, metadata_size = protocol.CREATE.unpack_from(body)
        if len(body) != protocol.CREATE.size + data_size + metadata_size:
            raise ValueError(f"sizes {data_size}+{metadata_size} do not match the body")
        entry = self.table.create(conn.refs, object_id, data_size, metadata_size)
        start = protocol.CREATE.size
        self.region[entry.offset:entry.offset + data_size + metadata_size] = body[start:]
        self.table.seal(conn.refs, object_id)
        return b""

    def _seal(self, conn, body):
        for object_id in protocol.split_ids(body):
            self.table.seal(conn.refs, object_id)
        return b""

    def _abort(self, conn, body):
        for object_id in protocol.split_ids(body):
            self.table.abort(conn.refs, object_id)
        return b""

    def _get(self, conn, body):
        (timeout_ms,) = protocol.GET.unpack_from(body)
        ids = protocol.split_ids(body, protocol.GET.size)
        entries = [self.table.get_sealed(object_id) for object_id in ids]
        if None not in entries:      # the common case: answer at once, nothing to track
            for entry in entries:
                self.table.add_ref(conn.refs, entry)
            return _get_reply(entries)
        pending = PendingGet(conn, ids)
        for i, object_id in enumerate(ids):
            entry = self.table.get_sealed(object_id)
            if entry is not None:
                self.table.add_ref(conn.refs, entry)
                pending.entries[i] = entry
            else:
                pending.missing += 1
                self._waiters.setdefault(object_id, []).append(pending)
        if pending.missing and timeout_ms != 0:
            conn.pending = pending
            if timeout_ms > 0:
                deadline = time.monotonic() + timeout_ms / 1000.0
                heapq.heappush(self._timers, (deadline, next(self._seq), pending))
            return _NO_REPLY
        self._finish_get(pending)
        return _NO_REPLY

    def _wake_getters(self, entry):
        waiting = self._waiters.pop(entry.object_id, None)
        if not waiting:
            return
        for pending in waiting:
            if pending.done or pending.conn.closed:
                continue
            for i, object_id in enumerate(pending.ids):
                if object_id == entry.object_id and pending.entries[i] is None:
                    self.table.add_ref(pending.conn.refs, entry)
                    pending.entries[i] = entry
                    pending.missing -= 1
            if pending.missing == 0:
                self._finish_get(pending)

    def _unwait(self, pending):
        """Mark a get done and take it off the wait lists of the ids it still misses."""
        pending.done = True
        pending.conn.pending = None
        if not pending.missing:
            return
        for object_id, entry in zip(pending.ids, pending.entries):
            waiting = self._waiters.get(object_id) if entry is None else None
            if waiting is not None and pending in waiting:
                waiting.remove(pending)
                if not waiting:
                    del self._waiters[object_id]

    def _finish_get(self, pending):
        self._unwait(pending)
        if pending.conn.closed:
            return
        if pending.conn.inbuf:
            self._resume.append(pending.conn)
        self._send(pending.conn, protocol.OP_GET, protocol.STATUS_OK,
                   _get_reply(pending.entries))

    def _release(self, conn, body):
        for object_id in protocol.split_ids(body):
            try:
                self.table.release(conn.refs, object_id)
            except PlasmaError as e:
                logger.warning("Ignoring release from client %s: %s", conn.refs.name, e)
        return _NO_REPLY

    def _contains(self, conn, body):
        (object_id,) = protocol.split_ids(body)
        return b"\x01" if self.table.get_sealed(object_id) is not None else b"\x00"

    def _delete(self, conn, body):
        deleted = sum(self.table.delete(object_id) for object_id in protocol.split_ids(body))
        return protocol.COUNT.pack(deleted)

    def _list(self, conn, body):
        if body:
            raise ValueError("LIST takes no body")
        pack = protocol.LIST_ENTRY.pack
        return b"".join(pack(e.object_id, e.data_size, e.metadata_size, e.state, e.ref_count)
                        for e in self.table.objects.values())

    def _stats(self, conn, body):
        if body:
            raise ValueError("STATS takes no body")
        stats = self.table.stats()
        stats["num_clients"] = len(self._conns)
        stats["num_subscribers"] = len(self._subscribers)
        stats["num_waiting_gets"] = sum(1 for c in self._conns.values() if c.pending)
        return json.dumps(stats).encode()

    def _subscribe(self, conn, body):
        if body:
            raise ValueError("SUBSCRIBE takes no body")
        self._send(conn, protocol.OP_SUBSCRIBE, protocol.STATUS_OK, b"")
        conn.subscriber = True
        self._subscribers.add(conn)
        return _NO_REPLY


def _truncation(conn):
    """What a client that closed its connection left unsaid, or None if nothing."""
    if not (conn.greeted or conn.subscriber):
        return "closed the connection without HELLO"
    if conn.inbuf and conn.pending is None:   # not frames queued behind its waiting get
        return "closed the connection in the middle of a frame"
    return None


def _get_reply(entries):
    pack = protocol.GET_ENTRY.pack
    return b"".join(pack(1, e.offset, e.data_size, e.metadata_size) if e is not None
                    else pack(0, 0, 0, 0) for e in entries)


def main(argv=None):
    die_with_parent()
    parser = argparse.ArgumentParser(prog="python -m ray_plasma.store",
                                     description="ray_core's per-node plasma object store")
    parser.add_argument("--socket", required=True, help="Unix socket path to serve on")
    parser.add_argument("--memory-bytes", type=int, required=True,
                        help="capacity of the shared-memory region in bytes")
    parser.add_argument("--hugepages", action="store_true",
                        help="back the region with 2 MiB huge pages when the kernel has them")
    parser.add_argument("--logs-dir", help="write plasma_store.log here (default: stderr)")
    args = parser.parse_args(argv)
    if args.logs_dir:
        from ray_common.logging import setup_process_logging
        setup_process_logging("plasma_store", args.logs_dir)
    else:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        server = PlasmaStoreServer(args.socket, args.memory_bytes, args.hugepages)
    except (ValueError, OSError) as e:
        logger.error("Plasma store cannot start: %s", e)
        print(f"plasma store cannot start: {e}", file=sys.stderr)
        return 1
    server.serve_forever()
    logger.info("Plasma store stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
