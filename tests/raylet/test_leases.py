"""Leases against real processes: a GCS, raylets, plasma stores and test workers."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from ray_common.protocol import common_pb2, gcs_service_pb2, node_manager_pb2 as nm
from ray_raylet.launcher import start_raylet
from ray_raylet.resources import cuda_visible_devices
from tests.raylet.cluster import Reply, wait_for


def cpu_available(raylet):
    return raylet.stats().resources_available["CPU"]


def test_lease_granted_locally_returned_and_logged(cluster):
    raylet = cluster.add_raylet(num_cpus=1)
    reply = raylet.lease({"CPU": 1})
    assert reply.status == Reply.GRANTED
    assert reply.worker_address.node_id == raylet.node_id and reply.worker_address.port > 0
    assert psutil.pid_exists(reply.worker_pid)
    assert cpu_available(raylet) == 0
    raylet.return_worker(reply)
    assert cpu_available(raylet) == 1
    log = raylet.log()
    lease_hex = reply.lease_id.hex()
    for line in (f"Worker lease request {lease_hex}", f"to worker with pid {reply.worker_pid}",
                 "Finished task"):
        assert line in log, line
    assert "Assigning task" in log and lease_hex in log.split("Finished task")[1]


def test_queued_while_busy_then_granted_on_return_to_the_same_worker(cluster):
    raylet = cluster.add_raylet(num_cpus=1)
    first = raylet.lease({"CPU": 1})
    pending = raylet.lease({"CPU": 1}, wait=False)
    wait_for(lambda: raylet.stats().num_pending_leases == 1, "the second request to queue")
    assert not pending.done()
    raylet.return_worker(first)
    second = pending.result(30)
    assert second.status == Reply.GRANTED
    assert second.worker_pid == first.worker_pid  # the idle worker of the same job is reused


def test_spillback_between_two_raylets(cluster):
    head = cluster.add_raylet(num_cpus=1)
    other = cluster.add_raylet(num_cpus=1)
    local = head.lease({"CPU": 1})
    assert local.status == Reply.GRANTED
    # Queued at first if the head has not yet heard of the other node; spilled once it has.
    spilled = head.lease({"CPU": 1})
    assert spilled.status == Reply.SPILLBACK
    assert spilled.retry_at_raylet_address.node_id == other.node_id
    assert (f"{spilled.retry_at_raylet_address.ip_address}:"
            f"{spilled.retry_at_raylet_address.port}") == other.address
    granted = other.lease({"CPU": 1}, lease_id=spilled.lease_id, grant_or_reject=True)
    assert granted.status == Reply.GRANTED and granted.worker_address.node_id == other.node_id
    # Both full: a grant_or_reject request that does not fit now waits there, it does not bounce.
    assert other.lease({"CPU": 2}, grant_or_reject=True).status == Reply.REJECTED


def test_fractional_and_custom_resources(cluster):
    raylet = cluster.add_raylet(num_cpus=1, resources={"accel": 2})
    shape = {"CPU": 0.5, "accel": 1}
    a, b = raylet.lease(shape), raylet.lease(shape)
    assert a.status == b.status == Reply.GRANTED and a.worker_pid != b.worker_pid
    stats = raylet.stats()
    assert stats.resources_available["CPU"] == 0 and stats.resources_available["accel"] == 0
    pending = raylet.lease({"CPU": 0.5}, wait=False)
    wait_for(lambda: raylet.stats().num_pending_leases == 1, "the third request to queue")
    raylet.return_worker(a)
    assert pending.result(30).status == Reply.GRANTED
    assert raylet.stats().resources_available["accel"] == 1


def test_infeasible_request_is_granted_when_a_fitting_raylet_joins(cluster):
    head = cluster.add_raylet(num_cpus=1)
    pending = head.lease({"CPU": 1, "accel": 1}, wait=False)
    wait_for(lambda: head.stats().num_infeasible_leases == 1, "the request to be infeasible")
    assert "cannot be scheduled right now: requires {CPU: 1, accel: 1}" in head.log()
    fitting = cluster.add_raylet(num_cpus=1, resources={"accel": 1})
    spilled = pending.result(30)
    assert spilled.status == Reply.SPILLBACK
    assert spilled.retry_at_raylet_address.node_id == fitting.node_id
    granted = fitting.lease({"CPU": 1, "accel": 1}, grant_or_reject=True)
    assert granted.status == Reply.GRANTED


def test_worker_killed_mid_lease_is_detected_and_reported(cluster):
    raylet = cluster.add_raylet(num_cpus=1)
    reply = raylet.lease({"CPU": 1})
    os.kill(reply.worker_pid, signal.SIGKILL)
    wait_for(lambda: cpu_available(raylet) == 1, "the dead worker's CPU to come back")

    def reported():
        failures = [w for w in cluster.gcs.sync.get_all_worker_info()
                    if w.worker_id == reply.worker_address.worker_id and not w.is_alive]
        return failures[0] if failures else None
    failure = wait_for(reported, "the worker failure at the GCS")
    assert failure.exit_type == common_pb2.WORKER_DIED
    assert reply.lease_id.hex() in failure.exit_detail and str(reply.worker_pid) in failure.exit_detail
    raylet.return_worker(reply)  # a late return of the dead lease is harmless
    assert raylet.lease({"CPU": 1}).status == Reply.GRANTED


def _reported_dead(cluster, reply):
    def dead():
        rows = [w for w in cluster.gcs.sync.get_all_worker_info()
                if w.worker_id == reply.worker_address.worker_id and not w.is_alive]
        return rows[0] if rows else None
    return wait_for(dead, "the worker's death at the GCS")


def test_a_worker_sigkilled_from_outside_did_not_exit_as_intended(cluster):
    """Even when the raylet had just asked it to exit: an owner returns the lease of a
    worker whose connection dropped with disconnect_worker, often before the raylet has
    seen that the worker is dead (it reported kill -9 as INTENDED_USER_EXIT then)."""
    # A grace period no test step outlasts: the SIGKILL is the test's, never the raylet's.
    raylet = cluster.add_raylet(num_cpus=1, env={"RAY_CORE_WORKER_EXIT_GRACE_MS": "120000"})
    reply = raylet.lease({"CPU": 1})
    os.kill(reply.worker_pid, signal.SIGSTOP)    # holds the SIGTERM the return sends
    # (once it is stopped: a SIGTERM pending beside the SIGSTOP is taken first)
    wait_for(lambda: psutil.Process(reply.worker_pid).status() == psutil.STATUS_STOPPED,
             "the worker stopped")
    raylet.return_worker(reply, disconnect=True)
    os.kill(reply.worker_pid, signal.SIGKILL)    # kill -9 before the worker could exit
    assert not _reported_dead(cluster, reply).exit_intended
    # A worker that exits when asked did as intended.
    asked = raylet.lease({"CPU": 1})
    raylet.return_worker(asked, disconnect=True)
    assert _reported_dead(cluster, asked).exit_intended


def test_raylet_sigkill_leaves_no_worker_or_store_behind(cluster):
    raylet = cluster.add_raylet(num_cpus=1)
    reply = raylet.lease({"CPU": 1})
    children = raylet.descendants()
    pids = {p.pid for p in children}
    assert reply.worker_pid in pids and len(pids) >= 2  # the worker and the plasma store
    raylet.proc.kill()
    raylet.proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"outlived the raylet: {[p.pid for p in alive]}"


def test_node_affinity_and_bad_requests(cluster):
    raylet = cluster.add_raylet(num_cpus=1)
    hard_dead = common_pb2.SchedulingStrategy(
        node_affinity_scheduling_strategy=common_pb2.NodeAffinitySchedulingStrategy(
            node_id=b"\x07" * 28, soft=False))
    failed = raylet.lease({"CPU": 1}, strategy=hard_dead)
    assert failed.status == Reply.FAILED and "not alive" in failed.failure_message
    bad = raylet.lease({"GPU": 1.5})
    assert bad.status == Reply.FAILED and "whole" in bad.failure_message


def test_sigterm_stops_workers_and_store_and_unregisters(cluster):
    raylet = cluster.add_raylet(num_cpus=1)
    raylet.lease({"CPU": 1})
    children = raylet.descendants()
    raylet.proc.terminate()
    assert raylet.proc.wait(30) == 0
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
    nodes = cluster.gcs.sync.get_all_node_info()
    assert [n.state for n in nodes if n.node_id == raylet.node_id] == [common_pb2.NodeInfo.DEAD]


def _register_driver(cluster, raylet, pid):
    job_id = cluster.gcs.sync.add_job(gcs_service_pb2.JobTableData(driver_pid=pid))
    driver_id = os.urandom(28)
    registered = raylet.call("RegisterWorker", nm.RegisterWorkerRequest(
        worker_id=driver_id, pid=pid, worker_type=common_pb2.DRIVER,
        job_id=job_id.binary(), ip_address="127.0.0.1"))
    assert registered.success and registered.node_id == raylet.node_id
    return job_id, driver_id


def test_driver_death_finishes_its_job_and_kills_its_workers(cluster):
    raylet = cluster.add_raylet(num_cpus=1)
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        job_id, _ = _register_driver(cluster, raylet, driver.pid)
        # A worker is prestarted for the job as its driver registers; the lease gets it.
        prestarted = wait_for(lambda: [w.pid for w in raylet.stats().workers if w.is_idle],
                              "a prestarted idle worker")
        leased = raylet.lease({"CPU": 1}, job_id=job_id.binary())
        assert [leased.worker_pid] == prestarted
        driver.kill()
        driver.wait()
        wait_for(lambda: not psutil.pid_exists(leased.worker_pid), "the job's worker to die")

        def finished():
            jobs = cluster.gcs.sync.get_all_job_info()
            return any(j.job_id == job_id.binary() and j.state == gcs_service_pb2.JOB_FINISHED
                       for j in jobs)
        wait_for(finished, "the job to be marked finished")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


def test_driver_disconnect_ends_its_workers_and_intended_exits_are_not_failures(cluster):
    raylet = cluster.add_raylet(num_cpus=1)
    job_id, driver_id = _register_driver(cluster, raylet, os.getpid())
    leased = raylet.lease({"CPU": 1}, job_id=job_id.binary())
    raylet.call("DisconnectWorker", nm.DisconnectWorkerRequest(worker_id=driver_id))
    wait_for(lambda: not psutil.pid_exists(leased.worker_pid), "the job's worker to die")
    wait_for(lambda: raylet.stats().resources_available["CPU"] == 1, "the CPU to come back")
    other = raylet.lease({"CPU": 1}, job_id=b"\x09\0\0\0")
    raylet.call("DisconnectWorker", nm.DisconnectWorkerRequest(
        worker_id=other.worker_address.worker_id, exit_detail="exiting on purpose"))
    os.kill(other.worker_pid, signal.SIGKILL)
    wait_for(lambda: "exiting on purpose" in raylet.log(), "the disconnect to be logged")
    wait_for(lambda: raylet.stats().resources_available["CPU"] == 1, "the CPU to come back")
    exit_lines = [line for line in raylet.log().splitlines()
                  if other.worker_address.worker_id.hex() in line and "exited with code" in line]
    assert exit_lines and exit_lines[0].startswith("I"), exit_lines  # info, not a failure


@pytest.mark.gcs_env({"RAY_CORE_HEALTH_CHECK_INITIAL_DELAY_MS": "0",
                      "RAY_CORE_HEALTH_CHECK_PERIOD_MS": "100",
                      "RAY_CORE_HEALTH_CHECK_TIMEOUT_MS": "1000",
                      "RAY_CORE_HEALTH_CHECK_FAILURE_THRESHOLD": "3"})
def test_health_checks_are_answered_until_the_raylet_dies(cluster):
    raylet = cluster.add_raylet(num_cpus=0)

    def state():
        nodes = cluster.gcs.sync.get_all_node_info()
        return [n.state for n in nodes if n.node_id == raylet.node_id][0]
    wait_for(lambda: state() == common_pb2.NodeInfo.ALIVE, "the node to be alive")
    # Ten check periods later it is still alive: every check was answered.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert state() == common_pb2.NodeInfo.ALIVE
        time.sleep(0.1)
    raylet.proc.kill()
    raylet.proc.wait()
    wait_for(lambda: state() == common_pb2.NodeInfo.DEAD, "the GCS to mark the node dead")


def test_gpus_from_cuda_visible_devices_are_leased_by_device_id(cluster):
    raylet = cluster.add_raylet(num_cpus=2, num_gpus=None, env={"CUDA_VISIBLE_DEVICES": "3,5"})
    assert raylet.stats().resources_total["GPU"] == 2
    first = raylet.lease({"CPU": 1, "GPU": 1})
    second = raylet.lease({"CPU": 1, "GPU": 0.5})
    devices = [[list(e.instance_ids) for e in r.resource_mapping if e.name == "GPU"][0]
               for r in (first, second)]
    assert devices == [[3], [5]]
    assert cuda_visible_devices(first.resource_mapping) == "3"
    out = wait_for(lambda: _worker_out(raylet, first.worker_pid), "the worker's report")
    assert out["cuda_visible_devices"] == "3"


def _worker_out(raylet, pid):
    for path in glob.glob(os.path.join(raylet.session_dir, "logs", f"worker-*-{pid}.out")):
        with open(path) as f:
            text = f.read()
        if text.endswith("\n"):
            return json.loads(text.splitlines()[0])
    return None


def test_raylet_stops_when_its_plasma_store_dies(cluster):
    raylet = cluster.add_raylet(num_cpus=1)
    raylet.lease({"CPU": 1})
    store = [p for p in raylet.descendants() if "ray_plasma.store" in " ".join(p.cmdline())]
    assert len(store) == 1
    children = raylet.descendants()
    store[0].kill()
    assert raylet.proc.wait(30) == 0
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
    assert "The plasma store (pid" in raylet.log()


def test_two_raylets_in_one_session_dir_log_to_their_own_files(cluster):
    shared = os.path.join(cluster.root, "shared")
    infos = []
    try:
        for _ in range(2):
            proc, info = start_raylet(cluster.gcs_address, shared, num_cpus=0,
                                      object_store_memory=32 * 1024 ** 2, env=cluster.env)
            infos.append((proc, info))
        names = [os.path.basename(info["log_file"]) for _, info in infos]
        port = infos[1][1]["raylet_address"].rsplit(":", 1)[1]
        assert names == ["raylet.log", f"raylet_{port}.log"]
        assert infos[0][1]["object_store_socket"] != infos[1][1]["object_store_socket"]
    finally:
        for proc, _ in infos:
            proc.terminate()
            proc.wait(30)
