"""Ray's JobConfig: what a driver's init(job_config=...) says about its whole job.

runtime_env and ray_namespace are the same as init's runtime_env= and namespace= (init's
own arguments win when both are given, as in Ray); metadata is kept in the GCS job
table; default_actor_lifetime is the lifetime of the job's actors that name none, for
actors created by the driver and by its tasks alike. jvm_options and code_search_path
concern Java workers, which ray_core does not have.
"""
from typing import Any, Dict, List, Optional

from ray_core._private import runtime_env as _runtime_env

LIFETIMES = ("detached", "non_detached")


class JobConfig:
    def __init__(self, jvm_options: Optional[List[str]] = None,
                 code_search_path: Optional[List[str]] = None,
                 runtime_env: Optional[dict] = None, _client_job: bool = False,
                 metadata: Optional[dict] = None, ray_namespace: Optional[str] = None,
                 default_actor_lifetime: str = "non_detached"):
        if jvm_options or code_search_path:
            raise ValueError("JobConfig jvm_options and code_search_path are for Java "
                             "workers, which ray_core does not have; for Python code use "
                             "runtime_env={'py_modules': [...]} or {'working_dir': ...}")
        self.jvm_options: List[str] = []
        self.code_search_path: List[str] = []
        self.metadata: Dict[str, str] = {}
        for key, value in (metadata or {}).items():
            self.set_metadata(key, value)
        self.runtime_env: Dict[str, Any] = {}
        self.set_runtime_env(runtime_env)
        self.ray_namespace = None
        if ray_namespace is not None:
            self.set_ray_namespace(ray_namespace)
        self.default_actor_lifetime = "non_detached"
        self.set_default_actor_lifetime(default_actor_lifetime)

    def set_metadata(self, key: str, value: str) -> None:
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"JobConfig metadata must map str to str, got {key!r}: {value!r}")
        self.metadata[key] = value

    def set_runtime_env(self, runtime_env: Optional[dict], validate: bool = False) -> None:
        _runtime_env.validate(runtime_env)
        self.runtime_env = dict(runtime_env or {})

    def set_ray_namespace(self, ray_namespace: str) -> None:
        if not isinstance(ray_namespace, str):
            raise TypeError(f"JobConfig ray_namespace must be a str, got {ray_namespace!r}")
        self.ray_namespace = ray_namespace

    def set_default_actor_lifetime(self, default_actor_lifetime: str) -> None:
        if default_actor_lifetime not in LIFETIMES:
            raise ValueError(f"default_actor_lifetime must be one of {LIFETIMES}, got "
                             f"{default_actor_lifetime!r}")
        self.default_actor_lifetime = default_actor_lifetime

    @classmethod
    def from_json(cls, job_config_json: dict) -> "JobConfig":
        return cls(**job_config_json)

    def __repr__(self) -> str:
        return (f"JobConfig(runtime_env={self.runtime_env!r}, metadata={self.metadata!r}, "
                f"ray_namespace={self.ray_namespace!r}, "
                f"default_actor_lifetime={self.default_actor_lifetime!r})")
