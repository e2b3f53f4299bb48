import asyncio
import logging
import os
import subprocess
import sys
import time

import grpc
import pytest

from ray_common import rpc
from ray_common.protocol import gcs_service_pb2 as pb, gcs_service_pb2_grpc

TOKEN = "s3cret-token"


@pytest.fixture
def kv_server(tmp_path):
    """A real second process serving the KV service with a cluster token."""
    port_file = str(tmp_path / "port")
    proc = subprocess.Popen([sys.executable, "-m", "tests.common.kv_server_proc", port_file, TOKEN])
    try:
        deadline = time.time() + 30
        while not os.path.exists(port_file):
            assert proc.poll() is None, "kv server exited early"
            assert time.time() < deadline, "kv server did not start"
            time.sleep(0.02)
        yield f"127.0.0.1:{open(port_file).read()}"
    finally:
        proc.kill()
        proc.wait()


async def put_then_get(address, token):
    kv = rpc.stub(gcs_service_pb2_grpc.InternalKVGcsServiceStub, address, token=token)
    put = await rpc.call_with_retry(kv.InternalKVPut, pb.InternalKVPutRequest(
        key=b"k", value=b"v" * 1000, namespace="ns"))
    got = await rpc.call_with_retry(kv.InternalKVGet, pb.InternalKVGetRequest(key=b"k", namespace="ns"))
    return put.added, got.found, got.value


def test_round_trip_between_processes(kv_server):
    added, found, value = rpc.run_sync(put_then_get(kv_server, TOKEN), timeout=30)
    assert added and found and value == b"v" * 1000


@pytest.mark.parametrize("token,word", [(None, "no cluster token"), ("wrong", "a wrong cluster token")])
def test_missing_or_wrong_token_is_refused(kv_server, token, word):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        rpc.run_sync(put_then_get(kv_server, token), timeout=30)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert word in info.value.details() and "RAY_CORE_AUTH_TOKEN" in info.value.details()


def test_port_in_use_is_named(kv_server):
    port = int(kv_server.rsplit(":", 1)[1])

    async def clash():
        await rpc.start_server([], host="127.0.0.1", port=port, token=None)

    with pytest.raises(OSError, match=f"127.0.0.1:{port}.*in use"):
        rpc.run_sync(clash(), timeout=30)


class _Half(gcs_service_pb2_grpc.InternalKVGcsServiceServicer):
    """Implements one method, and that one fails."""

    async def InternalKVGet(self, request, context):
        raise KeyError(request.key)


def test_every_refused_or_failed_call_is_one_line_naming_the_caller():
    records = []
    capture = logging.Handler()
    capture.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("ray_common.rpc")
    logger.addHandler(capture)
    kv_get = "/ray_core.rpc.InternalKVGcsService/InternalKVGet"

    async def calls():
        server, port = await rpc.start_server(
            [(gcs_service_pb2_grpc.add_InternalKVGcsServiceServicer_to_server, _Half())],
            host="127.0.0.1", token=TOKEN)
        codes = []
        try:
            channel = rpc.get_channel(f"127.0.0.1:{port}")
            metadata = ((rpc.TOKEN_METADATA_KEY, TOKEN),)
            for method, body in [(kv_get, pb.InternalKVGetRequest(key=b"k").SerializeToString()),
                                 (kv_get, b"\xff"),
                                 ("/ray_core.rpc.InternalKVGcsService/InternalKVPut", b"")]:
                try:
                    await channel.unary_unary(method)(body, metadata=metadata, timeout=10)
                except grpc.aio.AioRpcError as e:
                    codes.append(e.code())
        finally:
            await server.stop(0)
            rpc.forget_channel(f"127.0.0.1:{port}")
        return codes

    try:
        codes = rpc.run_sync(calls(), timeout=30)
    finally:
        logger.removeHandler(capture)
    assert codes == [grpc.StatusCode.UNKNOWN, grpc.StatusCode.INVALID_ARGUMENT,
                     grpc.StatusCode.UNIMPLEMENTED]
    assert len(records) == 3 and all(" from ipv4:127.0.0.1:" in r for r in records), records
    assert "failed in its handler: KeyError: b'k' (raised in test_rpc.py:" in records[0]
    assert "malformed request body" in records[1]
    assert "a method this process does not implement" in records[2]


def test_run_sync_refuses_the_io_thread():
    async def nested():
        inner = put_then_get("127.0.0.1:1", None)
        rpc.run_sync(inner)

    with pytest.raises(RuntimeError, match="io loop thread"):
        rpc.run_sync(nested(), timeout=10)


def test_retry_gives_up_on_unavailable():
    async def call_dead_address():
        kv = rpc.stub(gcs_service_pb2_grpc.InternalKVGcsServiceStub, "127.0.0.1:1", token=None)
        return await rpc.call_with_retry(kv.InternalKVGet, pb.InternalKVGetRequest(key=b"k"),
                                         attempts=2, timeout=2)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        rpc.run_sync(call_dead_address(), timeout=30)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_soon_on_loop_runs_once_per_burst_and_again_for_a_request_while_running():
    """SoonOnLoop: many requests before the run make one run; a request made while the
    function runs makes one more (nothing asked for is lost)."""
    runs = []
    loop = asyncio.new_event_loop()
    try:
        def fn():
            runs.append(len(runs))
            if len(runs) == 1:
                soon.request()          # asked again while running

        soon = rpc.SoonOnLoop(loop, fn)
        for _ in range(5):
            soon.request()
        loop.run_until_complete(asyncio.sleep(0.05))
        assert runs == [0, 1]
    finally:
        loop.close()
    soon.request()                      # a closed loop: no error, nothing runs
    assert runs == [0, 1]
