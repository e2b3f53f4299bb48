"""Fixtures shared by the raylet tests: config overrides that do not leak between tests."""
import pytest

from ray_common.config import config



@pytest.fixture
def system_config():
    """`system_config({...})` applies overrides for this test (and its children) only."""
    saved = dict(config._system_config)

    def apply(overrides):
        config.update(overrides)

    yield apply
    config._system_config.clear()
    config._system_config.update(saved)


@pytest.fixture
def cluster(request):
    """A GCS; the test adds raylets with `cluster.add_raylet(...)`. All stopped after.

    `@pytest.mark.gcs_env({...})` passes environment entries to the GCS process.
    """
    from tests.raylet.cluster import Cluster
    marker = request.node.get_closest_marker("gcs_env")
    c = Cluster(gcs_env=marker.args[0] if marker else None)
    try:
        yield c
    finally:
        c.shutdown()


def pytest_configure(config):
    config.addinivalue_line("markers", "gcs_env(env): environment of the cluster's GCS")
