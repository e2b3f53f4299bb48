"""Object transfer, pinning and dependency pulls between real raylets."""
import hashlib
import os

import pytest

from ray_common import rpc
from ray_common.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc
from ray_common.protocol import node_manager_pb2 as nm
from ray_common.protocol import object_manager_pb2 as om, object_manager_pb2_grpc as omg
from ray_plasma.client import PlasmaClient
from tests.raylet.cluster import Reply, wait_for


def put(raylet, data: bytes, metadata=b"meta") -> bytes:
    object_id = os.urandom(28)
    client = PlasmaClient(raylet.info["object_store_socket"])
    try:
        client.create(object_id, len(data), metadata)[:] = data
        client.seal(object_id)
    finally:
        client.disconnect()
    return object_id


def read(raylet, object_id):
    client = PlasmaClient(raylet.info["object_store_socket"])
    try:
        found = client.get([object_id], timeout_ms=0)[0]
        if found is None:
            return None
        digest = (hashlib.sha256(found.data).hexdigest(), len(found.data), found.metadata)
        del found
        client.release(object_id)
        return digest
    finally:
        client.disconnect()


def pull_request(object_id, node_ids=(), owner=None):
    ref = common_pb2.ObjectReference(object_id=object_id)
    if owner is not None:
        ref.owner_address.CopyFrom(owner)
    request = nm.PullObjectsRequest(object_refs=[ref])
    if node_ids:
        request.locations.add(object_id=object_id, node_ids=list(node_ids))
    return request


class FakeOwner(core_worker_pb2_grpc.CoreWorkerServiceServicer):
    """The owner side of the contract: answers locations, records location updates."""

    def __init__(self, locations):
        self.locations = locations
        self.updates = []

    async def GetObjectLocationsOwner(self, request, context):
        reply = core_worker_pb2.GetObjectLocationsOwnerReply()
        for object_id in request.object_ids:
            reply.object_location_infos.add(object_id=object_id,
                                            node_ids=self.locations.get(object_id, []))
        return reply

    async def UpdateObjectLocationBatch(self, request, context):
        self.updates.extend(request.updates)
        return core_worker_pb2.UpdateObjectLocationBatchReply()


@pytest.fixture
def owner():
    servicer = FakeOwner({})
    server, port = rpc.run_sync(rpc.start_server(
        [(core_worker_pb2_grpc.add_CoreWorkerServiceServicer_to_server, servicer)],
        port=0, host="127.0.0.1"))
    servicer.address = common_pb2.Address(ip_address="127.0.0.1", port=port,
                                          worker_id=os.urandom(28))
    yield servicer
    rpc.run_sync(server.stop(None))


def test_200mb_object_pulled_intact_once_by_concurrent_pulls(cluster):
    size = 200 * 1024 ** 2
    holder = cluster.add_raylet(object_store_memory=300 * 1024 ** 2)
    puller = cluster.add_raylet(object_store_memory=300 * 1024 ** 2)
    data = os.urandom(size)
    object_id = put(holder, data)
    expected = (hashlib.sha256(data).hexdigest(), size, b"meta")
    del data
    request = pull_request(object_id, [holder.node_id])
    pulls = [puller.spawn("PullObjects", request) for _ in range(2)]
    for pull in pulls:
        reply = pull.result(120)
        assert reply.success, reply
    assert read(puller, object_id) == expected
    assert holder.stats().num_pulls_served == 1
    stats = puller.stats()
    assert stats.num_objects_pulled == 1 and stats.num_bytes_pulled == size
    # Already local: a later pull transfers nothing.
    assert puller.call("PullObjects", request).success
    assert holder.stats().num_pulls_served == 1


def test_lease_dependencies_are_pulled_via_the_owner_before_the_grant(cluster, owner):
    holder = cluster.add_raylet(num_cpus=0)
    puller = cluster.add_raylet(num_cpus=1)
    data = os.urandom(3 * 1024 ** 2 + 17)
    object_id = put(holder, data)
    owner.locations[object_id] = [puller.node_id, holder.node_id]  # a stale entry first
    dependency = common_pb2.ObjectReference(object_id=object_id, owner_address=owner.address)
    reply = puller.lease({"CPU": 1}, dependencies=[dependency])
    assert reply.status == Reply.GRANTED
    assert read(puller, object_id)[0] == hashlib.sha256(data).hexdigest()
    assert [(u.object_id, u.node_id, u.added) for u in owner.updates] == [
        (object_id, puller.node_id, True)]


def test_failed_pulls_say_why(cluster, owner):
    holder = cluster.add_raylet(num_cpus=0)
    puller = cluster.add_raylet(num_cpus=0)
    missing = os.urandom(28)
    reply = puller.call("PullObjects", pull_request(missing, [holder.node_id]))
    assert not reply.success and not reply.results[0].success
    assert missing.hex() in reply.results[0].error_message
    assert "not in the plasma store" in reply.results[0].error_message
    gone_owner = common_pb2.Address(ip_address="127.0.0.1", port=1, worker_id=os.urandom(28))
    reply = puller.call("PullObjects", pull_request(missing, owner=gone_owner))
    assert "owner" in reply.results[0].error_message
    owner.locations[missing] = []  # owner knows no copy yet: the pull waits, up to timeout_ms
    request = pull_request(missing, owner=owner.address)
    request.timeout_ms = 300
    reply = puller.call("PullObjects", request)
    assert "was not local within 300 ms" in reply.results[0].error_message


def test_pin_and_free_objects(cluster):
    raylet = cluster.add_raylet(num_cpus=0)
    object_id = put(raylet, b"x" * 1000)
    missing = os.urandom(28)
    reply = raylet.call("PinObjectIDs", nm.PinObjectIDsRequest(object_ids=[object_id, missing]))
    assert list(reply.successes) == [True, False]
    assert raylet.stats().num_pinned_objects == 1
    raylet.call("FreeObjects", nm.FreeObjectsRequest(object_ids=[object_id]))
    assert raylet.stats().num_pinned_objects == 0
    assert read(raylet, object_id) is None


def test_push_writes_an_object_into_the_receivers_store(cluster):
    receiver = cluster.add_raylet(num_cpus=0)
    data = os.urandom(2 * 1024 ** 2 + 5)
    object_id = os.urandom(28)
    half = len(data) // 2

    async def push():
        stub = rpc.stub(omg.ObjectManagerServiceStub, receiver.address)
        chunks = [om.ObjectChunk(object_id=object_id, data_size=len(data), chunk_index=0,
                                 num_chunks=2, payload=data[:half], metadata=b"m",
                                 has_metadata=True),
                  om.ObjectChunk(object_id=object_id, data_size=len(data), chunk_index=1,
                                 num_chunks=2, payload=data[half:])]
        return await stub.Push(iter(chunks), timeout=30)
    assert rpc.run_sync(push()).success
    assert read(receiver, object_id) == (hashlib.sha256(data).hexdigest(), len(data), b"m")


def test_pull_tries_the_next_location_when_one_fails(cluster):
    puller = cluster.add_raylet(num_cpus=0)
    empty = cluster.add_raylet(num_cpus=0)
    holder = cluster.add_raylet(num_cpus=0)
    data = os.urandom(1024 ** 2)
    object_id = put(holder, data)
    dead_node = os.urandom(28)
    reply = puller.call("PullObjects",
                        pull_request(object_id, [dead_node, empty.node_id, holder.node_id]))
    assert reply.success, reply
    assert read(puller, object_id)[0] == hashlib.sha256(data).hexdigest()
    assert holder.stats().num_pulls_served == 1
    log = puller.log()
    assert f"Pull of object {object_id.hex()} from node {empty.node_id.hex()} failed" in log


def test_a_pull_nobody_waits_for_any_more_stops(cluster, owner):
    puller = cluster.add_raylet(num_cpus=0)
    missing = os.urandom(28)
    owner.locations[missing] = []  # never a copy: the raylet would ask forever
    future = puller.spawn("PullObjects", pull_request(missing, owner=owner.address), timeout=0.5)
    with pytest.raises(Exception, match="DEADLINE_EXCEEDED"):
        future.result(30)
    wait_for(lambda: f"Pull of object {missing.hex()} canceled" in puller.log(),
             "the abandoned pull to stop")
