"""Helpers users import from ray_core.util (as from ray.util)."""

from ray_core.util.actor_pool import ActorPool  # noqa: F401
from ray_core.util.check_serialize import inspect_serializability  # noqa: F401
from ray_core.util.debug import (disable_log_once_globally, enable_periodic_logging,  # noqa: F401
                                 log_once)
from ray_core.util.helpers import as_completed, map_unordered  # noqa: F401
from ray_core.util.placement_group import (PlacementGroup, get_current_placement_group,  # noqa: F401
                                           get_placement_group, placement_group,
                                           placement_group_table, remove_placement_group)
from ray_core.util.serialization import deregister_serializer, register_serializer  # noqa: F401


def list_named_actors(all_namespaces: bool = False):
    """Names of the live named actors in this job's namespace; with all_namespaces,
    {"name", "namespace"} dicts across every namespace."""
    from ray_core._private import worker
    from ray_core.actor import default_namespace
    w = worker.global_worker()
    entries = w.core_worker.gcs.sync.list_named_actors(all_namespaces, default_namespace(w))
    if all_namespaces:
        return [{"name": e.name, "namespace": e.ray_namespace} for e in entries]
    return [e.name for e in entries]


def get_node_instance_id() -> str:
    """The cloud instance id of this node, as Ray reads it (RAY_CLOUD_INSTANCE_ID); empty
    off a cloud."""
    import os
    return os.environ.get("RAY_CLOUD_INSTANCE_ID", "")


def get_node_ip_address() -> str:
    """The IP address this process's node is known by in the cluster."""
    from ray_core._private import worker
    return worker.global_worker().core_worker.node_ip


__all__ = ["inspect_serializability", "ActorPool", "PlacementGroup", "as_completed", "deregister_serializer",
           "disable_log_once_globally", "enable_periodic_logging", "log_once",
           "get_current_placement_group", "get_node_instance_id", "get_node_ip_address",
           "get_placement_group",
           "list_named_actors", "map_unordered", "placement_group", "placement_group_table",
           "register_serializer", "remove_placement_group"]
