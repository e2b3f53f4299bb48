"""Bad input on the node's HTTP endpoints: the dashboard (aiohttp) and the Prometheus
metrics of the GCS and the raylet (prometheus_client's threaded server).

Bytes that are not HTTP, a request line of 64 KiB or an unknown HTTP version are
answered 4xx/5xx or dropped (a header a server cannot read it may ignore), and the
endpoint serves the next real request; while silent, half-sent and trickling clients
stay connected, real requests are served (each client has its own task or thread)."""
import re
import urllib.request

import pytest

from ray_common.metrics import metrics_files

from tests.fuzz.conftest import DEADLINE_S, SEEDS, connect, random_bytes, wait_closed

# (name, what a client sends, whether it must be refused: a server may serve a request
# whose only fault is a header it ignores)
BAD_INPUT = [
    *[(f"random-{seed}", random_bytes(seed) + b"\r\n\r\n", True) for seed in SEEDS],
    ("huge-request-line", b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\n\r\n", True),
    ("bad-version", b"GET / HTTP/9.9\r\n\r\n", True),
    ("bad-header", b"GET / HTTP/1.1\r\n\x00\x01: \xff\r\n\r\n", False),
]


@pytest.fixture(scope="module")
def endpoints(node):
    """{name: (host:port, path of a real request)}: the dashboard and every metrics port."""
    out = {"dashboard": (node.context["dashboard_url"][len("http://"):], "/api/config")}
    for entry in metrics_files(node.context["session_dir"]):
        out[entry["component"]] = (entry["address"], "/metrics")
    assert set(out) == {"dashboard", "gcs_server", "raylet"}
    return out


def served(address: str, path: str) -> int:
    """The status of a real request (the dashboard's token as a Bearer header)."""
    from ray_common import rpc
    request = urllib.request.Request(f"http://{address}{path}",
                                     headers={"Authorization": f"Bearer {rpc.auth_token()}"})
    with urllib.request.urlopen(request, timeout=DEADLINE_S) as reply:
        return reply.status


def answered_or_dropped(address: str, data: bytes) -> bytes:
    """Send `data`, then read until the server closes: what it answered, maybe nothing."""
    with connect(address) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return b""
        first = b""
        sock.settimeout(DEADLINE_S)
        try:
            first = sock.recv(65536)
        except ConnectionResetError:
            return b""
        if first:
            wait_closed(sock)
        return first


@pytest.mark.parametrize("name", ["dashboard", "gcs_server", "raylet"])
@pytest.mark.parametrize("case,data,must_refuse", BAD_INPUT,
                         ids=[case for case, _, _ in BAD_INPUT])
def test_bad_requests_are_refused(endpoints, name, case, data, must_refuse):
    address, path = endpoints[name]
    reply = answered_or_dropped(address, data)
    # http.server (under prometheus_client) answers a request line it cannot read as
    # HTTP/0.9 would: the error page alone, without a status line.
    refused = re.match(rb"HTTP/1\.\d [45]\d\d ", reply) or \
        re.search(rb"Error code: [45]\d\d", reply)
    assert reply == b"" or refused or not must_refuse, reply[:200]
    assert served(address, path) == 200


@pytest.mark.parametrize("name", ["dashboard", "gcs_server", "raylet"])
def test_stalled_clients_do_not_hold_up_real_requests(endpoints, held, name):
    address, path = endpoints[name]
    held(address)                                       # silent
    held(address, first=b"GET / HTTP/1.1\r\nHost: x\r\n")   # headers never end
    held(address, trickle=b"GET /metrics HTTP/1.1\r\n")      # one byte a second
    for _ in range(3):
        assert served(address, path) == 200
