"""ray_core: the public API (`import ray_core as ray`), the CoreWorker, the CLI."""
