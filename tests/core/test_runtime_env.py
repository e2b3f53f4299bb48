"""runtime_env on the submitting side: checks, packages (content-named, uploaded once),
and how a task's env merges over the one it inherits."""
import io
import os
import zipfile

import pytest

from ray_common.protocol import common_pb2
from ray_core._private import runtime_env


class FakeKV:
    def __init__(self):
        self.data = {}
        self.puts = 0

    def put(self, key, value):
        self.puts += 1
        self.data[key] = value

    def exists(self, key):
        return key in self.data


def _tree(root, files):
    for relative, text in files.items():
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


def test_packages_are_named_by_content_uploaded_once_and_honour_excludes(tmp_path):
    _tree(str(tmp_path / "a"), {"m.py": "x = 1", "skip.log": "no", "cache/c": "no",
                                "sub/keep.txt": "yes"})
    kv = FakeKV()
    packager = runtime_env.Packager(kv.put, kv.exists)
    env = {"working_dir": str(tmp_path / "a"), "excludes": ["*.log", "cache/"]}
    first = packager.to_proto(env)
    assert runtime_env.Packager(kv.put, kv.exists).to_proto(env) == first   # same content
    assert kv.puts == 1 and first.working_dir_uri.startswith("gcs://pkg_")
    names = zipfile.ZipFile(io.BytesIO(kv.data[first.working_dir_uri[6:].encode()])).namelist()
    assert sorted(names) == ["m.py", "sub/keep.txt"]


def test_a_module_folder_keeps_its_name(tmp_path):
    _tree(str(tmp_path / "pkg"), {"__init__.py": ""})
    kv = FakeKV()
    uri = runtime_env.Packager(kv.put, kv.exists).to_proto(
        {"py_modules": [str(tmp_path / "pkg")]}).py_modules_uris[0]
    assert zipfile.ZipFile(io.BytesIO(kv.data[uri[6:].encode()])).namelist() == \
        ["pkg/__init__.py"]


def test_pip_forms(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("six==1.0  # pinned\n\nidna\n")
    packager = runtime_env.Packager(None, None)
    for pip in (["six==1.0", "idna"], str(requirements), {"packages": ["six==1.0", "idna"]}):
        assert list(packager.to_proto({"pip": pip}).pip_packages) == ["six==1.0", "idna"]


@pytest.mark.parametrize("env,error,match", [
    ({"conda": "x"}, ValueError, "not supported"),
    ({"working_dir": "/no/such/dir"}, ValueError, "not a local folder"),
    ({"env_vars": {"A": 1}}, TypeError, "env_vars"),
    ({"pip": 5}, TypeError, "pip"),
    ({"excludes": "*.log"}, TypeError, "excludes"),
    ({"py_modules": "mod"}, TypeError, "py_modules"),
])
def test_bad_runtime_envs_name_what_is_wrong(env, error, match):
    with pytest.raises(error, match=match):
        runtime_env.validate(env)


def test_a_task_env_overrides_the_inherited_one_field_by_field():
    base = common_pb2.RuntimeEnv(working_dir_uri="gcs://a", pip_packages=["x"])
    base.env_vars.update({"A": "1", "B": "1"})
    task = common_pb2.RuntimeEnv(py_modules_uris=["gcs://m"])
    task.env_vars.update({"B": "2"})
    merged = runtime_env.merged(base, task)
    assert dict(merged.env_vars) == {"A": "1", "B": "2"}
    assert (merged.working_dir_uri, list(merged.py_modules_uris), list(merged.pip_packages)) \
        == ("gcs://a", ["gcs://m"], ["x"])
