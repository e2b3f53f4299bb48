"""The reference counter's distributed side: borrowers at the owner, borrowed at the borrower."""
from ray_common.ids import JobID, ObjectID, TaskID

from ray_core._private.reference_counter import ReferenceCounter


def oid(i):
    return ObjectID.from_index(TaskID.for_driver_task(JobID.from_int(1)), i)


def _counter():
    freed, dropped, released = [], [], []
    rc = ReferenceCounter(lambda o, owned: (freed if owned else dropped).append(o),
                          lambda o, owner, n: released.append((o, owner, n)))
    return rc, freed, dropped, released


def test_owner_keeps_object_while_a_borrower_holds_it():
    rc, freed, _, _ = _counter()
    rc.add_owned(oid(1))
    rc.add_local_ref(oid(1))
    assert rc.add_borrower(oid(1), b"w1", 1)
    rc.remove_local_ref(oid(1))
    rc.flush()
    assert freed == [] and rc.has_reference(oid(1))
    rc.remove_borrower(oid(1), b"w1", 1)
    assert freed == [oid(1)]


def test_registrations_are_counted_and_commute():
    rc, freed, _, _ = _counter()
    rc.add_owned(oid(1))
    rc.add_local_ref(oid(1))
    rc.add_borrower(oid(1), b"w1", 1)      # the executor registered the caller
    rc.remove_local_ref(oid(1))
    rc.add_borrower(oid(1), b"w1", 1)      # ... and again for a second return
    rc.remove_borrower(oid(1), b"w1", 1)   # the first return was dropped
    assert freed == []
    rc.add_borrower(oid(1), b"w2", 2)
    rc.remove_borrower(oid(1), b"w1", 1)
    assert freed == [] and rc.borrowers(oid(1)) == {b"w2": 2}
    rc.remove_borrower(oid(1), b"w2", 2)
    assert freed == [oid(1)]


def test_dead_borrower_is_forgotten_everywhere():
    rc, freed, _, _ = _counter()
    for i in (1, 2):
        rc.add_owned(oid(i))
        rc.add_borrower(oid(i), b"dead", 3)
    rc.remove_borrower_everywhere(b"dead")
    assert sorted(freed, key=lambda o: o.binary()) == sorted([oid(1), oid(2)],
                                                             key=lambda o: o.binary())


def test_borrower_releases_all_registrations_when_its_count_reaches_zero():
    rc, _, dropped, released = _counter()
    rc.add_local_ref(oid(5))
    rc.note_borrowed(oid(5), b"owner", 1)
    rc.note_borrowed(oid(5), b"owner", 2)
    assert released == []
    rc.remove_local_ref(oid(5))
    rc.flush()
    assert dropped == [oid(5)] and released == [(oid(5), b"owner", 3)]


def test_registration_for_a_ref_nobody_kept_is_released_at_once():
    rc, _, _, released = _counter()
    rc.note_borrowed(oid(6), b"owner", 1)
    assert released == [(oid(6), b"owner", 1)]


def test_unregistered_held_lists_only_foreign_live_unregistered_refs():
    rc, _, _, _ = _counter()
    rc.add_owned(oid(1))
    rc.add_local_ref(oid(1))                  # owned
    rc.add_local_ref(oid(2))                  # borrowed, unregistered
    rc.add_local_ref(oid(3))
    rc.note_borrowed(oid(3), b"o", 1)         # already registered
    rc.add_local_ref(oid(4))
    rc.remove_local_ref(oid(4))               # dropped again
    got = rc.unregistered_held([(oid(i), b"o") for i in (1, 2, 2, 3, 4)])
    assert got == [(oid(2), b"o")]


def test_adding_a_borrower_to_a_freed_object_is_refused():
    rc, _, _, _ = _counter()
    assert not rc.add_borrower(oid(9), b"w", 1)


class _LoopQueue:
    """Stands for the io loop: what is scheduled waits in `calls` until the test runs it."""

    def __init__(self, calls):
        self.call_soon_threadsafe = calls.append


def test_a_long_queue_is_drained_later_not_where_a_ref_died():
    """A ref may die inside the garbage collector on a thread holding the lock that
    freeing takes: the append never drains in place; past _DEFER_AT it asks the io loop,
    and maybe_flush() (the API calls' safe point) drains past _DRAIN_AT."""
    from ray_core._private import reference_counter
    later = []
    freed = []
    rc = ReferenceCounter(lambda o, owned: freed.append(o), None, _LoopQueue(later))
    ids = [oid(i) for i in range(reference_counter._DEFER_AT + 10)]
    for object_id in ids:
        rc.add_owned(object_id)
        rc.add_local_ref(object_id)
    assert len(later) == 1
    later.pop()()
    for object_id in ids:
        rc.remove_local_ref(object_id)
    assert freed == [] and len(later) == 1     # asked once, nothing freed in place
    later.pop()()
    assert freed == ids


def test_maybe_flush_drains_only_a_long_queue():
    from ray_core._private import reference_counter
    freed = []
    rc = ReferenceCounter(lambda o, owned: freed.append(o), None, _LoopQueue([]))
    rc.add_owned(oid(1))
    rc.add_local_ref(oid(1))
    rc.remove_local_ref(oid(1))
    rc.maybe_flush()
    assert freed == []                          # short queue: left to the periodic flush
    ids = [oid(i) for i in range(2, reference_counter._DRAIN_AT + 2)]
    for object_id in ids:
        rc.add_owned(object_id)
        rc.add_local_ref(object_id)
        rc.remove_local_ref(object_id)
    rc.maybe_flush()
    assert freed == [oid(1)] + ids
