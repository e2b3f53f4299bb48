"""The dashboard's flags of `ray_core start --head`: off, on a chosen port (a taken one is
an error here; init() and cluster_utils take a free one instead), and what `status` and
`stop` make of it."""
import socket
import urllib.error
import urllib.request

import pytest

from ray_core.node import read_records
from tests.cli.conftest import cli, recorded_pids, running
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)


def test_include_dashboard_false_starts_none(temp_dir):
    out = cli("start", "--head", "--port", "0", "--num-cpus", "1", "--include-dashboard",
              "false", temp_dir=temp_dir).stdout
    assert "dashboard" not in out
    assert "Dashboard: (not running)" in cli("status", temp_dir=temp_dir).stdout


def test_a_chosen_port_and_stop(temp_dir):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = cli("start", "--head", "--port", "0", "--num-cpus", "1", "--dashboard-port",
              str(port), temp_dir=temp_dir).stdout
    url = f"http://127.0.0.1:{port}"
    assert f"dashboard: {url}" in out
    link = next(line.split(": ", 1)[1] for line in out.splitlines()
                if "one-time dashboard login link" in line)
    assert link.startswith(f"{url}/login?code=")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/api/cluster", timeout=30)
    assert refused.value.code == 401
    assert f"Dashboard: {url}" in cli("status", temp_dir=temp_dir).stdout
    pids = recorded_pids(temp_dir)
    cli("stop", temp_dir=temp_dir)
    wait_for(lambda: not running(pids), "the head's processes, dashboard included, ended")


def test_a_taken_port_is_an_error(temp_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = cli("start", "--head", "--port", "0", "--dashboard-port",
                     str(taken.getsockname()[1]), temp_dir=temp_dir, check=False)
    assert result.returncode == 1
    assert "the dashboard's port" in result.stderr and "in use" in result.stderr, \
        result.stderr
    assert read_records(temp_dir) == []       # nothing was started
