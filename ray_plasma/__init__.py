"""ray_plasma: the per-node shared-memory object store (server, allocator, client)."""
