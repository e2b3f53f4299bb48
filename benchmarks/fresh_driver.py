"""Run a benchmark's driver script as a fresh process with its own head node in its own
temp dir (nothing shared with the caller or an earlier run), and stop every process it
left, whatever happens."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_driver(code: str, *args, **env_vars) -> dict:
    """Run `code` with argv [temp_dir, *args] under `env_vars`; the JSON it printed after
    "RESULT "."""
    temp_dir = tempfile.mkdtemp(prefix="rcb_", dir="/tmp")
    env = dict(os.environ, **env_vars)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("RAY_CORE_ADDRESS", "RAY_CORE_TEMP_DIR"):
        env.pop(name, None)
    try:
        out = subprocess.run([sys.executable, "-c", code, temp_dir, *map(str, args)],
                             check=True, capture_output=True, text=True, env=env,
                             cwd=ROOT).stdout
    finally:
        subprocess.run([sys.executable, "-m", "ray_core", "stop", "--force", "--temp-dir",
                        temp_dir], capture_output=True, env=env)
        shutil.rmtree(temp_dir, ignore_errors=True)
    return json.loads(out.split("RESULT ", 1)[1])
