"""The plasma client: framing and the socket round trip compiled, the rest plain.

One blocking Unix socket per client, one request in flight at a time (a lock per
client makes it thread-safe), the GIL released while waiting on the store so a get()
that waits for an object does not stall the process's other threads. The whole region
is mapped once at connect; create() and get() return memoryviews into that mapping, so
data never passes through the socket except for create_and_seal's small values.
"""
import json
import os
import socket
import struct
import threading

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport uintptr_t
from libc.string cimport memcpy

from ray_common.config import config
from ray_plasma import protocol, shared_memory
from ray_plasma.memcopy import copy_into
from ray_plasma.errors import PlasmaDisconnectedError, PlasmaProtocolError, error_for_status

cdef extern from "<sys/socket.h>" nogil:
    ssize_t c_send "send"(int fd, const void *buf, size_t n, int flags)
    ssize_t c_recv "recv"(int fd, void *buf, size_t n, int flags)
    int MSG_NOSIGNAL

# Wire constants, read once from the one definition in protocol.py.
cdef size_t HEADER_SIZE = protocol.HEADER_SIZE
cdef size_t ID_SIZE = protocol.OBJECT_ID_SIZE
cdef uint16_t OP_CREATE = protocol.OP_CREATE
cdef uint16_t OP_CREATE_AND_SEAL = protocol.OP_CREATE_AND_SEAL
cdef uint16_t OP_SEAL = protocol.OP_SEAL
cdef uint16_t OP_ABORT = protocol.OP_ABORT
cdef uint16_t OP_GET = protocol.OP_GET
cdef uint16_t OP_RELEASE = protocol.OP_RELEASE
cdef uint16_t OP_CONTAINS = protocol.OP_CONTAINS
cdef uint16_t OP_DELETE = protocol.OP_DELETE
cdef uint16_t OP_LIST = protocol.OP_LIST
cdef uint16_t OP_STATS = protocol.OP_STATS
cdef uint16_t STATUS_OK = protocol.STATUS_OK
_CREATE = protocol.CREATE
_GET = protocol.GET
_GET_ENTRY = protocol.GET_ENTRY
_LIST_ENTRY = protocol.LIST_ENTRY
_ObjectInfo = protocol.ObjectInfo


cdef packed struct Header:
    unsigned int length
    uint16_t op
    uint16_t status


cdef int _transfer_nogil(int fd, bint sending, char *buf, size_t n, size_t *done) nogil:
    """Send or receive buf[done:n]: 0 when complete, -2 on a signal (EINTR) or a timeout
    of the socket, -1 when the connection failed or closed."""
    cdef ssize_t got
    while done[0] < n:
        if sending:
            got = c_send(fd, buf + done[0], n - done[0], MSG_NOSIGNAL)
        else:
            got = c_recv(fd, buf + done[0], n - done[0], 0)
        if got < 0:
            # EAGAIN (EWOULDBLOCK on Linux): the socket's timeout passed with nothing moved.
            return -2 if errno == EINTR or errno == EAGAIN else -1
        if got == 0:
            return -1
        done[0] += got
    return 0


cdef inline bytes _object_id(object object_id):
    """Raw id bytes; ObjectID instances are accepted too."""
    if type(object_id) is not bytes:
        binary = getattr(object_id, "binary", None)
        if binary is None:
            raise TypeError(f"object id must be bytes or an ObjectID, got "
                            f"{type(object_id).__name__}")
        object_id = binary()
    if len(<bytes>object_id) != ID_SIZE:
        raise ValueError(f"object id must be {ID_SIZE} bytes (ObjectID.binary()), got "
                         f"{len(<bytes>object_id)}: {(<bytes>object_id).hex()}")
    return <bytes>object_id


cdef class PlasmaObject:
    """A sealed object this client holds a reference to, until release(object_id)."""

    def __repr__(self):
        return (f"PlasmaObject({self.object_id.hex()}, {len(self.data)} data bytes, "
                f"{len(self.metadata)} metadata bytes)")


cdef class PlasmaClient:
    def __init__(self, socket_path):
        socket_path = self.socket_path = os.fspath(socket_path)
        self._lock = threading.Lock()
        self._held = {}
        self._inline_limit = config.plasma_inline_create_bytes
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(socket_path)
            sock.sendall(protocol.HEADER.pack(protocol.HELLO.size, protocol.OP_HELLO, 0) +
                         protocol.HELLO.pack(protocol.PROTOCOL_VERSION))
            want = HEADER_SIZE + protocol.HELLO_REPLY.size
            msg, fds, _, _ = socket.recv_fds(sock, want, 1)
            while 0 < len(msg) < want:
                more = sock.recv(want - len(msg))
                if not more:
                    break
                msg += more
        except OSError as e:
            sock.close()
            raise PlasmaDisconnectedError(
                f"cannot connect to the plasma store at {socket_path}: {e}") from None
        if len(msg) != want or len(fds) != 1:
            sock.close()
            for fd in fds:
                socket.close(fd)
            raise PlasmaDisconnectedError(f"the plasma store at {socket_path} closed the "
                                          f"connection during the handshake")
        length, op, status = protocol.HEADER.unpack_from(msg)
        self.capacity = protocol.HELLO_REPLY.unpack_from(msg, HEADER_SIZE)[0]
        try:
            self._region = shared_memory.map_region(fds[0], self.capacity)
        finally:
            socket.close(fds[0])
        # A signal that lands between send() and recv() interrupts nothing: the recv would
        # then block for good. A receive timeout bounds how late Ctrl-C is seen (the
        # socket stays blocking, so a reply that is there costs no extra system call).
        check_ms = config.plasma_client_signal_check_ms
        wake_every = struct.pack("ll", check_ms // 1000, (check_ms % 1000) * 1000)   # timeval
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, wake_every)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, wake_every)
        self._sock = sock
        self._fd = sock.fileno()
        self._view = memoryview(self._region)
        cdef Py_buffer pb
        PyObject_GetBuffer(self._region, &pb, PyBUF_SIMPLE)
        self.region_address = <uintptr_t>pb.buf
        PyBuffer_Release(&pb)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.disconnect()

    # --- the round trip ----------------------------------------------------------------

    cdef bytes _request(self, uint16_t op, bytes body, bint reply):
        with self._lock:
            return self._request_locked(op, body, reply)

    cdef bytes _request_locked(self, uint16_t op, bytes body, bint reply):
        if self._fd < 0:
            raise PlasmaDisconnectedError(f"this plasma client is disconnected from "
                                          f"{self.socket_path}")
        cdef Py_ssize_t n = len(body)
        cdef bytes frame = PyBytes_FromStringAndSize(NULL, HEADER_SIZE + n)
        cdef char *out = PyBytes_AS_STRING(frame)
        cdef Header *h = <Header *>out
        h.length = <unsigned int>n
        h.op = op
        h.status = 0
        memcpy(out + HEADER_SIZE, PyBytes_AS_STRING(body), n)
        self._transfer(True, out, HEADER_SIZE + n, "sending a request")
        if not reply:
            return None
        cdef Header header
        self._transfer(False, <char *>&header, HEADER_SIZE, "waiting for a reply")
        cdef bytes answer = PyBytes_FromStringAndSize(NULL, header.length)
        self._transfer(False, PyBytes_AS_STRING(answer), header.length, "reading a reply")
        if header.op != op:
            self._disconnected(f"reply to op {header.op} arrived for op {op}")
        if header.status != STATUS_OK:
            raise error_for_status(header.status, answer.decode("utf-8", "replace"))
        return answer

    cdef int _transfer(self, bint sending, char *buf, size_t n, str what) except -1:
        """Move n bytes without the GIL. A signal (Ctrl-C) stops the wait and closes the
        connection: the reply would still arrive, out of step with the next request."""
        cdef size_t done = 0
        cdef int fd = self._fd
        cdef int rc
        while True:
            with nogil:
                rc = _transfer_nogil(fd, sending, buf, n, &done)
            if rc == 0:
                return 0
            if rc == -1:
                self._disconnected(what)
            try:
                PyErr_CheckSignals()
            except BaseException:
                self._close_socket()
                raise

    cdef object _disconnected(self, str why):
        self._close_socket()
        raise PlasmaDisconnectedError(f"lost the plasma store at {self.socket_path} while "
                                      f"{why}; did the store (or its raylet) die?")

    def _close_socket(self):
        if self._sock is not None:
            self._sock.close()
        self._fd = -1

    # --- objects -----------------------------------------------------------------------

    def create(self, object_id, uint64_t data_size, bytes metadata=b""):
        """A writable view of `data_size` bytes in shared memory; seal() publishes it.

        The creator holds the object only until seal() or abort(); get() it to keep it.
        """
        cdef bytes oid = _object_id(object_id)
        cdef uint64_t meta_size = len(metadata)
        reply = self._request(OP_CREATE, _CREATE.pack(oid, data_size, meta_size), True)
        cdef uint64_t offset = (<uint64_t *>PyBytes_AS_STRING(reply))[0]
        if meta_size:
            self._view[offset + data_size:offset + data_size + meta_size] = metadata
        return self._view[offset:offset + data_size]

    def seal(self, object_id):
        self._request(OP_SEAL, _object_id(object_id), True)

    def abort(self, object_id):
        self._request(OP_ABORT, _object_id(object_id), True)

    def create_and_seal(self, object_id, data, bytes metadata=b""):
        """Create, fill and seal in one round trip (small values; larger go in place)."""
        cdef bytes oid = _object_id(object_id)
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")            # any C-contiguous buffer, as raw bytes
        cdef const unsigned char[::1] src = view
        cdef uint64_t size = src.shape[0]
        if size + len(metadata) > self._inline_limit:
            copy_into(self.create(oid, size, metadata), view)
            self.seal(oid)
            return
        cdef bytes head = _CREATE.pack(oid, size, len(metadata))
        cdef bytes body = PyBytes_FromStringAndSize(NULL, len(head) + size + len(metadata))
        cdef char *out = PyBytes_AS_STRING(body)
        memcpy(out, PyBytes_AS_STRING(head), len(head))
        if size:
            memcpy(out + len(head), &src[0], size)
        memcpy(out + len(head) + size, PyBytes_AS_STRING(metadata), len(metadata))
        self._request(OP_CREATE_AND_SEAL, body, True)

    def get(self, object_ids, int64_t timeout_ms=-1):
        """One PlasmaObject per id (None where it was not sealed within timeout_ms).

        -1 waits forever, 0 only looks. Each object returned holds a reference until
        release(object_id); its .data is a read-only view of shared memory.
        """
        ids = [_object_id(o) for o in object_ids]
        if not ids:
            return []
        with self._lock:   # the references are counted before another thread can release
            return self._get_locked(ids, _GET.pack(timeout_ms) + b"".join(ids))

    cdef list _get_locked(self, list ids, bytes body):
        reply = self._request_locked(OP_GET, body, True)
        if len(reply) != len(ids) * _GET_ENTRY.size:
            self._disconnected(f"parsing a get reply of {len(reply)} bytes for {len(ids)} ids")
        results = []
        cdef const char *p = PyBytes_AS_STRING(reply)
        cdef uint64_t offset, data_size, meta_size
        cdef PlasmaObject obj
        for oid in ids:
            if p[0]:
                offset = (<const uint64_t *>(p + 8))[0]
                data_size = (<const uint64_t *>(p + 16))[0]
                meta_size = (<const uint64_t *>(p + 24))[0]
                obj = PlasmaObject.__new__(PlasmaObject)
                obj.object_id = oid
                obj.data = self._view[offset:offset + data_size].toreadonly()
                obj.metadata = (self._region[offset + data_size:offset + data_size + meta_size]
                                if meta_size else b"")
                self._held[oid] = self._held.get(oid, 0) + 1
                results.append(obj)
            else:
                results.append(None)
            p += 32
        return results

    def release(self, object_id):
        """Drop one reference taken by get(); the store may then evict or delete it."""
        cdef bytes oid = _object_id(object_id)
        with self._lock:
            held = self._held.get(oid, 0)
            if held == 0:
                raise error_for_status(protocol.STATUS_NOT_FOUND,
                                       f"release of object {oid.hex()}, which this client "
                                       f"does not hold (get() it first)")
            if held == 1:
                del self._held[oid]
            else:
                self._held[oid] = held - 1
            self._request_locked(OP_RELEASE, oid, False)

    def contains(self, object_id):
        """True if the object is sealed in the store."""
        return self._request(OP_CONTAINS, _object_id(object_id), True) == b"\x01"

    def delete(self, object_ids):
        """Delete now what nobody uses; the rest goes when its last reader releases it."""
        ids = [_object_id(o) for o in object_ids]
        if ids:
            self._request(OP_DELETE, b"".join(ids), True)

    def list(self):
        reply = self._request(OP_LIST, b"", True)
        return [_ObjectInfo(oid, data, meta, protocol.STATE_NAMES[state], refs)
                for oid, data, meta, state, refs in _LIST_ENTRY.iter_unpack(reply)]

    def stats(self):
        return json.loads(self._request(OP_STATS, b"", True))

    def subscribe(self):
        from ray_plasma.subscription import PlasmaSubscription
        return PlasmaSubscription(self.socket_path)

    def held(self):
        """{object id: references this client holds}."""
        return dict(self._held)

    def disconnect(self):
        """Close the connection; the store releases every reference this client held."""
        with self._lock:
            self._close_socket()
            self._held.clear()
            self._view = None
            region, self._region = self._region, None
            if region is not None:
                try:
                    region.close()
                except BufferError:
                    pass  # views handed out are still alive; the mapping goes with them

    def __dealloc__(self):
        if self._sock is not None:
            self._sock.close()
