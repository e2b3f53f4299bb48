"""The cluster file: what `ray_core up` starts and what the head's autoscaler may launch.

A YAML in the spirit of Ray's cluster launcher, checked as a whole when it is read, so a
typo fails `up` (naming the key and where it is) instead of a launch an hour later:

    cluster_name: demo
    max_workers: 4                 # worker nodes of every type together
    upscaling_speed: 1.0           # launches in flight: max(5, speed x nodes running)
    idle_timeout_minutes: 5
    provider:
      type: local                  # nodes are processes of this machine
    head_node_type: head
    available_node_types:
      head:   {resources: {CPU: 2}}
      big:    {resources: {CPU: 2, big: 1}, min_workers: 0, max_workers: 2}
    setup_commands: []             # every node, before ray_core starts on it
    head_setup_commands: []
    worker_setup_commands: []
    storage: redis                 # the head's GCS tables survive a GCS crash (default memory)

The `command` provider runs `start_command` / `stop_command` (shell lines: an `ssh` line,
a cloud CLI) per node instead; see command_provider.py for the fields they are given.
"""
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import yaml

PROVIDERS = ("local", "command")
TOP_KEYS = {"cluster_name", "max_workers", "upscaling_speed", "idle_timeout_minutes",
            "provider", "head_node_type", "available_node_types", "setup_commands",
            "head_setup_commands", "worker_setup_commands", "temp_dir", "storage"}
TYPE_KEYS = {"resources", "min_workers", "max_workers", "labels", "object_store_memory"}
PROVIDER_KEYS = {"local": {"type"},
                 "command": {"type", "start_command", "stop_command", "worker_ips",
                             "command_timeout_s"}}


class ClusterConfigError(ValueError):
    """A cluster file that cannot be used; the message names the key at fault."""


@dataclass
class NodeType:
    name: str
    resources: Dict[str, float]
    min_workers: int = 0
    max_workers: int = 0
    labels: Dict[str, str] = field(default_factory=dict)
    object_store_memory: Optional[int] = None

    def start_arguments(self) -> Dict[str, Any]:
        """Node.start_worker's resource arguments for a node of this type."""
        custom = {k: v for k, v in self.resources.items() if k not in ("CPU", "GPU")}
        return {"num_cpus": self.resources.get("CPU", 0),
                "num_gpus": self.resources.get("GPU", 0),
                "resources": custom or None,
                "object_store_memory": self.object_store_memory}


@dataclass
class ClusterConfig:
    cluster_name: str
    provider: Dict[str, Any]
    node_types: Dict[str, NodeType]
    head_node_type: str
    storage: str = "memory"         # the head GCS's tables: memory, redis, redis://...
    max_workers: int = 2
    upscaling_speed: float = 1.0
    idle_timeout_minutes: float = 5.0
    setup_commands: List[str] = field(default_factory=list)
    head_setup_commands: List[str] = field(default_factory=list)
    worker_setup_commands: List[str] = field(default_factory=list)
    temp_dir: Optional[str] = None
    path: str = ""

    @property
    def worker_types(self) -> Dict[str, NodeType]:
        return {name: t for name, t in self.node_types.items() if name != self.head_node_type}


class _Places:
    """Where a key is in the file, for errors: `cluster.yaml:12: available_node_types.w`."""

    def __init__(self, name: str, lines: Optional[Dict[tuple, int]] = None):
        self.name = name
        self.lines = lines or {}

    def __call__(self, *path) -> str:
        where = ".".join(map(str, path))
        for n in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:n]))
            if line:
                return f"{self.name}:{line}: {where}" if where else f"{self.name}:{line}"
        return f"{self.name}: {where}" if where else self.name


def load(path: str) -> ClusterConfig:
    try:
        with open(path) as f:
            text = f.read()
        raw = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text))
    except OSError as e:
        raise ClusterConfigError(f"cannot read the cluster file {path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise ClusterConfigError(f"{where}: not valid YAML: "
                                 f"{getattr(e, 'problem', None) or e}") from None
    cfg = parse(raw, _Places(path, lines))
    cfg.path = os.path.abspath(path)
    return cfg


def _key_lines(node, path: tuple = ()) -> Dict[tuple, int]:
    """Each key's line (1-based), by its path of keys from the top."""
    out: Dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = path + (key.value,)
            out[here] = key.start_mark.line + 1
            out.update(_key_lines(value, here))
    return out


def parse(raw: Any, at: Optional[_Places] = None) -> ClusterConfig:
    at = at or _Places("cluster file")
    if not isinstance(raw, dict):
        raise ClusterConfigError(f"{at()}: expected a mapping at the top, got "
                                 f"{type(raw).__name__}")
    _no_unknown(raw, TOP_KEYS, at, ())
    for key in ("cluster_name", "provider", "head_node_type", "available_node_types"):
        if key not in raw:
            raise ClusterConfigError(f"{at()}: `{key}` is required")
    provider = raw["provider"]
    if not isinstance(provider, dict) or provider.get("type") not in PROVIDERS:
        got = provider.get("type") if isinstance(provider, dict) else provider
        raise ClusterConfigError(f"{at('provider', 'type')} must be one of "
                                 f"{list(PROVIDERS)}, got {got!r}")
    _no_unknown(provider, PROVIDER_KEYS[provider["type"]], at, ("provider",))
    if provider["type"] == "command":
        for key in ("start_command", "stop_command"):
            if not isinstance(provider.get(key), str) or not provider[key].strip():
                raise ClusterConfigError(f"{at('provider')}: the command provider needs "
                                         f"provider.{key} (a shell line)")
    types = raw["available_node_types"]
    if not isinstance(types, dict) or not types:
        raise ClusterConfigError(f"{at('available_node_types')} must map type names to "
                                 f"their resources")
    node_types = {name: _node_type(name, spec, at) for name, spec in types.items()}
    head = raw["head_node_type"]
    if head not in node_types:
        raise ClusterConfigError(f"{at('head_node_type')}: {head!r} is not one of "
                                 f"available_node_types {sorted(node_types)}")
    storage = raw.get("storage", "memory")
    if storage not in ("memory", "redis") and not str(storage).startswith("redis://"):
        raise ClusterConfigError(f"{at('storage')} must be memory, redis or "
                                 f"redis://HOST:PORT, got {storage!r}")
    cfg = ClusterConfig(
        cluster_name=str(raw["cluster_name"]), provider=dict(provider),
        node_types=node_types, head_node_type=head, storage=storage,
        max_workers=_number(raw, "max_workers", 2, at, (), integer=True),
        upscaling_speed=_number(raw, "upscaling_speed", 1.0, at, ()),
        idle_timeout_minutes=_number(raw, "idle_timeout_minutes", 5.0, at, ()),
        setup_commands=_commands(raw, "setup_commands", at),
        head_setup_commands=_commands(raw, "head_setup_commands", at),
        worker_setup_commands=_commands(raw, "worker_setup_commands", at),
        temp_dir=raw.get("temp_dir"))
    if not cfg.worker_types and cfg.max_workers:
        raise ClusterConfigError(f"{at('available_node_types')}: no worker node types (only "
                                 f"the head type {head!r}), so there is nothing to launch")
    return cfg


def _node_type(name: str, spec: Any, at: _Places) -> NodeType:
    path = ("available_node_types", name)
    if not isinstance(spec, dict):
        raise ClusterConfigError(f"{at(*path)}: expected a mapping with `resources`")
    _no_unknown(spec, TYPE_KEYS, at, path)
    resources = spec.get("resources", {})
    if not isinstance(resources, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for v in resources.values()):
        raise ClusterConfigError(f"{at(*path, 'resources')} must map resource names to "
                                 f"non-negative numbers, got {resources!r}")
    node_type = NodeType(
        name=name, resources={str(k): float(v) for k, v in resources.items()},
        min_workers=_number(spec, "min_workers", 0, at, path, integer=True),
        max_workers=_number(spec, "max_workers", 0, at, path, integer=True),
        labels={str(k): str(v) for k, v in (spec.get("labels") or {}).items()},
        object_store_memory=spec.get("object_store_memory"))
    if node_type.min_workers > node_type.max_workers:
        raise ClusterConfigError(f"{at(*path, 'min_workers')}: min_workers "
                                 f"({node_type.min_workers}) is above max_workers "
                                 f"({node_type.max_workers})")
    return node_type


def _number(raw: dict, key: str, default, at: _Places, path: tuple, integer: bool = False):
    value = raw.get(key, default)
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if not ok or value < 0:
        kind = "a non-negative integer" if integer else "a non-negative number"
        raise ClusterConfigError(f"{at(*path, key)} must be {kind}, got {value!r}")
    return value


def _commands(raw: dict, key: str, at: _Places) -> List[str]:
    value = raw.get(key) or []
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ClusterConfigError(f"{at(key)} must be a list of shell lines")
    return value


def _no_unknown(raw: dict, allowed, at: _Places, path: tuple) -> None:
    unknown = sorted(set(raw) - set(allowed), key=str)
    if unknown:
        raise ClusterConfigError(f"{at(*path, unknown[0])}: unknown key(s) {unknown}; "
                                 f"allowed: {sorted(allowed)}")
