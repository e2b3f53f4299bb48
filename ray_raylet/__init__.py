"""ray_raylet: the per-node manager (scheduler, worker pool, leases, object manager).

Layout (one process, `python -m ray_raylet.main`, everything on the rpc io loop):
    main.py              process start/stop: plasma store, server, logging, GCS, info file
    launcher.py          start_raylet() for node launchers and tests
    node_manager.py      NodeManagerService; wires the parts below to each other and the GCS
    lease_manager.py     lease requests: queue, grant, spillback, infeasible, return
    scheduling_policy.py hybrid / SPREAD / node affinity over the cluster view
    resources.py         fixed-point amounts, a node's availability, GPU instances
    bundles.py           placement group bundles: prepare, commit (renamed resources), cancel
    worker_pool.py       worker processes: start, register, reuse, reap, death watch
    object_manager.py    pulls between nodes' plasma stores: locations, retries, owners
    object_transfer.py   the pull wire: TCP connections carrying slices, shared memory to socket
    chunk_pull.py        one pull: slices over several connections and holders at once
    spill_manager.py     full store: pinned primaries to batched files, restore on demand
    memory_monitor.py    kills the leased worker using too much memory (OutOfMemoryError)
    machine.py           this machine's CPUs, GPUs and memory

Invariants:
- The raylet owns its plasma store and its workers: each dies with the raylet (parent
  death signal), and SIGTERM stops them before the raylet exits.
- A lease holds its resources from grant to ReturnWorker or its worker's death; nothing
  else takes or gives back resources, except a worker blocked in get lending its CPU
  and a placement group's bundle, which holds its share from prepare to cancel (its
  leases then hold the group's renamed resources instead).
- The raylet holds a plasma reference on each pinned primary copy until FreeObjects.
- At most one transfer of an object into this node runs at a time.
"""
