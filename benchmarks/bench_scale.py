"""The scale envelope (issue 17): Ray's published limits, ray_core beside Ray 2.60.

`python -m benchmarks.run scale` (on demand: it takes many minutes). Each row of
benchmarks/scale_rows.py runs in a fresh process per backend, ray_core then Ray (from
`make bench-vs-ray`'s virtualenv) one after the other, so both meet the same machine
within minutes. SCALE_FACTOR (environment, default 1) shrinks every count for a quick
try; RAY_SCALE_FACTOR (default SCALE_FACTOR) runs Ray's side smaller where Ray at full
size would take the machine for itself (Ray queues a million tasks in ~8 GB of driver
memory and runs them for ~15 minutes here): rows are then matched by position and only
the per-item figures (rates, bytes per task) compare. The reference column is Ray's figure; for rows measured in seconds, bytes or MB
lower is better, so there the ratio printed reads the other way (below 1 is better).
Peak RSS per kind of process is printed after the table.
"""
import json
import os
import subprocess
import sys

from benchmarks.bench_vs_ray import ROOT, ensure_ray_venv

SCRIPT = os.path.join(ROOT, "benchmarks", "scale_rows.py")
ROWS = ["queued_tasks", "many_args", "many_returns", "get_many", "wait_many", "many_nodes",
        "broadcast", "big_args", "placement_groups", "actors", "spill", "cpu_bound"]
ROW_TIMEOUT_S = 1800


def _measure(python: str, backend: str, row: str, scale: float):
    env = dict(os.environ)
    if backend == "ray":
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = ROOT
    try:
        done = subprocess.run([python, SCRIPT, row, "--backend", backend, "--scale", str(scale)],
                              env=env, cwd="/tmp", capture_output=True, text=True,
                              timeout=ROW_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"{backend} {row}: over {ROW_TIMEOUT_S}s"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return None, f"{backend} {row}: {tail}"
    return json.loads(lines[-1]), None


def run():
    scale = float(os.environ.get("SCALE_FACTOR", "1"))
    ray_scale = float(os.environ.get("RAY_SCALE_FACTOR", str(scale)))
    try:
        ray_python = ensure_ray_venv()
    except Exception as e:  # noqa: BLE001 - no network or no wheel: ray_core alone
        print(f"Ray unavailable ({e}); ray_core figures only", file=sys.stderr)
        ray_python = None
    rows, notes = [], []
    for row in ROWS:
        core, error = _measure(sys.executable, "ray_core", row, scale)
        ray_result, ray_error = (_measure(ray_python, "ray", row, ray_scale) if ray_python
                                 else (None, None))
        for error_text in (error, ray_error):
            if error_text:
                notes.append(error_text)
        if core is None:
            continue
        theirs = [value for _, value, _ in (ray_result or {}).get("rows", [])]
        for index, (name, value, unit) in enumerate(core["rows"]):
            rows.append((name, value, unit, theirs[index] if index < len(theirs) else None,
                         unit))
        notes.append(f"{row} peak RSS MB: ray_core {core['peak_rss_mb']}"
                     + (f"; ray {ray_result['peak_rss_mb']}" if ray_result else ""))
        if core.get("details"):
            notes.append(f"{row} details: ray_core {core['details']}"
                         + (f"; ray {ray_result.get('details')}" if ray_result else ""))
    for note in notes:
        print(note, file=sys.stderr)
    return rows
