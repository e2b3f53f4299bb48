"""The cluster file is checked whole when read: each mistake names its key."""
import pytest

from ray_core.autoscaler.cluster_config import ClusterConfigError, parse

GOOD = {"cluster_name": "c", "provider": {"type": "local"}, "head_node_type": "head",
        "available_node_types": {"head": {"resources": {"CPU": 1}},
                                 "big": {"resources": {"CPU": 2, "big": 1},
                                         "min_workers": 1, "max_workers": 3}}}


def with_(**changes):
    raw = {**GOOD, **changes}
    return raw


def test_a_good_file():
    cfg = parse(GOOD)
    assert list(cfg.worker_types) == ["big"]
    assert cfg.node_types["big"].start_arguments() == {
        "num_cpus": 2.0, "num_gpus": 0, "resources": {"big": 1.0},
        "object_store_memory": None}
    assert cfg.idle_timeout_minutes == 5.0 and cfg.upscaling_speed == 1.0


@pytest.mark.parametrize("raw, words", [
    (with_(max_worker=3), "unknown key(s) ['max_worker']"),
    (with_(provider={"type": "aws"}), "provider.type must be one of"),
    (with_(storage="disk"), "storage must be memory, redis or redis://HOST:PORT"),
    (with_(provider={"type": "command", "start_command": "x"}), "provider.stop_command"),
    (with_(head_node_type="nope"), "head_node_type: 'nope' is not one of"),
    (with_(max_workers=-1), "max_workers must be a non-negative integer"),
    (with_(available_node_types={"head": {"resources": {"CPU": 1}},
                                 "w": {"resources": {"CPU": "two"}}}),
     "available_node_types.w.resources"),
    (with_(available_node_types={"head": {"resources": {}},
                                 "w": {"resources": {}, "min_workers": 3, "max_workers": 1}}),
     "w.min_workers: min_workers (3) is above max_workers (1)"),
    (with_(available_node_types={"head": {"resources": {}},
                                 "w": {"resources": {}, "cpus": 1}}),
     "available_node_types.w.cpus: unknown key(s) ['cpus']"),
    (with_(setup_commands="pip install x"), "setup_commands must be a list"),
    ({"provider": {"type": "local"}}, "`cluster_name` is required"),
])
def test_mistakes_name_the_key(raw, words):
    with pytest.raises(ClusterConfigError, match=None) as info:
        parse(raw)
    assert words in str(info.value)


def test_a_mistake_in_a_file_names_its_line(tmp_path):
    from ray_core.autoscaler.cluster_config import load
    path = tmp_path / "cluster.yaml"
    path.write_text("cluster_name: c\n"
                    "provider: {type: local}\n"
                    "head_node_type: head\n"
                    "available_node_types:\n"
                    "  head:\n"
                    "    resources: {CPU: 1}\n"
                    "  w:\n"
                    "    resources: {CPU: 1}\n"
                    "    max_worker: 2\n")
    with pytest.raises(ClusterConfigError) as info:
        load(str(path))
    assert str(info.value).startswith(f"{path}:9: available_node_types.w.max_worker: "
                                      f"unknown key(s) ['max_worker']")
    path.write_text("cluster_name: [unclosed\n")
    with pytest.raises(ClusterConfigError) as info:
        load(str(path))
    assert str(info.value).startswith(f"{path}:2: not valid YAML: expected ',' or ']'")
