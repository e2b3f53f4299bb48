"""kill -9 of a GCS on Redis, then a restart on the same port: every table comes back,
and a GcsClient (calls and subscriptions) keeps working across the restart."""
import asyncio
import uuid

from ray_common import rpc
from ray_common.ids import ActorID, JobID, NodeID, PlacementGroupID, TaskID, WorkerID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb
from ray_gcs.actor_table import GcsActorTable
from ray_gcs.client import GcsClient
from ray_gcs.pubsub import GcsPublisher
from ray_gcs.storage import open_storage
from tests.gcs.conftest import wait_for
from tests.gcs.test_health_check import FAST_HEALTH_CHECKS


def write_actors(storage_url, actors):
    """Write actor rows as the actor manager will: through the real actor table code."""
    async def write():
        storage = open_storage(storage_url)
        table = GcsActorTable(storage, GcsPublisher())
        for actor in actors:
            await table.put(actor)
        await storage.close()
    asyncio.run(write())


def make_actor(job_id, counter, name="", state=pb.ActorTableData.ALIVE):
    actor_id = ActorID.of(job_id, TaskID.for_driver_task(job_id), counter).binary()
    return pb.ActorTableData(actor_id=actor_id, job_id=job_id.binary(), state=state, name=name,
                             ray_namespace="ns", class_name="Counter",
                             address=common_pb2.Address(ip_address="127.0.0.1", port=9000))


def test_kill_restart_recovers_every_table(gcs_processes, fake_raylets, redis_url):
    proc, address = gcs_processes.start(redis_url, env=FAST_HEALTH_CHECKS)
    port = int(address.rsplit(":", 1)[1])
    client = GcsClient(address)
    _, raylet_port = fake_raylets()
    node = common_pb2.NodeInfo(node_id=NodeID.from_random().binary(),
                               node_manager_address="127.0.0.1", node_manager_port=raylet_port,
                               resources_total={"CPU": 2.0})
    client.sync.register_node(node)
    client.sync.kv_put(b"fn:abc", b"pickled function")
    client.sync.kv_put(b"k", b"user value", namespace="user")
    first_job = client.sync.add_job(pb.JobTableData(driver_pid=1, entrypoint="a.py"))
    second_job = client.sync.add_job(pb.JobTableData(driver_pid=2))
    client.sync.mark_job_finished(first_job)
    worker_id = WorkerID.from_random().binary()
    client.sync.add_worker_info(pb.WorkerTableData(worker_id=worker_id, pid=77))
    group_id = PlacementGroupID.of(second_job).binary()
    client.placement_groups.create(pb.PlacementGroupTableData(
        placement_group_id=group_id,
        bundles=[common_pb2.Bundle(unit_resources={"CPU": 1.0})])).result(30)
    named, plain = make_actor(second_job, 1, name="counter"), make_actor(second_job, 2)
    write_actors(redis_url, [named, plain])

    node_updates = []
    subscription = client.sync.subscribe([pb.NODE_INFO_CHANNEL], node_updates.append)
    rpc.run_sync(subscription.wait_ready(10))

    proc.kill()
    proc.wait()
    during_outage = rpc.spawn(client.kv_get(b"fn:abc"))  # retries until the GCS is back
    gcs_processes.start(redis_url, port=port, env=FAST_HEALTH_CHECKS)

    assert during_outage.result(60) == b"pickled function"
    (recovered,) = client.sync.get_all_node_info()
    assert recovered.node_id == node.node_id and recovered.state == common_pb2.NodeInfo.ALIVE
    assert dict(recovered.resources_total) == {"CPU": 2.0}
    assert [dict(v.resources_total) for v in client.sync.get_cluster_resource_view()] == [
        {"CPU": 2.0}]
    jobs = {JobID(j.job_id): j for j in client.sync.get_all_job_info()}
    assert jobs[first_job].state == pb.JOB_FINISHED and jobs[first_job].entrypoint == "a.py"
    assert jobs[second_job].state == pb.JOB_RUNNING
    assert client.sync.add_job(pb.JobTableData()).int() == second_job.int() + 1
    (worker,) = client.sync.get_all_worker_info()
    assert worker.worker_id == worker_id and worker.pid == 77
    (group,) = client.sync.get_all_placement_group()
    assert group.placement_group_id == group_id
    assert client.sync.get_actor_info(plain.actor_id) == plain
    assert client.sync.get_named_actor_info("counter", "ns") == named
    assert [(e.ray_namespace, e.name) for e in client.sync.list_named_actors(namespace="ns")] == [
        ("ns", "counter")]
    assert len(client.sync.get_all_actor_info()) == 2
    assert client.sync.kv_get(b"k", namespace="user") == b"user value"
    assert client.sync.kv_keys(b"fn:") == [b"fn:abc"]

    # The subscription came back by itself: a node registered now reaches it.
    wait_for(lambda: subscription.subscribe_count == 2, "the subscription to resubscribe")
    newcomer = common_pb2.NodeInfo(node_id=NodeID.from_random().binary(),
                                   node_manager_address="127.0.0.1",
                                   node_manager_port=raylet_port + 1)
    client.sync.register_node(newcomer)
    wait_for(lambda: any(m.node_info_message.node_id == newcomer.node_id for m in node_updates),
             "the new node to be published to the resubscribed client")
    # The recovered node is health-checked again and, answering, stays alive.
    assert client.sync.check_alive([node.node_id]) == [True]
    subscription.close()


def test_two_clusters_share_one_redis(gcs_processes, redis_server):
    urls = [f"{redis_server.url}/{name}_{uuid.uuid4().hex[:8]}" for name in ("one", "two")]
    clients = []
    for index, url in enumerate(urls):
        _, address = gcs_processes.start(url, session=f"s{index}")
        clients.append(GcsClient(address))
    clients[0].sync.kv_put(b"key", b"one")
    assert clients[1].sync.kv_get(b"key") is None
    assert clients[0].sync.add_job(pb.JobTableData()).int() == 1
    assert clients[1].sync.add_job(pb.JobTableData()).int() == 1
