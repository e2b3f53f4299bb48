"""What the store holds: objects, who references them, and which may be evicted.

Invariants:
- An object's block (data then metadata, one allocation) is freed only when it is sealed
  and no client holds a reference, or when its creator aborts or disconnects before
  sealing it. An object in use is never freed or evicted.
- `_lru` holds exactly the sealed objects with no references, oldest use first; it is
  the eviction order. Everything else counts as pinned or in use.
- A client's references are counted per client, so a client that goes away releases
  exactly what it held.
- delete() of an object in use (or not yet sealed) only marks it; it goes when its
  last reference is released (or when it is sealed unreferenced).
"""
import collections
import logging

from ray_plasma._allocator import Allocator
from ray_plasma import protocol
from ray_plasma.errors import (ObjectExistsError, ObjectNotFoundError,
                               ObjectStoreFullError, PlasmaError)

logger = logging.getLogger(__name__)


class ClientRefs:
    """One client's stake in the table: references held and objects it is creating."""

    __slots__ = ("name", "refs", "creating")

    def __init__(self, name: str):
        self.name = name
        self.refs = {}          # object id -> references this client holds
        self.creating = set()   # ids it created and has not sealed or aborted yet


class ObjectEntry:
    __slots__ = ("object_id", "offset", "data_size", "metadata_size", "allocated",
                 "state", "ref_count", "creator", "delete_pending")

    def __init__(self, object_id, offset, data_size, metadata_size, allocated, creator):
        self.object_id = object_id
        self.offset = offset
        self.data_size = data_size
        self.metadata_size = metadata_size
        self.allocated = allocated
        self.state = protocol.STATE_CREATED
        self.ref_count = 0
        self.creator = creator
        self.delete_pending = False

    @property
    def sealed(self):
        return self.state == protocol.STATE_SEALED


class ObjectTable:
    """The store's state, free of I/O; `on_event(entry, event)` reports seals and deletes."""

    def __init__(self, capacity: int, on_event=None):
        self.allocator = Allocator(capacity)
        self.capacity = self.allocator.capacity
        self.objects = {}
        self._lru = collections.OrderedDict()
        self._evictable_bytes = 0
        self._on_event = on_event or (lambda entry, event: None)
        self.num_evicted = 0
        self.bytes_evicted = 0

    # --- create, seal, abort ---------------------------------------------------------

    def create(self, client: ClientRefs, object_id: bytes, data_size: int,
               metadata_size: int) -> ObjectEntry:
        if object_id in self.objects:
            raise ObjectExistsError(f"object {object_id.hex()} already exists in the plasma "
                                    f"store; object ids are created once")
        need = data_size + metadata_size
        offset = self.allocator.allocate(need)
        if offset < 0:
            offset = self._evict_for(object_id, data_size, metadata_size)
        entry = ObjectEntry(object_id, offset, data_size, metadata_size,
                            self.allocator.block_size(offset), client)
        self.objects[object_id] = entry
        client.creating.add(object_id)
        return entry

    def seal(self, client: ClientRefs, object_id: bytes) -> ObjectEntry:
        entry = self._unsealed_of(client, object_id, "seal")
        entry.state = protocol.STATE_SEALED
        client.creating.discard(object_id)
        if entry.delete_pending:
            self._free(entry)
            return entry
        self._make_evictable(entry)
        # Last: listeners may take references (a waiting get) as they hear of it.
        self._on_event(entry, protocol.EVENT_SEALED)
        return entry

    def abort(self, client: ClientRefs, object_id: bytes) -> None:
        entry = self._unsealed_of(client, object_id, "abort")
        client.creating.discard(object_id)
        self._free(entry, notify=False)

    def _unsealed_of(self, client, object_id, action):
        entry = self.objects.get(object_id)
        if entry is None:
            raise ObjectNotFoundError(f"cannot {action} object {object_id.hex()}: it is not "
                                      f"in the plasma store")
        if entry.sealed:
            raise PlasmaError(f"cannot {action} object {object_id.hex()}: it is already sealed")
        if entry.creator is not client:
            raise PlasmaError(f"cannot {action} object {object_id.hex()}: another client "
                              f"({entry.creator.name}) created it")
        return entry

    # --- references --------------------------------------------------------------------

    def get_sealed(self, object_id: bytes):
        entry = self.objects.get(object_id)
        return entry if entry is not None and entry.sealed else None

    def add_ref(self, client: ClientRefs, entry: ObjectEntry) -> None:
        if entry.ref_count == 0 and self._lru.pop(entry.object_id, None) is not None:
            self._evictable_bytes -= entry.allocated
        entry.ref_count += 1
        client.refs[entry.object_id] = client.refs.get(entry.object_id, 0) + 1

    def release(self, client: ClientRefs, object_id: bytes, count: int = 1) -> None:
        held = client.refs.get(object_id, 0)
        if held < count:
            raise ObjectNotFoundError(f"client {client.name} releases object "
                                      f"{object_id.hex()} {count} time(s) but holds "
                                      f"{held} reference(s)")
        if held == count:
            del client.refs[object_id]
        else:
            client.refs[object_id] = held - count
        entry = self.objects[object_id]
        entry.ref_count -= count
        if entry.ref_count == 0:
            if entry.delete_pending:
                self._free(entry)
            else:
                self._make_evictable(entry)

    def disconnect(self, client: ClientRefs) -> None:
        """Release all that a departed client held and abort what it left unsealed."""
        for object_id, count in list(client.refs.items()):
            self.release(client, object_id, count)
        for object_id in list(client.creating):
            entry = self.objects[object_id]
            logger.info("Aborting object %s: its creator %s disconnected before sealing it",
                        object_id.hex(), client.name)
            client.creating.discard(object_id)
            self._free(entry, notify=False)

    # --- delete, evict -----------------------------------------------------------------

    def delete(self, object_id: bytes) -> bool:
        """Free the object now if nobody uses it (True), else once they stop (False)."""
        entry = self.objects.get(object_id)
        if entry is None:
            return False
        if entry.sealed and entry.ref_count == 0:
            self._free(entry)
            return True
        entry.delete_pending = True
        return False

    def _make_evictable(self, entry):
        self._lru[entry.object_id] = entry
        self._evictable_bytes += entry.allocated

    def _free(self, entry, notify=True):
        if self._lru.pop(entry.object_id, None) is not None:
            self._evictable_bytes -= entry.allocated
        del self.objects[entry.object_id]
        self.allocator.free(entry.offset)
        if notify:
            self._on_event(entry, protocol.EVENT_DELETED)

    def _evict_for(self, object_id, data_size, metadata_size) -> int:
        """Evict least recently used unreferenced objects until the create fits."""
        need = data_size + metadata_size
        if need <= self.allocator.free_bytes + self._evictable_bytes:
            while self._lru:
                _, victim = self._lru.popitem(last=False)
                self._evictable_bytes -= victim.allocated
                logger.debug("Evicting object %s (%d bytes) to make room for %s",
                             victim.object_id.hex(), victim.allocated, object_id.hex())
                self.num_evicted += 1
                self.bytes_evicted += victim.allocated
                self._free(victim)
                offset = self.allocator.allocate(need)
                if offset >= 0:
                    return offset
        pinned = self.capacity - self.allocator.free_bytes - self._evictable_bytes
        in_use = sum(1 for e in self.objects.values() if e.ref_count or not e.sealed)
        raise ObjectStoreFullError(
            f"object {object_id.hex()} needs {need} bytes (data {data_size} + metadata "
            f"{metadata_size}) but the plasma store's capacity is {self.capacity} bytes, of "
            f"which {pinned} bytes are pinned or in use by clients ({in_use} objects) and "
            f"the largest free block after evicting every unreferenced object is "
            f"{self.allocator.largest_free()} bytes. Release or delete objects you no longer "
            f"need, or give the node more object_store_memory.")

    # --- introspection -----------------------------------------------------------------

    def pinned_or_in_use(self) -> int:
        return self.capacity - self.allocator.free_bytes - self._evictable_bytes

    def stats(self) -> dict:
        stats = self.allocator.stats()
        stats.update(pinned_or_in_use=self.pinned_or_in_use(),
                     evictable=self._evictable_bytes, num_objects=len(self.objects),
                     num_sealed=sum(1 for e in self.objects.values() if e.sealed),
                     num_evicted=self.num_evicted, bytes_evicted=self.bytes_evicted)
        return stats

    def eviction_order(self):
        return list(self._lru)
