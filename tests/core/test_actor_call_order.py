"""ActorCallOrder: each caller's calls run once and in sequence order, whatever the
connection did to them (duplicates, early arrivals, calls the caller gave up on)."""
import pytest

from ray_common.config import config
from ray_common.protocol import common_pb2, core_worker_pb2

from ray_core._private.actor_call_order import _TRIM_AT, ActorCallOrder


def call(seq, caller=b"A", floor=None):
    request = core_worker_pb2.PushTaskRequest(client_processed_up_to=seq if floor is None
                                              else floor)
    spec = request.task_spec
    spec.type = common_pb2.ACTOR_TASK
    spec.task_id = caller + bytes([seq])
    spec.actor_task_spec.sequence_number = seq
    spec.actor_task_spec.caller_worker_id = caller
    return request


def reply_to(request):
    return core_worker_pb2.PushTaskReply(task_id=request.task_spec.task_id)


class Sent(list):
    def __call__(self, conn, replies):
        self.extend((conn, r.task_id) for r in replies)


@pytest.fixture
def order():
    sent = Sent()
    order = ActorCallOrder(sent)
    order.sent = sent
    return order


def seqs(pairs):
    return [r.task_spec.actor_task_spec.sequence_number for _, r in pairs]


def test_in_order_calls_run_at_once(order):
    assert seqs(order.admit([("c", call(0)), ("c", call(1, floor=0)), ("c", call(2, floor=0))])) \
        == [0, 1, 2]


def test_an_early_call_waits_for_the_ones_before_it(order):
    assert seqs(order.admit([("c", call(1, floor=0))])) == []
    assert seqs(order.admit([("c", call(2, floor=0))])) == []
    assert seqs(order.admit([("c", call(0))])) == [0, 1, 2]


def test_a_call_sent_again_after_it_ran_is_answered_not_run(order):
    first = call(0)
    (conn, admitted), = order.admit([("old", first)])
    assert order.replied(conn, [reply_to(admitted)]) == "old"
    assert order.admit([("new", call(0))]) == []
    assert order.sent == [("new", first.task_spec.task_id)]


def test_a_call_sent_again_while_it_runs_is_answered_on_the_new_connection(order):
    (conn, admitted), = order.admit([("old", call(0))])
    assert order.admit([("new", call(0))]) == []
    assert order.replied(conn, [reply_to(admitted)]) == "new"
    assert order.sent == []


def test_replies_below_the_floor_are_forgotten(order):
    n = _TRIM_AT + 6
    for seq in range(n):
        (conn, admitted), = order.admit([("c", call(seq, floor=0))])
        order.replied(conn, [reply_to(admitted)])
    order.admit([("c", call(n, floor=n - 2))])
    assert order.admit([("c", call(0, floor=n - 2))]) == []     # forgotten: dropped
    assert order.sent == []
    assert order.admit([("c", call(n - 1, floor=n - 2))]) == []  # kept: answered again
    assert len(order.sent) == 1


def test_a_floor_past_a_missing_call_stops_the_wait_for_it(order):
    assert seqs(order.admit([("c", call(0))])) == [0]
    assert seqs(order.admit([("c", call(2, floor=1))])) == []
    # The caller gave up on call 1 before sending it (cancelled): its next call says so.
    assert seqs(order.admit([("c", call(3, floor=2))])) == [2, 3]


def test_callers_are_ordered_apart(order):
    assert seqs(order.admit([("a", call(1, b"A", floor=0)), ("b", call(0, b"B"))])) == [0]
    assert seqs(order.admit([("a", call(0, b"A"))])) == [0, 1]


def test_a_call_that_never_comes_holds_the_rest_back_only_so_long(order, monkeypatch):
    monkeypatch.setitem(config._system_config, "actor_call_reorder_wait_ms", 0)
    assert seqs(order.admit([("c", call(0))])) == [0]
    assert seqs(order.admit([("c", call(2, floor=1))])) == [2]


def test_tasks_that_are_not_actor_calls_pass_through(order):
    request = core_worker_pb2.PushTaskRequest()
    request.task_spec.type = common_pb2.ACTOR_CREATION_TASK
    assert order.admit([("c", request)]) == [("c", request)]
