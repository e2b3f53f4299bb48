"""A real head whose GCS keeps at most 10 dead actors and 10 removed placement groups:
after 50 of each come and go, its tables hold at most that many ended rows and nothing
else of theirs (incarnations, names, channels to their workers, subscriptions, waiting
groups), as its metrics say; a forgotten dead actor's name still fails get_actor with
ValueError, and live actors (detached, restartable) are untouched."""
import os
import signal

import pytest

import ray_core as ray
from ray_common.metrics import metrics_files
from ray_core.util.state import list_actors
from tests.integration.conftest import shut_down_cleanly
from tests.integration.test_metrics import scrape, value
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(300)
BOUND = 10
COUNT = 50
ENTRIES = ("actor_incarnations", "named_actors", "rpc_channels", "subscribers",
           "placement_groups_waiting", "placement_group_waiters")


@pytest.fixture(scope="module")
def bounded_head(short_temp_dir):
    with shut_down_cleanly():
        context = ray.init(num_cpus=2, _temp_dir=short_temp_dir, _system_config={
            "maximum_gcs_destroyed_actor_cached_count": BOUND,
            "maximum_gcs_removed_placement_group_cached_count": BOUND,
            "gcs_max_dead_workers": BOUND})
        yield next(e for e in metrics_files(context["session_dir"])
                   if e["component"] == "gcs_server")


def gcs_figures(gcs) -> dict:
    text = scrape(gcs)
    figures = {kind: value(text, "ray_core_gcs_entries", kind=kind)
               for kind in ENTRIES + ("dead_actors", "removed_placement_groups")}
    for table in ("actors", "placement_groups", "workers"):
        figures[table] = value(text, "ray_core_gcs_table_rows", table=table)
    return figures


@ray.remote(num_cpus=0)
class Small:
    def ping(self):
        return os.getpid()


def churn_actors(n, prefix):
    """Create n actors (named), call each once, kill them all."""
    for low in range(0, n, 25):
        batch = [Small.options(name=f"{prefix}{i}").remote() for i in range(low, low + 25)]
        assert len(ray.get([a.ping.remote() for a in batch])) == len(batch)
        for actor in batch:
            ray.kill(actor)


def settled(gcs, expected: dict, most: dict):
    """The GCS's figures once `expected` hold exactly and none passes `most`."""
    last = {}

    def check():
        last.update(gcs_figures(gcs))
        ok = all(last[k] == v for k, v in expected.items()) and \
            all(last[k] <= v for k, v in most.items())
        return dict(last) if ok else None
    try:
        return wait_for(check, f"GCS figures {expected}, at most {most}", timeout=60)
    except AssertionError as e:
        raise AssertionError(f"{e}; the last: {last}") from None


def test_dead_actors_leave_at_most_the_bound_and_nothing_else(bounded_head):
    gcs = bounded_head
    keeper = Small.options(name="keeper", lifetime="detached").remote()
    phoenix = Small.options(max_restarts=1).remote()
    phoenix_pid = ray.get(phoenix.ping.remote())
    churn_actors(5, "warm")            # every path and cached channel used once
    baseline = settled(gcs, {"actor_incarnations": 2, "named_actors": 1}, {})

    churn_actors(COUNT, "gone")
    after = settled(gcs, {k: baseline[k] for k in ENTRIES},
                    {"dead_actors": BOUND, "actors": BOUND + 2, "workers": BOUND + 10})
    assert after["dead_actors"] == BOUND

    with pytest.raises(ValueError, match="gone0"):
        ray.get_actor("gone0")                     # its row is forgotten
    with pytest.raises(ValueError, match=f"gone{COUNT - 1}"):
        ray.get_actor(f"gone{COUNT - 1}")          # its row is kept, DEAD
    dead = [a for a in list_actors(limit=1000) if a.state == "DEAD"]
    assert len(dead) == BOUND and {a.name for a in dead} <= \
        {f"gone{i}" for i in range(COUNT - BOUND, COUNT)}
    assert ray.get(ray.get_actor("keeper").ping.remote()) > 0
    os.kill(phoenix_pid, signal.SIGKILL)           # its one restart still works
    assert wait_for(lambda: _pid_other_than(phoenix, phoenix_pid), "phoenix restarted")
    ray.kill(keeper)
    ray.kill(phoenix)
    settled(gcs, {"actor_incarnations": 0, "named_actors": 0}, {"dead_actors": BOUND})


def _pid_other_than(actor, old_pid):
    try:
        pid = ray.get(actor.ping.remote(), timeout=10)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return None
    return pid if pid != old_pid else None


def test_removed_groups_leave_at_most_the_bound_and_nothing_else(bounded_head):
    gcs = bounded_head
    warm = ray.util.placement_group([{"CPU": 0.01}])
    assert warm.wait(timeout_seconds=60)
    ray.util.remove_placement_group(warm)
    baseline = settled(gcs, {"placement_groups_waiting": 0, "placement_group_waiters": 0,
                             "actor_incarnations": 0}, {})

    groups = [ray.util.placement_group([{"CPU": 0.01}]) for _ in range(COUNT)]
    assert all(group.wait(timeout_seconds=60) for group in groups)
    for group in groups:
        ray.util.remove_placement_group(group)
    after = settled(gcs, {k: baseline[k] for k in ENTRIES},
                    {"removed_placement_groups": BOUND, "placement_groups": BOUND})
    assert after["removed_placement_groups"] == BOUND
    table = ray.util.placement_group_table()
    assert len(table) == BOUND and all(row["state"] == "REMOVED" for row in table.values())
