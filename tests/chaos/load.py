"""The load a chaos test runs while processes are killed under it, and what it checks.

Rounds of: plain tasks (unlimited retries: each must return its value), tasks with no
retries (a value or a documented error), nested tasks (a parent that submits and sums
children), large objects made on one worker node and read on the other, calls to an
actor that restarts for ever with unlimited call retries (each must return its value)
and to one with one restart and no call retries (a value or a documented error). Every
get has a deadline: a get that times out is a hang, and fails the test.
"""
import collections
import os
import time

import numpy as np

import ray_core as ray
from ray_core import exceptions
from ray_core.util.scheduling_strategies import NodeAffinitySchedulingStrategy

NODE_CPUS = 2
STORE_BYTES = 150 * 1024 ** 2
GET_DEADLINE_S = 120
# What a call without retries may raise when its process, node or owner is killed.
DOCUMENTED = (exceptions.RayActorError, exceptions.WorkerCrashedError,
              exceptions.ObjectLostError, exceptions.NodeDiedError,
              exceptions.LocalRayletDiedError)


def _mark(runs_dir, name):
    """One line per execution, so retries can be counted afterwards."""
    with open(os.path.join(runs_dir, f"{os.getpid()}.runs"), "a") as f:
        f.write(name + "\n")


@ray.remote(max_retries=-1)
def square(runs_dir, i, nap):
    _mark(runs_dir, f"square-{i}")
    time.sleep(nap)
    return i * i


@ray.remote(max_retries=0)
def fragile(runs_dir, i, nap):
    _mark(runs_dir, f"fragile-{i}")
    time.sleep(nap)
    return -i


@ray.remote(max_retries=-1, num_cpus=0.5)
def parent(runs_dir, i, n):
    _mark(runs_dir, f"parent-{i}")
    return sum(ray.get([square.remote(runs_dir, i * 100 + k, 0.005) for k in range(n)],
                       timeout=GET_DEADLINE_S))


@ray.remote(max_retries=-1)
def produce(runs_dir, i):
    _mark(runs_dir, f"produce-{i}")
    return np.full(1024 ** 2 // 8, i, dtype=np.int64)


@ray.remote(max_retries=-1)
def consume(runs_dir, i, array):
    _mark(runs_dir, f"consume-{i}")
    return int(array[0]) * len(array)


@ray.remote(num_cpus=0)
class Doubler:
    def double(self, x):
        time.sleep(0.002)
        return 2 * x

    def pid(self):
        return os.getpid()


class Load:
    def __init__(self, runs_dir, rng):
        self.runs_dir = runs_dir
        self.rng = rng
        self.outcomes = collections.Counter()
        self.errors = collections.Counter()
        self.durable = Doubler.options(max_restarts=-1, max_task_retries=-1).remote()
        self.fragile_actor = None
        self.rounds = 0

    def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.one_round()
            self.rounds += 1

    def one_round(self) -> None:
        rng, runs = self.rng, self.runs_dir
        base = self.rounds * 1000
        strict = {}      # ref -> expected value: must come back
        lenient = {}     # ref -> expected value: or a documented error
        for k in range(16):
            strict[square.remote(runs, base + k, rng.uniform(0, 0.03))] = (base + k) ** 2
        for k in range(4):
            lenient[fragile.remote(runs, base + k, rng.uniform(0, 0.03))] = -(base + k)
        for k in range(2):
            i = base + k
            strict[parent.remote(runs, i, 5)] = sum((i * 100 + j) ** 2 for j in range(5))
        for k, (src, dst) in enumerate(self._node_pairs()):
            i = base + k
            array = produce.options(scheduling_strategy=src).remote(runs, i)
            strict[consume.options(scheduling_strategy=dst).remote(runs, i, array)] = \
                i * (1024 ** 2 // 8)
        for k in range(8):
            strict[self.durable.double.remote(base + k)] = 2 * (base + k)
        actor = self._fragile_actor()
        for k in range(4):
            lenient[actor.double.remote(base + k)] = 2 * (base + k)
        self._collect(strict, lenient)

    def _node_pairs(self):
        """Two (producer, consumer) strategies that put the two ends on different worker
        nodes when both are alive (soft: a dead node's tasks run elsewhere)."""
        nodes = sorted(n["NodeID"] for n in ray.nodes()
                       if n["Alive"] and n["Resources"].get("worker_node"))
        if len(nodes) < 2:
            return [(None, None)]
        a, b = NodeAffinitySchedulingStrategy(nodes[0], soft=True), \
            NodeAffinitySchedulingStrategy(nodes[1], soft=True)
        return [(a, b), (b, a)]

    def _fragile_actor(self):
        """One restart, no call retries; a new one once it is dead."""
        if self.fragile_actor is None:
            self.fragile_actor = Doubler.options(max_restarts=1, max_task_retries=0).remote()
            self.outcomes["fragile actors made"] += 1
        return self.fragile_actor

    def _collect(self, strict, lenient) -> None:
        for ref, expected in strict.items():
            value = ray.get(ref, timeout=GET_DEADLINE_S)   # GetTimeoutError: a hang
            assert value == expected, f"{ref}: got {value!r}, expected {expected!r}"
            self.outcomes["strict ok"] += 1
        for ref, expected in lenient.items():
            try:
                value = ray.get(ref, timeout=GET_DEADLINE_S)
            except exceptions.GetTimeoutError:
                raise
            except DOCUMENTED as e:
                self.errors[type(e).__name__] += 1
                if isinstance(e, exceptions.ActorDiedError):
                    self.fragile_actor = None
                continue
            assert value == expected, f"{ref}: got {value!r}, expected {expected!r}"
            self.outcomes["lenient ok"] += 1

    def executions(self):
        """(distinct tasks run, executions): the difference is retries."""
        names = []
        for entry in os.listdir(self.runs_dir):
            with open(os.path.join(self.runs_dir, entry)) as f:
                names += f.read().split()
        return len(set(names)), len(names)
