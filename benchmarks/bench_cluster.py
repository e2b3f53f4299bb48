"""What an operator waits for: starting and stopping a node, a driver's first task, and
a worker's print reaching the driver (Ray is known for slow starts; this keeps ours in
view). The reference of each row is a bare `python -c "import ray_core"` measured in
the same run: the interpreter and import cost every process of a node pays at least.
"""
import os
import shutil
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
    ms = 1000.0
    return [
        ("`ray_core start --head` (GCS+raylet+store)", min(starts) * ms, "ms",
         imports * ms, "ms import"),
        ("`ray_core stop` of that node", min(stops) * ms, "ms", imports * ms, "ms import"),
        ("driver: import + init() + first task result", min(firsts) * ms, "ms",
         imports * ms, "ms import"),
        ("driver: whole script incl. shutdown()", min(totals) * ms, "ms", imports * ms,
         "ms import"),
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
