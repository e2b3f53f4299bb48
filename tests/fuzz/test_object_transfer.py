"""Bad input on the raylet's object transfer port.

Each bad client is refused with one line in the raylet's log naming its host:port and
the fault; a real pull of an object from the same port works afterwards, and while
stalled clients are still connected.
"""
import struct

import numpy as np
import pytest

import ray_core as ray
from ray_common import rpc
from ray_common.protocol import object_manager_pb2 as om
from ray_raylet import chunk_pull, object_transfer

from tests.fuzz.conftest import DEADLINE_S, FOUR_GB, SEEDS, STALL_S, feed, random_bytes

_LEN = struct.Struct("<I")


def frame(body: bytes) -> bytes:
    return _LEN.pack(len(body)) + body


def token() -> bytes:
    return frame(rpc.auth_token().encode())


A_REQUEST = frame(om.PullRequest(object_id=b"o" * 28, requester_node_id=b"n" * 28)
                  .SerializeToString())

# (name, what a client sends, what the log line says); the client keeps its end open
BAD_INPUT = [
    *[(f"random-{seed}", lambda seed=seed: random_bytes(seed), "") for seed in SEEDS],
    ("token-of-4gb", lambda: _LEN.pack(FOUR_GB),
     "the token of 4294967295 bytes is over the longest token (4096)"),
    ("request-of-4gb", lambda: token() + _LEN.pack(FOUR_GB),
     "the pull request of 4294967295 bytes is over object_transfer_max_header_bytes"),
    ("request-before-token", lambda: A_REQUEST, "wrong cluster token"),
    ("wrong-token", lambda: frame(b"not-the-token") + A_REQUEST, "wrong cluster token"),
    ("request-not-a-pull-request", lambda: token() + frame(b"\xff\xff\xff"),
     "the pull request's 3 bytes are not a PullRequest"),
]
# (name, what a client sends before it closes its end, what the log line says)
TRUNCATED = [
    ("token", lambda: token()[:-4], "connection closed after"),
    ("request", lambda: token() + A_REQUEST[:-4],
     f"connection closed after {len(A_REQUEST) - 8} of {len(A_REQUEST) - 4} bytes of the "
     f"pull request"),
    ("nothing", lambda: b"", "connection closed after 0 of 4 bytes of the token"),
]


@pytest.fixture(scope="module")
def an_object(node):
    """(ObjectRef, its bytes) of an object in the node's plasma store."""
    value = np.arange(64 * 1024, dtype=np.uint32)             # 256 KiB: goes to plasma
    ref = ray.put(value)
    return ref, ray.get(ref)


def pull(node, an_object) -> None:
    """A real call: pull the object through the transfer port and compare its bytes."""
    ref, value = an_object
    received = {}

    async def create(header):
        received["buffer"] = bytearray(header.data_size)
        return memoryview(received["buffer"])

    request = om.PullRequest(object_id=ref.binary(), requester_node_id=b"n" * 28)
    size = rpc.run_sync(chunk_pull.pull([node.transfer_address], request, create),
                        timeout=DEADLINE_S)
    assert size >= value.nbytes and value.tobytes() in bytes(received["buffer"])


@pytest.mark.parametrize("name,make,fault", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_refused_and_others_are_served(node, an_object, name, make, fault):
    log = node.log("raylet.log")
    peer = feed(node.transfer_address, make())
    assert "Refused an object transfer from" in log.one_line(peer, fault)
    pull(node, an_object)


@pytest.mark.parametrize("name,make,fault", TRUNCATED, ids=[case[0] for case in TRUNCATED])
def test_a_truncated_frame_is_refused_and_others_are_served(node, an_object, name, make,
                                                            fault):
    log = node.log("raylet.log")
    peer = feed(node.transfer_address, make(), close_write=True)
    assert "Refused an object transfer from" in log.one_line(peer, fault)
    pull(node, an_object)


def test_stalled_clients_do_not_block_others_and_are_refused(node, an_object, held):
    log = node.log("raylet.log")
    silent = held(node.transfer_address)
    slow = held(node.transfer_address, trickle=token() + A_REQUEST)     # one byte a second
    half = held(node.transfer_address, first=token() + A_REQUEST[:9])   # stops mid-frame
    pull(node, an_object)
    for stalled in (silent, slow, half):
        stalled.wait_closed()
        log.one_line(stalled.peer, f"no token and pull request within {STALL_S:g} s "
                                   f"(object_transfer_handshake_timeout_s)")
    pull(node, an_object)
