"""Ray's experimental helpers that programs import (`ray_core.experimental.tqdm_ray`)."""
