"""Each GCS table through GcsClient, against a real GCS on both storage backends."""
import pytest

from ray_common import rpc
from ray_common.ids import ActorID, JobID, NodeID, PlacementGroupID, WorkerID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb
from ray_gcs.client import GcsClient
from ray_gcs.errors import GcsError, GcsFailedPreconditionError
from tests.gcs.conftest import wait_for


def node_info(port=1234, **resources):
    return common_pb2.NodeInfo(node_id=NodeID.from_random().binary(),
                               node_manager_address="127.0.0.1", node_manager_port=port,
                               resources_total=resources or {"CPU": 4.0})


def test_kv_contract(gcs):
    _, _, client = gcs
    kv = client.sync
    assert kv.kv_put(b"fn:1", b"pickled-1") is True
    assert kv.kv_put(b"fn:1", b"other", overwrite=False) is False
    assert kv.kv_get(b"fn:1") == b"pickled-1"
    assert kv.kv_put(b"fn:1", b"pickled-1b") is False  # overwritten, not added
    assert kv.kv_get(b"fn:1") == b"pickled-1b"
    kv.kv_put(b"fn:2", b"pickled-2")
    kv.kv_put(b"other", b"x")
    kv.kv_put(b"fn:1", b"in another namespace", namespace="ns")
    assert kv.kv_get(b"missing") is None
    assert kv.kv_exists(b"fn:2") and not kv.kv_exists(b"fn:3")
    assert kv.kv_keys(b"fn:") == [b"fn:1", b"fn:2"]
    assert kv.kv_keys(b"", namespace="ns") == [b"fn:1"]
    assert kv.kv_multi_get([b"fn:1", b"fn:2", b"nope"]) == {b"fn:1": b"pickled-1b",
                                                           b"fn:2": b"pickled-2"}
    assert kv.kv_del(b"fn:", by_prefix=True) == 2
    assert kv.kv_keys(b"") == [b"other"]
    assert kv.kv_get(b"fn:1", namespace="ns") == b"in another namespace"
    assert kv.kv_del(b"other") == 1 and kv.kv_del(b"other") == 0


def test_node_table_register_drain_unregister(gcs):
    _, _, client = gcs
    first, second = node_info(), node_info(port=1235, CPU=2.0, GPU=1.0)
    client.sync.register_node(first)
    client.sync.register_node(second)
    client.sync.register_node(second)  # a retried registration is accepted
    nodes = {n.node_id: n for n in client.sync.get_all_node_info()}
    assert set(nodes) == {first.node_id, second.node_id}
    assert nodes[second.node_id].state == common_pb2.NodeInfo.ALIVE
    assert dict(nodes[second.node_id].resources_total) == {"CPU": 2.0, "GPU": 1.0}
    assert client.sync.drain_node(first.node_id, "scale down") is True
    client.sync.unregister_node(second.node_id, "raylet exiting")
    nodes = {n.node_id: n for n in client.sync.get_all_node_info()}
    assert nodes[first.node_id].state == common_pb2.NodeInfo.DRAINING
    assert nodes[second.node_id].state == common_pb2.NodeInfo.DEAD
    assert nodes[second.node_id].death_reason == "raylet exiting"
    assert [n.node_id for n in client.sync.get_all_node_info(only_alive=True)] == [first.node_id]
    assert client.sync.check_alive([first.node_id, second.node_id, b"x" * 28]) == [
        True, False, False]


def test_resource_view_follows_reports(gcs):
    _, _, client = gcs
    node = node_info(CPU=4.0)
    client.sync.register_node(node)
    view = client.sync.get_cluster_resource_view()
    assert [dict(v.resources_available) for v in view] == [{"CPU": 4.0}]
    client.sync.report_resource_usage(common_pb2.ResourcesData(
        node_id=node.node_id, resources_total={"CPU": 4.0}, resources_available={"CPU": 1.5},
        version=2))
    client.sync.report_resource_usage(common_pb2.ResourcesData(  # stale: ignored
        node_id=node.node_id, resources_total={"CPU": 4.0}, resources_available={"CPU": 4.0},
        version=1))
    (data,) = client.sync.get_cluster_resource_view()
    assert dict(data.resources_available) == {"CPU": 1.5}
    client.sync.unregister_node(node.node_id)
    assert client.sync.get_cluster_resource_view() == []


def test_resource_view_is_published(gcs):
    _, _, client = gcs
    views = []
    subscription = client.sync.subscribe([pb.RESOURCE_VIEW_CHANNEL], views.append)
    rpc.run_sync(subscription.wait_ready(10))
    node = node_info(CPU=8.0)
    client.sync.register_node(node)
    client.sync.report_resource_usage(common_pb2.ResourcesData(
        node_id=node.node_id, resources_total={"CPU": 8.0}, resources_available={"CPU": 3.0}))
    wait_for(lambda: any(
        [dict(n.resources_available) for n in m.resource_view_message.nodes] == [{"CPU": 3.0}]
        for m in views), "the reported view to be published")
    subscription.close()


def test_job_table_assigns_increasing_ids(gcs):
    _, _, client = gcs
    node_id = NodeID.from_random().binary()
    first = client.sync.add_job(pb.JobTableData(
        driver_pid=11, entrypoint="python a.py",
        driver_address=common_pb2.Address(node_id=node_id, ip_address="127.0.0.1", port=1)))
    second = client.sync.add_job(pb.JobTableData(driver_pid=12))
    assert isinstance(first, JobID) and first.int() + 1 == second.int()
    client.sync.mark_job_finished(first)
    client.sync.mark_job_finished(first)  # finishing twice is harmless
    jobs = {JobID(j.job_id): j for j in client.sync.get_all_job_info()}
    assert jobs[first].state == pb.JOB_FINISHED and jobs[first].end_time_ms > 0
    assert jobs[first].entrypoint == "python a.py"
    assert jobs[second].state == pb.JOB_RUNNING and jobs[second].driver_pid == 12


def test_worker_table(gcs):
    _, _, client = gcs
    alive, dying = WorkerID.from_random().binary(), WorkerID.from_random().binary()
    client.sync.add_worker_info(pb.WorkerTableData(worker_id=alive, pid=100))
    client.sync.add_worker_info(pb.WorkerTableData(worker_id=dying, pid=101))
    failures = []
    subscription = client.sync.subscribe([pb.WORKER_FAILURE_CHANNEL], failures.append)
    rpc.run_sync(subscription.wait_ready(10))
    client.sync.report_worker_failure(pb.WorkerTableData(
        worker_id=dying, exit_type=common_pb2.OUT_OF_MEMORY, exit_detail="killed by OOM"))
    workers = {w.worker_id: w for w in client.sync.get_all_worker_info()}
    assert workers[alive].is_alive and workers[alive].pid == 100
    assert not workers[dying].is_alive and workers[dying].pid == 101
    assert workers[dying].exit_detail == "killed by OOM"
    wait_for(lambda: failures, "the worker failure to be published")
    assert failures[0].worker_failure_message.worker_id == dying
    subscription.close()


def test_worker_table_keeps_only_the_newest_dead_workers(gcs_processes, storage_url):
    """A restart recovers the kept rows only, and what it recovered stays bounded."""
    env = {"RAY_CORE_GCS_MAX_DEAD_WORKERS": "3"}
    proc, address = gcs_processes.start(storage_url, env=env)
    client = GcsClient(address)
    ids = [WorkerID.from_random().binary() for _ in range(5)]
    for n, worker_id in enumerate(ids):
        client.sync.report_worker_failure(pb.WorkerTableData(worker_id=worker_id, pid=n,
                                                             timestamp_ms=1000 + n))
    assert {w.worker_id for w in client.sync.get_all_worker_info()} == set(ids[2:])
    client.sync.close()
    if storage_url == "memory":
        return
    proc.kill()
    proc.wait()
    _, address = gcs_processes.start(storage_url, env=env, session="again")
    client = GcsClient(address)
    try:
        client.sync.report_worker_failure(pb.WorkerTableData(worker_id=ids[0], pid=9,
                                                             timestamp_ms=2000))
        assert {w.worker_id for w in client.sync.get_all_worker_info()} == \
            {ids[3], ids[4], ids[0]}
    finally:
        client.sync.close()


def _group(name="", job=1, cpus=1.0):
    return pb.PlacementGroupTableData(
        placement_group_id=PlacementGroupID.of(JobID.from_int(job)).binary(), name=name,
        strategy="PACK", creator_job_id=JobID.from_int(job).binary(),
        bundles=[common_pb2.Bundle(bundle_index=0, unit_resources={"CPU": cpus})])


def test_placement_group_table(gcs):
    _, _, client = gcs
    row = _group("pg")
    group_id = row.placement_group_id
    client.placement_groups.create(row).result(30)
    (group,) = client.sync.get_all_placement_group()
    assert group.name == "pg" and group.state == pb.PG_PENDING
    assert client.sync.get_placement_group(group_id) == group
    assert client.sync.get_named_placement_group("pg") == group
    assert client.sync.get_named_placement_group("pg", "other namespace") is None
    with pytest.raises(GcsError, match="named 'pg' already exists"):
        client.placement_groups.create(_group("pg")).result(30)
    client.placement_groups.create(row).result(30)   # sent again: the same group, accepted
    # No node to place it on: a wait ends with its timeout, not sooner, not never.
    assert client.sync.wait_placement_group_until_ready(group_id, 0.2) is False
    client.placement_groups.remove(group_id)
    (group,) = client.sync.get_all_placement_group()   # reads wait for queued removals
    assert group.state == pb.PG_REMOVED
    with pytest.raises(GcsFailedPreconditionError, match="was removed"):
        client.sync.wait_placement_group_until_ready(group_id, 5)
    assert client.sync.get_named_placement_group("pg") is None   # the name is free again
    assert client.sync.get_placement_group(b"\0" * len(group_id)) is None
    with pytest.raises(GcsError, match="unknown placement group"):
        client.placement_groups.remove(PlacementGroupID.of(JobID.from_int(2)).binary()).result(30)


def test_placement_group_requests_keep_their_order_in_a_batch(gcs):
    """Creations and removals queued back to back share batches; each request's answer is
    its own and the table ends as if they had been made one by one."""
    _, _, client = gcs
    rows = [_group() for _ in range(50)]
    answers = []
    for index, row in enumerate(rows):
        answers.append(client.placement_groups.create(row))
        if index % 2:
            answers.append(client.placement_groups.remove(row.placement_group_id))
    answers[-1].result(30)
    assert all(answer.exception(30) is None for answer in answers)
    states = {g.placement_group_id: g.state for g in client.sync.get_all_placement_group()}
    assert [states[row.placement_group_id] for row in rows] == \
        [pb.PG_REMOVED if index % 2 else pb.PG_PENDING for index in range(50)]
    bad = _group()
    bad.placement_group_id = b"short"
    with pytest.raises(GcsError, match="must be 18 bytes"):
        client.placement_groups.create(bad).result(30)


def test_actor_reads_on_an_empty_table(gcs):
    _, _, client = gcs
    assert client.sync.get_actor_info(ActorID.from_random().binary()) is None
    assert client.sync.get_named_actor_info("nobody", "ns") is None
    assert client.sync.list_named_actors(all_namespaces=True) == []
    assert client.sync.get_all_actor_info() == []

