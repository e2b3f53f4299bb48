"""The IDs every component shares (compiled in `_ids.pyx`; sizes and rules there)."""
from ray_common._ids import (  # noqa: F401
    ActorID,
    BaseID,
    JobID,
    NodeID,
    ObjectID,
    PlacementGroupID,
    TaskID,
    UniqueID,
    WorkerID,
)

__all__ = ["ActorID", "BaseID", "JobID", "NodeID", "ObjectID", "PlacementGroupID",
           "TaskID", "UniqueID", "WorkerID"]
