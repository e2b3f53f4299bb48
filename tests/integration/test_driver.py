"""Drivers as users run them: a script in its own process, init/shutdown, connecting."""
import os
import subprocess
import sys
import textwrap

import pytest

import ray_core as ray
from tests.integration.conftest import ROOT, run_script

# A hang fails this file's test fast instead of eating the suite's budget.
pytestmark = pytest.mark.timeout(120)


def test_driver_script_in_subprocess_leaves_nothing_behind(own_temp_dir):
    shm_before = set(os.listdir("/dev/shm"))
    result = run_script(f"""
        import os, psutil, time
        import ray_core as ray

        ctx = ray.init(num_cpus=2, _temp_dir={own_temp_dir!r})
        assert ray.is_initialized() and ctx["node_id"] and os.path.isdir(ctx["session_dir"])

        @ray.remote
        def pid(x):
            print("working on", x)
            return os.getpid()

        pids = set(ray.get([pid.remote(i) for i in range(20)]))
        node_pids = [c.pid for c in psutil.Process().children(recursive=True)]
        try:
            ray.init()
        except RuntimeError as e:
            print("REINIT", "twice" in str(e))
        ray.init(ignore_reinit_error=True)
        ray.shutdown()
        assert not ray.is_initialized()
        time.sleep(0.2)
        alive = [p for p in list(pids) + node_pids if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        print("WORKERS", len(pids), "ALIVE", alive)
    """)
    assert result.returncode == 0, result.stderr
    assert "REINIT True" in result.stdout
    assert "ALIVE []" in result.stdout
    assert "working on" in result.stdout and "(pid=" in result.stdout
    leaked = set(os.listdir("/dev/shm")) - shm_before
    assert not [name for name in leaked if "ray" in name or "plasma" in name]


def test_second_driver_connects_with_address_auto(cluster, short_temp_dir):
    @ray.remote
    def square(x):
        return x * x

    result = run_script(f"""
        import ray_core as ray
        ctx = ray.init(address="auto", _temp_dir={short_temp_dir!r})
        print("SAME", ctx["node_id"] == {cluster["node_id"]!r})

        @ray.remote
        def square(x):
            return x * x

        print("VALUES", ray.get([square.remote(i) for i in range(5)]))
        print("JOB", ray.get_runtime_context().get_job_id())
        ray.shutdown()
    """)
    assert result.returncode == 0, result.stderr
    assert "SAME True" in result.stdout and "VALUES [0, 1, 4, 9, 16]" in result.stdout
    other_job = result.stdout.split("JOB ")[1].split()[0]
    assert other_job != ray.get_runtime_context().get_job_id()
    # The first driver's cluster is untouched by the second driver's shutdown.
    assert ray.get(square.remote(7)) == 49


def test_connecting_by_host_port(cluster, short_temp_dir):
    result = run_script(f"""
        import ray_core as ray
        ray.init(address={cluster["gcs_address"]!r}, _temp_dir={short_temp_dir!r})
        print("CPUS", ray.cluster_resources()["CPU"])
        ray.shutdown()
    """)
    assert result.returncode == 0, result.stderr
    assert "CPUS 2.0" in result.stdout



def test_init_shutdown_init_in_one_process(own_temp_dir):
    result = run_script(f"""
        import ray_core as ray

        @ray.remote
        def f(x):
            return x + 1

        for round in range(2):
            ray.init(num_cpus=1, _temp_dir={own_temp_dir!r})
            print("ROUND", round, ray.get(f.remote(round)), ray.get(ray.put(round)))
            ray.shutdown()
    """)
    assert result.returncode == 0, result.stderr
    assert "ROUND 0 1 0" in result.stdout and "ROUND 1 2 1" in result.stdout


def test_functions_from_the_scripts_own_modules(own_temp_dir):
    project = os.path.join(own_temp_dir, "project")
    os.makedirs(project)
    with open(os.path.join(project, "helper_mod.py"), "w") as f:
        f.write("import ray_core as ray\n\n\n@ray.remote\ndef tag(x):\n    return ('helper', x)\n")
    with open(os.path.join(project, "main.py"), "w") as f:
        f.write(textwrap.dedent(f"""
            import ray_core as ray
            from helper_mod import tag
            ray.init(num_cpus=1, _temp_dir={own_temp_dir!r})
            print("RESULT", ray.get(tag.remote(3)))
            ray.shutdown()
        """))
    result = subprocess.run([sys.executable, os.path.join(project, "main.py")], cwd="/",
                            env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "RESULT ('helper', 3)" in result.stdout


def _installed_env():
    """The environment of a user's shell: ray_core comes from its install, not PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([sys.executable, "-c", "import ray_core; print(ray_core.__file__)"],
                           cwd="/", env=env, capture_output=True, text=True)
    if where.returncode != 0 or not where.stdout.startswith(ROOT + os.sep):
        pytest.skip(f"ray_core is not installed from this checkout (make build): "
                    f"{where.stdout.strip() or where.stderr.strip()[-200:]}")
    return env


def test_driver_in_the_temp_roots_parent_imports_the_package(own_temp_dir):
    """`cd /tmp && python script.py` beside /tmp/ray_core (the default temp root): the
    folder must not shadow the installed package, in the driver or its workers."""
    temp_root = os.path.join(own_temp_dir, "ray_core")
    os.makedirs(os.path.join(temp_root, "nodes"))
    script = os.path.join(own_temp_dir, "script.py")
    with open(script, "w") as f:
        f.write(textwrap.dedent(f"""
            import ray_core as ray
            ray.init(num_cpus=1, _temp_dir={temp_root!r})

            @ray.remote
            def where():
                import ray_core
                return ray_core.__file__, ray.get_runtime_context().get_job_id()

            path, job = ray.get(where.remote(), timeout=60)
            print("DRIVER", ray.__file__)
            print("WORKER", path)
            ray.shutdown()
        """))
    result = subprocess.run([sys.executable, "script.py"], cwd=own_temp_dir,
                            env=_installed_env(), capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"DRIVER {ROOT}" in result.stdout and f"WORKER {ROOT}" in result.stdout
