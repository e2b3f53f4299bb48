"""Ray's ray.util.metrics: Counter, Gauge and Histogram for application code.

    from ray_core.util.metrics import Counter
    requests = Counter("requests", "Requests served", tag_keys=("route",))
    requests.inc(tags={"route": "/"})

Each is a prometheus_client metric named `ray_<name>` (Ray's prefix, so queries written
for Ray work). The first value a connected process records starts that process's own
Prometheus endpoint (ray_common.metrics.serve, component "worker" or "driver"), written
in the session folder beside the node processes' and listed by `ray_core status`; a
process that records nothing never imports prometheus_client. A value costs a dict
lookup and a lock, in the calling thread; nothing is sent anywhere.
"""
import threading
from typing import Dict, Optional, Sequence

_lock = threading.Lock()
_served = False
# name -> (kind, tag keys, the prometheus_client metric): one per name per process, so
# that an actor constructed twice in one worker shares it, as Ray's do.
_registered: Dict[str, tuple] = {}


def _serve_once() -> None:
    """Start this process's endpoint once it is connected to a cluster."""
    global _served
    if _served:
        return
    from ray_core._private import worker as worker_mod
    connected = worker_mod._global
    if connected is None:
        return      # not connected yet: values count, the endpoint starts with the next
    from ray_common import metrics
    core = connected.core_worker
    with _lock:
        if not _served:
            metrics.serve("driver" if connected.mode == "driver" else "worker",
                          core.session_dir, core.node_ip, count_rpcs=False,
                          node_id=core.node_id.hex())
            _served = True


class Metric:
    """What Counter, Gauge and Histogram share: the name, tag keys and default tags."""
    _kind = ""

    def __init__(self, name: str, description: str = "",
                 tag_keys: Optional[Sequence[str]] = None, **prometheus_args):
        if not name or not isinstance(name, str):
            raise ValueError(f"a metric needs a non-empty name, got {name!r}")
        tag_keys = tuple(tag_keys or ())
        if not all(isinstance(key, str) for key in tag_keys):
            raise TypeError(f"tag_keys must be a tuple of strings, got {tag_keys!r}")
        self._name = name
        self._tag_keys = tag_keys
        self._default_tags: Dict[str, str] = {}
        with _lock:
            known = _registered.get(name)
            if known is None:
                import prometheus_client
                make = getattr(prometheus_client, type(self)._kind)
                known = _registered[name] = (self._kind, tag_keys, make(
                    f"ray_{name}", description or name, tag_keys, **prometheus_args))
        kind, keys, self._metric = known
        if (kind, keys) != (self._kind, tag_keys):
            raise ValueError(f"metric {name!r} exists in this process already as a {kind} "
                             f"with tag keys {keys}: a name has one kind and one set of keys")

    @property
    def info(self) -> dict:
        return {"name": self._name, "tag_keys": self._tag_keys,
                "default_tags": dict(self._default_tags)}

    def set_default_tags(self, default_tags: Dict[str, str]) -> "Metric":
        """Tags used where a record does not give them."""
        self._check_keys(default_tags)
        self._default_tags = dict(default_tags)
        return self

    def _check_keys(self, tags: Dict[str, str]) -> None:
        unknown = set(tags) - set(self._tag_keys)
        if unknown:
            raise ValueError(f"metric {self._name!r}: unknown tag key(s) {sorted(unknown)}; "
                             f"its tag keys are {list(self._tag_keys)}")

    def _child(self, tags: Optional[Dict[str, str]]):
        _serve_once()
        if not self._tag_keys:
            return self._metric
        merged = {**self._default_tags, **(tags or {})}
        self._check_keys(merged)
        missing = [key for key in self._tag_keys if key not in merged]
        if missing:
            raise ValueError(f"metric {self._name!r}: no value for tag key(s) {missing} "
                             f"(pass tags=... or set_default_tags)")
        return self._metric.labels(*(str(merged[key]) for key in self._tag_keys))


class Counter(Metric):
    """A running total that only goes up (exported as ray_<name>_total)."""
    _kind = "Counter"

    def inc(self, value: float = 1.0, tags: Optional[Dict[str, str]] = None) -> None:
        if value <= 0:
            raise ValueError(f"a counter only goes up: inc({value!r})")
        self._child(tags).inc(value)


class Gauge(Metric):
    """A value that goes up and down."""
    _kind = "Gauge"

    def set(self, value: float, tags: Optional[Dict[str, str]] = None) -> None:
        self._child(tags).set(value)


class Histogram(Metric):
    """Observed values counted in buckets with upper `boundaries`."""
    _kind = "Histogram"

    def __init__(self, name: str, description: str = "",
                 boundaries: Optional[Sequence[float]] = None,
                 tag_keys: Optional[Sequence[str]] = None):
        if not boundaries or any(b <= 0 for b in boundaries) or \
                list(boundaries) != sorted(boundaries):
            raise ValueError(f"a histogram needs increasing positive boundaries, got "
                             f"{boundaries!r}")
        super().__init__(name, description, tag_keys, buckets=tuple(boundaries))

    def observe(self, value: float, tags: Optional[Dict[str, str]] = None) -> None:
        self._child(tags).observe(value)
