"""Idle workers beyond the soft limit are reaped -- except those that still own something
(objects in scope, actors), which would take it with them (Ray's rule)."""
import pytest

from tests.integration.conftest import run_script

pytestmark = pytest.mark.timeout(120)


def test_an_idle_worker_that_owns_objects_and_actors_is_kept(own_temp_dir):
    result = run_script(f"""
        import time
        import psutil
        import ray_core as ray
        ray.init(num_cpus=2, _temp_dir={own_temp_dir!r},
                 _system_config={{"idle_worker_killing_time_threshold_ms": 100,
                                  "num_workers_soft_limit": 0}})

        @ray.remote
        class Echo:
            def ping(self):
                return "pong"

        @ray.remote
        def owner():
            actor = Echo.remote()
            ray.get(actor.ping.remote())
            return [actor, ray.put("owned by a task's worker")]

        @ray.remote
        def nothing():
            return 1

        actor, ref = ray.get(owner.remote())
        ray.get([nothing.remote() for _ in range(20)])
        time.sleep(3)        # many idle periods: the workers that own nothing go
        print("ACTOR", ray.get(actor.ping.remote(), timeout=30))
        print("OBJECT", ray.get(ref, timeout=30))
        raylet = psutil.Process(ray._private.worker.global_worker().node.raylet_proc.pid)
        workers = [p for p in raylet.children() if "default_worker" in " ".join(p.cmdline())]
        print("WORKERS", len(workers))
        ray.shutdown()
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ACTOR pong" in result.stdout and "OBJECT owned by a task's worker" in result.stdout
    # The owner's worker and the actor's stay; the other idle workers were reaped.
    assert "WORKERS 2" in result.stdout, result.stdout
