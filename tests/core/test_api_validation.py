"""Bad input to the public API is refused before anything starts."""
import pytest

import ray_core as ray


def test_bad_init_arguments():
    with pytest.raises(ValueError, match="address"):
        ray.init(address="nonsense")
    with pytest.raises(TypeError, match="num_cpus"):
        ray.init(num_cpus="two")
    with pytest.raises(TypeError, match="runtime_env"):
        ray.init(runtime_env=["x"])
    with pytest.raises(ValueError, match="unknown ray_core config"):
        ray.init(_system_config={"no_such_knob": 1})
    assert not ray.is_initialized()


def test_object_ref_needs_an_object_id_or_its_bytes():
    with pytest.raises(TypeError, match="ObjectID"):
        ray.ObjectRef("x" * 28)
    with pytest.raises(ValueError, match="28 bytes"):
        ray.ObjectRef(b"x" * 27)
    assert ray.ObjectRef(b"x" * 28).binary() == b"x" * 28    # Ray's out-of-band rebuild


def test_a_placement_group_strategy_is_checked_at_options_time():
    from ray_core.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    @ray.remote
    def f():
        return 1

    with pytest.raises(TypeError, match="needs a PlacementGroup .* got object"):
        f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(object()))
    with pytest.raises(TypeError, match="placement_group_bundle_index must be an int"):
        f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(None, "0"))
    with pytest.raises(ValueError, match="no placement group is given; it must be -1"):
        f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(None, 0))
    # Without a group it means "not in the parent's group".
    f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(None))


def test_call_arguments_are_checked_at_remote_as_in_ray():
    @ray.remote
    def f(a, b=2, *, c=3):
        return a

    @ray.remote
    class Actor:
        def __init__(self, x):
            self.x = x

    with pytest.raises(TypeError, match=r"f.remote\(\): too many positional arguments"):
        f.remote(1, 2, 3)
    with pytest.raises(TypeError, match="missing a required argument: 'a'"):
        f.options(num_cpus=0).remote()
    with pytest.raises(TypeError, match="unexpected keyword argument 'd'"):
        f.remote(1, d=4)
    with pytest.raises(TypeError, match=r"Actor.remote\(\): missing a required argument"):
        Actor.remote()
    assert not ray.is_initialized()


def test_call_signature_bounds():
    from ray_core._private.call_signature import check_call, params_of

    def varargs(a, *rest, k=1):
        pass

    def keyword_only(*, k):
        pass

    for args in [(1,), (1, 2, 3)]:
        check_call(params_of(varargs), args, {}, "varargs")
    check_call(params_of(keyword_only), (), {"k": 1}, "keyword_only")
    with pytest.raises(TypeError, match="missing a required argument: 'k'"):
        check_call(params_of(keyword_only), (), {}, "keyword_only")
    assert params_of(max) is None      # no signature Python can read: calls go unchecked
    check_call(None, (1, 2, 3), {"x": 1}, "max")


def test_init_refuses_local_mode_and_bad_labels_as_ray_does():
    with pytest.raises(RuntimeError, match="local_mode is no longer supported"):
        ray.init(local_mode=True)
    with pytest.raises(TypeError, match="labels must be a dict of str -> str"):
        ray.init(labels={"zone": 1})
    with pytest.raises(ValueError, match="ray.io/ prefix is reserved"):
        ray.init(labels={"ray.io/node-id": "x"})
    assert not ray.is_initialized()


def test_runtime_env_class_is_a_checked_dict():
    from ray_core.runtime_env import RuntimeEnv, RuntimeEnvConfig
    env = RuntimeEnv(env_vars={"A": "1"}, pip=["six"],
                     config=RuntimeEnvConfig(setup_timeout_seconds=60))
    assert env == {"env_vars": {"A": "1"}, "pip": {"packages": ["six"], "pip_check": False},
                   "config": {"setup_timeout_seconds": 60, "eager_install": True,
                              "log_files": []}}
    assert env.env_vars() == {"A": "1"} and env.working_dir() == "" and not env.has_py_modules()
    assert RuntimeEnv.deserialize(env.serialize()) == env
    with pytest.raises(ValueError, match=r"fields \['conda'\] are not supported"):
        RuntimeEnv(conda="env")
    with pytest.raises(ValueError, match="setup_timeout_seconds"):
        RuntimeEnvConfig(setup_timeout_seconds=0)

    @ray.remote(runtime_env=env)        # taken wherever a runtime_env dict is
    def f():
        pass


def test_log_once_and_empty_placement_group():
    from ray_core.util import debug
    from ray_core.util.placement_group import PlacementGroup
    from ray_core.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    assert debug.log_once("test-key") and not debug.log_once("test-key")
    assert ray.util.get_node_instance_id() == ""
    empty = PlacementGroup.empty()
    assert empty.is_empty

    @ray.remote
    def f():
        pass

    f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(empty))   # as None
