"""Health checks: a fake raylet that stops answering is marked DEAD, with the reason."""
import os
import signal
import time

import pytest

from ray_common import rpc
from ray_common.ids import NodeID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb
from ray_gcs.client import GcsClient
from ray_gcs.errors import GcsFailedPreconditionError
from tests.gcs.conftest import wait_for

FAST_HEALTH_CHECKS = {
    "RAY_CORE_HEALTH_CHECK_INITIAL_DELAY_MS": "0",
    "RAY_CORE_HEALTH_CHECK_PERIOD_MS": "100",
    "RAY_CORE_HEALTH_CHECK_TIMEOUT_MS": "300",
    "RAY_CORE_HEALTH_CHECK_FAILURE_THRESHOLD": "3",
}


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_node_that_stops_answering_is_marked_dead(gcs_processes, fake_raylets, how):
    _, address = gcs_processes.start(env=FAST_HEALTH_CHECKS)
    client = GcsClient(address)
    raylet, port = fake_raylets()
    node_id = NodeID.from_random().binary()
    updates = []
    subscription = client.sync.subscribe([pb.NODE_INFO_CHANNEL, pb.JOB_CHANNEL], updates.append)
    rpc.run_sync(subscription.wait_ready(10))
    client.sync.register_node(common_pb2.NodeInfo(
        node_id=node_id, node_manager_address="127.0.0.1", node_manager_port=port,
        resources_total={"CPU": 1.0}))
    job_id = client.sync.add_job(pb.JobTableData(driver_address=common_pb2.Address(
        node_id=node_id, ip_address="127.0.0.1", port=port)))
    # While it answers, checks pass (ten periods, over three times the threshold).
    time.sleep(1.0)
    assert client.sync.check_alive([node_id]) == [True]

    if how == "killed":
        raylet.kill()
    else:
        os.kill(raylet.pid, signal.SIGSTOP)
    dead = wait_for(lambda: [m.node_info_message for m in updates
                             if m.node_info_message.state == common_pb2.NodeInfo.DEAD],
                    "the node's death to be published")
    assert dead[0].node_id == node_id
    assert f"127.0.0.1:{port} failed 3 health checks in a row" in dead[0].death_reason
    expected_code = "UNAVAILABLE" if how == "killed" else "DEADLINE_EXCEEDED"
    assert expected_code in dead[0].death_reason
    (info,) = client.sync.get_all_node_info()
    assert info.state == common_pb2.NodeInfo.DEAD and info.death_reason == dead[0].death_reason
    # The job whose driver ran there is finished, and the dead node cannot come back.
    wait_for(lambda: any(m.job_message.job_id == job_id.binary()
                         and m.job_message.state == pb.JOB_FINISHED for m in updates),
             "the driver's job to be finished")
    with pytest.raises(GcsFailedPreconditionError, match="was marked DEAD"):
        client.sync.register_node(common_pb2.NodeInfo(
            node_id=node_id, node_manager_address="127.0.0.1", node_manager_port=port))
    subscription.close()
    if how == "frozen":
        os.kill(raylet.pid, signal.SIGCONT)

