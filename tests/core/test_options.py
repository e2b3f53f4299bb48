import pytest

import ray_core as ray


def f(x):
    return x


def test_unknown_option_lists_valid_names():
    with pytest.raises(ValueError, match="num_cpus") as info:
        ray.remote(num_cpu=1)
    assert "Did you mean 'num_cpus'" in str(info.value)


def test_wrong_type_raises_at_decoration():
    with pytest.raises(TypeError, match="num_returns must be an int, 'streaming' or 'dynamic'"):
        ray.remote(num_returns="2")
    ray.remote(num_returns="dynamic")
    ray.remote(num_returns="streaming")
    with pytest.raises(TypeError, match="retry_exceptions"):
        ray.remote(retry_exceptions=[1])
    with pytest.raises(ValueError, match="resources"):
        ray.remote(resources={"CPU": 1})
    with pytest.raises(TypeError, match="scheduling_strategy"):
        ray.remote(scheduling_strategy=3)


def test_options_validated_at_options_time():
    rf = ray.remote(f)
    with pytest.raises(ValueError, match="Valid options are"):
        rf.options(bogus=1)
    with pytest.raises(TypeError):
        rf.options(max_retries=1.5)
    bound = rf.options(num_cpus=2, name="x")
    assert bound._options == {"num_cpus": 2, "name": "x"}


def test_direct_call_raises_type_error():
    rf = ray.remote(f)
    with pytest.raises(TypeError, match=r"f\.remote\(\)"):
        rf(1)


def test_remote_on_class_makes_an_actor_class():
    @ray.remote(max_restarts=1)
    class A:
        pass
    assert isinstance(A, ray.ActorClass)
    with pytest.raises(TypeError, match="A.remote()"):
        A()
    with pytest.raises(ValueError, match="max_restarts"):
        ray.remote(max_restarts=1)(f)
