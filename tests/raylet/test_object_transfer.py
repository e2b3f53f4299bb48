"""object_transfer: the pull wire between a real TransferServer and pull(), with a fake
holder behind the server (the ObjectManager's plasma side is tested in test_objects.py)."""
import asyncio
import os
import socket

import pytest

from ray_common import rpc
from ray_common.protocol import object_manager_pb2 as om
from ray_raylet import object_transfer
from ray_raylet.object_transfer import TransferError


class Holder:
    """Serves one object, or an error; records releases."""

    def __init__(self, data: bytes, claimed_size=None, error=None):
        self.data = data
        self.claimed_size = len(data) if claimed_size is None else claimed_size
        self.error = error
        self.released = 0

    async def serve(self, request):
        if self.error:
            raise TransferError(self.error)
        header = om.ObjectChunk(object_id=request.object_id, data_size=self.claimed_size,
                                metadata=b"meta", has_metadata=True)
        return header, memoryview(self.data), self.release

    def release(self):
        self.released += 1


def transfer(holder: Holder, client_token=None, server_token="secret"):
    """Run a TransferServer for `holder` and one pull against it; returns
    (size, received bytes, metadata) or raises what pull raised."""
    async def run():
        rpc.set_auth_token(server_token)
        server = object_transfer.TransferServer("127.0.0.1", holder.serve)
        server.start()
        received = {}

        async def create(header):
            received["metadata"] = header.metadata
            received["buffer"] = bytearray(header.data_size)
            return memoryview(received["buffer"])
        try:
            rpc.set_auth_token(client_token or server_token)
            request = om.PullRequest(object_id=b"o" * 28, requester_node_id=b"n" * 28)
            size = await object_transfer.pull(f"127.0.0.1:{server.port}", request, create)
            await asyncio.sleep(0.05)   # the server's release runs after its last send
            return size, bytes(received["buffer"]), received["metadata"]
        finally:
            server.close()
            rpc.set_auth_token(None)
    return asyncio.run(run())


@pytest.mark.parametrize("size", [0, 1, 64 * 1024 + 3, 8 * 1024 ** 2 + 1])
def test_an_object_arrives_whole_and_the_holder_releases_it(size):
    data = os.urandom(size)
    holder = Holder(data)
    assert transfer(holder) == (size, data, b"meta")
    assert holder.released == 1


def test_the_holders_reason_reaches_the_puller():
    holder = Holder(b"", error="object 6f6f is not in the plasma store of node abc")
    with pytest.raises(TransferError, match="not in the plasma store of node abc"):
        transfer(holder)


def test_a_wrong_token_is_refused_before_anything_is_served():
    holder = Holder(b"data")
    with pytest.raises(TransferError, match="connection closed|broke"):
        transfer(holder, client_token="wrong")
    assert holder.released == 0


def test_a_holder_that_is_gone_fails_naming_its_address():
    async def run():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.close()                  # nobody listens there any more
        request = om.PullRequest(object_id=b"o" * 28)
        await object_transfer.pull(f"127.0.0.1:{port}", request, None)
    with pytest.raises(TransferError, match="connection to 127.0.0.1:.* broke"):
        asyncio.run(run())


def test_a_stream_that_ends_early_fails_naming_how_far_it_got():
    holder = Holder(b"x" * 1000, claimed_size=5000)
    with pytest.raises(TransferError, match="closed after 1000 of 5000 bytes"):
        transfer(holder)
    assert holder.released == 1
