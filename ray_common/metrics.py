"""Prometheus metrics of a node process (the GCS, a raylet), in one place.

A process calls `serve(component, session_dir, host, loop)` once: an HTTP endpoint on a
free port (prometheus_client's, in its own thread) and a file
`<session>/metrics/<component>_<pid>.json` naming it, which `ray_core status` lists
(`metrics_files`). Two kinds of figures, neither of which costs the task path anything:

- counted where it happens, once per RPC or per lease (never per task): RPC calls and
  latencies per method (installed into ray_common.rpc's guarded handlers), lease
  latency (`LEASE_LATENCY`);
- read at scrape time from the tables themselves (`add_snapshot`): the function runs on
  the process's io loop, which owns those tables, so it sees them whole; a loop that
  does not answer within metrics_scrape_timeout_s leaves its gauges out of that scrape.

Worker processes import this module only once user code records a value
(ray_core/util/metrics.py): prometheus_client costs ~50 ms to import.
"""
import asyncio
import atexit
import json
import logging
import os
import time
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ray_common import rpc
from ray_common.config import config
from ray_common.process import pid_alive, write_file_atomically

logger = logging.getLogger(__name__)
METRICS_DIR = "metrics"
PREFIX = "ray_core_"

RPC_CALLS = Counter(f"{PREFIX}rpc_server_calls", "gRPC calls this process served, per method",
                    ["method"])
RPC_FAILURES = Counter(f"{PREFIX}rpc_server_failures", "gRPC calls whose handler raised or "
                       "aborted, per method", ["method"])
RPC_LATENCY = Histogram(f"{PREFIX}rpc_server_latency_seconds", "Time a unary gRPC handler "
                        "took, per method", ["method"],
                        buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5))
LEASE_LATENCY = Histogram(f"{PREFIX}lease_latency_seconds", "Time from a worker lease "
                          "request's arrival to its answer, per outcome", ["status"],
                          buckets=(.001, .005, .01, .05, .1, .5, 1, 5, 30))


class Sample(NamedTuple):
    """One figure a snapshot reads: `kind` "gauge" or "counter" (a running total)."""
    name: str
    kind: str
    help: str
    labels: Tuple[str, ...]
    values: Dict[Tuple[str, ...], float]


def sample(name: str, help: str, value: float, kind: str = "gauge") -> Sample:
    """A figure without labels."""
    return Sample(name, kind, help, (), {(): value})


class _RpcObserver:
    """Counts and times calls for rpc.py; a method's labelled children are made once."""

    def __init__(self):
        self._children: Dict[str, tuple] = {}

    def __call__(self, method: str, seconds: Optional[float], failed: bool) -> None:
        children = self._children.get(method)
        if children is None:
            name = method.rsplit("/", 1)[-1]
            children = self._children[method] = (
                RPC_CALLS.labels(name), RPC_FAILURES.labels(name), RPC_LATENCY.labels(name))
        children[0].inc()
        if failed:
            children[1].inc()
        if seconds is not None:
            children[2].observe(seconds)


class _SnapshotCollector:
    """Yields, at each scrape, what `read` returns when run on `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read: Callable[[], Iterable[Sample]]):
        self._loop = loop
        self._read = read

    def describe(self):
        return []   # unknown until read: prometheus_client then skips its duplicate check

    def collect(self):
        async def read():
            return list(self._read())
        try:
            samples = asyncio.run_coroutine_threadsafe(read(), self._loop).result(
                config.metrics_scrape_timeout_s)
        except Exception as e:  # a busy or closed loop: this scrape goes without them
            logger.warning("Metrics snapshot skipped: %s: %s", type(e).__name__, e)
            return
        for s in samples:
            family = (CounterMetricFamily if s.kind == "counter" else GaugeMetricFamily)(
                PREFIX + s.name, s.help, labels=list(s.labels))
            for labels, value in s.values.items():
                family.add_metric(list(labels), value)
            yield family


def add_snapshot(loop: asyncio.AbstractEventLoop, read: Callable[[], Iterable[Sample]]) -> None:
    """Report what `read()` returns (Samples) at every scrape, read on `loop`."""
    REGISTRY.register(_SnapshotCollector(loop, read))


def serve(component: str, session_dir: str, host: str, count_rpcs: bool = True,
          **about) -> int:
    """Serve this process's metrics on a free port of `host` and write it down; returns
    the port (0 when metrics_export_enabled is off). `about` goes into the file (the
    node id, say). With count_rpcs, call it before the process's gRPC servers start, so
    that their methods are counted from the first call."""
    if not config.metrics_export_enabled:
        return 0
    server, _thread = start_http_server(0, addr=host)
    port = server.server_port
    if count_rpcs:
        rpc.observe_calls(_RpcObserver())
    folder = os.path.join(session_dir, METRICS_DIR)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{component}_{os.getpid()}.json")
    write_file_atomically(path, json.dumps({
        "component": component, "pid": os.getpid(), "address": f"{host}:{port}",
        "start_time": time.time(), **about}))
    atexit.register(_unlink, path)
    logger.info("Serving Prometheus metrics at http://%s:%d/metrics", host, port)
    return port


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def metrics_files(session_dir: str) -> List[dict]:
    """The metrics endpoints written down in a session folder whose process still runs
    (a SIGKILLed process leaves its file behind)."""
    folder = os.path.join(session_dir, METRICS_DIR)
    out = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        try:
            with open(os.path.join(folder, name)) as f:
                entry = json.load(f)
        except (OSError, ValueError):
            continue
        if pid_alive(int(entry.get("pid", 0))):
            out.append(entry)
    return out
