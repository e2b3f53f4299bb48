"""Sealed/deleted notifications from the store, on a connection of their own.

The raylet adds `fileno()` to its event loop (loop.add_reader) and drains with
read_events(), which never blocks.
"""
import socket

from ray_plasma import protocol
from ray_plasma.errors import PlasmaDisconnectedError, error_for_status


class PlasmaSubscription:
    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(socket_path)
            self._sock.sendall(protocol.HEADER.pack(0, protocol.OP_SUBSCRIBE, 0))
            reply = b""
            while len(reply) < protocol.HEADER_SIZE:
                more = self._sock.recv(protocol.HEADER_SIZE - len(reply))
                if not more:
                    raise OSError("connection closed")
                reply += more
        except OSError as e:
            self._sock.close()
            raise PlasmaDisconnectedError(
                f"cannot subscribe to the plasma store at {socket_path}: {e}") from None
        length, op, status = protocol.HEADER.unpack(reply)
        if status != protocol.STATUS_OK:
            self._sock.close()
            raise error_for_status(status, "subscribe refused")
        self._sock.setblocking(False)
        self._buf = bytearray()
        self._eof = False

    def fileno(self) -> int:
        return self._sock.fileno()

    def read_events(self):
        """[(object_id, "sealed"|"deleted", data_size, metadata_size)] received so far."""
        if self._eof:
            raise PlasmaDisconnectedError(f"the plasma store at {self.socket_path} closed "
                                          f"the subscription")
        while True:
            try:
                chunk = self._sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                self._eof = True
                break
            self._buf += chunk
        events = []
        pos = 0
        frame = protocol.HEADER_SIZE + protocol.EVENT_ENTRY.size
        while len(self._buf) - pos >= frame:
            object_id, event, data_size, metadata_size = protocol.EVENT_ENTRY.unpack_from(
                self._buf, pos + protocol.HEADER_SIZE)
            events.append((object_id, protocol.EVENT_NAMES[event], data_size, metadata_size))
            pos += frame
        del self._buf[:pos]
        if self._eof and not events:
            raise PlasmaDisconnectedError(f"the plasma store at {self.socket_path} closed "
                                          f"the subscription")
        return events

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
