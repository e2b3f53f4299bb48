"""Bad input on the plasma store's Unix socket (the node's store, a real process).

tests/plasma/test_store.py already feeds it unknown ops, a 2 GiB length, a wrong protocol
version, an op before HELLO and a body that does not fit its op; this adds what those do
not cover. Each bad client is dropped with one line naming its pid (and fd) and the
fault, and a client connected all along creates and reads an object afterwards.
"""
import os

import pytest

from ray_plasma import protocol
from ray_plasma.client import PlasmaClient

from tests.fuzz.conftest import DEADLINE_S, FOUR_GB, SEEDS, STALL_S, feed, random_bytes
from tests.plasma.conftest import oid

PEER = f"Disconnecting client pid {os.getpid()} fd"   # the store dropping our socket


def frame(op: int, body: bytes = b"", status: int = 0) -> bytes:
    return protocol.HEADER.pack(len(body), op, status) + body


HELLO = frame(protocol.OP_HELLO, protocol.HELLO.pack(protocol.PROTOCOL_VERSION))
CREATE = frame(protocol.OP_CREATE, protocol.CREATE.pack(oid(99), 10, 0))

# (name, what a client sends, what the log line says); the client keeps its end open
BAD_INPUT = [
    *[(f"random-{seed}", lambda seed=seed: random_bytes(seed), "") for seed in SEEDS],
    ("hello-of-4gb", lambda: protocol.HEADER.pack(FOUR_GB, protocol.OP_HELLO, 0),
     "frame of 4294967295 bytes exceeds plasma_max_frame_bytes"),
    ("event-frame", lambda: HELLO + frame(protocol.OP_EVENT), "unknown op 13"),
    ("reply-frame", lambda: frame(protocol.OP_HELLO, b"\0" * 8, protocol.STATUS_ERROR),
     "request (op 1) with status 5, not 0"),
    ("second-hello", lambda: HELLO + HELLO, "a second HELLO"),
    ("request-on-a-subscription", lambda: frame(protocol.OP_SUBSCRIBE) + CREATE,
     "op 2 on a subscription connection"),
]
# (name, what a client sends before it closes its end, what the log line says)
TRUNCATED = [
    ("hello", lambda: HELLO[:-2], "closed the connection without HELLO"),
    ("create", lambda: HELLO + CREATE[:-5], "closed the connection in the middle of a frame"),
    ("nothing", lambda: b"", "closed the connection without HELLO"),
]


@pytest.fixture(scope="module")
def store(node):
    """(socket path, a client connected all along)."""
    path = node.context["object_store_address"]
    client = PlasmaClient(path)
    yield path, client
    client.disconnect()


def round_trip(client: PlasmaClient, n: int) -> None:
    """A real call: create, seal, read back and delete an object."""
    data = f"object {n}".encode()
    client.create_and_seal(oid(n), data)
    [obj] = client.get([oid(n)], timeout_ms=int(DEADLINE_S * 1000))
    assert bytes(obj.data) == data
    del obj
    client.release(oid(n))
    client.delete([oid(n)])


@pytest.mark.parametrize("name,make,fault", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input_drops_that_client_only(node, store, name, make, fault):
    path, client = store
    log = node.log("plasma_store.log")
    feed(path, make())
    log.one_line(PEER, fault)
    round_trip(client, 1)


@pytest.mark.parametrize("name,make,fault", TRUNCATED, ids=[case[0] for case in TRUNCATED])
def test_a_truncated_frame_drops_that_client_only(node, store, name, make, fault):
    path, client = store
    log = node.log("plasma_store.log")
    feed(path, make(), close_write=True)
    log.one_line(PEER, fault)
    round_trip(client, 1)


def test_stalled_clients_do_not_block_others_and_are_dropped(node, store, held):
    path, client = store
    log = node.log("plasma_store.log")
    silent = held(path)
    slow = held(path, trickle=HELLO)                        # one byte a second
    half = held(path, first=HELLO + CREATE[:11])            # greeted, then stops mid-frame
    round_trip(client, 2)
    for stalled in (silent, slow, half):
        stalled.wait_closed()
    round_trip(client, 3)       # idle far longer than STALL_S between frames: still served
    lines = log.naming(PEER)
    assert sorted(line.split(": ", 1)[1] for line in lines) == [
        f"sent no HELLO for {STALL_S:g} s (plasma_stalled_client_timeout_s)"] * 2 + [
        f"stopped in the middle of a frame for {STALL_S:g} s "
        f"(plasma_stalled_client_timeout_s)"], lines


def test_a_get_that_waits_longer_than_the_stall_limit_is_not_a_stall(node, store):
    """A client waiting on its own get is waiting for the store, not stalled."""
    path, _ = store
    waiting = PlasmaClient(path)
    try:
        assert waiting.get([oid(4)], timeout_ms=int(STALL_S * 2000)) == [None]
        round_trip(waiting, 5)
    finally:
        waiting.disconnect()
