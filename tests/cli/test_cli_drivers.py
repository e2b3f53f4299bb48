"""Drivers against a cluster started with `ray_core start --head` (issue 15): what
Ray programs do across drivers, each run as its own interpreter."""
from tests.cli.conftest import cli, run_driver

CREATE = """
import sys, ray_core as ray
ray.init(address="auto", _temp_dir=sys.argv[1], namespace="shared")

@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n

counter = Counter.options(name="counter", lifetime="detached").remote()
print("FIRST", ray.get(counter.add.remote(1), timeout=60))
"""

LOOK_UP = """
import sys, ray_core as ray
ray.init(address="auto", _temp_dir=sys.argv[1], namespace="shared")
counter = ray.get_actor("counter")
print("SECOND", ray.get(counter.add.remote(10), timeout=60))
ray.kill(counter)
"""

LOCAL = """
import sys, ray_core as ray
context = ray.init(address="local", num_cpus=1, _temp_dir=sys.argv[1])
print("LOCAL", ray.cluster_resources().get("CPU"), context.gcs_address)
ray.shutdown()
"""


def test_detached_actor_outlives_its_driver_and_answers_the_next(temp_dir):
    cli("start", "--head", "--num-cpus", "2", temp_dir=temp_dir)
    first = run_driver(CREATE, temp_dir)
    assert first.returncode == 0 and "FIRST 1" in first.stdout, first.stderr
    second = run_driver(LOOK_UP, temp_dir)
    assert second.returncode == 0 and "SECOND 11" in second.stdout, second.stderr
    cli("stop", temp_dir=temp_dir)


def test_init_local_starts_a_new_cluster_beside_the_cli_one(temp_dir):
    out = cli("start", "--head", "--num-cpus", "2", temp_dir=temp_dir).stdout
    local = run_driver(LOCAL, temp_dir)
    assert local.returncode == 0, local.stderr
    _, cpus, address = next(l for l in local.stdout.splitlines()
                            if l.startswith("LOCAL")).split()
    assert float(cpus) == 1.0 and address not in out
    cli("stop", temp_dir=temp_dir)
