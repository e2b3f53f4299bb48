"""The reference for object transfers: a plain TCP copy of N bytes between two processes.

The sender writes from a shared-memory buffer (a memfd it filled, as a holder raylet
sends from its plasma region); the receiver reads with one blocking recv_into loop into
a shared-memory buffer of its own, either
  fresh    a new memfd whose pages no process has touched: every page faults in during
           the copy, as when a pull lands where the puller's store never wrote, or
  touched  a memfd the receiver wrote once before the clock starts: the steady state of
           a store whose pages have all been used.
Each end is its own process, optionally run inside a network namespace (`ip netns exec`),
so the copy crosses the same veth pair as raylets in those namespaces. The sender times
from its first byte sent to the receiver's one-byte acknowledgement.

    python benchmarks/socket_copy.py receive HOST BYTES ROUNDS fresh|touched
    python benchmarks/socket_copy.py send HOST PORT BYTES ROUNDS
"""
import mmap
import os
import socket
import subprocess
import sys
import time
from typing import List, Optional


def _shared_buffer(nbytes: int, touch: bool) -> mmap.mmap:
    fd = os.memfd_create("socket_copy", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, max(nbytes, 1))
        region = mmap.mmap(fd, max(nbytes, 1), flags=mmap.MAP_SHARED,
                           prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    if touch:
        region.write(bytes(nbytes))
        region.seek(0)
    return region


def _receive(host: str, nbytes: int, rounds: int, mode: str) -> None:
    listener = socket.socket()
    listener.bind((host, 0))
    listener.listen(1)
    print(listener.getsockname()[1], flush=True)
    touched = _shared_buffer(nbytes, True) if mode == "touched" else None
    for _ in range(rounds):
        region = touched if touched is not None else _shared_buffer(nbytes, False)
        view = memoryview(region)
        conn, _ = listener.accept()
        got = 0
        while got < nbytes:
            count = conn.recv_into(view[got:])
            if not count:
                raise SystemExit(f"sender closed after {got} of {nbytes} bytes")
            got += count
        conn.sendall(b"k")
        conn.close()
        view.release()
        if region is not touched:
            region.close()


def _send(host: str, port: int, nbytes: int, rounds: int) -> None:
    region = _shared_buffer(nbytes, False)
    block = os.urandom(1 << 20)
    for offset in range(0, nbytes, len(block)):
        region[offset:offset + len(block)] = block[:nbytes - offset]
    view = memoryview(region)
    for _ in range(rounds):
        conn = socket.create_connection((host, port))
        start = time.perf_counter()
        conn.sendall(view)
        if conn.recv(1) != b"k":
            raise SystemExit("the receiver did not acknowledge")
        print(time.perf_counter() - start, flush=True)
        conn.close()


def _command(netns: Optional[str], *args) -> List[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return prefix + [sys.executable, os.path.abspath(__file__), *map(str, args)]


def copy_seconds(nbytes: int, rounds: int, mode: str, host: str = "127.0.0.1",
                 receiver_host: Optional[str] = None, sender_netns: Optional[str] = None,
                 receiver_netns: Optional[str] = None) -> List[float]:
    """Seconds of `rounds` copies of `nbytes` into `mode` ("fresh" or "touched") pages.

    The receiver listens on `receiver_host` (default `host`), inside `receiver_netns`;
    the sender runs inside `sender_netns`."""
    receiver = subprocess.Popen(
        _command(receiver_netns, "receive", receiver_host or host, nbytes, rounds, mode),
        stdout=subprocess.PIPE, text=True)
    try:
        port = int(receiver.stdout.readline())
        sent = subprocess.run(_command(sender_netns, "send", receiver_host or host, port,
                                       nbytes, rounds),
                              capture_output=True, text=True, timeout=600)
        if sent.returncode:
            raise RuntimeError(f"socket copy sender failed: {sent.stderr[-2000:]}")
        if receiver.wait(60):
            raise RuntimeError("socket copy receiver failed")
        return [float(line) for line in sent.stdout.split()]
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()


if __name__ == "__main__":
    what, *rest = sys.argv[1:]
    if what == "receive":
        _receive(rest[0], int(rest[1]), int(rest[2]), rest[3])
    else:
        _send(rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
