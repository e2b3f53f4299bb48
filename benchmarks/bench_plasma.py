"""Plasma store: small-object cycles per second, and large-object write/read bandwidth.

References measured in the same run:
- small cycles: round trips/s of a bare Python echo over a Unix socket (a cycle is two
  round trips and one one-way release, so ~0.5x of it is the ceiling for this design);
- writes: a plain numpy copy of the same size into memory that is already touched (the
  memcpy figure); the store's write is create_and_seal (create, the streaming
  multi-threaded copy of ray_plasma.memcopy into shared memory, seal), into
  pages that an earlier object of that size already touched, plus one row for the first
  write into never-touched pages;
- reads: the same memcpy; a read is get + np.frombuffer + release and copies nothing, so
  its "bandwidth" is size / latency and the latency does not grow with the size.

`python -m benchmarks.run plasma`
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from ray_plasma.client import PlasmaClient
from ray_plasma.launcher import start_plasma_store

MB = 1024 ** 2
SMALL = b"x" * 100
SMALL_CYCLES = 20_000
PROCESSES = 4
LARGE = [(1 * MB, 100), (100 * MB, 10), (800 * MB, 3)]
STORE_BYTES = 1024 * MB


def _oid(n, tag=0):
    return tag.to_bytes(4, "little") + n.to_bytes(24, "little")


def small_cycles(socket_path, count, tag=0, start_at=None):
    """create_and_seal + get + release of a 100-byte object; returns seconds taken."""
    client = PlasmaClient(socket_path)
    ids = [_oid(n, tag) for n in range(count)]
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.monotonic()))
    start = time.perf_counter()
    for object_id in ids:
        client.create_and_seal(object_id, SMALL)
        client.get([object_id])
        client.release(object_id)
    elapsed = time.perf_counter() - start
    client.delete(ids)
    client.disconnect()
    return elapsed


def _echo_server(socket_path):
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(1)
    print("ready", flush=True)
    conn, _ = listener.accept()
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def echo_round_trips(tmp, count):
    path = os.path.join(tmp, "echo.sock")
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_plasma", "echo", path],
                            stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            frame = b"\0" * 52
            start = time.perf_counter()
            for _ in range(count):
                s.sendall(frame)
                s.recv(65536)
            return count / (time.perf_counter() - start)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def parallel_cycles(socket_path, processes, count):
    start_at = time.monotonic() + 1.0  # every process connected and waiting by then
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.bench_plasma", "cycles",
                               socket_path, str(count), str(tag + 1), repr(start_at)],
                              stdout=subprocess.PIPE, text=True) for tag in range(processes)]
    elapsed = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        if proc.returncode:
            raise RuntimeError(f"benchmark client exited with {proc.returncode}")
        elapsed.append(float(out))
    return processes * count / max(elapsed)


def _best(fn, reps):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), times[0]


def large_rows(client, size, reps):
    src = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
    dst = np.empty_like(src)
    dst[:] = 1  # touched
    memcpy_s, _ = _best(lambda: np.copyto(dst, src), reps)
    del dst
    counter = iter(range(10 ** 9))
    written = []

    def put():
        object_id = _oid(next(counter), tag=size)
        client.create_and_seal(object_id, src)
        written.append(object_id)

    def put_after_delete():
        client.delete(written)
        written.clear()
        put()

    # The first put maps never-touched pages; then each put reuses the last one's block.
    first_s, _ = _best(put, 1)
    write_s, _ = _best(put_after_delete, reps)
    object_id = written[-1]

    def read():
        [obj] = client.get([object_id])
        view = np.frombuffer(obj.data, dtype=np.uint8)
        assert view[size - 1] == src[size - 1]
        client.release(object_id)

    read_s, _ = _best(read, max(reps, 20))
    client.delete(written)
    label = f"{size // MB} MB"
    gbps = lambda seconds: size / seconds / 1e9  # noqa: E731
    rows = [
        (f"write {label} (create+copy+seal) GB/s vs memcpy", gbps(write_s), "GB/s",
         gbps(memcpy_s), "GB/s"),
        (f"read {label} (get+view+release) GB/s vs memcpy", gbps(read_s), "GB/s",
         gbps(memcpy_s), "GB/s"),
        (f"read {label} latency us (zero-copy: flat in size)", read_s * 1e6, "us",
         memcpy_s * 1e6, "us (memcpy)"),
    ]
    if size >= 100 * MB:
        rows.append((f"write {label} into never-touched pages GB/s", gbps(first_s), "GB/s",
                     gbps(memcpy_s), "GB/s"))
    return rows


def run():
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_plasma_") as tmp:
        socket_path = os.path.join(tmp, "plasma.sock")
        store = start_plasma_store(socket_path, STORE_BYTES, logs_dir=tmp)
        try:
            echo = echo_round_trips(tmp, SMALL_CYCLES)
            one = SMALL_CYCLES / small_cycles(socket_path, SMALL_CYCLES)
            rows.append(("small create_and_seal+get+release, 1 client, cycles/s", one,
                         "cycles/s", echo, "echo rt/s"))
            many = parallel_cycles(socket_path, PROCESSES, SMALL_CYCLES // 2)
            rows.append((f"small cycles, {PROCESSES} client processes, cycles/s", many,
                         "cycles/s", one, "1 client"))
            client = PlasmaClient(socket_path)
            for size, reps in LARGE:
                rows.extend(large_rows(client, size, reps))
            client.disconnect()
        finally:
            store.terminate()
            store.wait()
    return rows


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        _echo_server(sys.argv[2])
    elif sys.argv[1] == "cycles":
        print(small_cycles(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
    else:
        for row in run():
            print(row)
