"""Bad input on a worker's framed task socket (the abstract Unix socket and the TCP port).

Each bad client is dropped with one line in the worker's log naming it and the fault;
the Probe actor on that worker answers a real call afterwards, and while stalled
clients are still connected.
"""
import os
import socket

import pytest

from ray_common import rpc
from ray_common.protocol import common_pb2, core_worker_pb2
from ray_core._private import task_transport as tt

from tests.fuzz.conftest import FOUR_GB, SEEDS, STALL_S, connect, feed, random_bytes


def hello(token=None) -> bytes:
    return tt.encode_frame(tt.KIND_HELLO, (token or rpc.auth_token()).encode())


def push(*specs) -> bytes:
    batch = core_worker_pb2.PushTaskBatch()
    for spec in specs:
        batch.requests.add().task_spec.CopyFrom(spec)
    return tt.encode_push(batch)


A_PUSH = push(common_pb2.TaskSpec(task_id=b"t" * 24, job_id=b"\1\0\0\0"))

# (name, what a client sends, what the log line says); the client keeps its end open
BAD_INPUT = [
    *[(f"random-{seed}", lambda seed=seed: random_bytes(seed), "") for seed in SEEDS],
    ("hello-of-4gb", lambda: tt._FRAME.pack(FOUR_GB, tt.KIND_HELLO),
     "a HELLO frame of 4294967295 bytes"),
    ("push-of-4gb", lambda: hello() + tt._FRAME.pack(FOUR_GB, tt.KIND_PUSH),
     "a PUSH frame of 4294967295 bytes, over max_grpc_message_size"),
    ("push-before-hello", lambda: A_PUSH, "a frame of kind 2 before the HELLO frame"),
    ("wrong-token", lambda: hello("not-the-token") + A_PUSH, "a wrong cluster token"),
    ("reply-frame", lambda: hello() + tt.encode_frame(
        tt.KIND_REPLY, core_worker_pb2.PushTaskReplyBatch().SerializeToString()),
     "a frame of kind 3; owners send only HELLO"),
    ("unknown-kind", lambda: hello() + tt.encode_frame(77, b"?"), "a frame of kind 77"),
    ("second-hello", lambda: hello() + hello(), "a second HELLO frame"),
    ("push-not-a-batch", lambda: hello() + tt.encode_frame(tt.KIND_PUSH, b"\xff\xff\xff"),
     "are not a PushTaskBatch"),
    ("push-of-a-spec-without-ids", lambda: hello() + push(common_pb2.TaskSpec()),
     "a task whose task_id has 0 bytes"),
]
# (name, what a client sends before it closes its end, what the log line says)
TRUNCATED = [
    ("hello", lambda: hello()[:-3], "closed the connection in the middle of a frame"),
    ("push", lambda: hello() + A_PUSH[:len(A_PUSH) // 2],
     "closed the connection in the middle of a frame"),
    ("nothing", lambda: b"", "closed the connection before its HELLO frame"),
]


UNIX_PEER = f"pid {os.getpid()} (local socket)"    # how the worker names a local client


@pytest.fixture(params=["unix", "tcp"])
def address(request, node):
    """The Probe's task socket: its abstract Unix name, or its TCP port."""
    if request.param == "unix":
        return node.worker["unix_name"]
    return f"127.0.0.1:{node.worker['tcp_port']}"


@pytest.mark.parametrize("name,make,fault", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input_drops_that_connection_only(node, address, name, make, fault):
    log = node.worker_log()
    peer = feed(address, make())
    log.one_line(peer or UNIX_PEER, fault)
    node.ping_probe(name)


@pytest.mark.parametrize("name,make,fault", TRUNCATED, ids=[case[0] for case in TRUNCATED])
def test_a_truncated_frame_drops_that_connection_only(node, address, name, make, fault):
    log = node.worker_log()
    peer = feed(address, make(), close_write=True)
    log.one_line(peer or UNIX_PEER, fault)
    node.ping_probe(name)


def test_a_valid_task_of_nonsense_gets_an_error_reply_not_a_dead_worker(node, address):
    """Well-formed ids, an unknown function: the executor answers with an error."""
    spec = common_pb2.TaskSpec(task_id=b"n" * 24, job_id=b"\1\0\0\0", num_returns=1,
                               function_descriptor=common_pb2.FunctionDescriptor(
                                   function_hash=b"no such function"))
    with connect(address) as sock:
        sock.sendall(hello() + push(spec))
        length, kind = tt._FRAME.unpack(sock.recv(tt._FRAME.size, socket.MSG_WAITALL))
        body = sock.recv(length, socket.MSG_WAITALL)
    assert kind == tt.KIND_REPLY
    (reply,) = core_worker_pb2.PushTaskReplyBatch.FromString(body).replies
    assert reply.task_id == spec.task_id and reply.return_objects
    node.ping_probe("after nonsense")


def test_stalled_clients_do_not_block_others_and_are_dropped(node, address, held):
    log = node.worker_log()
    silent = held(address)
    slow = held(address, trickle=hello())                       # one byte a second
    half = held(address, first=hello() + A_PUSH[:7])           # stops mid-frame
    node.ping_probe("while they stall")
    for client in (silent, slow, half):
        client.wait_closed()
    node.ping_probe("after they were dropped")
    expected = {silent: "without a HELLO frame", slow: "without a HELLO frame",
                half: "in the middle of a frame"}
    if silent.peer is not None:
        for client, fault in expected.items():
            assert f"stalled {fault} for {STALL_S:g} s" in log.one_line(client.peer, fault)
    else:                                   # Unix: the three name the same pid
        lines = log.naming(UNIX_PEER)
        assert sorted("middle" in line for line in lines) == [False, False, True], lines
