"""A worker entry (config.worker_entry_module) that does not start until the file named
by RAY_CORE_TEST_WORKER_GATE exists, so that a test sees a task wait for its worker for
as long as it needs to, then lets it go. A worker whose raylet ends while it waits ends
too (the gate may never open: a test that failed, a temp dir removed)."""
import os
import sys
import time

from ray_core.workers import default_worker

if __name__ == "__main__":
    gate, raylet = os.environ.get("RAY_CORE_TEST_WORKER_GATE"), os.getppid()
    while gate and not os.path.exists(gate):
        if os.getppid() != raylet:
            sys.exit(1)
        time.sleep(0.05)
    sys.exit(default_worker.main())
