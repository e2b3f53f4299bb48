"""Ray's `ray.runtime_env`: RuntimeEnv, a runtime_env dict checked when it is made (pass it
wherever a runtime_env dict goes), and RuntimeEnvConfig, its `config` field.

What each field does is _private/runtime_env.py's to say; the fields ray_core cannot
serve (conda, container/image_uri, uv, ...) are refused there with the reason.
"""
import json
from typing import Any, Dict, List, Optional

from ray_core._private import runtime_env as _runtime_env


class RuntimeEnvConfig(dict):
    """Setup options of a runtime_env (Ray's defaults: a 600 s timeout, eager install)."""

    def __init__(self, setup_timeout_seconds: int = 600, eager_install: bool = True,
                 log_files: Optional[List[str]] = None):
        super().__init__(setup_timeout_seconds=setup_timeout_seconds,
                         eager_install=eager_install, log_files=list(log_files or []))
        _runtime_env.validate({"config": self})


class RuntimeEnv(dict):
    """A runtime_env with Ray's constructor: only the fields given are set; a pip list
    becomes Ray's {"packages": [...], "pip_check": False}."""

    def __init__(self, *, py_modules=None, working_dir=None, pip=None, env_vars=None,
                 config=None, _validate: bool = True, **fields):
        given = dict(py_modules=py_modules, working_dir=working_dir, pip=pip,
                     env_vars=env_vars, config=config, **fields)
        super().__init__({k: v for k, v in given.items() if v is not None})
        if isinstance(self.get("pip"), (list, tuple)):
            self["pip"] = {"packages": list(self["pip"]), "pip_check": False}
        if isinstance(self.get("config"), dict):
            self["config"] = RuntimeEnvConfig(**self["config"])
        if _validate:
            _runtime_env.validate(self)

    # Ray's accessors.
    def working_dir(self) -> str:
        return self.get("working_dir", "")

    def py_modules(self) -> List[str]:
        return list(self.get("py_modules", []))

    def env_vars(self) -> Dict[str, str]:
        return dict(self.get("env_vars", {}))

    def pip_config(self) -> Dict[str, Any]:
        return dict(self.get("pip", {}))

    def has_working_dir(self) -> bool:
        return bool(self.get("working_dir"))

    def has_py_modules(self) -> bool:
        return bool(self.get("py_modules"))

    def to_dict(self) -> Dict[str, Any]:
        return dict(self)

    def serialize(self) -> str:
        return json.dumps(self, sort_keys=True)

    @classmethod
    def deserialize(cls, serialized_runtime_env: str) -> "RuntimeEnv":
        return cls(_validate=False, **json.loads(serialized_runtime_env))


__all__ = ["RuntimeEnv", "RuntimeEnvConfig"]
