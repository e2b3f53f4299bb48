"""What an operator waits for: starting and stopping a node, a driver's first task, and
a worker's print reaching the driver (Ray is known for slow starts; this keeps ours in
view). The reference of each row is a bare `python -c "import ray_core"` measured in
the same run: the interpreter and import cost every process of a node pays at least.
The last row, a new driver's first call after the GCS was SIGKILLed, stands beside the
same driver's first call with no kill.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPEATS = 3

FIRST_TASK = """
import sys, time
t0 = time.monotonic()
import ray_core as ray
ray.init(num_cpus=1, _temp_dir=sys.argv[1])

@ray.remote
def hello():
    print("hello from a worker", flush=True)
    return 1

ray.get(hello.remote())
first = time.monotonic() - t0
ray.shutdown()
print("FIRST", first, "TOTAL", time.monotonic() - t0)
"""


# A new driver of a CLI-started cluster: attach, find the detached actor, call it.
USE_SERVICE = """
import sys, time, ray_core as ray
t0 = time.monotonic()
ray.init(address="auto", _temp_dir=sys.argv[1])
while True:
    try:
        svc = ray.get_actor("svc", namespace="bench")
        break
    except ValueError:
        time.sleep(0.01)
assert ray.get(svc.ping.remote(), timeout=60) == "pong"
print("CALLED", time.monotonic() - t0)
"""

MAKE_SERVICE = """
import sys, ray_core as ray
ray.init(address="auto", _temp_dir=sys.argv[1])

@ray.remote
class Service:
    def ping(self):
        return "pong"

ray.get(Service.options(name="svc", namespace="bench", lifetime="detached").remote()
        .ping.remote())
"""


def _gcs_pid(temp_dir: str) -> int:
    from ray_core.node import read_records
    [(_path, record)] = read_records(temp_dir)
    return next(e["pid"] for e in record["processes"] if e["name"] == "gcs_server")


def _recovery(cli) -> tuple:
    """(a new driver's first call to a detached actor on a Redis head, the same counted
    from a SIGKILL of the GCS): what a GCS crash costs a user with the head's supervisor.
    Every kill counts as a first crash (gcs_supervisor_stable_s=0: no back-off)."""
    temp_dir = tempfile.mkdtemp(prefix="rcb_", dir="/tmp")
    env = dict(_env(), RAY_CORE_GCS_SUPERVISOR_STABLE_S="0")
    try:
        subprocess.run(cli + ["start", "--head", "--port", "0", "--num-cpus", "1", "--storage",
                              "redis", "--temp-dir", temp_dir], check=True, capture_output=True,
                       env=env)
        subprocess.run([sys.executable, "-c", MAKE_SERVICE, temp_dir], check=True,
                       capture_output=True, env=_env())

        def call() -> float:
            out = subprocess.run([sys.executable, "-c", USE_SERVICE, temp_dir], check=True,
                                 capture_output=True, text=True, env=_env()).stdout
            return float(out.split()[-1])
        plain = min(call() for _ in range(REPEATS))
        after_kill = []
        for _ in range(REPEATS):
            killed_at = time.monotonic()
            os.kill(_gcs_pid(temp_dir), signal.SIGKILL)
            call()
            after_kill.append(time.monotonic() - killed_at)
        return plain, min(after_kill)
    finally:
        subprocess.run(cli + ["stop", "--force", "--temp-dir", temp_dir], capture_output=True,
                       env=_env())
        shutil.rmtree(temp_dir, ignore_errors=True)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("RAY_CORE_ADDRESS", None)
    return env


def _timed(command) -> float:
    start = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, env=_env(), cwd=ROOT)
    return time.monotonic() - start


def run():
    cli = [sys.executable, "-m", "ray_core"]
    imports = min(_timed([sys.executable, "-c", "import ray_core"]) for _ in range(REPEATS))
    starts, stops, firsts, totals = [], [], [], []
    for _ in range(REPEATS):
        temp_dir = tempfile.mkdtemp(prefix="rcb_", dir="/tmp")
        try:
            starts.append(_timed(cli + ["start", "--head", "--port", "0", "--num-cpus", "1",
                                        "--temp-dir", temp_dir]))
            stops.append(_timed(cli + ["stop", "--temp-dir", temp_dir]))
            out = subprocess.run([sys.executable, "-c", FIRST_TASK, temp_dir], check=True,
                                 capture_output=True, text=True, env=_env()).stdout
            fields = out.split()
            firsts.append(float(fields[fields.index("FIRST") + 1]))
            totals.append(float(fields[fields.index("TOTAL") + 1]))
        finally:
            subprocess.run(cli + ["stop", "--force", "--temp-dir", temp_dir],
                           capture_output=True, env=_env())
            shutil.rmtree(temp_dir, ignore_errors=True)
    plain, after_kill = _recovery(cli)
    ms = 1000.0
    return [
        ("`ray_core start --head` (GCS+raylet+store)", min(starts) * ms, "ms",
         imports * ms, "ms import"),
        ("`ray_core stop` of that node", min(stops) * ms, "ms", imports * ms, "ms import"),
        ("driver: import + init() + first task result", min(firsts) * ms, "ms",
         imports * ms, "ms import"),
        ("driver: whole script incl. shutdown()", min(totals) * ms, "ms", imports * ms,
         "ms import"),
        ("GCS SIGKILL (Redis head) to a new driver's first actor call", after_kill * ms, "ms",
         plain * ms, "ms no kill"),
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
