"""The store process and the Cython client together: real processes, real sockets."""
import os
import pathlib
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pytest

from ray_common.ids import JobID, ObjectID, TaskID
from ray_plasma import protocol
from ray_plasma.client import PlasmaClient
from ray_plasma.errors import (ObjectExistsError, ObjectNotFoundError, ObjectStoreFullError,
                               PlasmaDisconnectedError, PlasmaError)
from ray_plasma.launcher import start_plasma_store

from tests.plasma.conftest import oid, stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def client(store):
    c = PlasmaClient(store.socket_path)
    yield c
    c.disconnect()


@pytest.fixture
def spawn():
    """Start tests/plasma/plasma_proc.py children; kill them all afterwards."""
    procs = []

    def start(*args):
        proc = subprocess.Popen([sys.executable, "-m", "tests.plasma.plasma_proc", *args],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                env=dict(os.environ, PYTHONPATH=ROOT))
        procs.append(proc)
        return proc, proc.stdout.readline().strip()

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def wait_until(predicate, what, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def address(array_or_view):
    return np.frombuffer(array_or_view, dtype=np.uint8).ctypes.data


def test_object_written_by_another_process_is_read_in_place(store, client, spawn):
    object_id = oid(1)
    size = 1 << 20
    _, line = spawn("write", store.socket_path, object_id.hex(), str(size))
    assert line == "sealed"
    [obj] = client.get([object_id], timeout_ms=0)
    array = np.frombuffer(obj.data, dtype=np.uint32)
    np.testing.assert_array_equal(array, np.arange(size // 4, dtype=np.uint32))
    assert obj.metadata == b"from child"
    # Zero-copy: the array lies inside this process's mapping of the shared region.
    start = array.ctypes.data
    assert client.region_address <= start and start + size <= client.region_address + client.capacity
    assert start % 64 == 0
    assert not array.flags.writeable
    with pytest.raises(ValueError):
        array[0] = 1
    arrow = pa.py_buffer(obj.data)
    assert arrow.address == start and arrow.size == size
    foreign = pa.foreign_buffer(start, size, base=obj)
    assert foreign.to_pybytes()[:8] == array[:2].tobytes()
    client.release(object_id)
    assert client.list()[0].ref_count == 0


def test_object_written_here_is_read_by_another_process(store, client, spawn):
    buf = client.create(oid(2), 4096, b"meta")
    np.frombuffer(buf, dtype=np.uint8)[:] = 9
    client.seal(oid(2))
    _, line = spawn("hold", store.socket_path, oid(2).hex())
    assert line == "held"
    [info] = client.list()
    assert (info.object_id, info.data_size, info.metadata_size, info.state,
            info.ref_count) == (oid(2), 4096, 4, "sealed", 1)


def test_get_times_out_on_an_unsealed_object_then_sees_the_seal(store, client):
    reader = PlasmaClient(store.socket_path)
    try:
        buf = client.create(oid(3), 5)
        assert reader.get([oid(3), oid(4)], timeout_ms=50) == [None, None]
        assert not reader.contains(oid(3))
        results = []
        waiter = threading.Thread(target=lambda: results.extend(reader.get([oid(3)])))
        waiter.start()
        wait_until(lambda: client.stats()["num_clients"] == 2, "the reader to connect")
        buf[:] = b"later"
        client.seal(oid(3))
        waiter.join(timeout=20)
        assert bytes(results[0].data) == b"later"
        assert reader.held() == {oid(3): 1}
    finally:
        reader.disconnect()


def test_eviction_frees_least_recently_used_unreferenced_objects(make_store):
    store = make_store(memory_bytes=1 << 20)
    with PlasmaClient(pathlib.Path(store.socket_path)) as c:
        block = (1 << 20) // 8
        for n in range(8):
            c.create_and_seal(oid(n), bytes(block))
        c.get([oid(0)])
        c.release(oid(0))                       # 0 becomes the most recently used
        c.create_and_seal(oid(10), bytes(2 * block))
        left = {info.object_id for info in c.list()}
        assert left == {oid(n) for n in (0, 3, 4, 5, 6, 7, 10)}
        assert c.stats()["num_evicted"] == 2


def test_pinned_objects_are_never_evicted_and_full_error_says_why(make_store):
    store = make_store(memory_bytes=1 << 20)
    with PlasmaClient(store.socket_path) as c:
        quarter = (1 << 20) // 4
        for n in range(4):
            c.create_and_seal(oid(n), bytes(quarter))
        c.get([oid(0), oid(1), oid(2)])         # pinned by this client's references
        c.create_and_seal(oid(5), bytes(quarter))     # evicts 3, the only candidate
        assert not c.contains(oid(3))
        with pytest.raises(ObjectStoreFullError) as err:
            c.create(oid(6), quarter, b"m")
        assert isinstance(err.value, MemoryError)
        message = str(err.value)
        assert f"needs {quarter + 1} bytes" in message
        assert f"capacity is {1 << 20} bytes" in message
        assert f"{quarter * 3} bytes are pinned or in use" in message
        assert all(c.contains(oid(n)) for n in (0, 1, 2, 5))


def test_killed_client_releases_its_references_and_unsealed_objects(store, client, spawn):
    client.create_and_seal(oid(1), b"x" * 100)
    holder, line = spawn("hold", store.socket_path, oid(1).hex())
    assert line == "held"
    creator, line = spawn("create_unsealed", store.socket_path, oid(2).hex(), "1000")
    assert line == "created"
    assert {i.object_id: i.ref_count for i in client.list()} == {oid(1): 1, oid(2): 0}
    holder.kill()
    creator.kill()
    wait_until(lambda: [(i.object_id, i.ref_count) for i in client.list()] == [(oid(1), 0)],
               "the store to release the killed clients' references")
    assert client.stats()["pinned_or_in_use"] == 0


def test_delete_is_deferred_while_in_use(store, client):
    other = PlasmaClient(store.socket_path)
    try:
        client.create_and_seal(oid(1), b"abc")
        [obj] = other.get([oid(1)])
        client.delete([oid(1)])
        assert client.contains(oid(1)) and bytes(obj.data) == b"abc"
        other.release(oid(1))   # one-way: lands after this client's next request maybe
        wait_until(lambda: not client.contains(oid(1)), "the deferred delete")
        assert client.list() == []
    finally:
        other.disconnect()


def test_subscription_reports_seals_and_deletes(store, client):
    with client.subscribe() as sub:
        client.create_and_seal(oid(1), b"12345", b"m")
        client.delete([oid(1)])
        events = []
        wait_until(lambda: events.extend(sub.read_events()) or len(events) >= 2, "events")
        assert events == [(oid(1), "sealed", 5, 1), (oid(1), "deleted", 5, 1)]
        assert sub.read_events() == []


def test_errors_and_argument_checks(store, client):
    client.create_and_seal(oid(1), b"a")
    with pytest.raises(ObjectExistsError, match=oid(1).hex()):
        client.create(oid(1), 10)
    with pytest.raises(ObjectNotFoundError):
        client.seal(oid(2))
    with pytest.raises(ObjectNotFoundError, match="does not hold"):
        client.release(oid(1))
    with pytest.raises(PlasmaError, match="already sealed"):
        client.abort(oid(1))
    with pytest.raises(ValueError, match="28 bytes"):
        client.get([b"short"])
    client.create_and_seal(oid(4), b"")                 # empty objects are fine
    assert bytes(client.get([oid(4)])[0].data) == b""
    client.release(oid(4))
    client.delete([oid(4)])
    client.create(oid(3), 10)
    client.abort(oid(3))
    assert [i.object_id for i in client.list()] == [oid(1)]
    # ObjectID instances work as ids.
    object_id = ObjectID.from_index(TaskID.for_driver_task(JobID.from_int(1)), 1)
    client.create_and_seal(object_id, b"by ObjectID")
    assert bytes(client.get([object_id.binary()])[0].data) == b"by ObjectID"


def test_large_create_and_seal_writes_in_place(store, client):
    data = np.arange(1 << 19, dtype=np.uint32)      # 2 MiB, above the inline limit
    client.create_and_seal(oid(1), data)
    [obj] = client.get([oid(1)])
    np.testing.assert_array_equal(np.frombuffer(obj.data, dtype=np.uint32), data)


def test_garbage_frames_drop_only_that_client(store, client):
    client.create_and_seal(oid(1), b"still here")
    garbage = [
        b"\x00" * 3 + bytes(range(1, 65)),                                # nonsense
        protocol.HEADER.pack(1 << 24, 0xBEEF, 0),        # unknown op; its body never comes
        protocol.HEADER.pack(1 << 31, protocol.OP_CREATE, 0),             # huge frame
        protocol.HEADER.pack(0, 999, 0),                                  # unknown op
        protocol.HEADER.pack(protocol.HELLO.size, protocol.OP_HELLO, 0) + b"\0\0\0\0",
        protocol.HEADER.pack(3, protocol.OP_CONTAINS, 0) + b"abc",        # before HELLO
    ]
    for frame in garbage:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(store.socket_path)
            s.sendall(frame)
            s.settimeout(20)
            try:
                while s.recv(4096):
                    pass                                   # the store closes it
            except ConnectionResetError:
                pass
    # A greeted client whose request body does not fit its op is dropped too.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(store.socket_path)
        s.sendall(protocol.HEADER.pack(4, protocol.OP_HELLO, 0) + struct.pack("<I", 1))
        for fd in socket.recv_fds(s, 64, 1)[1]:
            os.close(fd)
        s.sendall(protocol.HEADER.pack(5, protocol.OP_SEAL, 0) + b"12345")
        s.settimeout(20)
        assert s.recv(4096) == b""
    assert bytes(client.get([oid(1)])[0].data) == b"still here"
    assert store.log().count("malformed frame") == len(garbage) + 1


def test_hundreds_of_concurrent_clients(store):
    clients = [PlasmaClient(store.socket_path) for _ in range(200)]
    try:
        errors = []

        def work(i, c):
            try:
                c.create_and_seal(oid(i), i.to_bytes(4, "little") * 16)
                [obj] = c.get([oid((i + 1) % 200)], timeout_ms=20_000)
                assert bytes(obj.data[:4]) == ((i + 1) % 200).to_bytes(4, "little")
                c.release(oid((i + 1) % 200))
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        stats = clients[0].stats()
        assert stats["num_clients"] == 200 and stats["num_objects"] == 200
    finally:
        for c in clients:
            c.disconnect()


def test_one_client_shared_by_threads(store, client):
    def work(base):
        for n in range(base, base + 50):
            client.create_and_seal(oid(n), n.to_bytes(8, "little"))
            [obj] = client.get([oid(n)])
            assert bytes(obj.data) == n.to_bytes(8, "little")
            client.release(oid(n))

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(client.list()) == 200 and client.held() == {}


def _shm_entries():
    return set(os.listdir("/dev/shm"))


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_nothing_left_in_dev_shm_after_the_store_stops(tmp_path, how):
    # Other test processes on the machine may use /dev/shm meanwhile: check what this
    # store maps, and that nothing new there is a plasma file.
    before = _shm_entries()
    socket_path = str(tmp_path / "s.sock")
    proc = start_plasma_store(socket_path, 4 << 20, logs_dir=str(tmp_path / "logs"))
    try:
        c = PlasmaClient(socket_path)
        c.create_and_seal(oid(1), b"x" * 1000)
        with open(f"/proc/{proc.pid}/maps") as f:
            maps = f.read()
        assert "/memfd:ray_plasma" in maps and "/dev/shm" not in maps
        proc.send_signal(how)
        proc.wait(timeout=20)
        with pytest.raises(PlasmaDisconnectedError):
            c.get([oid(1)], timeout_ms=0)
        c.disconnect()
    finally:
        stop_process(proc)
    assert not [name for name in _shm_entries() - before if "plasma" in name]
    if how == signal.SIGTERM:
        assert proc.returncode == 0 and not os.path.exists(socket_path)


def test_launcher_reports_why_a_store_cannot_start(tmp_path):
    with pytest.raises(ValueError, match="memory_bytes must be positive"):
        start_plasma_store(str(tmp_path / "s.sock"), 0)
    too_long = str(tmp_path / ("x" * 120))
    with pytest.raises(RuntimeError, match="longer than the 107 bytes"):
        start_plasma_store(too_long, 1 << 20, logs_dir=str(tmp_path / "logs"))
    with pytest.raises(PlasmaDisconnectedError, match="cannot connect"):
        PlasmaClient(str(tmp_path / "nobody.sock"))


def test_store_runs_without_a_logs_dir(tmp_path):
    socket_path = str(tmp_path / "bare.sock")
    proc = start_plasma_store(socket_path, 1 << 20)    # logs go to our stderr
    try:
        with PlasmaClient(socket_path) as c:
            assert c.capacity == 1 << 20 and c.stats()["num_clients"] == 1
    finally:
        stop_process(proc)
    assert proc.returncode == 0


def test_hugepages_flag_falls_back_to_normal_pages(make_store, tmp_path):
    store = make_store(memory_bytes=4 << 20)
    hp_path = str(tmp_path / "hp.sock")
    proc = start_plasma_store(hp_path, 4 << 20, logs_dir=str(tmp_path / "hp"), hugepages=True)
    try:
        with PlasmaClient(hp_path) as c:
            c.create_and_seal(oid(1), b"huge or not")
            assert bytes(c.get([oid(1)])[0].data) == b"huge or not"
            assert c.capacity >= 4 << 20
    finally:
        stop_process(proc)
    assert store.proc.poll() is None


def test_client_killed_while_waiting_in_get_leaves_no_waiter(store, client, spawn):
    waiter, line = spawn("wait", store.socket_path, oid(9).hex())
    assert line == "waiting"
    wait_until(lambda: client.stats()["num_waiting_gets"] == 1, "the get to wait")
    waiter.kill()
    wait_until(lambda: client.stats()["num_clients"] == 1, "the store to drop the waiter")
    assert client.stats()["num_waiting_gets"] == 0
    client.create_and_seal(oid(9), b"late")
    assert client.list()[0].ref_count == 0


def test_ctrl_c_interrupts_a_blocking_get(store, client, spawn):
    waiter, line = spawn("wait", store.socket_path, oid(9).hex())
    assert line == "waiting"
    wait_until(lambda: client.stats()["num_waiting_gets"] == 1, "the get to wait")
    waiter.send_signal(signal.SIGINT)
    assert waiter.wait(timeout=20) != 0      # KeyboardInterrupt, not a hang
    wait_until(lambda: client.stats()["num_clients"] == 1, "the store to drop the waiter")


def test_a_subscriber_that_never_reads_is_dropped_not_buffered_forever(tmp_path):
    socket_path = str(tmp_path / "s.sock")
    env = dict(os.environ, RAY_CORE_PLASMA_SUBSCRIBER_MAX_BUFFERED_BYTES="4096")
    proc = start_plasma_store(socket_path, 4 << 20, logs_dir=str(tmp_path), env=env)
    try:
        with PlasmaClient(socket_path) as c:
            sub = c.subscribe()
            n = 0
            while "fell" not in open(tmp_path / "plasma_store.log").read():
                c.create_and_seal(oid(n), b"x")   # two events each: sealed, deleted
                c.delete([oid(n)])
                n += 1
                assert n < 100_000, "the store never dropped the subscriber"
            with pytest.raises(PlasmaDisconnectedError):
                while sub.read_events():
                    pass
            sub.close()
            assert c.stats()["num_subscribers"] == 0
    finally:
        stop_process(proc)


def test_random_traffic_from_many_clients_leaves_nothing_pinned(make_store):
    import random
    store = make_store(memory_bytes=1 << 20)
    errors = []

    def traffic(seed):
        rng = random.Random(seed)
        with PlasmaClient(store.socket_path) as c:
            for _ in range(300):
                n = rng.randrange(30)
                op = rng.random()
                try:
                    if op < 0.3:
                        c.create_and_seal(oid(n), bytes(rng.choice((10, 5000, 100_000))))
                    elif op < 0.4:
                        buf = c.create(oid(n), 64)
                        buf[:4] = b"abcd"
                        (c.seal if rng.random() < 0.7 else c.abort)(oid(n))
                    elif op < 0.75:
                        got = c.get([oid(n), oid(rng.randrange(30))],
                                    timeout_ms=rng.choice((0, 5)))
                        for obj in got:
                            if obj is not None and rng.random() < 0.9:
                                c.release(obj.object_id)
                    else:
                        c.delete([oid(n)])
                except (ObjectExistsError, ObjectStoreFullError):
                    pass
                except Exception as e:  # reported below
                    errors.append(repr(e))

    threads = [threading.Thread(target=traffic, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with PlasmaClient(store.socket_path) as c:
        wait_until(lambda: c.stats()["num_clients"] == 1, "the clients to go")
        stats = c.stats()
        assert stats["pinned_or_in_use"] == 0 and stats["num_waiting_gets"] == 0
        assert stats["evictable"] == stats["used"]
        assert all(info.ref_count == 0 and info.state == "sealed" for info in c.list())


def test_pipelined_requests_are_answered_in_order_behind_a_waiting_get(store, client):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(store.socket_path)
        s.sendall(protocol.HEADER.pack(4, protocol.OP_HELLO, 0) + struct.pack("<I", 1))
        msg, fds, _, _ = socket.recv_fds(s, protocol.HEADER_SIZE + 8, 1)
        for fd in fds:
            os.close(fd)
        get = protocol.GET.pack(-1) + oid(1)
        s.sendall(protocol.HEADER.pack(len(get), protocol.OP_GET, 0) + get +
                  protocol.HEADER.pack(28, protocol.OP_CONTAINS, 0) + oid(1))
        wait_until(lambda: client.stats()["num_waiting_gets"] == 1, "the get to wait")
        client.create_and_seal(oid(1), b"now")
        s.settimeout(20)
        want = 2 * protocol.HEADER_SIZE + protocol.GET_ENTRY.size + 1
        data = b""
        while len(data) < want:
            data += s.recv(want - len(data))
        length, op, status = protocol.HEADER.unpack_from(data)
        assert (op, status, length) == (protocol.OP_GET, 0, protocol.GET_ENTRY.size)
        found, _, size, _ = protocol.GET_ENTRY.unpack_from(data, protocol.HEADER_SIZE)
        assert (found, size) == (1, 3)
        tail = data[protocol.HEADER_SIZE + length:]
        assert protocol.HEADER.unpack_from(tail)[1] == protocol.OP_CONTAINS
        assert tail[protocol.HEADER_SIZE:] == b"\x01"
    wait_until(lambda: client.list()[0].ref_count == 0, "the raw client's reference to go")
