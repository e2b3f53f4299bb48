"""The store's bookkeeping without processes: references, eviction order, deletes."""
import pytest

from ray_plasma.errors import ObjectExistsError, ObjectNotFoundError, ObjectStoreFullError
from ray_plasma.errors import PlasmaError
from ray_plasma.object_table import ClientRefs, ObjectTable

from tests.plasma.conftest import oid

KB = 1024


@pytest.fixture
def table():
    events = []
    t = ObjectTable(64 * KB, on_event=lambda entry, event: events.append((entry.object_id, event)))
    t.events = events
    return t


def put(table, client, n, size=8 * KB):
    table.create(client, oid(n), size, 0)
    return table.seal(client, oid(n))


def test_eviction_is_least_recently_used_first(table):
    writer, reader = ClientRefs("writer"), ClientRefs("reader")
    for n in range(8):                       # fills 64 KiB exactly
        put(table, writer, n)
    table.add_ref(reader, table.get_sealed(oid(0)))   # touch 0: now most recent
    table.release(reader, oid(0))
    assert table.eviction_order()[0] == oid(1) and table.eviction_order()[-1] == oid(0)
    put(table, writer, 100, size=16 * KB)     # needs two blocks: 1 and 2 go
    assert oid(1) not in table.objects and oid(2) not in table.objects
    assert oid(0) in table.objects and oid(3) in table.objects
    assert table.num_evicted == 2
    assert (oid(1), 2) in table.events       # evictions are announced as deletes


def test_objects_in_use_are_never_evicted(table):
    writer, reader = ClientRefs("writer"), ClientRefs("reader")
    for n in range(8):
        put(table, writer, n)
        table.add_ref(reader, table.get_sealed(oid(n)))
    table.release(reader, oid(5))
    put(table, writer, 100)                  # only 5 is free to go
    assert oid(5) not in table.objects
    with pytest.raises(ObjectStoreFullError) as err:
        table.create(writer, oid(101), 8 * KB, 16)
    message = str(err.value)
    assert "needs 8208 bytes" in message and "capacity is 65536 bytes" in message
    assert "57344 bytes are pinned or in use" in message
    assert all(oid(n) in table.objects for n in (0, 1, 2, 3, 4, 6, 7))


def test_full_store_evicts_nothing_when_it_cannot_fit_anyway(table):
    writer, reader = ClientRefs("writer"), ClientRefs("reader")
    put(table, writer, 1, size=32 * KB)
    table.add_ref(reader, table.get_sealed(oid(1)))
    put(table, writer, 2, size=16 * KB)
    with pytest.raises(ObjectStoreFullError):
        table.create(writer, oid(3), 40 * KB, 0)
    assert oid(2) in table.objects           # evicting it would not have helped


def test_unsealed_objects_are_pinned_and_aborted_on_disconnect(table):
    writer = ClientRefs("writer")
    table.create(writer, oid(1), 60 * KB, 0)
    with pytest.raises(ObjectStoreFullError):
        table.create(ClientRefs("other"), oid(2), 8 * KB, 0)
    table.disconnect(writer)
    assert oid(1) not in table.objects and table.allocator.used == 0


def test_delete_waits_for_the_last_reader(table):
    writer, reader = ClientRefs("writer"), ClientRefs("reader")
    put(table, writer, 1)
    table.add_ref(reader, table.get_sealed(oid(1)))
    table.add_ref(reader, table.get_sealed(oid(1)))
    assert table.delete(oid(1)) is False
    table.release(reader, oid(1))
    assert oid(1) in table.objects
    table.disconnect(reader)                  # drops the second reference
    assert oid(1) not in table.objects
    assert table.delete(oid(1)) is False      # already gone: nothing to do


def test_errors_name_the_object(table):
    a, b = ClientRefs("a"), ClientRefs("b")
    put(table, a, 1)
    with pytest.raises(ObjectExistsError, match=oid(1).hex()):
        table.create(b, oid(1), 10, 0)
    table.create(a, oid(2), 10, 0)
    with pytest.raises(PlasmaError, match="another client"):
        table.seal(b, oid(2))
    with pytest.raises(PlasmaError, match="already sealed"):
        table.seal(a, oid(1))
    with pytest.raises(ObjectNotFoundError, match="holds 0 reference"):
        table.release(b, oid(1))


def test_a_reference_taken_while_the_seal_is_announced_pins_the_object():
    waiter = ClientRefs("waiter")
    holder = {}

    def on_event(entry, event):   # what the store does for a get waiting on the object
        if event == 1 and entry.object_id == oid(1):
            holder["table"].add_ref(waiter, entry)

    table = holder["table"] = ObjectTable(64 * KB, on_event=on_event)
    writer = ClientRefs("writer")
    put(table, writer, 1, size=32 * KB)
    assert table.eviction_order() == [] and table.pinned_or_in_use() == 32 * KB
    with pytest.raises(ObjectStoreFullError):
        table.create(writer, oid(2), 48 * KB, 0)
    table.release(waiter, oid(1))
    assert table.eviction_order() == [oid(1)] and table.pinned_or_in_use() == 0
    table.create(writer, oid(2), 48 * KB, 0)      # now it may go
    assert oid(1) not in table.objects


def check_invariants(table, clients):
    lru = table._lru
    assert table._evictable_bytes == sum(e.allocated for e in lru.values())
    for object_id, entry in table.objects.items():
        refs = sum(c.refs.get(object_id, 0) for c in clients)
        assert entry.ref_count == refs, object_id.hex()
        evictable = entry.sealed and refs == 0 and not entry.delete_pending
        assert (object_id in lru) == evictable, object_id.hex()
        assert not (entry.sealed and entry.delete_pending and refs == 0)
    for c in clients:
        assert all(object_id in table.objects for object_id in c.refs)
        assert all(object_id in table.objects for object_id in c.creating)
    assert table.allocator.used == sum(e.allocated for e in table.objects.values())
    assert table.pinned_or_in_use() == sum(e.allocated for e in table.objects.values()
                                           if e.ref_count or not e.sealed)
    table.allocator.check()


def test_randomized_operations_keep_the_bookkeeping_consistent():
    import random
    rng = random.Random(7)
    clients = [ClientRefs(f"c{i}") for i in range(4)]
    waiting = {}                        # object id -> clients whose get waits for it

    def on_event(entry, event):
        if event == 1:
            for c in waiting.pop(entry.object_id, []):
                table.add_ref(c, entry)

    table = ObjectTable(256 * KB, on_event=on_event)
    for step in range(20_000):
        c = rng.choice(clients)
        n = rng.randrange(40)
        op = rng.random()
        try:
            if op < 0.25:
                table.create(c, oid(n), rng.choice((0, 100, 4 * KB, 40 * KB)), rng.randrange(64))
            elif op < 0.45 and c.creating:
                object_id = rng.choice(sorted(c.creating))
                if rng.random() < 0.85:
                    table.seal(c, object_id)
                else:
                    table.abort(c, object_id)
            elif op < 0.65:
                entry = table.get_sealed(oid(n))
                if entry is not None:
                    table.add_ref(c, entry)
                else:
                    waiting.setdefault(oid(n), []).append(c)
            elif op < 0.85 and c.refs:
                table.release(c, rng.choice(sorted(c.refs)))
            elif op < 0.95:
                table.delete(oid(n))
            else:
                for ids in waiting.values():
                    while c in ids:
                        ids.remove(c)
                table.disconnect(c)
        except (ObjectExistsError, ObjectStoreFullError):
            pass
        check_invariants(table, clients)
