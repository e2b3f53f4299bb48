"""ray_gcs: the global control store (the GCS server, its tables, pubsub, health checks
and storage backends) and the client every other process uses to reach it."""
