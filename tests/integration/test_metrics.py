"""Prometheus metrics of a real 2-node cluster: every GCS and raylet serves its figures on
the port written in the session folder, and `ray_core status` names those endpoints."""
import contextlib
import io
import re
import urllib.request

import pytest

import ray_core as ray
from ray_common.metrics import metrics_files
from ray_core import scripts

from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)


def scrape(entry) -> str:
    with urllib.request.urlopen(f"http://{entry['address']}/metrics", timeout=30) as reply:
        return reply.read().decode()


def value(text: str, name: str, **labels) -> float:
    """The sample `name{labels}` of a scrape (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = "^" + re.escape(name + (f"{{{wanted}}}" if labels else "")) + r" (\S+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


@ray.remote
def square(x):
    return x * x


def test_every_node_process_serves_metrics(dashboard_cluster):
    cluster = dashboard_cluster
    assert ray.get([square.remote(i) for i in range(20)]) == [i * i for i in range(20)]
    entries = metrics_files(cluster.head_node.session_dir)
    components = sorted(e["component"] for e in entries)
    assert components == ["gcs_server", "raylet", "raylet"]
    assert {e["node_id"] for e in entries if e["component"] == "raylet"} == \
        {n.node_id for n in cluster.list_all_nodes()}
    gcs = next(e for e in entries if e["component"] == "gcs_server")

    # The task table folds events sent every 100 ms: wait for the 20 to arrive.
    text = wait_for(lambda: (lambda t: t if value(t, "ray_core_tasks", state="FINISHED") >= 20
                             else None)(scrape(gcs)), "20 FINISHED tasks in the GCS metrics")
    assert value(text, "ray_core_gcs_table_rows", table="nodes") == 2
    assert value(text, "ray_core_gcs_table_rows", table="jobs") >= 1
    assert value(text, "ray_core_nodes_alive") == 2
    assert value(text, "ray_core_rpc_server_calls_total", method="AddTaskEventData") >= 1
    assert value(text, "ray_core_rpc_server_latency_seconds_count",
                 method="AddTaskEventData") >= 1

    raylets = [scrape(e) for e in entries if e["component"] == "raylet"]
    assert sum(value(t, "ray_core_lease_latency_seconds_count", status="GRANTED")
               for t in raylets) >= 1
    assert sum(value(t, "ray_core_rpc_server_calls_total", method="RequestWorkerLease")
               for t in raylets) >= 1
    for text in raylets:
        assert value(text, "ray_core_object_store_bytes", kind="capacity") == 100 << 20
        for queue in ("ready", "infeasible", "granting"):
            assert f'ray_core_scheduler_queue_length{{queue="{queue}"}}' in text
        assert "ray_core_spilled_bytes_total" in text
        assert "ray_core_restored_bytes_total" in text
    assert sum(value(t, "ray_core_workers", state="driver") for t in raylets) == 1


def test_object_store_bytes_follow_puts(dashboard_cluster):
    raylets = [e for e in metrics_files(dashboard_cluster.head_node.session_dir)
               if e["component"] == "raylet"]

    def used():
        return sum(value(scrape(e), "ray_core_object_store_bytes", kind="used")
                   for e in raylets)

    before = used()
    ref = ray.put(b"x" * (4 << 20))     # sealed in the driver's node's store before put returns
    assert used() - before >= 4 << 20
    del ref


def test_status_names_the_endpoints(dashboard_cluster):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = scripts.main(["status", "--address", dashboard_cluster.address,
                             "--temp-dir", dashboard_cluster.head_node.temp_dir])
    assert code == 0
    text = out.getvalue()
    for entry in metrics_files(dashboard_cluster.head_node.session_dir):
        assert f"http://{entry['address']}/metrics" in text
    assert f"Dashboard: {dashboard_cluster.head_node.dashboard_url}" in text


@ray.remote(num_cpus=0)
class Server:
    def __init__(self):
        from ray_core.util.metrics import Counter, Gauge, Histogram
        self.requests = Counter("requests", "Requests served", tag_keys=("route",))
        self.queue = Gauge("queue_depth", "Requests waiting")
        self.latency = Histogram("request_seconds", "Request time", boundaries=[0.1, 1.0],
                                 tag_keys=("route",)).set_default_tags({"route": "/"})

    def serve(self, route):
        self.requests.inc(tags={"route": route})
        self.queue.set(3)
        self.latency.observe(0.5)
        import os
        return os.getpid()


def test_user_metrics_are_served_by_the_process_that_records_them(dashboard_cluster):
    from ray_core.util.metrics import Counter, Gauge
    server = Server.remote()
    pid = ray.get([server.serve.remote("/a"), server.serve.remote("/a"),
                   server.serve.remote("/b")])[-1]
    entry = next(e for e in metrics_files(dashboard_cluster.head_node.session_dir)
                 if e["pid"] == pid)
    assert entry["component"] == "worker"
    text = scrape(entry)
    assert value(text, "ray_requests_total", route="/a") == 2
    assert value(text, "ray_requests_total", route="/b") == 1
    assert value(text, "ray_queue_depth") == 3
    assert value(text, "ray_request_seconds_bucket", le="1.0", route="/") == 3
    assert value(text, "ray_request_seconds_bucket", le="0.1", route="/") == 0

    driver_counter = Counter("driver_events")
    driver_counter.inc(2)
    driver = next(e for e in metrics_files(dashboard_cluster.head_node.session_dir)
                  if e["component"] == "driver")
    assert value(scrape(driver), "ray_driver_events_total") == 2
    with pytest.raises(ValueError, match="tag key"):
        Counter("tagged", tag_keys=("a",)).inc()
    with pytest.raises(ValueError, match="already as a Counter"):
        Gauge("driver_events")
    ray.kill(server)
