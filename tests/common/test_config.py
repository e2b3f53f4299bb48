import pytest

from ray_common.config import SYSTEM_CONFIG_ENV, Config


def test_default():
    assert Config(environ={}).max_direct_call_object_size == 100 * 1024


def test_precedence_default_env_system_config():
    env = {"RAY_CORE_HEALTH_CHECK_PERIOD_MS": "700"}
    cfg = Config(environ=env)
    assert cfg.health_check_period_ms == 700
    cfg.update({"health_check_period_ms": 50})
    assert cfg.health_check_period_ms == 50
    assert Config(environ={}).health_check_period_ms == 3000


def test_child_processes_inherit_system_config():
    parent = Config(environ={})
    parent.update({"health_check_failure_threshold": 2})
    child = Config(environ=parent.child_env())
    assert child.health_check_failure_threshold == 2
    assert SYSTEM_CONFIG_ENV in parent.child_env()


def test_types_are_coerced_and_checked():
    cfg = Config(environ={"RAY_CORE_SCHEDULER_SPREAD_THRESHOLD": "0.25"})
    assert cfg.scheduler_spread_threshold == 0.25
    with pytest.raises(ValueError, match="health_check_period_ms must be int"):
        Config(environ={"RAY_CORE_HEALTH_CHECK_PERIOD_MS": "soon"}).health_check_period_ms
    with pytest.raises(ValueError, match="must be int"):
        Config(environ={}).update({"health_check_period_ms": "x"})


def test_unknown_name_lists_close_matches():
    cfg = Config(environ={})
    with pytest.raises(ValueError, match="did you mean health_check_period_ms"):
        cfg.update({"health_check_period_msec": 1})
    with pytest.raises(ValueError, match="unknown ray_core config name"):
        cfg.get("no_such_thing_at_all")
    with pytest.raises(AttributeError, match="health_check_timeout_ms"):
        cfg.health_check_timeout_msx


def test_update_is_all_or_nothing():
    cfg = Config(environ={})
    with pytest.raises(ValueError):
        cfg.update({"health_check_period_ms": 1, "bogus_name": 2})
    assert cfg.health_check_period_ms == 3000
