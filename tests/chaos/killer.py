"""A thread that SIGKILLs parts of a cluster at seeded random intervals.

Victims, by kind: a task worker, an actor's worker, a non-head raylet (its store and
workers die with it; a new node is added back), the GCS (restarted on the same address
from Redis). After each kill it measures recovery: how long until the cluster serves
again what the victim served (a task; an actor call; a task on the new node; a new
actor through the restarted GCS). The random choices are seeded; the timings are not.
"""
import collections
import random
import signal
import threading
import time

import psutil

import ray_core as ray
from ray_common import rpc
from ray_common.protocol import gcs_service_pb2
from ray_core._private import worker as worker_mod
from ray_core.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tests.chaos.load import NODE_CPUS, STORE_BYTES

RECOVERY_DEADLINE_S = 90


@ray.remote(max_retries=-1)
def probe():
    return "ok"


@ray.remote(num_cpus=0)
class Probe:
    def ping(self):
        return "ok"


def _kill(pid: int) -> bool:
    try:
        psutil.Process(pid).send_signal(signal.SIGKILL)
        return True
    except psutil.Error:
        return False


class Killer(threading.Thread):
    def __init__(self, cluster, kinds, seed: int, pause=(0.5, 2.0)):
        super().__init__(name="chaos_killer", daemon=True)
        self.cluster = cluster
        self.kinds = list(kinds)
        self.rng = random.Random(seed)
        self.pause = pause
        self.kills = collections.Counter()
        self.recoveries = []            # (kind, seconds)
        self.failure = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join()
        if self.failure is not None:
            raise self.failure

    def run(self) -> None:
        try:
            while not self._halt.wait(self.rng.uniform(*self.pause)):
                kind = self.rng.choice(self.kinds)
                started = time.monotonic()
                if getattr(self, f"_kill_{kind}")():
                    self.kills[kind] += 1
                    getattr(self, f"_recover_{kind}")()
                    self.recoveries.append((kind, time.monotonic() - started))
        except BaseException as e:  # noqa: BLE001 - the test thread raises it in stop()
            self.failure = e

    # ---- victims ------------------------------------------------------------------
    def _actor_pids(self):
        core = worker_mod.global_worker().core_worker
        try:
            rows = rpc.run_sync(core.gcs.get_all_actor_info(), timeout=5)
        except Exception:
            return []
        return sorted(row.pid for row in rows
                      if row.state == gcs_service_pb2.ActorTableData.ALIVE and row.pid)

    def _worker_pids(self):
        pids = []
        for node in self.cluster.list_all_nodes():
            try:
                children = psutil.Process(node.raylet_proc.pid).children(recursive=True)
            except psutil.Error:
                continue
            pids += [p.pid for p in children if _is_worker(p)]
        return sorted(pids)

    def _kill_worker(self) -> bool:
        actors = set(self._actor_pids())
        pids = [pid for pid in self._worker_pids() if pid not in actors]
        return bool(pids) and _kill(self.rng.choice(pids))

    def _kill_actor(self) -> bool:
        pids = self._actor_pids()
        return bool(pids) and _kill(self.rng.choice(pids))

    def _kill_raylet(self) -> bool:
        nodes = self.cluster.worker_nodes
        if not nodes:
            return False
        node = self.rng.choice(sorted(nodes, key=lambda n: n.node_id))
        _kill(node.raylet_proc.pid)
        self.cluster.remove_node(node, allow_graceful=False)
        return True

    def _kill_gcs(self) -> bool:
        self.cluster.head_node.kill_gcs()
        return True

    # ---- recovery -----------------------------------------------------------------
    def _recover_worker(self) -> None:
        assert ray.get(probe.remote(), timeout=RECOVERY_DEADLINE_S) == "ok"

    _recover_actor = _recover_worker

    def _recover_raylet(self) -> None:
        node = self.cluster.add_node(num_cpus=NODE_CPUS, resources={"worker_node": NODE_CPUS},
                                     object_store_memory=STORE_BYTES)
        strategy = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        assert ray.get(probe.options(scheduling_strategy=strategy).remote(),
                       timeout=RECOVERY_DEADLINE_S) == "ok"

    def _recover_gcs(self) -> None:
        actor = Probe.remote()
        assert ray.get(actor.ping.remote(), timeout=RECOVERY_DEADLINE_S) == "ok"
        ray.kill(actor)


def _is_worker(proc) -> bool:
    try:
        return "default_worker" in " ".join(proc.cmdline())
    except psutil.Error:
        return False
