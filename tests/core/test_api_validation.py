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
