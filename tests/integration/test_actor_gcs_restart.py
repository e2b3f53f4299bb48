"""An actor keeps serving while its GCS (on Redis) is killed with SIGKILL and restarted."""
import os
import secrets
import signal
import threading
import time

import psutil
import pytest

import ray_core as ray
from ray_common import rpc
from ray_core.node import new_session_dir

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def redis_cluster(own_temp_dir):
    """A head node whose GCS stores its tables in Redis; yields a restart function."""
    from ray_gcs.launcher import start_gcs
    from ray_gcs.redis_server import start_redis
    from ray_raylet.launcher import start_raylet

    redis = start_redis(os.path.join(own_temp_dir, "redis"))
    session_dir = new_session_dir(own_temp_dir)
    token = secrets.token_hex(16)
    env = dict(os.environ, RAY_CORE_AUTH_TOKEN=token)
    procs = {}
    try:
        procs["gcs"], gcs_address = start_gcs(session_dir, port=0, storage=redis.url, env=env)
        procs["raylet"], _info = start_raylet(gcs_address, session_dir, num_cpus=2,
                                              object_store_memory=200 * 1024 ** 2, env=env)
        rpc.set_auth_token(token)
        ray.init(address=gcs_address, _temp_dir=own_temp_dir)

        def restart_gcs():
            """kill -9 the GCS, then start a new one on the same address and storage."""
            procs["gcs"].send_signal(signal.SIGKILL)
            procs["gcs"].wait()
            time.sleep(0.5)
            port = int(gcs_address.rsplit(":", 1)[1])
            procs["gcs"], _ = start_gcs(session_dir, port=port, storage=redis.url, env=env)

        yield restart_gcs
    finally:
        ray.shutdown()
        for proc in procs.values():
            children = []
            try:
                children = psutil.Process(proc.pid).children(recursive=True)
            except psutil.Error:
                pass
            proc.kill()
            proc.wait()
            for child in children:
                try:
                    child.kill()
                except psutil.Error:
                    pass
        redis.stop()


@ray.remote
class Ledger:
    def __init__(self):
        self.entries = []

    def append(self, x):
        self.entries.append(x)
        return len(self.entries)

    def entries_(self):
        return self.entries


def test_actor_serves_calls_across_a_gcs_kill_and_restart(redis_cluster):
    restart_gcs = redis_cluster
    ledger = Ledger.options(name="ledger", namespace="svc").remote()
    assert ray.get(ledger.append.remote(-1)) == 1
    results, errors = [], []
    stop = threading.Event()

    def serve_calls():
        i = 0
        while not stop.is_set() or i < 50:
            try:
                results.append(ray.get(ledger.append.remote(i), timeout=60))
            except Exception as e:  # any failed call fails the test
                errors.append(e)
                return
            i += 1

    caller = threading.Thread(target=serve_calls)
    caller.start()
    time.sleep(0.3)
    restart_gcs()
    time.sleep(0.5)
    stop.set()
    caller.join(timeout=60)
    assert not caller.is_alive()
    assert errors == []
    # No call was lost or run twice: the ledger holds every call once, in order.
    entries = ray.get(ledger.entries_.remote())
    assert entries == [-1] + list(range(len(results)))
    assert results == list(range(2, len(results) + 2))
    # The restarted GCS recovered the actor table: the name still resolves.
    again = ray.get_actor("ledger", namespace="svc")
    assert ray.get(again.append.remote("after")) == len(entries) + 1
    # And it manages actors again: new ones are created through it.
    fresh = Ledger.remote()
    assert ray.get(fresh.append.remote(0)) == 1


@ray.remote(num_cpus=1)
def in_group():
    return ray.util.get_current_placement_group().id.hex()


def test_placement_groups_survive_a_gcs_restart(redis_cluster):
    from ray_core.util import placement_group, placement_group_table, remove_placement_group
    from ray_core.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    restart_gcs = redis_cluster
    placed = placement_group([{"CPU": 1}], name="placed")
    assert placed.wait(30)
    waiting = placement_group([{"CPU": 2}])      # cannot fit while `placed` holds a CPU
    assert waiting.wait(0.5) is False
    restart_gcs()
    # The row came back from Redis, and the raylet still holds the bundle.
    assert placement_group_table(placed)["state"] == "CREATED"
    strategy = PlacementGroupSchedulingStrategy(placed)
    assert ray.get(in_group.options(scheduling_strategy=strategy).remote(),
                   timeout=60) == placed.id.hex()
    # The new GCS took up the group that was waiting: it is placed once there is room.
    remove_placement_group(placed)
    assert waiting.wait(30)
    remove_placement_group(waiting)
    assert placement_group_table(waiting)["state"] == "REMOVED"


@ray.remote(num_cpus=2)
def both_cpus():
    return "ran"


def test_placement_group_requests_made_across_a_gcs_restart_arrive_once(redis_cluster):
    """Creations and removals queue in batches: those sent while the GCS is being killed
    and restarted are sent again (the GCS takes a creation it already has as the same
    one), so every group is created once, every removal lands, and the CPUs come back."""
    from ray_core.util import placement_group, placement_group_table, remove_placement_group
    restarter = threading.Thread(target=redis_cluster)
    groups = []
    restarter.start()
    try:
        for _ in range(40):
            groups.append(placement_group([{"CPU": 0.05}]))
            time.sleep(0.02)
    finally:
        restarter.join()
    assert all(group.wait(60) for group in groups)
    rows = placement_group_table()
    assert {group.id.hex() for group in groups} <= set(rows)
    for group in groups:
        remove_placement_group(group)
    assert all(placement_group_table(group)["state"] == "REMOVED" for group in groups)
    assert ray.get(both_cpus.remote(), timeout=60) == "ran"    # every bundle went back
