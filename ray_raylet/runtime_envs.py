"""Runtime environments on a node: what a task's runtime_env needs before a worker runs it.

A driver uploads working_dir and py_modules once, as zip packages in the GCS KV (namespace
"runtime_env", named by their content hash); the spec carries their URIs. Here each
package is fetched and unpacked once per node, and a pip list gets one virtualenv per
distinct list (`--system-site-packages`, so ray_core and its dependencies stay visible),
both kept under `<temp_dir>/runtime_resources/` and reused by later sessions on this
machine. `setup()` gives the WorkerEnv a worker process is started with: its Python, its
cwd, the folders put first on its sys.path, and the key the pool matches idle workers by
(a worker serves only tasks of the same env). Concurrent setups of one package or one
virtualenv wait for the first; a failed pip install is not cached, and says why.
"""
import asyncio
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from typing import Awaitable, Callable, Dict, List, NamedTuple, Optional

from ray_common.config import config

logger = logging.getLogger(__name__)

KV_NAMESPACE = "runtime_env"
URI_SCHEME = "gcs://"
_PIP_OUTPUT_TAIL = 2000     # characters of pip's output a failure reports


class RuntimeEnvSetupFailed(Exception):
    """The runtime_env could not be set up here; the message says what and why."""


class WorkerEnv(NamedTuple):
    key: str                  # "" for the default env
    python: str               # the interpreter a worker of this env runs
    cwd: str                  # "" to keep the raylet's
    sys_path: List[str]       # put first on the worker's sys.path

    def process_env(self) -> Dict[str, str]:
        """What the worker's entry point reads to enter the env (default_worker.py)."""
        if not self.key:
            return {}
        return {"RAY_CORE_RUNTIME_ENV_DIRS": json.dumps({"cwd": self.cwd,
                                                          "sys_path": self.sys_path})}


DEFAULT = WorkerEnv("", sys.executable, "", [])


def env_key(runtime_env) -> str:
    """The pool key of a RuntimeEnv message: what needs a process of its own."""
    if not (runtime_env.working_dir_uri or runtime_env.py_modules_uris or
            runtime_env.pip_packages):
        return ""
    text = json.dumps([runtime_env.working_dir_uri, list(runtime_env.py_modules_uris),
                       list(runtime_env.pip_packages)])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class RuntimeEnvManager:
    def __init__(self, resources_dir: str, kv_get: Callable[..., Awaitable[Optional[bytes]]]):
        self._dir = resources_dir
        self._kv_get = kv_get
        self._locks: Dict[str, asyncio.Lock] = {}
        self._envs: Dict[str, WorkerEnv] = {}

    async def setup(self, runtime_env) -> WorkerEnv:
        key = env_key(runtime_env)
        if not key:
            return DEFAULT
        env = self._envs.get(key)
        if env is not None:
            return env
        async with self._lock(f"env:{key}"):
            env = self._envs.get(key)
            if env is None:
                python = sys.executable
                if runtime_env.pip_packages:
                    python = await self._virtualenv(list(runtime_env.pip_packages))
                paths = [await self._package(uri) for uri in runtime_env.py_modules_uris]
                cwd = ""
                if runtime_env.working_dir_uri:
                    cwd = await self._package(runtime_env.working_dir_uri)
                    paths.insert(0, cwd)
                env = self._envs[key] = WorkerEnv(key, python, cwd, paths)
                logger.info("Runtime env %s ready: python %s, cwd %s, sys.path + %s", key,
                            python, cwd or "-", paths)
        return env

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    # ---- packages ----------------------------------------------------------------
    async def _package(self, uri: str) -> str:
        """The folder a package is unpacked in on this node (fetched the first time)."""
        if not uri.startswith(URI_SCHEME):
            raise RuntimeEnvSetupFailed(f"unknown package URI {uri!r} (expected {URI_SCHEME}...)")
        name = uri[len(URI_SCHEME):]
        target = os.path.join(self._dir, "packages", name[:-len(".zip")]
                              if name.endswith(".zip") else name)
        # A zip the user made (the driver names it zip_...) may hold one top-level folder.
        root_of = _root_of if name.startswith("zip_") else (lambda folder: folder)
        async with self._lock(f"pkg:{name}"):
            if os.path.isdir(target):
                return root_of(target)
            data = await self._kv_get(name.encode(), namespace=KV_NAMESPACE)
            if data is None:
                raise RuntimeEnvSetupFailed(f"the package {uri} is not in the GCS (the "
                                            f"driver that uploaded it may be gone)")
            await asyncio.get_running_loop().run_in_executor(None, _unpack, data, target)
            logger.info("Unpacked runtime env package %s (%d bytes) into %s", name,
                        len(data), target)
        return root_of(target)

    # ---- pip -----------------------------------------------------------------------
    async def _virtualenv(self, packages: List[str]) -> str:
        """The python of the virtualenv holding `packages` (created the first time)."""
        digest = hashlib.sha1("\n".join(packages).encode()).hexdigest()[:16]
        home = os.path.join(self._dir, "pip", digest)
        python = os.path.join(home, "venv", "bin", "python")
        ready = os.path.join(home, "ready")
        async with self._lock(f"pip:{digest}"):
            if os.path.exists(ready):
                return python
            shutil.rmtree(home, ignore_errors=True)     # a half-made one from a crash
            os.makedirs(home)
            logger.info("Creating virtualenv %s for pip %s", home, packages)
            try:
                await self._run([sys.executable, "-m", "venv", "--system-site-packages",
                                 os.path.join(home, "venv")], "creating the virtualenv")
                await self._run([python, "-m", "pip", "install", "--disable-pip-version-check",
                                 "--no-input", *packages], f"pip install {' '.join(packages)}")
            except BaseException:
                shutil.rmtree(home, ignore_errors=True)
                raise
            with open(ready, "w") as f:
                f.write("\n".join(packages) + "\n")
        return python

    @staticmethod
    async def _run(command: List[str], what: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(),
                                            config.runtime_env_setup_timeout_s)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeEnvSetupFailed(f"{what} did not finish within "
                                        f"runtime_env_setup_timeout_s="
                                        f"{config.runtime_env_setup_timeout_s}s") from None
        if proc.returncode != 0:
            text = out.decode(errors="replace").strip()[-_PIP_OUTPUT_TAIL:]
            raise RuntimeEnvSetupFailed(f"{what} failed (exit code {proc.returncode}):\n{text}")


def _unpack(data: bytes, target: str) -> None:
    """Unpack a zip into `target` atomically: a folder that exists is complete."""
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
    try:
        path = os.path.join(scratch, "package.zip")
        with open(path, "wb") as f:
            f.write(data)
        folder = os.path.join(scratch, "files")
        with zipfile.ZipFile(path) as archive:
            archive.extractall(folder)
        os.replace(folder, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _root_of(folder: str) -> str:
    """A user's zip around one top-level folder unpacks to that folder (as in Ray)."""
    entries = [e for e in os.listdir(folder) if e != "__MACOSX"]
    if len(entries) == 1 and os.path.isdir(os.path.join(folder, entries[0])):
        return os.path.join(folder, entries[0])
    return folder
