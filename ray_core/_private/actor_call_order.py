"""The actor's side of call ordering: each caller's calls run once, in sequence order.

A caller numbers its calls to one incarnation of an actor 0, 1, 2, ... in the order it
sends them (actor_submitter), and says with every call the lowest number it still waits
a reply for (`client_processed_up_to`: everything below was answered, or given up on).
A connection can drop with calls in flight; the caller then sends the unanswered ones
again, on a new connection, in order. Some of them may have run already (their replies
were lost with the connection), some may still be running, some may not have arrived.
So, per caller:
- a number below the next expected one is a duplicate: its stored reply is sent again
  (or, if it still runs, its reply goes to the caller's newest connection) and it does
  not run twice;
- a number above the next expected one waits until the calls before it arrive (or the
  caller says it gave up on them), at most `actor_call_reorder_wait_ms`;
- replies are kept until the caller's floor passes them, so a resend can be answered.
Thread-safe: calls are admitted on the worker's main thread, replies come from whichever
thread ran the call (threaded and async actors).
"""
import logging
import threading
import time
from typing import Callable, Dict, List, Tuple

from ray_common.config import config
from ray_common.protocol import common_pb2

logger = logging.getLogger(__name__)
_ACTOR_TASK = common_pb2.ACTOR_TASK
# Stored replies are trimmed (against the caller's floor) once there are this many: a
# scan now and then, not a look at every call.
_TRIM_AT = 64


class _Caller:
    __slots__ = ("hex", "expected", "floor", "buffered", "replies", "conn", "gap_since")

    def __init__(self, caller_id: bytes):
        self.hex = caller_id.hex()
        self.expected = 0
        self.floor = 0
        self.buffered: Dict[int, tuple] = {}       # seq -> (conn, request), arrived early
        self.replies: Dict[int, object] = {}       # seq -> reply the caller may still need
        self.conn = None                           # the newest connection it sent on
        self.gap_since = 0.0


class ActorCallOrder:
    def __init__(self, send: Callable[[object, list], None]):
        """`send(conn, replies)` writes replies to a connection (the TaskServer's)."""
        self._send = send
        self._callers: Dict[bytes, _Caller] = {}
        self._running: Dict[bytes, tuple] = {}     # task id -> (caller, seq): admitted
        self._waiting = 0            # calls buffered over all callers
        self._lock = threading.Lock()

    def admit(self, pairs: List[Tuple[object, object]]) -> List[Tuple[object, object]]:
        """The (connection, PushTaskRequest) pairs to run now, in order."""
        if not pairs and not self._waiting:
            return pairs
        out = []
        resend = []
        with self._lock:
            for conn, request in pairs:
                spec = request.task_spec
                if spec.type != _ACTOR_TASK:
                    out.append((conn, request))
                    continue
                self._admit_one(conn, request, out, resend)
            if self._waiting:
                self._end_overdue_gaps(out)
        for conn, reply in resend:
            self._send(conn, [reply])
        return out

    def _admit_one(self, conn, request, out, resend) -> None:
        spec = request.task_spec
        order = spec.actor_task_spec
        caller = self._callers.get(order.caller_worker_id)
        if caller is None:
            caller = self._callers[order.caller_worker_id] = _Caller(order.caller_worker_id)
        caller.conn = conn
        floor = request.client_processed_up_to
        if floor > caller.floor:
            self._advance_floor(caller, floor, out)
        seq = order.sequence_number
        if seq == caller.expected:
            self._running[spec.task_id] = (caller, seq)
            caller.expected = seq + 1
            out.append((conn, request))
            if caller.buffered:
                self._run_buffered(caller, out)
        elif seq > caller.expected:
            if seq not in caller.buffered:
                caller.buffered[seq] = (conn, request)
                self._waiting += 1
                if not caller.gap_since:
                    caller.gap_since = time.monotonic()
        else:
            reply = caller.replies.get(seq)
            task_hex = spec.task_id.hex()
            if reply is not None:
                logger.info("Call %d of caller %s (task %s) arrived again: sending its "
                            "reply again, not running it twice", seq, caller.hex, task_hex)
                resend.append((conn, reply))
            elif spec.task_id in self._running:
                logger.info("Call %d of caller %s (task %s) arrived again while it runs: "
                            "its reply goes to the new connection", seq, caller.hex, task_hex)
            else:
                logger.warning("Dropped call %d of caller %s (task %s): it ran already and "
                               "the caller has had its reply", seq, caller.hex, task_hex)

    def _advance_floor(self, caller: _Caller, floor: int, out) -> None:
        """Below `floor` the caller waits for nothing: stop waiting for calls it gave up on
        before sending them (and, now and then, forget the replies it has had)."""
        caller.floor = floor
        replies = caller.replies
        if len(replies) >= _TRIM_AT:
            for seq in [s for s in replies if s < floor]:
                del replies[seq]
        if floor > caller.expected:
            for seq in [s for s in caller.buffered if s < floor]:
                del caller.buffered[seq]        # given up on by the caller: never run
                self._waiting -= 1
            caller.expected = floor
            self._run_buffered(caller, out)

    def _run(self, caller: _Caller, conn, request, out) -> None:
        self._running[request.task_spec.task_id] = (
            caller, request.task_spec.actor_task_spec.sequence_number)
        caller.expected += 1
        out.append((conn, request))

    def _run_buffered(self, caller: _Caller, out) -> None:
        buffered = caller.buffered
        while caller.expected in buffered:
            conn, request = buffered.pop(caller.expected)
            self._waiting -= 1
            self._run(caller, conn, request, out)
        caller.gap_since = time.monotonic() if buffered else 0.0

    def _end_overdue_gaps(self, out) -> None:
        """A call that never comes must not hold back the ones after it for ever."""
        limit = config.actor_call_reorder_wait_ms / 1000.0
        now = time.monotonic()
        for caller in self._callers.values():
            if caller.buffered and now - caller.gap_since >= limit:
                first = min(caller.buffered)
                logger.warning("Calls %d..%d of caller %s never arrived within "
                               "actor_call_reorder_wait_ms=%d: running the calls after them",
                               caller.expected, first - 1, caller.hex,
                               config.actor_call_reorder_wait_ms)
                caller.expected = first
                self._run_buffered(caller, out)

    def replied(self, conn, replies: list):
        """Store the replies of admitted calls; returns the connection to send them on
        (the caller's newest: the one they came on may be gone)."""
        running = self._running
        with self._lock:
            for reply in replies:
                entry = running.pop(reply.task_id, None)
                if entry is not None:
                    caller, seq = entry
                    caller.replies[seq] = reply
                    conn = caller.conn
        return conn
