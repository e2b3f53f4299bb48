"""The fuzz suite's node and its raw clients: bad input on every listening endpoint.

One head node serves the whole package (init(): GCS, raylet, plasma store, and the worker
of a Probe actor), with every stall limit set to STALL_S so that silent and trickling
clients are dropped within the test; init's shutdown stops it all, pass or fail. A bad
client talks from this process, so the log line it causes names either its TCP port or
this process's pid.
"""
import os
import random
import select
import shutil
import socket
import tempfile
import threading
import time

import pytest

import ray_core as ray
from tests.integration.conftest import shut_down_cleanly
from tests.waiting import wait_for

STALL_S = 1.5          # every endpoint's limit for a silent, trickling or half-framed peer
DEADLINE_S = 30.0      # for what must happen at once, or STALL_S after: generous on 2 cores
SEEDS = range(6)
FOUR_GB = 0xFFFFFFFF
STALL_CONFIG = {
    "grpc_server_handshake_timeout_ms": int(STALL_S * 1000),
    "task_socket_stalled_peer_timeout_s": STALL_S,
    "object_transfer_handshake_timeout_s": STALL_S,
    "plasma_stalled_client_timeout_s": STALL_S,
}


def random_bytes(seed: int, size: int = 512) -> bytes:
    return random.Random(seed).randbytes(size)


@ray.remote
class Probe:
    """An actor whose worker's endpoints the tests attack and whose calls prove it serves."""

    def endpoints(self) -> dict:
        from ray_core._private.worker import current_core_worker
        core = current_core_worker()
        return {"pid": os.getpid(), "grpc_port": core.address.port,
                "tcp_port": core.task_server.tcp_port, "unix_name": core.task_server.unix_name,
                "worker_id": core.worker_id.hex()}

    def ping(self, value):
        return value, os.getpid()


class Node:
    """The package's node: its addresses, its logs, and the Probe actor's worker."""

    def __init__(self, context):
        self.context = context
        self.logs_dir = os.path.join(context["session_dir"], "logs")
        (info,) = ray.nodes()
        self.gcs_address = context["gcs_address"]
        self.raylet_address = context["raylet_address"]
        self.transfer_address = f"{info['NodeManagerAddress']}:{info['ObjectManagerPort']}"
        self.probe = Probe.remote()
        self.worker = ray.get(self.probe.endpoints.remote(), timeout=DEADLINE_S)
        self.worker_address = f"127.0.0.1:{self.worker['grpc_port']}"

    def log(self, name: str) -> "LogFile":
        return LogFile(os.path.join(self.logs_dir, name))

    def worker_log(self) -> "LogFile":
        w = self.worker
        return self.log(f"python-core-worker-{w['worker_id']}_{w['pid']}.log")

    def ping_probe(self, value) -> None:
        """A real actor call, over the worker's task socket; the same worker answers."""
        assert ray.get(self.probe.ping.remote(value), timeout=DEADLINE_S) == (
            value, self.worker["pid"])


@pytest.fixture(scope="package")
def node():
    temp_dir = tempfile.mkdtemp(prefix="rcf_", dir="/tmp")   # short: Unix socket paths
    try:
        with shut_down_cleanly():
            yield Node(ray.init(num_cpus=1, object_store_memory=64 * 1024 ** 2,
                                _temp_dir=temp_dir, _system_config=STALL_CONFIG))
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


class LogFile:
    """A process's log from a mark on: the lines a test's bad clients made it write."""

    def __init__(self, path: str):
        self.path = path
        self._offset = os.path.getsize(path)

    def lines(self):
        with open(self.path, errors="replace") as f:
            f.seek(self._offset)
            return f.read().splitlines()

    def naming(self, peer: str):
        return [line for line in self.lines() if peer in line]

    def one_line(self, peer: str, fault: str = "") -> str:
        """The one line naming `peer` (waited for), which must also say `fault`."""
        wait_for(lambda: self.naming(peer), f"a log line naming {peer} in {self.path}",
                 DEADLINE_S)
        lines = self.naming(peer)
        assert len(lines) == 1 and fault in lines[0], (peer, fault, lines)
        return lines[0]


# ---- raw clients ---------------------------------------------------------------------

def connect(address: str) -> socket.socket:
    """A raw client of "host:port", of a Unix socket path, or of an abstract one ("\\0...")."""
    if ":" in address and not address.startswith(("/", "\0")):
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=DEADLINE_S)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(DEADLINE_S)
        sock.connect(address)
    return sock


def tcp_peer(sock: socket.socket) -> str:
    """How a server names this TCP client: host:port."""
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def wait_closed(sock: socket.socket, timeout: float = DEADLINE_S) -> None:
    """Read (and discard) until the server closes the connection; fail after `timeout`."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while sock.recv(65536):
            assert time.monotonic() < deadline, "the server kept the connection open"
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError(f"the server kept the connection open for {timeout} s") from None


def feed(address: str, data: bytes, close_write: bool = False):
    """Send `data` to `address` as a new client (then end its stream if `close_write`:
    a truncated frame) and wait until the server drops it. Returns how the server
    names a TCP client (host:port), or None for a Unix one."""
    with connect(address) as sock:
        peer = tcp_peer(sock) if sock.family == socket.AF_INET else None
        try:
            sock.sendall(data)
            if close_write:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass                            # dropped before it had sent it all
        wait_closed(sock)
    return peer


class HeldClient:
    """A client that stays connected: sends `first` at once, then `trickle` one byte a
    second (a silent client sends neither), and reads and drops whatever comes back,
    until the server closes the connection. A thread does it all, so the test meanwhile
    makes real calls to the same endpoint."""

    def __init__(self, address: str, first: bytes = b"", trickle: bytes = b""):
        self.sock = connect(address)
        self.peer = tcp_peer(self.sock) if self.sock.family == socket.AF_INET else None
        self.sent = 0
        self._closed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(first, trickle), daemon=True)
        self._thread.start()

    def _run(self, first: bytes, trickle: bytes) -> None:
        sock = self.sock
        try:
            sock.sendall(first)
            next_send = time.monotonic()
            while not self._stop.is_set():
                if self.sent < len(trickle) and time.monotonic() >= next_send:
                    sock.send(trickle[self.sent:self.sent + 1])
                    self.sent += 1
                    next_send += 1.0
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable and not sock.recv(65536):
                    break
        except OSError:         # reset by the server, or a send after its close
            pass
        if not self._stop.is_set():
            self._closed.set()

    def wait_closed(self) -> None:
        """Fail unless the server closes the connection within DEADLINE_S."""
        assert self._closed.wait(DEADLINE_S), (
            f"the server kept a stalled client open for {DEADLINE_S} s")
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def held():
    """`held(address, first=..., trickle=...)` starts a HeldClient; all are closed after."""
    clients = []

    def start(address, first=b"", trickle=b""):
        clients.append(HeldClient(address, first, trickle))
        return clients[-1]

    yield start
    for client in clients:
        client.close()
