"""Bad requests get a gRPC error naming the problem, and the GCS keeps serving."""
import grpc
import pytest

from ray_common import rpc
from ray_common.ids import ActorID, JobID, NodeID, WorkerID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb, gcs_service_pb2_grpc
from ray_gcs.client import GcsClient
from ray_gcs.errors import (GcsAlreadyExistsError, GcsError, GcsFailedPreconditionError,
                            GcsInvalidArgumentError, GcsNotFoundError)
from ray_gcs.launcher import start_gcs

SMALL_KV_LIMIT = 1024


@pytest.fixture
def client(gcs_processes, storage_url):
    _, address = gcs_processes.start(
        storage_url, env={"RAY_CORE_GCS_KV_MAX_VALUE_BYTES": str(SMALL_KV_LIMIT)})
    client = GcsClient(address)
    yield client
    # Whatever came before, the server still answers.
    assert client.sync.kv_put(b"still", b"alive") in (True, False)


def test_unknown_ids(client):
    unknown_node = NodeID.from_random()
    for call in (lambda: client.sync.unregister_node(unknown_node.binary()),
                 lambda: client.sync.drain_node(unknown_node.binary()),
                 lambda: client.sync.report_resource_usage(
                     common_pb2.ResourcesData(node_id=unknown_node.binary()))):
        with pytest.raises(GcsNotFoundError) as info:
            call()
        assert f"unknown node {unknown_node.hex()}" in str(info.value)
        assert info.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(GcsNotFoundError, match="unknown job 07000000"):
        client.sync.mark_job_finished(JobID.from_int(7))
    with pytest.raises(LookupError):  # the builtin a caller may catch instead
        client.sync.mark_job_finished(JobID.from_int(8))


def test_malformed_ids(client):
    with pytest.raises(GcsInvalidArgumentError, match="node_id must be 28 bytes .* got 3 bytes"):
        client.sync.register_node(common_pb2.NodeInfo(node_id=b"abc"))
    with pytest.raises(GcsInvalidArgumentError, match="MarkJobFinished job_id must be 4 bytes"):
        client.sync.mark_job_finished(b"")
    with pytest.raises(GcsInvalidArgumentError, match="worker_id must be 28 bytes"):
        client.sync.add_worker_info(pb.WorkerTableData(worker_id=b"w"))
    with pytest.raises(GcsInvalidArgumentError, match="actor_id must be 16 bytes"):
        client.sync.get_actor_info(b"short")
    with pytest.raises(ValueError, match="needs a node_manager_address and a port"):
        client.sync.register_node(common_pb2.NodeInfo(node_id=NodeID.from_random().binary()))


def test_duplicate_registration(client):
    node_id = NodeID.from_random().binary()
    client.sync.register_node(common_pb2.NodeInfo(
        node_id=node_id, node_manager_address="10.0.0.1", node_manager_port=5000))
    with pytest.raises(GcsAlreadyExistsError) as info:
        client.sync.register_node(common_pb2.NodeInfo(
            node_id=node_id, node_manager_address="10.0.0.2", node_manager_port=5000))
    assert (f"node {node_id.hex()} is already registered at 10.0.0.1:5000; refused the same "
            f"id from 10.0.0.2:5000") in str(info.value)


def test_kv_value_over_the_limit(client):
    assert client.sync.kv_put(b"fits", b"x" * SMALL_KV_LIMIT)
    with pytest.raises(GcsInvalidArgumentError) as info:
        client.sync.kv_put(b"too-big", b"x" * (SMALL_KV_LIMIT + 1), namespace="fn")
    message = str(info.value)
    assert f"{SMALL_KV_LIMIT + 1} bytes, over the {SMALL_KV_LIMIT}-byte limit" in message
    assert "gcs_kv_max_value_bytes" in message and "too-big" in message
    assert client.sync.kv_get(b"too-big", namespace="fn") is None
    with pytest.raises(GcsInvalidArgumentError, match="the key is empty"):
        client.sync.kv_put(b"", b"v")


def test_unimplemented_actor_rpcs_and_bad_subscribe(client):
    async def calls():
        stub = rpc.stub(gcs_service_pb2_grpc.ActorInfoGcsServiceStub, client.address)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.KillActorViaGcs(pb.KillActorViaGcsRequest(
                actor_id=ActorID.from_random().binary()))
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        pubsub = rpc.stub(gcs_service_pb2_grpc.InternalPubSubGcsServiceStub, client.address)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in pubsub.Subscribe(pb.SubscribeRequest(subscriber_id=b"x",
                                                                channels=[99])):
                pass
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "known channels" in info.value.details()
    rpc.run_sync(calls(), timeout=30)
    with pytest.raises(GcsInvalidArgumentError, match="has no payload"):
        client.sync.publish([pb.PubMessage(channel_type=pb.ERROR_INFO_CHANNEL)])


def test_worker_failure_of_unknown_worker_is_recorded(client):
    worker_id = WorkerID.from_random().binary()
    client.sync.report_worker_failure(pb.WorkerTableData(worker_id=worker_id, pid=5))
    (worker,) = client.sync.get_all_worker_info()
    assert worker.worker_id == worker_id and not worker.is_alive


@pytest.mark.parametrize("storage,words", [
    ("redis//no-scheme", "malformed GCS storage URL 'redis//no-scheme'"),
    ("redis://127.0.0.1:1/ns", "Redis at 127.0.0.1:1 failed during PING"),
])
def test_bad_storage_is_a_clear_startup_error(tmp_path, storage, words):
    with pytest.raises(RuntimeError) as info:
        start_gcs(str(tmp_path), storage=storage)
    assert "exited with code 2" in str(info.value) and words in str(info.value)


def test_gcs_error_is_the_base(client):
    with pytest.raises(GcsError):
        client.sync.unregister_node(NodeID.from_random().binary())


def test_port_in_use_is_a_clear_startup_error(gcs_processes):
    _, address = gcs_processes.start()
    port = int(address.rsplit(":", 1)[1])
    with pytest.raises(RuntimeError, match=f"could not listen on 0.0.0.0:{port}"):
        gcs_processes.start(port=port, session="second")


def test_resource_report_of_a_dead_node(client):
    node_id = NodeID.from_random().binary()
    client.sync.register_node(common_pb2.NodeInfo(
        node_id=node_id, node_manager_address="127.0.0.1", node_manager_port=1))
    client.sync.unregister_node(node_id, "going away")
    with pytest.raises(GcsFailedPreconditionError, match=f"node {node_id.hex()} is DEAD"):
        client.sync.report_resource_usage(common_pb2.ResourcesData(node_id=node_id))
