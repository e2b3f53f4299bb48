"""Chaos: a load of tasks, nested tasks, actors and objects moving between nodes runs
while a seeded killer SIGKILLs task workers, actors, a worker node's raylet, or the GCS.

For each scenario: every call with retries left returns its value, every other one its
value or a documented error, and no get waits past its deadline; afterwards every
resource is free again within 10 s and the next task runs; after shutdown nothing of
the cluster is left (the fixture checks). Short mode (make test): RAY_CORE_CHAOS_S
seconds of load in all (default 32), split over the scenarios; long mode:
RAY_CORE_CHAOS_S=600. Each scenario prints its figures (and appends them, as JSON
lines, to RAY_CORE_CHAOS_REPORT if set).
"""
import json
import os
import random
import time

import pytest

import ray_core as ray

from tests.chaos.killer import Killer
from tests.chaos.load import Load
from tests.waiting import wait_for

SCENARIOS = {
    "workers_and_actors": ["worker", "actor"],
    "raylet": ["raylet", "worker"],
    "gcs": ["gcs", "actor"],
    "everything": ["worker", "actor", "raylet", "gcs"],
}
TOTAL_S = float(os.environ.get("RAY_CORE_CHAOS_S", "32"))
SEED = int(os.environ.get("RAY_CORE_CHAOS_SEED", "1234"))

pytestmark = pytest.mark.timeout(int(TOTAL_S / len(SCENARIOS) * 4) + 300)


def _free_again():
    total, available = ray.cluster_resources(), ray.available_resources()
    return all(available.get(name, 0) == amount for name, amount in total.items()
               if not name.startswith("node:"))


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_chaos(chaos_cluster, scenario, tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    seed = SEED + sorted(SCENARIOS).index(scenario)
    load = Load(str(runs_dir), random.Random(seed))
    killer = Killer(chaos_cluster, SCENARIOS[scenario], seed)
    started = time.monotonic()
    killer.start()
    try:
        load.run(TOTAL_S / len(SCENARIOS))
    finally:
        killer.stop()
    elapsed = time.monotonic() - started
    wait_for(_free_again, "available_resources() back to cluster_resources()", timeout=10)
    assert ray.get(load.durable.double.remote(21), timeout=60) == 42

    tasks, executions = load.executions()
    figures = {"scenario": scenario, "seed": seed, "seconds": round(elapsed, 1),
               "rounds": load.rounds, "tasks_run": tasks, "retries": executions - tasks,
               "calls_ok": load.outcomes["strict ok"] + load.outcomes["lenient ok"],
               "documented_errors": dict(load.errors), "kills": dict(killer.kills),
               "max_recovery_s": round(max((s for _, s in killer.recoveries), default=0), 2)}
    print("CHAOS", json.dumps(figures))
    if os.environ.get("RAY_CORE_CHAOS_REPORT"):
        with open(os.environ["RAY_CORE_CHAOS_REPORT"], "a") as f:
            f.write(json.dumps(figures) + "\n")
    assert sum(killer.kills.values()) >= 1, figures
