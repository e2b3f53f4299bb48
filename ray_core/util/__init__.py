"""Helpers users import from ray_core.util (as from ray.util)."""

from ray_core.util.actor_pool import ActorPool  # noqa: E402,F401
from ray_core.util.placement_group import (PlacementGroup, get_current_placement_group,  # noqa: F401
                                           get_placement_group, placement_group,
                                           placement_group_table, remove_placement_group)

__all__ = ["ActorPool", "PlacementGroup", "get_current_placement_group", "get_placement_group",
           "placement_group", "placement_group_table", "remove_placement_group"]
