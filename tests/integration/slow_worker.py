"""A worker entry (config.worker_entry_module) that takes a few seconds to start, so that
a test can watch a task wait for its worker."""
import sys
import time

from ray_core.workers import default_worker

if __name__ == "__main__":
    time.sleep(float(sys.argv[sys.argv.index("--startup-delay") + 1])
               if "--startup-delay" in sys.argv else 3.0)
    sys.exit(default_worker.main())
