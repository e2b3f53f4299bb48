"""ray_plasma: the per-node shared-memory object store (server, allocator, client).

Layout:
  store.py          the store process: one selectors loop, one memfd region, the protocol
  object_table.py   what the store holds: objects, per-client references, LRU eviction
  _allocator.pyx    best-fit allocator over the region's offsets (Cython, C++ containers)
  protocol.py       the framed wire format, shared by the store and the client
  _client.pyx       the client (Cython); client.py is what other packages import
  memcopy.py        the one large copy into shared memory: threads, streaming stores
                    (_memcopy.pyx holds the copy loop)
  subscription.py   sealed/deleted notifications for the raylet
  shared_memory.py  creating and mapping the memfd region
  launcher.py       start_plasma_store() for the raylet and tests
  errors.py         the errors, and the one status <-> exception mapping

Invariants: objects are immutable once sealed; an object referenced by any client (a get
not yet released) or not yet sealed is never freed or evicted; a client's references die
with its connection; the region has no name, so nothing outlives the store in /dev/shm.
"""
