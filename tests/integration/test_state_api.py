"""ray_core.util.state on a real 2-node cluster: every list/get/summarize call, with
Ray's field names, read from the GCS tables, the owners and the raylets."""
import functools
import json
import os

import pytest

import ray_core as ray
from ray_core.util import state
from ray_core.util.placement_group import placement_group, remove_placement_group

from tests import waiting
from tests.integration.conftest import run_script

pytestmark = pytest.mark.timeout(180)
# State arrives in batches, and this machine is shared: generous deadlines, never timers.
wait_for = functools.partial(waiting.wait_for, timeout=90)


@ray.remote(resources={"far": 1})
def on_far(x):
    print(f"on_far says {x}")
    return x


@ray.remote(max_retries=0)
def fails():
    raise KeyError("no such key")


@ray.remote(max_retries=1)
def dies_once(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return "second attempt"


@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self):
        self.n += 1
        print(f"counter at {self.n}")
        return self.n


def _task(name, **expected):
    rows = [r for r in state.list_tasks(filters=[("name", "=", name)], detail=True,
                                        limit=1000)
            if all(getattr(r, k) == v for k, v in expected.items())]
    return rows


def _ran(name):
    """The FINISHED attempts of `name` whose executing worker's events (RUNNING, where)
    arrived too: the owner and the worker send theirs in separate batches."""
    return [r for r in _task(name, state="FINISHED") if r.start_time_ms and r.worker_pid]


def test_nodes(two_nodes):
    cluster, far = two_nodes
    nodes = state.list_nodes()
    assert len(nodes) == 2
    assert sorted(n.is_head_node for n in nodes) == [False, True]
    assert all(n.state == "ALIVE" for n in nodes)
    node = state.get_node(far.node_id)
    assert node.resources_total["far"] == 2 and not node.is_head_node
    assert state.list_nodes(filters=[("is_head_node", "=", "true")])[0].node_id != far.node_id


def test_tasks_finished_failed_and_retried(two_nodes, tmp_path):
    cluster, far = two_nodes
    assert ray.get(on_far.remote(1)) == 1
    with pytest.raises(KeyError):
        ray.get(fails.remote())
    assert ray.get(dies_once.remote(str(tmp_path / "marker"))) == "second attempt"

    done = wait_for(lambda: _ran("on_far"), "on_far FINISHED")[0]
    assert (done.node_id, done.type) == (far.node_id, "NORMAL_TASK")
    assert done.func_or_class_name.endswith(".on_far")
    assert done.worker_pid and done.start_time_ms <= done.end_time_ms
    assert [e["state"] for e in done.events][0] == "PENDING_ARGS_AVAIL"
    assert done.required_resources == {"far": 1.0, "CPU": 1.0}

    failed = wait_for(lambda: [r for r in _task("fails", state="FAILED") if r.error_type],
                      "fails FAILED")[0]
    assert failed.error_type == "TASK_EXECUTION_EXCEPTION"
    assert "KeyError" in failed.error_message

    def both_attempts():
        rows = {r.attempt_number: r for r in _task("dies_once")}
        return len(rows) == 2 and rows[0].state == "FAILED" and \
            rows[1].state == "FINISHED" and rows
    first = wait_for(both_attempts, "both attempts of dies_once")[0]
    assert first.error_type == "WORKER_DIED" and "died unexpectedly" in first.error_message
    assert state.get_task(first.task_id).attempt_number == 1

    summary = state.summarize_tasks()["cluster"]
    assert summary["summary"][failed.func_or_class_name]["state_counts"]["FAILED"] >= 1
    assert summary["total_tasks"] >= 4


def test_filters_limit_and_bad_filters(two_nodes):
    ray.get([on_far.remote(i) for i in range(3)])
    wait_for(lambda: len(_ran("on_far")) >= 3, "three on_far")
    not_finished = state.list_tasks(filters=[("state", "!=", "FINISHED")], limit=1000)
    assert all(r.state != "FINISHED" for r in not_finished)
    with pytest.warns(RuntimeWarning, match="only the first 1"):
        assert len(state.list_tasks(limit=1)) == 1
    assert state.list_tasks(limit=1000)[0].events is None       # detail=False
    with pytest.raises(ValueError, match="not a column of tasks.*task_id"):
        state.list_tasks(filters=[("colour", "=", "red")])
    with pytest.raises(ValueError, match="predicate '>'.*=, !="):
        state.list_tasks(filters=[("state", ">", "RUNNING")])


def test_actors_workers_jobs(two_nodes):
    cluster, far = two_nodes
    counter = Counter.options(resources={"far": 1}, name="the_counter").remote()
    assert ray.get(counter.add.remote()) == 1
    actor = state.list_actors(filters=[("name", "=", "the_counter")])[0]
    assert (actor.class_name, actor.state, actor.node_id) == ("Counter", "ALIVE", far.node_id)
    assert state.get_actor(actor.actor_id).pid == actor.pid
    assert state.summarize_actors()["cluster"]["summary"]["Counter"]["state_counts"][
        "ALIVE"] >= 1
    calls = wait_for(lambda: _ran("Counter.add"), "the actor call")
    assert calls[0].actor_id == actor.actor_id and calls[0].type == "ACTOR_TASK"
    workers = state.list_workers(filters=[("pid", "=", actor.pid)])
    assert workers and workers[0].node_id == far.node_id and workers[0].is_alive
    drivers = state.list_workers(filters=[("worker_type", "=", "DRIVER")])
    assert os.getpid() in [w.pid for w in drivers]
    jobs = [j for j in state.list_jobs() if j.driver_info["pid"] == str(os.getpid())]
    assert len(jobs) == 1 and jobs[0].status == "RUNNING"
    # Where the driver runs, as Ray's driver_info says it: its worker id and node's IP.
    me = [w for w in drivers if w.pid == os.getpid()][0]
    assert jobs[0].driver_info["id"] == me.worker_id
    assert jobs[0].driver_info["node_ip_address"] == me.ip
    ray.kill(counter)
    wait_for(lambda: state.get_actor(actor.actor_id).state == "DEAD", "the actor DEAD")


def test_placement_groups(two_nodes):
    pg = placement_group([{"CPU": 1}], name="the_group")
    ray.get(pg.ready())
    row = state.list_placement_groups(filters=[("name", "=", "the_group")], detail=True)[0]
    assert row.state == "CREATED" and row.bundles[0]["unit_resources"] == {"CPU": 1.0}
    remove_placement_group(pg)
    wait_for(lambda: state.list_placement_groups(
        filters=[("name", "=", "the_group")])[0].state == "REMOVED", "the group REMOVED")


def test_objects(two_nodes):
    ref = ray.put(b"x" * (1 << 20))
    rows = state.get_objects(ref.hex())
    assert rows and rows[0].object_size >= 1 << 20
    assert rows[0].type == "DRIVER" and rows[0].pid == os.getpid()
    assert rows[0].reference_type == "LOCAL_REFERENCE"
    summary = state.summarize_objects()["cluster"]
    assert summary["total_objects"] >= 1 and summary["total_size_mb"] >= 1.0


def test_logs_by_task_actor_and_pid(two_nodes):
    cluster, far = two_nodes
    ref = on_far.remote("hello from the far node")
    assert ray.get(ref) == "hello from the far node"
    task = wait_for(lambda: [t for t in _ran("on_far") if t.task_id == ref.task_id().hex()],
                    "on_far")[0]
    files = state.list_logs(node_id=far.node_id)
    assert any(f.endswith(f"-{task.worker_pid}.out") for f in files["worker_out"])
    assert "raylet" in files

    def printed():
        return "on_far says hello from the far node" in "".join(
            state.get_log(task_id=task.task_id, tail=100))
    wait_for(printed, "the task's line in its worker's log")
    counter = Counter.options(resources={"far": 1}).remote()
    ray.get(counter.add.remote())
    actor_id = counter._actor_id.hex()
    wait_for(lambda: "counter at 1" in "".join(state.get_log(actor_id=actor_id)),
             "the actor's line")
    pid = state.get_actor(actor_id).pid
    assert "counter at 1" in "".join(state.get_log(node_id=far.node_id, pid=pid, tail=-1))
    with pytest.raises(ValueError, match="no directory part"):
        list(state.get_log(node_id=far.node_id, filename="../auth_token"))
    ray.kill(counter)


def test_follow_yields_new_lines(two_nodes):
    cluster, far = two_nodes
    counter = Counter.options(resources={"far": 1}).remote()
    ray.get(counter.add.remote())
    actor_id = counter._actor_id.hex()
    wait_for(lambda: "counter at 1" in "".join(state.get_log(actor_id=actor_id)), "line 1")
    lines = state.get_log(actor_id=actor_id, tail=1, follow=True)
    next(lines)
    ray.get(counter.add.remote())
    seen = ""
    while "counter at 2" not in seen:
        seen += next(lines)
    lines.close()
    ray.kill(counter)


def test_timeline_has_a_slice_per_task_on_its_worker_track(two_nodes, tmp_path):
    cluster, far = two_nodes
    ref = on_far.remote("traced")
    ray.get(ref)
    task_id = ref.task_id().hex()
    # The owner reports FINISHED, the executing worker RUNNING: two batches.
    wait_for(lambda: state.get_task(task_id) and state.get_task(task_id).state == "FINISHED"
             and state.get_task(task_id).start_time_ms, "the traced task FINISHED, with its start")
    path = tmp_path / "trace.json"
    assert ray.timeline(str(path)) is None
    events = json.loads(path.read_text())
    (slice_,) = [e for e in events if e["ph"] == "X" and e["args"]["task_id"] == task_id]
    assert slice_["name"] == "on_far" and slice_["dur"] >= 0
    track = [e for e in events if e["ph"] == "M" and e["name"] == "thread_name" and
             (e["pid"], e["tid"]) == (slice_["pid"], slice_["tid"])]
    assert track and f"worker pid {state.get_task(task_id).worker_pid}" in \
        track[0]["args"]["name"]
    assert any(e.get("args", {}).get("task_id") == task_id for e in ray.timeline())


def test_dropped_task_events_are_counted_and_shown(short_temp_dir):
    """Past task_events_max_num_task_in_gcs attempts per job the GCS forgets the oldest
    ended ones; list_tasks says how many (a warning, or an error by default)."""
    result = run_script(f"""
        import warnings
        import ray_core as ray
        from ray_core.util import state
        from tests.waiting import wait_for
        ray.init(num_cpus=1, _temp_dir={short_temp_dir!r},
                 _system_config={{"task_events_max_num_task_in_gcs": 5,
                                  "task_events_report_interval_ms": 100}})

        @ray.remote
        def one(i):
            return i

        ray.get([one.remote(i) for i in range(12)])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = wait_for(lambda: len(state.list_tasks(raise_on_missing_output=False)) == 5
                            and state.list_tasks(raise_on_missing_output=False),
                            "the table at its bound", timeout=90)
        print("ROWS", len(rows))
        print("WARNED", str(caught[-1].message))
        try:
            state.list_tasks()
        except state.RayStateApiException as e:
            print("RAISED", e)
        ray.shutdown()
    """)
    assert "ROWS 5" in result.stdout, result.stderr[-3000:]
    warned = next(line for line in result.stdout.splitlines() if line.startswith("WARNED"))
    assert "task attempt(s) or event(s) were dropped" in warned
    assert int(warned.split()[1]) >= 7, warned      # 12 tasks, 5 kept
    assert "RAISED" in result.stdout and "raise_on_missing_output=False" in result.stdout
