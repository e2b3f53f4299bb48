"""`make bench-vs-ray`: the ray_core microbenchmark rows beside Ray 2.60 itself, same run.

Ray goes into a virtualenv of its own (`.bench-venv`, made on first use and reused;
never the project's environment). Both backends run the same module
(ray_core/_private/microbenchmark.py, with --backend) one after the other, each on a
fresh 2-CPU head node; the table prints both figures and ray_core's ratio (for latency
rows, Ray's time over ray_core's, so above 1 is better everywhere). A row that fails
prints its error instead of a number.
"""
import json
import os
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".bench-venv")
RAY_VERSION = "2.60.0"
MODULE = os.path.join(ROOT, "ray_core", "_private", "microbenchmark.py")


def ensure_ray_venv() -> str:
    """The venv's python, with Ray and what the benchmark scripts import beside it."""
    python = os.path.join(VENV, "bin", "python")
    # psutil before ray: Ray puts a copy of its own on sys.path when imported.
    check = [python, "-c", f"import numpy, psutil, ray, sys; "
                           f"sys.exit(ray.__version__ != {RAY_VERSION!r})"]
    if os.path.exists(python) and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"installing ray=={RAY_VERSION} into {VENV} (once)...", file=sys.stderr, flush=True)
    if not os.path.exists(python):
        venv.create(VENV, with_pip=True)
    subprocess.run([python, "-m", "pip", "install", "-q", f"ray=={RAY_VERSION}", "numpy",
                    "psutil"], check=True)
    return python


def measure(python: str, backend: str, quick: bool):
    env = dict(os.environ)
    if backend == "ray":
        env.pop("PYTHONPATH", None)      # Ray's own environment only
    else:
        env["PYTHONPATH"] = ROOT
    cmd = [python, MODULE, "--json", "--backend", backend] + (["--quick"] if quick else [])
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd="/tmp")
    if result.returncode != 0:
        return None, result.stderr.strip().splitlines()[-1] if result.stderr else "failed"
    return {row[0]: row for row in json.loads(result.stdout.strip().splitlines()[-1])}, None


def main(argv) -> int:
    quick = "--quick" in argv
    try:
        ray_python = ensure_ray_venv()
        ray_rows, ray_error = measure(ray_python, "ray", quick)
    except Exception as e:  # no network, no wheel for this Python...
        ray_rows, ray_error = None, f"{type(e).__name__}: {e}"
    core_rows, core_error = measure(sys.executable, "ray_core", quick)
    names = list((core_rows or ray_rows or {}).keys())
    print(f"{'row':48} {'ray 2.60':>14} {'ray_core':>14} {'unit':10} {'ratio':>7}")
    for name in names:
        ray_row = (ray_rows or {}).get(name)
        core_row = (core_rows or {}).get(name)
        unit = (core_row or ray_row)[2]
        ray_text = f"{ray_row[1]:14,.2f}" if ray_row else f"{'error':>14}"
        core_text = f"{core_row[1]:14,.2f}" if core_row else f"{'error':>14}"
        ratio = ""
        if ray_row and core_row and ray_row[1] and core_row[1]:
            better_lower = unit in ("ms", "s")
            ratio = f"{(ray_row[1] / core_row[1] if better_lower else core_row[1] / ray_row[1]):7.2f}"
        print(f"{name:48} {ray_text} {core_text} {unit:10} {ratio:>7}")
    for who, error in (("ray", ray_error), ("ray_core", core_error)):
        if error:
            print(f"{who}: {error}")
    return 0 if core_rows else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
