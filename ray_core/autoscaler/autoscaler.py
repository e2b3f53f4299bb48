"""The autoscaler's decisions, one update at a time: which nodes to launch for what
waits, which to end (idle past the timeout, dead, never registered), and the view that
`ray_core status` prints.

It holds no connection: monitor.py reads a ClusterSnapshot from the GCS and the raylets,
hands it to update(), and carries the decision out through the node provider. So every
rule here is tested on snapshots, without processes.
"""
import collections
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

from ray_common.config import config

from ray_core.autoscaler.cluster_config import ClusterConfig
from ray_core.autoscaler.demand import LaunchPlan, PendingGroup, Shape, holds, plan_launches

# Launches in flight are at most max(this, upscaling_speed x worker nodes running).
MIN_CONCURRENT_LAUNCHES = 5
# After a failed launch a type waits 2, 4, 8... s (at most this) before the next try.
MAX_LAUNCH_BACKOFF_S = 60.0


@dataclass
class NodeSnapshot:
    node_id: bytes
    launch_id: str          # "" for a node the autoscaler did not launch (the head...)
    total: Shape
    free: Shape
    busy: bool              # leased workers, a driver, queued requests
    is_head: bool = False
    holds_objects: bool = False     # primary copies (in memory or spilled) someone may need
    address: str = ""               # its raylet, ip:port


@dataclass
class ClusterSnapshot:
    nodes: List[NodeSnapshot]
    demands: List[Shape]                       # one shape per waiting task or actor
    groups: List[PendingGroup] = field(default_factory=list)
    requested: List[Shape] = field(default_factory=list)


@dataclass
class Decision:
    launch: List[Tuple[str, str]] = field(default_factory=list)     # (launch id, type)
    terminate: List[Tuple[str, str]] = field(default_factory=list)  # (launch id, why)
    # (launch id, its raylet, the raylet to take its primary copies) of idle nodes that
    # still hold objects: moved first, the node is ended at a later update.
    drain: List[Tuple[str, str, str]] = field(default_factory=list)


class Autoscaler:
    def __init__(self, cluster: ClusterConfig, clock: Callable[[], float] = time.monotonic):
        self.cluster = cluster
        self._clock = clock
        self.launching: Dict[str, Tuple[str, float]] = {}   # launch id -> (type, since)
        self.running: Dict[str, str] = {}                   # launch id -> type, registered
        self.idle_since: Dict[str, float] = {}
        self.failures = collections.deque(maxlen=20)        # (wall time, type, message)
        self.last_plan = LaunchPlan()
        self.launched_total = 0
        self._backoff: Dict[str, Tuple[float, int]] = {}    # type -> (until, failures)

    # -- results of what the monitor carried out ---------------------------------------
    def launch_failed(self, launch_id: str, node_type: str, message: str) -> None:
        self.launching.pop(launch_id, None)
        self._failed(node_type, message)

    def _failed(self, node_type: str, message: str) -> None:
        """A provider that cannot start a type now (quota, a broken setup command) is not
        asked again every update: the type backs off, longer after each failure."""
        self.failures.append((time.time(), node_type, message))
        _, failures = self._backoff.get(node_type, (0.0, 0))
        delay = min(2.0 ** (failures + 1), MAX_LAUNCH_BACKOFF_S)
        self._backoff[node_type] = (self._clock() + delay, failures + 1)

    # -- one update --------------------------------------------------------------------
    def update(self, snapshot: ClusterSnapshot, provider_nodes: Dict[str, str]) -> Decision:
        """`provider_nodes`: launch id -> type of every node the provider has (created,
        not terminated)."""
        now = self._clock()
        decision = Decision()
        registered = {n.launch_id: n for n in snapshot.nodes if n.launch_id}
        types = self.cluster.worker_types
        # Launches in flight end when their node registers, or time out.
        for launch_id, (node_type, since) in list(self.launching.items()):
            if launch_id in registered:
                del self.launching[launch_id]
                self._backoff.pop(node_type, None)
            elif launch_id in provider_nodes and \
                    now - since > config.autoscaler_node_start_timeout_s:
                del self.launching[launch_id]
                self._failed(node_type, f"node {launch_id} did not register within "
                                        f"{config.autoscaler_node_start_timeout_s:g}s")
                decision.terminate.append((launch_id, "never registered"))
        self.running = {lid: t for lid, t in provider_nodes.items() if lid in registered}
        # A provider node neither launching nor registered has died (or was stopped by
        # hand): end what is left of it, so a new one can take its place.
        for launch_id in provider_nodes:
            if launch_id not in registered and launch_id not in self.launching and \
                    all(launch_id != lid for lid, _ in decision.terminate):
                decision.terminate.append((launch_id, "its node is no longer in the cluster"))
        ending = {lid for lid, _ in decision.terminate}
        counts: Dict[str, int] = collections.Counter(
            t for lid, t in provider_nodes.items() if lid not in ending and t in types)
        for launch_id, (node_type, _) in self.launching.items():
            if launch_id not in provider_nodes:     # create_node still running
                counts[node_type] += 1

        free = [n.free for n in snapshot.nodes] + \
            [types[t].resources for lid, (t, _) in self.launching.items() if t in types]
        totals = [n.total for n in snapshot.nodes] + \
            [types[t].resources for lid, (t, _) in self.launching.items() if t in types]
        self.last_plan = plan_launches(types, counts, free, totals, snapshot.demands,
                                       snapshot.groups, snapshot.requested,
                                       self.cluster.max_workers)
        room = max(MIN_CONCURRENT_LAUNCHES,
                   math.ceil(self.cluster.upscaling_speed * len(self.running))) - \
            len(self.launching)
        for node_type, count in sorted(self.last_plan.launch.items()):
            if now < self._backoff.get(node_type, (0.0, 0))[0]:
                continue
            for _ in range(min(count, max(room, 0))):
                launch_id = uuid.uuid4().hex[:8]
                self.launching[launch_id] = (node_type, now)
                self.launched_total += 1
                decision.launch.append((launch_id, node_type))
                room -= 1
        self._end_idle(snapshot, registered, counts, now, decision)
        return decision

    def _end_idle(self, snapshot: ClusterSnapshot, registered: Dict[str, NodeSnapshot],
                  counts: Dict[str, int], now: float, decision: Decision) -> None:
        timeout = self.cluster.idle_timeout_minutes * 60
        waiting = bool(snapshot.demands or snapshot.groups or self.last_plan.launch)
        for launch_id, node in registered.items():
            if node.busy or any(node.free.get(k, 0.0) + 1e-9 < v for k, v in node.total.items()):
                self.idle_since.pop(launch_id, None)
                continue
            since = self.idle_since.setdefault(launch_id, now)
            node_type = self.running.get(launch_id)
            if node_type is None or now - since < timeout or waiting:
                continue
            spec = self.cluster.worker_types.get(node_type)
            if spec is not None and counts.get(node_type, 0) <= spec.min_workers:
                continue
            if snapshot.requested and not holds(snapshot.requested, [
                    n.total for n in snapshot.nodes if n.launch_id != launch_id]):
                continue
            if node.holds_objects:
                target = next((n.address for n in snapshot.nodes if n.is_head), "")
                if target:
                    decision.drain.append((launch_id, node.address, target))
                continue
            counts[node_type] = counts.get(node_type, 0) - 1
            self.idle_since.pop(launch_id, None)
            decision.terminate.append((launch_id, f"idle for {now - since:.0f}s "
                                       f"(idle_timeout_minutes "
                                       f"{self.cluster.idle_timeout_minutes:g})"))

    # -- what `ray_core status` shows ------------------------------------------------
    def status(self) -> dict:
        now = self._clock()
        return {
            "cluster_name": self.cluster.cluster_name,
            "launching": dict(collections.Counter(t for t, _ in self.launching.values())),
            "running": dict(collections.Counter(self.running.values())),
            "idle": [{"launch_id": lid, "node_type": self.running.get(lid, ""),
                      "idle_s": round(now - since, 1)}
                     for lid, since in sorted(self.idle_since.items())
                     if lid in self.running],
            "infeasible": _counted(self.last_plan.infeasible),
            "capped": _counted(self.last_plan.capped),
            "failures": [{"time": t, "node_type": nt, "message": m}
                         for t, nt, m in self.failures],
            "launched_total": self.launched_total,
            "updated_at": time.time(),
        }


def _counted(shapes: List[Shape]) -> List[dict]:
    counts = collections.Counter(tuple(sorted(s.items())) for s in shapes)
    return [{"shape": dict(key), "count": n} for key, n in sorted(counts.items())]
