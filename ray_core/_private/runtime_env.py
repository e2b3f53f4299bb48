"""runtime_env on the submitting side: check it, package it, merge it, as Ray does.

A runtime_env dict (init(runtime_env=...) for the job, .options(runtime_env=...) for a
task or actor) becomes the RuntimeEnv message its TaskSpec carries:
- env_vars travel as they are (applied per task, on any worker of the job);
- working_dir and py_modules name local folders (or .py files, or .zip files): each is
  zipped (minus `excludes`, gitignore-style patterns) deterministically, named by its
  content hash and uploaded once to the GCS KV; the spec carries its gcs:// URI, and each
  node unpacks it once (ray_raylet/runtime_envs.py);
- pip (a list, a requirements file, or {"packages": ...}) travels as the list of
  requirements; each node makes one virtualenv per distinct list.
A task's env overrides the env it inherits (the job's in a driver, the parent task's or
actor's in a worker) field by field, env_vars key by key. Packages are made once per
process per (folder, excludes).
"""
import hashlib
import io
import os
import threading
import types
import zipfile
from fnmatch import fnmatch
from typing import Any, Dict, List, Optional

from ray_common.config import config
from ray_common.protocol import common_pb2
from ray_raylet.runtime_envs import KV_NAMESPACE, URI_SCHEME

FIELDS = ("env_vars", "working_dir", "py_modules", "pip", "excludes", "config")
# Ray's RuntimeEnvConfig: accepted and checked; setup has no timeout here (a pip install
# ends or fails), is always eager, and its log goes to the raylet's log.
CONFIG_FIELDS = ("setup_timeout_seconds", "eager_install", "log_files")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)    # fixed, so one content always zips to one hash


def validate(value: Any) -> None:
    """TypeError/ValueError naming what is wrong with a runtime_env dict."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise TypeError(f"option runtime_env must be a dict, got {type(value).__name__}")
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        raise ValueError(f"runtime_env fields {unknown} are not supported; ray_core supports "
                         f"{', '.join(FIELDS)}")
    env_vars = value.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()):
        raise TypeError("runtime_env['env_vars'] must be a dict of str -> str")
    working_dir = value.get("working_dir")
    if working_dir is not None:
        if not isinstance(working_dir, str):
            raise TypeError(f"runtime_env['working_dir'] must be a str (a local folder, a "
                            f".zip file or a {URI_SCHEME} URI), got {type(working_dir).__name__}")
        _local_path(working_dir, "working_dir", allow_file=".zip")
    modules = value.get("py_modules")
    if modules is not None:
        if not isinstance(modules, (list, tuple)):
            raise TypeError("runtime_env['py_modules'] must be a list of folders, .py or .zip "
                            "files, or modules")
        for module in modules:
            _module_path(module)
    _pip_packages(value.get("pip"))
    excludes = value.get("excludes")
    if excludes is not None and (not isinstance(excludes, (list, tuple)) or
                                 not all(isinstance(e, str) for e in excludes)):
        raise TypeError("runtime_env['excludes'] must be a list of str patterns")
    _check_config(value.get("config"))


def _check_config(env_config) -> None:
    if env_config is None:
        return
    if not isinstance(env_config, dict):
        raise TypeError(f"runtime_env['config'] must be a dict or RuntimeEnvConfig, got "
                        f"{type(env_config).__name__}")
    unknown = sorted(set(env_config) - set(CONFIG_FIELDS))
    if unknown:
        raise ValueError(f"runtime_env['config'] fields {unknown} are unknown; it takes "
                         f"{', '.join(CONFIG_FIELDS)}")
    timeout = env_config.get("setup_timeout_seconds", -1)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or \
            (timeout <= 0 and timeout != -1):
        raise ValueError(f"runtime_env['config']['setup_timeout_seconds'] must be an int > 0 "
                         f"or -1, got {timeout!r}")
    if not isinstance(env_config.get("eager_install", True), bool):
        raise TypeError("runtime_env['config']['eager_install'] must be a bool")
    log_files = env_config.get("log_files", [])
    if not isinstance(log_files, list) or not all(isinstance(f, str) for f in log_files):
        raise TypeError("runtime_env['config']['log_files'] must be a list of str")


def _local_path(path: str, field: str, allow_file: str) -> Optional[str]:
    """The absolute local path of a field's value; None for a URI already uploaded."""
    if path.startswith(URI_SCHEME):
        return None
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(full) or (os.path.isfile(full) and
                               full.endswith(tuple(allow_file.split()))):
        return full
    raise ValueError(f"runtime_env['{field}'] {path!r} is not a local folder or "
                     f"{' or '.join(allow_file.split())} file (resolved: {full})")


def _module_path(module) -> Optional[str]:
    if isinstance(module, types.ModuleType):
        source = getattr(module, "__file__", None)
        if not source:
            raise ValueError(f"runtime_env['py_modules']: module {module.__name__} has no "
                             f"file to upload")
        return os.path.dirname(source) if os.path.basename(source) == "__init__.py" \
            else source
    if not isinstance(module, str):
        raise TypeError(f"runtime_env['py_modules'] entries must be paths or modules, got "
                        f"{type(module).__name__}")
    return _local_path(module, "py_modules", allow_file=".py .zip")


def _pip_packages(pip) -> List[str]:
    """Ray's forms of `pip`: a list, a requirements file's path, {"packages": ...}."""
    if pip is None:
        return []
    if isinstance(pip, dict):
        unknown = sorted(set(pip) - {"packages", "pip_check", "pip_version"})
        if unknown or "packages" not in pip:
            raise ValueError(f"runtime_env['pip'] as a dict needs 'packages' (and may have "
                             f"pip_check, pip_version), got {sorted(pip)}")
        pip = pip["packages"]
    if isinstance(pip, str):
        if not os.path.isfile(pip):
            raise ValueError(f"runtime_env['pip'] {pip!r} is not a requirements file (give a "
                             f"list of requirements, or the path of a requirements.txt)")
        with open(pip) as f:
            pip = [line.split("#", 1)[0].strip() for line in f]
    if not isinstance(pip, (list, tuple)) or not all(isinstance(p, str) for p in pip):
        raise TypeError("runtime_env['pip'] must be a list of requirement strings, a "
                        "requirements file's path, or {'packages': [...]}")
    return [p.strip() for p in pip if p.strip()]


class Packager:
    """Makes RuntimeEnv messages for one process, uploading each package once."""

    def __init__(self, kv_put, kv_exists):
        self._kv_put = kv_put          # blocking (key, value) -> _
        self._kv_exists = kv_exists    # blocking key -> bool
        self._uris: Dict[tuple, str] = {}
        self._lock = threading.Lock()

    def to_proto(self, runtime_env: Optional[dict]) -> common_pb2.RuntimeEnv:
        out = common_pb2.RuntimeEnv()
        if not runtime_env:
            return out
        excludes = tuple(runtime_env.get("excludes") or ())
        out.env_vars.update(runtime_env.get("env_vars") or {})
        if runtime_env.get("working_dir"):
            out.working_dir_uri = self._upload(runtime_env["working_dir"], excludes, False)
        for module in runtime_env.get("py_modules") or ():
            out.py_modules_uris.append(self._upload(module, excludes, True))
        out.pip_packages.extend(_pip_packages(runtime_env.get("pip")))
        return out

    def _upload(self, what, excludes: tuple, as_module: bool) -> str:
        path = _module_path(what) if as_module else _local_path(what, "working_dir", ".zip")
        if path is None:
            return what             # already a gcs:// URI
        key = (path, excludes, as_module)
        with self._lock:
            uri = self._uris.get(key)
            if uri is None:
                uri = self._uris[key] = self._make(path, excludes, as_module)
        return uri

    def _make(self, path: str, excludes: tuple, as_module: bool) -> str:
        if os.path.isfile(path) and path.endswith(".zip"):
            with open(path, "rb") as f:
                data = f.read()
            kind = "zip"
        else:
            data = _zip(path, excludes, as_module)
            kind = "pkg"
        if len(data) > config.runtime_env_max_package_bytes:
            raise ValueError(f"runtime_env package {path} is {len(data)} bytes zipped, more "
                             f"than runtime_env_max_package_bytes="
                             f"{config.runtime_env_max_package_bytes}; leave large files "
                             f"out with runtime_env['excludes']")
        name = f"{kind}_{hashlib.sha1(data).hexdigest()[:24]}.zip"
        if not self._kv_exists(name.encode()):
            self._kv_put(name.encode(), data)
        return URI_SCHEME + name


def _excluded(relative: str, patterns: tuple) -> bool:
    base = os.path.basename(relative)
    for pattern in patterns:
        pattern = pattern.strip("/")
        if relative == pattern or relative.startswith(pattern + "/") or \
                fnmatch(relative, pattern) or fnmatch(base, pattern):
            return True
    return False


def _zip(path: str, excludes: tuple, as_module: bool) -> bytes:
    """A folder (its contents; a module folder under its own name) or a .py file."""
    if os.path.isfile(path):
        files = [(path, os.path.basename(path))]
    else:
        prefix = os.path.basename(path.rstrip("/")) + "/" if as_module else ""
        files = []
        for root, dirs, names in os.walk(path):
            rel_root = os.path.relpath(root, path)
            rel_root = "" if rel_root == "." else rel_root + "/"
            dirs[:] = sorted(d for d in dirs if not _excluded(rel_root + d, excludes))
            for name in sorted(names):
                if not _excluded(rel_root + name, excludes):
                    files.append((os.path.join(root, name), prefix + rel_root + name))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for source, name in files:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = (os.stat(source).st_mode & 0xFFFF) << 16
            with open(source, "rb") as f:
                archive.writestr(info, f.read(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def merged(base: common_pb2.RuntimeEnv, task: common_pb2.RuntimeEnv) -> common_pb2.RuntimeEnv:
    """`task` over `base`: field by field, env_vars key by key (as Ray merges a task's
    runtime_env with the job's)."""
    out = common_pb2.RuntimeEnv()
    out.CopyFrom(base)
    out.env_vars.update(task.env_vars)
    if task.working_dir_uri:
        out.working_dir_uri = task.working_dir_uri
    if task.py_modules_uris:
        del out.py_modules_uris[:]
        out.py_modules_uris.extend(task.py_modules_uris)
    if task.pip_packages:
        del out.pip_packages[:]
        out.pip_packages.extend(task.pip_packages)
    return out


def to_dict(env: common_pb2.RuntimeEnv) -> Dict[str, Any]:
    """The runtime_env a task runs with, as get_runtime_context().runtime_env shows it."""
    out: Dict[str, Any] = {}
    if env.env_vars:
        out["env_vars"] = dict(env.env_vars)
    if env.working_dir_uri:
        out["working_dir"] = env.working_dir_uri
    if env.py_modules_uris:
        out["py_modules"] = list(env.py_modules_uris)
    if env.pip_packages:
        out["pip"] = list(env.pip_packages)
    return out
