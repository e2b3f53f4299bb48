"""The GCS process and the client's edges: address file, SIGTERM, first view, lost GCS."""
import signal

import pytest

from ray_common import rpc
from ray_common.config import config
from ray_common.ids import NodeID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb
from ray_gcs.client import GcsClient
from ray_gcs.errors import GcsUnavailableError
from tests.gcs.conftest import wait_for


def test_address_file_and_clean_exit_on_sigterm(gcs_processes, tmp_path):
    proc, address = gcs_processes.start()
    with open(tmp_path / "session" / "gcs_address") as f:
        assert f.read() == address and address.startswith("127.0.0.1:")
    assert GcsClient(address).sync.kv_put(b"k", b"v")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    log = open(gcs_processes.log_path()).read()
    assert "GCS serving on port" in log and "GCS stopping" in log


def test_a_new_resource_view_subscriber_gets_the_current_view(gcs_processes):
    _, address = gcs_processes.start()
    client = GcsClient(address)
    node = common_pb2.NodeInfo(node_id=NodeID.from_random().binary(),
                               node_manager_address="127.0.0.1", node_manager_port=1,
                               resources_total={"CPU": 3.0})
    client.sync.register_node(node)
    views = []
    subscription = client.sync.subscribe([pb.RESOURCE_VIEW_CHANNEL], views.append)
    first = wait_for(lambda: views, "the current view")[0].resource_view_message
    assert [n.node_id for n in first.nodes] == [node.node_id]
    subscription.close()


def test_subscribe_off_the_io_loop_says_how(gcs_processes):
    with pytest.raises(RuntimeError, match="client.sync.subscribe"):
        GcsClient("127.0.0.1:1").subscribe([pb.NODE_INFO_CHANNEL], print)


def test_a_lost_gcs_fails_calls_after_the_reconnect_timeout(gcs_processes, monkeypatch):
    proc, address = gcs_processes.start()
    client = GcsClient(address)
    client.sync.kv_put(b"k", b"v")
    proc.kill()
    proc.wait()
    monkeypatch.setitem(config._system_config, "gcs_rpc_server_reconnect_timeout_s", 1)
    with pytest.raises(GcsUnavailableError) as info:
        client.sync.kv_get(b"k")
    assert address in str(info.value) and isinstance(info.value, ConnectionError)


def test_client_survives_its_channel_being_closed(gcs_processes):
    _, address = gcs_processes.start()
    client = GcsClient(address)
    updates = []
    subscription = client.sync.subscribe([pb.NODE_INFO_CHANNEL], updates.append)
    rpc.run_sync(subscription.wait_ready(10))
    client.sync.kv_put(b"k", b"v")

    async def forget():
        rpc.forget_channel(address)
    rpc.run_sync(forget())
    assert client.sync.kv_get(b"k") == b"v"
    wait_for(lambda: subscription.subscribe_count == 2, "the subscription to come back")
    node = common_pb2.NodeInfo(node_id=NodeID.from_random().binary(),
                               node_manager_address="127.0.0.1", node_manager_port=1)
    client.sync.register_node(node)
    wait_for(lambda: updates, "the node to be published")
    subscription.close()
