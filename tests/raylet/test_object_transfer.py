"""object_transfer and chunk_pull: the pull wire between real TransferServers and pull(),
with fake holders behind the servers (the ObjectManager's plasma side is tested in
test_objects.py)."""
import asyncio
import os
import socket

import pytest

from ray_common import rpc
from ray_common.protocol import object_manager_pb2 as om
from ray_raylet import chunk_pull, object_transfer
from ray_raylet.object_transfer import TransferError


class Holder:
    """Serves one object, or an error; records releases and the slices it sent.

    With `cut_after`, a connection is dropped once that many bytes of a slice went out
    (the first `cuts` times): the holder died, or the network dropped it, mid-slice."""

    def __init__(self, data: bytes, claimed_size=None, error=None, cut_after=None, cuts=1):
        self.data = data
        self.claimed_size = len(data) if claimed_size is None else claimed_size
        self.error = error
        self.cut_after = cut_after
        self.cuts = cuts
        self.released = 0
        self.slices = []

    async def serve(self, request):
        if self.error:
            raise TransferError(self.error)
        header = om.ObjectChunk(object_id=request.object_id, data_size=self.claimed_size,
                                metadata=b"meta", has_metadata=True)
        return header, Sliced(self), self.release

    def release(self):
        self.released += 1


class Sliced:
    """The holder's data as the server slices it; records each slice, cuts some short."""

    def __init__(self, holder: Holder):
        self._holder = holder

    def __len__(self):
        return len(self._holder.data)

    def __getitem__(self, where):
        holder = self._holder
        holder.slices.append((where.start, where.stop))
        piece = memoryview(holder.data)[where]
        if holder.cut_after is not None and holder.cuts and len(piece) > holder.cut_after:
            holder.cuts -= 1
            return piece[:holder.cut_after]    # the server sends it and hangs up
        return piece


def transfer(*holders: Holder, client_token=None, server_token="secret"):
    """Run a TransferServer for each holder and one pull from all of them; returns
    (size, received bytes, metadata) or raises what pull raised."""
    async def run():
        rpc.set_auth_token(server_token)
        servers = [object_transfer.TransferServer("127.0.0.1", h.serve) for h in holders]
        for server in servers:
            server.start()
        received = {}

        async def create(header):
            received["metadata"] = header.metadata
            received["buffer"] = bytearray(header.data_size)
            return memoryview(received["buffer"])
        try:
            rpc.set_auth_token(client_token or server_token)
            request = om.PullRequest(object_id=b"o" * 28, requester_node_id=b"n" * 28)
            size = await chunk_pull.pull([f"127.0.0.1:{s.port}" for s in servers], request,
                                         create)
            await asyncio.sleep(0.05)   # the server's release runs after its last send
            return size, bytes(received["buffer"]), received["metadata"]
        finally:
            for server in servers:
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
        await chunk_pull.pull([f"127.0.0.1:{port}"], request, None)
    with pytest.raises(TransferError, match="connection to 127.0.0.1:.* failed"):
        asyncio.run(run())


def test_a_stream_that_ends_early_fails_naming_how_far_it_got():
    holder = Holder(b"x" * 1000, claimed_size=5000)
    with pytest.raises(TransferError, match="closed after 1000 of 5000 bytes"):
        transfer(holder)
    assert holder.released == len(holder.slices)      # each connection let its reference go


CHUNK = 64 * 1024


@pytest.fixture
def small_chunks(system_config):
    system_config({"object_transfer_chunk_bytes": CHUNK, "object_transfer_connections": 3})


@pytest.mark.parametrize("size", [CHUNK, 10 * CHUNK + 7])
def test_an_object_of_many_slices_arrives_whole(small_chunks, size):
    data = os.urandom(size)
    holder = Holder(data)
    assert transfer(holder) == (size, data, b"meta")
    assert sorted(holder.slices) == [(start, min(size, start + CHUNK))
                                     for start in range(0, size, CHUNK)]
    assert holder.released == min(3, -(-size // CHUNK))   # one reference per connection


def test_slices_come_from_every_holder(small_chunks):
    data = os.urandom(20 * CHUNK)
    first, second = Holder(data), Holder(data)
    assert transfer(first, second)[1] == data
    assert first.slices and second.slices
    assert sorted(first.slices + second.slices) == [(start, start + CHUNK)
                                                    for start in range(0, len(data), CHUNK)]


def test_a_holder_without_the_object_is_skipped(small_chunks):
    data = os.urandom(5 * CHUNK)
    empty = Holder(b"", error="object 6f6f is not in the plasma store of node abc")
    assert transfer(empty, Holder(data))[1] == data


def test_a_dropped_slice_is_asked_for_again(small_chunks):
    data = os.urandom(12 * CHUNK)
    holder = Holder(data, cut_after=CHUNK // 2, cuts=2)
    assert transfer(holder)[1] == data
    assert len(holder.slices) == 12 + 2


def test_a_holder_that_drops_every_slice_fails_over_to_the_other(small_chunks):
    data = os.urandom(12 * CHUNK)
    dying = Holder(data, cut_after=CHUNK // 2, cuts=10 ** 6)
    assert transfer(dying, Holder(data))[1] == data


def test_a_pull_gives_up_after_the_retries_naming_the_failures(small_chunks, system_config):
    system_config({"object_transfer_chunk_retries": 2})
    dying = Holder(os.urandom(12 * CHUNK), cut_after=CHUNK // 2, cuts=10 ** 6)
    with pytest.raises(TransferError, match=f"closed after {CHUNK // 2} of {CHUNK} bytes"):
        transfer(dying)
    assert dying.released == len(dying.slices)     # every connection let its reference go
