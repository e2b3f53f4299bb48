"""ray_gcs: the global control store (ARCHITECTURE.md, "The GCS").

Layout:
- storage.py / redis_storage.py: the one storage interface (get/put/delete/scan by
  table and key, batched) and its in-memory and Redis backends;
- kv_manager.py, node_manager.py, resource_view.py, health_check.py, job_manager.py,
  worker_manager.py, actor_table.py, placement_group_table.py: one table each, with the
  gRPC servicer that serves it;
- actor_manager.py, placement_group_scheduler.py (with bundle_placement.py, the pure
  planner): what creates actors and places placement groups through the raylets;
- ended_rows.py: the bound on the rows of what ended (dead actors and workers, removed
  placement groups) that those tables keep;
- pubsub.py: the publisher that pushes table changes to subscribers;
- server.py: `python -m ray_gcs.server`, which wires them together;
- client.py: GcsClient, the one client raylets, workers and drivers use;
- launcher.py / redis_server.py: start a GCS or a private redis-server as a child.

Invariants: every table except the KV store is held in memory and written through to
storage before a change is acknowledged or published, so a GCS restarted on the same
storage rebuilds every table from it (`load()` on each manager). The KV store reads and
writes storage directly. Only this package touches storage; everything else goes
through the RPCs.
"""
