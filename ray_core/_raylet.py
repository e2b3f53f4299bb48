"""Ray's `ray._raylet` path, for programs that import from it (`from ray._raylet import
ObjectRefGenerator`): the same classes ray_core exports, under the name Ray gives them."""
from ray_common.ids import (ActorID, JobID, NodeID, ObjectID, PlacementGroupID,  # noqa: F401
                            TaskID, UniqueID, WorkerID)

from ray_core._private.generator_streams import (DynamicObjectRefGenerator,  # noqa: F401
                                                ObjectRefGenerator)
from ray_core.object_ref import ObjectRef  # noqa: F401

__all__ = ["ActorID", "DynamicObjectRefGenerator", "JobID", "NodeID", "ObjectID", "ObjectRef", "ObjectRefGenerator",
           "PlacementGroupID", "TaskID", "UniqueID", "WorkerID"]
