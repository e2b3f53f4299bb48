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
def cluster():
    """A GCS; the test adds raylets with `cluster.add_raylet(...)`. All stopped after."""
    from tests.raylet.cluster import Cluster
    c = Cluster()
    try:
        yield c
    finally:
        c.shutdown()
