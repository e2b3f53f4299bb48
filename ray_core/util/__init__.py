"""Helpers users import from ray_core.util (as from ray.util)."""

from ray_core.util.actor_pool import ActorPool  # noqa: E402,F401

__all__ = ["ActorPool"]
