"""ray_raylet: the per-node manager (scheduler, worker pool, leases, object manager)."""
