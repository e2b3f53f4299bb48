"""Bad input on every gRPC server: the GCS's services, the raylet's NodeManagerService
and ObjectManagerService, and a worker's CoreWorkerService.

What is not HTTP/2, and clients that never finish the handshake, grpc drops itself
(after grpc_server_handshake_timeout_ms); those tests check that the server still
serves. Where our code sees the fault -- a call without the right token, a body that is
not its method's message, a handler that raises -- every method of every service is
tried, and each bad call must leave exactly one line in the server's log naming the
method and the caller.
Messages of another method's type are not sent: protobuf cannot tell one from a message
with unknown fields, and with the token they are calls the server must carry out.
"""
import grpc
import pytest

from ray_common import rpc
from ray_common.protocol import (core_worker_pb2, core_worker_pb2_grpc, gcs_service_pb2,
                                 gcs_service_pb2_grpc, node_manager_pb2,
                                 node_manager_pb2_grpc, object_manager_pb2)

from tests.fuzz.conftest import DEADLINE_S, SEEDS, feed, random_bytes

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MALFORMED_BODIES = [
    b"\xff",                                   # a tag whose varint never ends
    b"\x0a\xff\xff\xff\xff\x0f",               # field 1, a length of 4 GB
]
# Methods that only read: an empty request may be refused or answered, it changes nothing.
READ_ONLY = ("Get", "List", "Check", "Health", "InternalKVGet", "InternalKVMultiGet",
             "InternalKVExists", "InternalKVKeys")
ALL_REFUSALS = ["malformed request body", "malformed request body", "no cluster token",
                "a wrong cluster token"]


def methods(*files):
    """(path, client streaming, server streaming) of every method the files declare."""
    return [(f"/{service.full_name}/{m.name}", m.client_streaming, m.server_streaming)
            for file in files for service in file.DESCRIPTOR.services_by_name.values()
            for m in service.methods]


class Server:
    """One gRPC server of the node: its address, methods, log and a real call."""

    def __init__(self, address, files, log, real_call):
        self.address = address
        self.methods = methods(*files)
        self.log = log
        self.real_call = real_call


def _gcs_kv_round_trip(address):
    async def go():
        kv = rpc.stub(gcs_service_pb2_grpc.InternalKVGcsServiceStub, address)
        await kv.InternalKVPut(gcs_service_pb2.InternalKVPutRequest(
            key=b"fuzz", value=b"still serving", overwrite=True), timeout=DEADLINE_S)
        reply = await kv.InternalKVGet(gcs_service_pb2.InternalKVGetRequest(key=b"fuzz"),
                                       timeout=DEADLINE_S)
        assert reply.value == b"still serving"
    rpc.run_sync(go(), timeout=DEADLINE_S)


def _raylet_node_stats(address):
    async def go():
        stub = rpc.stub(node_manager_pb2_grpc.NodeManagerServiceStub, address)
        await stub.GetNodeStats(node_manager_pb2.GetNodeStatsRequest(), timeout=DEADLINE_S)
    rpc.run_sync(go(), timeout=DEADLINE_S)


def _worker_task_endpoint(address, unix_name):
    async def go():
        stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub, address)
        reply = await stub.GetTaskEndpoint(core_worker_pb2.GetTaskEndpointRequest(),
                                           timeout=DEADLINE_S)
        assert reply.unix_socket == unix_name
    rpc.run_sync(go(), timeout=DEADLINE_S)


@pytest.fixture(params=["gcs", "raylet", "worker"])
def server(request, node):
    if request.param == "gcs":
        return Server(node.gcs_address, [gcs_service_pb2], node.log("gcs_server.log"),
                      lambda: _gcs_kv_round_trip(node.gcs_address))
    if request.param == "raylet":
        return Server(node.raylet_address, [node_manager_pb2, object_manager_pb2],
                      node.log("raylet.log"), lambda: _raylet_node_stats(node.raylet_address))
    return Server(node.worker_address, [core_worker_pb2], node.worker_log(),
                  lambda: (_worker_task_endpoint(node.worker_address,
                                                 node.worker["unix_name"]),
                           node.ping_probe("grpc")))


def invoke(channel, method, client_streaming, server_streaming, body, metadata):
    """Call `method` with a raw body; returns the status code."""
    make = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}
    call = make[(client_streaming, server_streaming)](method)
    try:
        result = call(iter([body]) if client_streaming else body, metadata=metadata,
                      timeout=DEADLINE_S)
        if server_streaming:
            list(result)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def test_every_method_refuses_bad_bodies_and_strangers_with_one_line_each(server):
    token = ((rpc.TOKEN_METADATA_KEY, rpc.auth_token()),)
    wrong = ((rpc.TOKEN_METADATA_KEY, "not-the-token"),)
    log = server.log
    with grpc.insecure_channel(server.address) as channel:
        for method, *streaming in server.methods:
            codes = [invoke(channel, method, *streaming, body, token)
                     for body in MALFORMED_BODIES]
            codes += [invoke(channel, method, *streaming, b"", None),
                      invoke(channel, method, *streaming, b"", wrong)]
            lines = log.naming(f"Refused {method} from ipv4:127.0.0.1:")
            faults = [line.split(": ", 1)[1] for line in lines]
            if codes[0] == grpc.StatusCode.UNIMPLEMENTED:      # not served by this process
                assert codes[:2] == [grpc.StatusCode.UNIMPLEMENTED] * 2, method
                assert faults[:2] == ["a method this process does not implement"] * 2
                faults[:2] = ["malformed request body"] * 2
            else:
                assert codes[:2] == [grpc.StatusCode.INVALID_ARGUMENT] * 2, (method, codes)
            assert codes[2:] == [grpc.StatusCode.UNAUTHENTICATED] * 2, (method, codes)
            assert [fault.split(" (")[0] for fault in faults] == ALL_REFUSALS, (method, lines)
    server.real_call()


def test_a_handler_that_fails_on_a_well_formed_request_is_logged_once(server):
    """An empty message is well formed for every method; the read-only ones are sent it
    (the others would act on it). Whatever a handler raises is one line naming the caller."""
    token = ((rpc.TOKEN_METADATA_KEY, rpc.auth_token()),)
    log = server.log
    with grpc.insecure_channel(server.address) as channel:
        for method, *streaming in server.methods:
            if not method.rsplit("/", 1)[1].startswith(READ_ONLY) or streaming[1]:
                continue
            code = invoke(channel, method, *streaming, b"", token)
            lines = log.naming(f"{method} from ipv4:127.0.0.1:")
            if code == grpc.StatusCode.UNKNOWN:
                assert len(lines) == 1 and "failed in its handler" in lines[0], lines
            else:
                assert lines == [], lines
    server.real_call()


@pytest.mark.parametrize("seed", SEEDS)
def test_bytes_that_are_not_http2_are_dropped(server, seed):
    for garbage in (random_bytes(seed), HTTP2_PREFACE + random_bytes(seed)):
        feed(server.address, garbage)
    server.real_call()


def test_clients_that_never_finish_the_handshake_are_dropped(server, held):
    silent = held(server.address)
    slow = held(server.address, trickle=HTTP2_PREFACE)          # one byte a second
    server.real_call()
    silent.wait_closed()
    slow.wait_closed()
    assert slow.sent < len(HTTP2_PREFACE)
    server.real_call()
