"""The worker process the raylet starts (config.worker_entry_module).

Main loop, as the raylet contract asks: die with the raylet, start the CoreWorker
service, open the framed task socket, register with the raylet, then receive pushed
tasks, execute them on this (main) thread and reply, until told to exit.
"""
import argparse
import logging
import os
import signal
import sys
import threading

from ray_common.ids import WorkerID
from ray_common.logging import setup_process_logging
from ray_common.process import die_with_parent


def parse_args(argv):
    parser = argparse.ArgumentParser(description="ray_core worker process")
    parser.add_argument("--node-ip-address", required=True)
    parser.add_argument("--raylet-address", required=True)
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--object-store-socket", required=True)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--startup-token", type=int, default=0)
    args, _unknown = parser.parse_known_args(argv)
    return args


_core = None     # this process's CoreWorker, once made


def _flush() -> None:
    from ray_core._private.task_log import task_log
    task_log.flush()
    if _core is not None:
        _core.task_events.close()


def _flush_then_die(signum, frame) -> None:
    """SIGTERM (the raylet ending the worker): the task log lines still buffered go to
    the file first, so `grep <task_id>` finds this worker's part of a task even when it
    was ended right after, and the task events to the GCS (how its last tasks ended: a
    job's idle workers are ended the moment it finishes). A thread does it, at most
    briefly: the signal may have landed while this (main) thread held the log's lock."""
    flusher = threading.Thread(target=_flush, daemon=True)
    flusher.start()
    flusher.join(0.5)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def enter_runtime_env() -> None:
    """A worker started for a runtime_env (ray_raylet/runtime_envs.py): its working_dir
    is the cwd, and it and the py_modules come first on sys.path, before any task's code
    is imported."""
    dirs = os.environ.pop("RAY_CORE_RUNTIME_ENV_DIRS", "")
    if not dirs:
        return
    import json
    where = json.loads(dirs)
    if where.get("cwd"):
        os.chdir(where["cwd"])
    sys.path[:0] = where.get("sys_path", [])


def main(argv=None) -> int:
    die_with_parent()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    enter_runtime_env()
    # Output goes to files the driver tails: flush per line so it shows up promptly.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    if os.environ.get("RAY_CORE_JOB_ID"):  # started for a job: its output is that job's
        from ray_core._private.log_monitor import announce
        announce(os.environ["RAY_CORE_JOB_ID"])
    log_path = setup_process_logging(f"python-core-worker-{args.worker_id}_{os.getpid()}",
                                     os.path.join(args.session_dir, "logs"))
    from ray_core._private import worker as worker_mod
    from ray_core._private.task_log import task_log
    task_log.open(log_path)
    signal.signal(signal.SIGTERM, _flush_then_die)
    from ray_core._private.core_worker import WORKER, CoreWorker

    core = CoreWorker(mode=WORKER, worker_id=WorkerID.from_hex(args.worker_id),
                      node_id=bytes.fromhex(args.node_id), node_ip=args.node_ip_address,
                      raylet_address=args.raylet_address, gcs_address=args.gcs_address,
                      plasma_socket=args.object_store_socket, session_dir=args.session_dir)
    from ray_core.actor import handle_from_blob
    core.make_actor_handle = handle_from_blob    # current_actor, for the actor it may host
    worker_mod.set_worker_mode(core)
    global _core
    _core = core
    core.install_cancel_handler()
    try:
        core.start()
        core.run_task_loop()
    except KeyboardInterrupt:
        pass
    except Exception:
        logging.getLogger("ray_core.workers").exception("worker %s failed", args.worker_id)
        return 1
    finally:
        core.shutdown()
        task_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
