"""Helpers users import from ray_core.util (as from ray.util)."""
