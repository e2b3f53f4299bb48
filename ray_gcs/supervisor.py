"""The head's supervisor: it keeps the GCS (and a private redis-server) running.

`ray_core start --head` exits once its node runs, and a driver's own head is no better
placed to watch: so a small process of its own watches the GCS and the Redis it started
(pidfds), from the head's start to `ray_core stop`, which stops it first.

- Redis storage: the GCS holds nothing Redis does not, so a GCS that dies is started
  again on the same address at once -- after a back-off when it keeps dying
  (gcs_supervisor_backoff_*), each restart logged with its cause. Raylets, workers and
  drivers reconnect by themselves (they retry for gcs_rpc_server_reconnect_timeout_s).
- A private redis-server keeps an append-only file in its folder; when it dies it is
  started again on the same port from that file, so nothing is lost either.
- In-memory storage: the cluster's state died with the GCS. The supervisor writes what
  happened to <session>/gcs_died (status and drivers read it there and say so), stops
  this node's raylet and log monitor, and exits.
- Other head processes given with --keep-running (the autoscaler) are its own children:
  one that crashes is started again with the same back-off; one that exits cleanly
  (`ray_core stop` stops it before the supervisor) is not.
"""
import argparse
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from typing import Dict, Optional

from ray_common.config import config
from ray_common.logging import setup_process_logging
from ray_common.process import die_with_parent, popen, write_file_atomically

logger = logging.getLogger("ray_gcs.supervisor")   # also when run as __main__
DEATH_NOTE = "gcs_died"


def death_note(session_dir: str) -> Optional[str]:
    """What the supervisor wrote when an in-memory GCS died, as a sentence; None if not."""
    try:
        with open(os.path.join(session_dir, DEATH_NOTE)) as f:
            note = json.load(f)
    except (OSError, ValueError):
        return None
    return (f"the GCS of this cluster (pid {note.get('pid')}) died at {note.get('time')} "
            f"({note.get('cause')}); it kept the cluster's state in memory, so that state "
            f"is gone: stop the cluster (ray_core stop) and start a new one, with "
            f"--storage redis for a head that survives this")


class _Watched:
    """A process watched through a pidfd; `proc` when the supervisor started it itself."""

    def __init__(self, name: str, pid: int, proc: Optional[subprocess.Popen] = None):
        self.name, self.pid, self.proc = name, pid, proc
        self.fd = os.pidfd_open(pid)
        self.started = time.monotonic()

    def cause(self, err_path: str) -> str:
        """How it ended: its exit status if it was our child, and its last stderr line."""
        if self.proc is not None:
            code = self.proc.wait()
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        else:
            how = "exit status unknown (started by the node, not by its supervisor)"
        try:
            with open(err_path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 2000))
                lines = [line for line in f.read().decode(errors="replace").splitlines()
                         if line.strip()]
            if lines:
                how += f"; its stderr ended with: {lines[-1][:300]}"
        except OSError:
            pass
        return how

    def close(self) -> None:
        os.close(self.fd)


class Supervisor:
    def __init__(self, args):
        self.args = args
        self.logs_dir = os.path.join(args.session_dir, "logs")
        self.watched: Dict[int, _Watched] = {}
        self.restarts = 0
        self._stopping = False
        self.kept = {name: json.loads(command) for name, command in args.keep_running}
        self.kept_restarts: Dict[str, int] = {}

    def run(self) -> int:
        self._watch(_Watched("gcs_server", self.args.gcs_pid))
        if self.args.redis_pid:
            self._watch(_Watched("redis", self.args.redis_pid))
        if self.kept:
            self._await_own_record()
        for name in self.kept:
            self._watch(self._start_kept(name))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        # A stop signal must end the poll below at once, not at its next timeout.
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        logger.info("Supervising the GCS (pid %d, port %d, storage %s)%s", self.args.gcs_pid,
                    self.args.gcs_port, self._storage_name(),
                    f" and redis-server (pid {self.args.redis_pid})" if self.args.redis_pid
                    else "")
        poller = select.poll()
        poller.register(wake_r, select.POLLIN)
        for fd in self.watched:
            poller.register(fd, select.POLLIN)
        while not self._stopping:
            for fd, _ in poller.poll():
                if fd == wake_r:
                    os.read(wake_r, 512)
                    continue
                if self._stopping:
                    break
                poller.unregister(fd)
                dead = self.watched.pop(fd)
                dead.close()
                if dead.name in self.kept:
                    replacement = self._restart_kept(dead)
                    if replacement is not None:
                        self._watch(replacement)
                        poller.register(replacement.fd, select.POLLIN)
                    continue
                replacement = self._replace(dead)
                if replacement is None:
                    return 0
                self._watch(replacement)
                poller.register(replacement.fd, select.POLLIN)
        return 0

    def _watch(self, watched: _Watched) -> None:
        self.watched[watched.fd] = watched

    def _on_signal(self, signum, frame) -> None:
        self._stopping = True

    def _storage_name(self) -> str:
        return "memory" if self.args.storage == "memory" else "redis"

    def _replace(self, dead: _Watched) -> Optional[_Watched]:
        if dead.name == "redis":
            return self._restart_redis(dead)
        cause = dead.cause(os.path.join(self.logs_dir, "gcs_server.err"))
        if self.args.storage == "memory":
            self._give_up(dead, cause)
            return None
        return self._restart_gcs(dead, cause)

    # ---- the GCS ------------------------------------------------------------------
    def _restart_gcs(self, dead: _Watched, cause: str) -> _Watched:
        from ray_gcs.launcher import start_gcs
        lived = time.monotonic() - dead.started
        self.restarts = self.restarts if lived < config.gcs_supervisor_stable_s else 0
        delay = _backoff(self.restarts)
        self.restarts += 1
        logger.warning("The GCS (pid %d) died after %.1fs: %s. Restarting it on port %d from "
                       "Redis%s (restart %d)", dead.pid, lived, cause, self.args.gcs_port,
                       f" in {delay:.1f}s" if delay else "", self.restarts)
        while True:
            if delay:
                time.sleep(delay)
            if self._stopping:
                raise SystemExit(0)
            try:
                proc, address = start_gcs(self.args.session_dir, port=self.args.gcs_port,
                                          storage=self.args.storage, node_ip=self.args.node_ip,
                                          detached=self.args.detached)
                break
            except Exception as e:  # noqa: BLE001 - try again, later
                delay = min(config.gcs_supervisor_backoff_max_s,
                            max(delay * 2, config.gcs_supervisor_backoff_initial_s))
                logger.error("Restarting the GCS failed (%s); trying again in %.1fs", e, delay)
        logger.info("GCS restarted: pid %d at %s", proc.pid, address)
        self._record("gcs_server", proc.pid)
        return _Watched("gcs_server", proc.pid, proc)

    # ---- processes kept running (the autoscaler) ---------------------------------
    def _await_own_record(self) -> None:
        """The node writes its record once this process started; a kept process's entry
        goes in after that, or the node's write would drop it (and `ray_core stop`
        would not find the process)."""
        deadline = time.monotonic() + config.gcs_supervisor_record_wait_s
        while time.monotonic() < deadline:
            try:
                with open(self.args.record) as f:
                    if any(e.get("pid") == os.getpid() for e in json.load(f)["processes"]):
                        return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.01)
        logger.warning("The node record %s does not list this supervisor after %.0fs",
                       self.args.record, config.gcs_supervisor_record_wait_s)

    def _start_kept(self, name: str) -> _Watched:
        with open(os.path.join(self.logs_dir, f"{name}.err"), "ab") as err:
            proc = popen(self.kept[name], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=err, start_new_session=self.args.detached)
        self._record(name, proc.pid)
        return _Watched(name, proc.pid, proc)

    def _restart_kept(self, dead: _Watched) -> Optional[_Watched]:
        code = dead.proc.wait()
        if code == 0 or self._stopping:
            logger.info("%s (pid %d) exited cleanly; not restarting it", dead.name, dead.pid)
            return None
        cause = dead.cause(os.path.join(self.logs_dir, f"{dead.name}.err"))
        lived = time.monotonic() - dead.started
        restarts = self.kept_restarts.get(dead.name, 0) \
            if lived < config.gcs_supervisor_stable_s else 0
        delay = _backoff(restarts)
        self.kept_restarts[dead.name] = restarts + 1
        logger.warning("%s (pid %d) died after %.1fs: %s. Restarting it%s (restart %d)",
                       dead.name, dead.pid, lived, cause,
                       f" in {delay:.1f}s" if delay else "", restarts + 1)
        time.sleep(delay)
        if self._stopping:
            return None
        replacement = self._start_kept(dead.name)
        logger.info("%s restarted: pid %d", dead.name, replacement.pid)
        return replacement

    def _give_up(self, dead: _Watched, cause: str) -> None:
        """In-memory storage: say what happened, and stop this node (nothing can rejoin)."""
        note = {"pid": dead.pid, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "cause": cause,
                "storage": "memory"}
        write_file_atomically(os.path.join(self.args.session_dir, DEATH_NOTE), json.dumps(note))
        logger.error("The GCS (pid %d) died: %s. It kept the cluster's state in memory, so the "
                     "cluster is over: stopping this node", dead.pid, cause)
        kept = [w.pid for w in self.watched.values() if w.name in self.kept]
        for pid in self.args.node_pids + kept:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    # ---- Redis --------------------------------------------------------------------
    def _restart_redis(self, dead: _Watched) -> _Watched:
        from ray_gcs.redis_server import start_redis
        cause = dead.cause(os.path.join(self.args.redis_dir, "redis.log"))
        logger.warning("redis-server (pid %d) died: %s. Restarting it on port %d from its "
                       "append-only file", dead.pid, cause, self.args.redis_port)
        while True:
            try:
                redis = start_redis(self.args.redis_dir, port=self.args.redis_port,
                                    detached=self.args.detached)
                break
            except Exception as e:  # noqa: BLE001
                if self._stopping:
                    raise SystemExit(0)
                logger.error("Restarting redis-server failed (%s); trying again", e)
                time.sleep(config.gcs_supervisor_backoff_initial_s)
        logger.info("redis-server restarted: pid %d", redis.proc.pid)
        self._record("redis", redis.proc.pid)
        return _Watched("redis", redis.proc.pid, redis.proc)

    def _record(self, name: str, pid: int) -> None:
        """Point the node's record (what `ray_core stop` stops) at the new process."""
        import psutil
        try:
            with open(self.args.record) as f:
                record = json.load(f)
        except (OSError, ValueError):
            return
        entry = next((e for e in record.setdefault("processes", []) if e.get("name") == name),
                     None)
        if entry is None:
            entry = {"name": name}
            record["processes"].append(entry)
        entry["pid"] = pid
        try:
            entry["create_time"] = psutil.Process(pid).create_time()
        except psutil.Error:
            entry["create_time"] = 0.0
        write_file_atomically(self.args.record, json.dumps(record))


def parse_args(argv):
    parser = argparse.ArgumentParser(description="ray_core head supervisor")
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--record", required=True, help="the node record to keep current")
    parser.add_argument("--gcs-pid", type=int, required=True)
    parser.add_argument("--gcs-port", type=int, required=True)
    parser.add_argument("--node-ip", default="127.0.0.1")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--redis-pid", type=int, default=0)
    parser.add_argument("--redis-port", type=int, default=0)
    parser.add_argument("--redis-dir", default="")
    parser.add_argument("--node-pids", type=int, nargs="*", default=[],
                        help="stopped when an in-memory GCS dies (raylet, log monitor)")
    parser.add_argument("--keep-running", nargs=2, action="append", default=[],
                        metavar=("NAME", "JSON_COMMAND"),
                        help="a head process to start and restart when it crashes")
    parser.add_argument("--detached", action="store_true")
    return parser.parse_args(argv)


def _backoff(restarts: int) -> float:
    """No wait for a first crash; then gcs_supervisor_backoff_initial_s doubling."""
    if not restarts:
        return 0.0
    return min(config.gcs_supervisor_backoff_max_s,
               config.gcs_supervisor_backoff_initial_s * (2 ** restarts))


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.detached:
        die_with_parent()
    setup_process_logging("gcs_supervisor", os.path.join(args.session_dir, "logs"))
    return Supervisor(args).run()


if __name__ == "__main__":
    sys.exit(main())
