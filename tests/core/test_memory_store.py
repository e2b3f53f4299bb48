import threading

from ray_common.ids import JobID, ObjectID, TaskID
from ray_core._private.memory_store import MemoryStore, StoredObject
from ray_core._private.reference_counter import ReferenceCounter

TASK = TaskID.for_driver_task(JobID.from_int(1))


def oid(i):
    return ObjectID.from_index(TASK, i)


def test_wait_wakes_on_put_from_another_thread():
    store = MemoryStore()
    threading.Timer(0.05, store.put, (oid(1), StoredObject(b"x", b"P"))).start()
    got = store.wait([oid(1)], 1, timeout=5)
    assert got[oid(1)].data == b"x"


def test_wait_returns_partial_at_timeout_and_cleans_waiters():
    store = MemoryStore()
    store.put(oid(1), StoredObject(b"x", b"P"))
    got = store.wait([oid(1), oid(2)], 2, timeout=0.05)
    assert list(got) == [oid(1)]
    assert store._waiters == {}


def test_callbacks_fire_once_present():
    store = MemoryStore()
    seen = []
    store.add_callback(oid(3), seen.append)
    assert seen == []
    store.put(oid(3), StoredObject.plasma_marker(b"n", 10))
    assert seen[0].in_plasma and seen[0].size == 10
    store.add_callback(oid(3), seen.append)
    assert len(seen) == 2


def _recorder():
    freed = []
    return freed, lambda object_id, owned: owned and freed.append(object_id)


def test_reference_counter_frees_owned_object_when_last_ref_drops():
    freed, on_zero = _recorder()
    rc = ReferenceCounter(on_zero)
    rc.add_owned(oid(1))
    rc.add_local_ref(oid(1))
    rc.add_local_ref(oid(1))
    rc.remove_local_ref(oid(1))
    rc.flush()
    assert freed == []
    rc.remove_local_ref(oid(1))
    rc.flush()
    assert freed == [oid(1)]
    assert rc.num_tracked() == 0


def test_removal_while_lock_held_is_deferred_not_lost():
    freed, on_zero = _recorder()
    rc = ReferenceCounter(on_zero)
    rc.add_owned(oid(1))
    rc.add_local_ref(oid(1))
    with rc._lock:                      # as if GC ran __del__ inside a counter call
        rc.remove_local_ref(oid(1))
        rc.try_flush()                  # must not deadlock on the held lock
    assert freed == []
    rc.flush()
    assert freed == [oid(1)]
