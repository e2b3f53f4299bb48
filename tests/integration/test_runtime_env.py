"""runtime_env beyond env_vars (issue 15): working_dir, py_modules, excludes, pip, per
job and per task/actor, with workers pooled per env, as Ray has them."""
import os
import sys
import textwrap

import pytest

import ray_core as ray
from tests.integration.conftest import run_script, shut_down_cleanly

GET_TIMEOUT = 60
PIP_TIMEOUT = 300          # a first pip install downloads from the package index
PIP_PACKAGE = "termcolor==3.3.0"   # small, pure Python, not installed on the machine


@pytest.fixture(scope="module")
def cluster(short_temp_dir):
    with shut_down_cleanly():
        yield ray.init(num_cpus=2, _temp_dir=short_temp_dir)


def _write(folder, files):
    for relative, text in files.items():
        path = os.path.join(folder, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))


@pytest.fixture
def project(tmp_path):
    """A working dir with a module, a data file, and files `excludes` leaves out."""
    folder = str(tmp_path / "project")
    _write(folder, {"helper_mod.py": "def value():\n    return 41\n",
                    "data.txt": "from the working dir",
                    "big.bin": "left out", "logs/run.log": "left out too"})
    return folder


@ray.remote
def look_around():
    import helper_mod
    with open("data.txt") as f:
        data = f.read()
    return (helper_mod.value(), data, os.path.exists("big.bin"), os.path.exists("logs"),
            os.getpid())


@ray.remote
def where_am_i():
    return os.getcwd(), os.getpid()


def test_working_dir_is_the_cwd_and_on_sys_path(cluster, project):
    env = {"working_dir": project, "excludes": ["big.bin", "logs/"]}
    value, data, big, logs, pid = ray.get(
        look_around.options(runtime_env=env).remote(), timeout=GET_TIMEOUT)
    assert (value, data, big, logs) == (41, "from the working dir", False, False)
    # Workers are pooled per env: the env's worker serves it again, a plain task runs
    # elsewhere, in the raylet's folder.
    assert ray.get(look_around.options(runtime_env=env).remote(),
                   timeout=GET_TIMEOUT)[4] == pid
    cwd, plain_pid = ray.get(where_am_i.remote(), timeout=GET_TIMEOUT)
    assert plain_pid != pid and not os.path.exists(os.path.join(cwd, "helper_mod.py"))


def test_py_modules_and_an_actor_with_a_runtime_env(cluster, tmp_path):
    modules = str(tmp_path / "mods")
    _write(modules, {"shapes/__init__.py": "SIDES = {'triangle': 3}\n",
                     "single.py": "NAME = 'single file module'\n"})

    @ray.remote
    class Geometry:
        def sides(self, shape):
            import shapes
            import single
            return shapes.SIDES[shape], single.NAME

    actor = Geometry.options(runtime_env={"py_modules": [
        os.path.join(modules, "shapes"), os.path.join(modules, "single.py")]}).remote()
    assert ray.get(actor.sides.remote("triangle"), timeout=GET_TIMEOUT) == \
        (3, "single file module")
    ray.kill(actor)


def test_bad_runtime_env_is_refused_at_remote(cluster, tmp_path):
    with pytest.raises(ValueError, match="not a local folder"):
        where_am_i.options(runtime_env={"working_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="conda"):
        where_am_i.options(runtime_env={"conda": "env"})
    with pytest.raises(TypeError, match="pip"):
        where_am_i.options(runtime_env={"pip": 3})


@ray.remote
def colored():
    import termcolor
    return termcolor.__file__, sys.prefix


def test_pip_installs_into_a_virtualenv_cached_per_node(cluster):
    with pytest.raises(ImportError):
        import termcolor  # noqa: F401  (the driver's own environment lacks it)
    env = {"pip": [PIP_PACKAGE]}
    path, prefix = ray.get(colored.options(runtime_env=env).remote(), timeout=PIP_TIMEOUT)
    assert path.startswith(prefix) and "runtime_resources" in prefix
    ready = os.path.join(os.path.dirname(prefix), "ready")
    made = os.stat(ready).st_mtime_ns
    # Another task and an actor of the same spec use the same virtualenv, not a new one.
    assert ray.get(colored.options(runtime_env=env).remote(), timeout=GET_TIMEOUT)[1] == prefix
    assert os.stat(ready).st_mtime_ns == made


def test_failed_pip_install_raises_runtime_env_setup_error(cluster):
    env = {"pip": ["ray-core-no-such-package-15==0.0.1"]}
    with pytest.raises(ray.exceptions.RuntimeEnvSetupError,
                       match="ray-core-no-such-package-15"):
        ray.get(where_am_i.options(runtime_env=env).remote(), timeout=PIP_TIMEOUT)
    assert ray.get(where_am_i.remote(), timeout=GET_TIMEOUT)    # the node serves on

    @ray.remote
    class NeedsPackage:
        def ping(self):
            return "pong"

    actor = NeedsPackage.options(runtime_env=env).remote()
    with pytest.raises(ray.exceptions.RuntimeEnvSetupError, match="ray-core-no-such-package"):
        ray.get(actor.ping.remote(), timeout=PIP_TIMEOUT)


JOB_DRIVER = """
import os, sys, ray_core as ray
ray.init(num_cpus=2, _temp_dir=sys.argv[1],
         runtime_env={"working_dir": sys.argv[2], "env_vars": {"FROM_JOB": "yes"}})

@ray.remote
def inner():
    import helper_mod
    return helper_mod.value(), os.environ.get("FROM_JOB")

@ray.remote
def outer():
    return ray.get(inner.remote()), ray.get_runtime_context().runtime_env["env_vars"]

print("RESULT", ray.get(outer.remote(), timeout=60))
print("OVERRIDE", ray.get(inner.options(runtime_env={"env_vars": {"FROM_JOB": "task"}})
                          .remote(), timeout=60))
ray.shutdown()
"""


def test_job_runtime_env_reaches_nested_tasks(own_temp_dir, project):
    result = run_script(JOB_DRIVER, timeout=180, args=[own_temp_dir, project])
    assert result.returncode == 0, result.stderr
    assert "RESULT ((41, 'yes'), {'FROM_JOB': 'yes'})" in result.stdout, result.stdout
    assert "OVERRIDE (41, 'task')" in result.stdout, result.stdout
