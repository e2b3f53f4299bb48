"""Unit tests without a cluster: the log monitor's file tailing and `status` text."""
import os

from ray_common.protocol import common_pb2
from ray_core._private.log_monitor import ACTOR_MARKER, JOB_MARKER, LogMonitor
from ray_core.scripts import format_status


def _write(path, text):
    with open(path, "a") as f:
        f.write(text)


def test_log_monitor_splits_lines_by_job_and_keeps_partial_lines(tmp_path):
    out = tmp_path / "worker-ab12-4242.out"
    err = tmp_path / "worker-ab12-4242.err"
    _write(out, "starting up\n")
    _write(err, "")
    monitor = LogMonitor(str(tmp_path), "10.0.0.5")
    _write(out, f"{JOB_MARKER}01000000\n{ACTOR_MARKER}\nfirst\nsecond\npart")
    batches = monitor.poll()
    assert [(b.job_id, list(b.lines)) for b in batches] == [
        (b"", ["starting up"]), (bytes.fromhex("01000000"), ["first", "second"])]
    assert all(b.pid == 4242 and b.ip == "10.0.0.5" and not b.is_error for b in batches)
    assert monitor.poll() == []                       # "part" waits for its newline
    _write(out, "ial\n")
    _write(err, f"{JOB_MARKER}02000000\n{ACTOR_MARKER}Counter\nboom\n")
    batches = sorted(monitor.poll(), key=lambda b: b.is_error)
    assert list(batches[0].lines) == ["partial"] and batches[0].job_id == bytes.fromhex("01000000")
    assert batches[1].is_error and batches[1].actor_name == "Counter"
    assert batches[1].job_id == bytes.fromhex("02000000") and list(batches[1].lines) == ["boom"]


def test_log_monitor_taking_over_skips_what_was_published(tmp_path):
    path = tmp_path / "worker-cd34-7.out"
    _write(path, "old line\n")
    monitor = LogMonitor(str(tmp_path), "127.0.0.1", from_end=True)
    assert monitor.poll() == []
    _write(path, "new line\n")
    assert [list(b.lines) for b in monitor.poll()] == [["new line"]]
    os.truncate(path, 0)                              # a truncated file starts over
    _write(path, "again\n")
    assert [list(b.lines) for b in monitor.poll()] == [["again"]]


GROUP = "ab" * 18   # a placement group's hex id


def test_status_text_sums_resources_and_lists_demands():
    alive = common_pb2.NodeInfo(node_id=b"\x01" * 28, node_manager_address="10.0.0.1",
                                is_head_node=True, state=common_pb2.NodeInfo.ALIVE)
    other = common_pb2.NodeInfo(node_id=b"\x02" * 28, node_manager_address="10.0.0.2",
                                state=common_pb2.NodeInfo.ALIVE)
    dead = common_pb2.NodeInfo(node_id=b"\x03" * 28, node_manager_address="10.0.0.3",
                               state=common_pb2.NodeInfo.DEAD, death_reason="health checks failed")
    view = [
        common_pb2.ResourcesData(node_id=alive.node_id, resources_total={"CPU": 4},
                                 resources_available={"CPU": 1},
                                 resource_load=[common_pb2.ResourceDemand(
                                     shape={"CPU": 1}, num_ready_requests_queued=3)]),
        common_pb2.ResourcesData(node_id=other.node_id,
                                 resources_total={"CPU": 2, "GPU": 1, f"CPU_group_0_{GROUP}": 1,
                                                  f"CPU_group_{GROUP}": 1, "my_group_x": 1},
                                 resources_available={"CPU": 1, "GPU": 1,
                                                      f"CPU_group_0_{GROUP}": 0,
                                                      f"CPU_group_{GROUP}": 0, "my_group_x": 1},
                                 resource_load=[common_pb2.ResourceDemand(
                                     shape={"GPU": 4}, num_infeasible_requests_queued=1),
                                     common_pb2.ResourceDemand(
                                     shape={f"CPU_group_{GROUP}": 1},
                                     num_ready_requests_queued=2)]),
    ]
    text = format_status("10.0.0.1:6380", [alive, other, dead], view)
    assert "Nodes: 2 alive, 1 dead" in text
    assert f"ALIVE {alive.node_id.hex()} 10.0.0.1 (head): CPU 3/4" in text
    assert f"DEAD  {dead.node_id.hex()} 10.0.0.3: health checks failed" in text
    assert "  CPU 4/6" in text and "  GPU 0/1" in text   # a bundle's CPU counts as used
    assert GROUP not in text.split("Demands:")[0]
    assert "my_group_x 0/1" in text     # a resource of the user's own, named alike
    assert 'pending {"CPU": 1.0}: 3' in text
    assert 'infeasible {"GPU": 4.0}: 1' in text
    assert f"in placement group {GROUP}: 2 waiting for its bundles" in text


def test_a_worker_announces_each_change_of_job_or_actor_once(capsys):
    from ray_core._private import log_monitor
    log_monitor._announced[0] = None
    log_monitor.announce("01000000")
    log_monitor.announce("01000000")
    log_monitor.announce("01000000", "Counter")
    out = capsys.readouterr()
    assert out.out == out.err == (f"{JOB_MARKER}01000000\n{ACTOR_MARKER}\n"
                                  f"{JOB_MARKER}01000000\n{ACTOR_MARKER}Counter\n")
    log_monitor._announced[0] = None


def test_log_monitor_rotates_worker_files_by_size(tmp_path, monkeypatch):
    from ray_common.config import config
    monkeypatch.setitem(config._system_config, "log_rotation_max_bytes", 50)
    monkeypatch.setitem(config._system_config, "log_rotation_backup_count", 2)
    path = tmp_path / "worker-ef56-9.out"
    monitor = LogMonitor(str(tmp_path), "127.0.0.1")
    published = []
    for round_ in range(4):
        _write(path, "".join(f"round {round_} line {i}\n" for i in range(5)))
        published += [line for b in monitor.poll() for line in b.lines]
    assert len(published) == 20 and published[-1] == "round 3 line 4"
    assert sorted(os.listdir(tmp_path)) == [path.name, path.name + ".1", path.name + ".2"]
    assert path.read_text() == ""
    assert "round 3 line 0" in (tmp_path / (path.name + ".1")).read_text()
