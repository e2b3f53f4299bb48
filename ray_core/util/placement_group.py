"""Placement groups (ray.util.placement_group): reserve bundles of resources, then run
tasks and actors inside them.

placement_group() returns at once; the GCS places the bundles (all or none) when the
cluster has room, and ready() / wait() tell when. Creations and removals travel to the
GCS in batches (ray_gcs/placement_group_batch.py): a group is created when its batch
arrives, and a named one is waited for, since a clashing name must raise here. A task or actor joins a group with
PlacementGroupSchedulingStrategy; its resource request is then drawn from a bundle
(any, or the one it names), never from the node's free pool. A group not detached is
removed when the job that created it ends.
"""
import concurrent.futures
from typing import Dict, List, Optional, Union

from ray_common.ids import PlacementGroupID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb
from ray_core.exceptions import RaySystemError
from ray_gcs.bundle_placement import STRATEGIES
from ray_gcs.errors import GcsError, GcsFailedPreconditionError, GcsNotFoundError

VALID_PLACEMENT_GROUP_STRATEGIES = STRATEGIES    # the planner's (ray.util's name for them)
_STATE_NAMES = {pb.PG_PENDING: "PENDING", pb.PG_CREATED: "CREATED", pb.PG_REMOVED: "REMOVED",
                pb.PG_RESCHEDULING: "RESCHEDULING"}


class PlacementGroup:
    """A handle to a placement group; picklable, so tasks can be given one."""

    def __init__(self, id: PlacementGroupID, bundle_cache: Optional[List[Dict]] = None,
                 creation: Optional[concurrent.futures.Future] = None):
        self.id = id
        self.bundle_cache = bundle_cache
        self._creation = creation   # in the creating process only: its batch's answer

    def _check_created(self) -> None:
        """Raise why the GCS refused this group, if it did."""
        if self._creation is not None and self._creation.done() and \
                self._creation.exception() is not None:
            raise RaySystemError(f"Failed to create placement group {self.id.hex()}: "
                                 f"{self._creation.exception()}")

    @staticmethod
    def empty() -> "PlacementGroup":
        """Ray's "no placement group" handle (a nil id); as a strategy's group it means
        what None means."""
        return PlacementGroup(PlacementGroupID.nil())

    @property
    def is_empty(self) -> bool:
        return self.id.is_nil()

    def ready(self):
        """An ObjectRef that resolves (to this group) once every bundle is placed; get()
        raises if the group is removed first."""
        from ray_core._private import worker
        w = worker.global_worker()
        group_id = self.id.binary()

        async def placed():
            try:
                await w.gcs.wait_placement_group_until_ready(group_id)
            except GcsFailedPreconditionError as e:
                raise RaySystemError(str(e).split(": ", 1)[-1]) from None
            except GcsNotFoundError:
                self._check_created()
                raise
            return self

        return w.core_worker.future_ref(placed())

    def wait(self, timeout_seconds: Union[int, float] = 30) -> bool:
        """True once the group is placed; False if it is not within the timeout (or was
        removed)."""
        try:
            return _gcs().sync.wait_placement_group_until_ready(self.id.binary(),
                                                                timeout_seconds)
        except GcsFailedPreconditionError:
            return False
        except GcsNotFoundError:
            self._check_created()
            raise

    @property
    def bundle_specs(self) -> List[Dict[str, float]]:
        if self.bundle_cache is None:
            row = _gcs().sync.get_placement_group(self.id.binary())
            if row is None:
                raise ValueError(f"unknown placement group {self.id.hex()}")
            self.bundle_cache = [dict(b.unit_resources) for b in row.bundles]
        return self.bundle_cache

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def __eq__(self, other):
        return isinstance(other, PlacementGroup) and self.id == other.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"PlacementGroup(id={self.id.hex()})"

    def __reduce__(self):
        return PlacementGroup, (self.id, self.bundle_cache)


def _gcs():
    from ray_core._private import worker
    return worker.global_worker().gcs


def validate_bundles(bundles) -> List[Dict[str, float]]:
    if not isinstance(bundles, list):
        raise ValueError(f"placement group bundles must be a list of resource dicts, got "
                         f"{type(bundles).__name__}")
    if not bundles:
        raise ValueError('placement group bundles must be a non-empty list of resource dicts, '
                         'e.g. [{"CPU": 1}, {"GPU": 1}]; got an empty list')
    out = []
    for index, bundle in enumerate(bundles):
        if not isinstance(bundle, dict) or not all(isinstance(k, str) for k in bundle) or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                        for v in bundle.values()):
            raise ValueError(f"bundle {index} must be a dict of resource name to amount, e.g. "
                             f'{{"CPU": 1}}; got {bundle!r}')
        if any(v < 0 for v in bundle.values()):
            raise ValueError(f"bundle {index} has a negative amount: {bundle!r}")
        if not bundle or all(v == 0 for v in bundle.values()):
            raise ValueError(f"bundle {index} reserves nothing ({bundle!r}); bundles cannot be "
                             f"empty or all zeros")
        out.append({name: float(amount) for name, amount in bundle.items() if amount > 0})
    return out


def placement_group(bundles: List[Dict[str, float]], strategy: str = "PACK", name: str = "",
                    lifetime: Optional[str] = None) -> PlacementGroup:
    """Ask the cluster to reserve `bundles`; returns at once (see ready() and wait())."""
    from ray_core._private import worker
    specs = validate_bundles(bundles)
    strategy = strategy or "PACK"
    if strategy not in VALID_PLACEMENT_GROUP_STRATEGIES:
        raise ValueError(f"invalid placement group strategy {strategy!r}; valid strategies: "
                         f"{', '.join(VALID_PLACEMENT_GROUP_STRATEGIES)}")
    if lifetime not in (None, "detached"):
        raise ValueError(f"placement group lifetime must be None or 'detached', got "
                         f"{lifetime!r}")
    if not isinstance(name, str):
        raise TypeError(f"placement group name must be a str, got {type(name).__name__}")
    w = worker.global_worker()
    core = w.core_worker
    group_id = PlacementGroupID.of(core.current_job_id)
    row = pb.PlacementGroupTableData(
        placement_group_id=group_id.binary(), name=name, strategy=strategy,
        creator_job_id=core.current_job_id.binary(), is_detached=lifetime == "detached",
        ray_namespace=w.namespace,
        bundles=[common_pb2.Bundle(bundle_index=i, unit_resources=spec)
                 for i, spec in enumerate(specs)])
    creation = w.gcs.placement_groups.create(row)
    group = PlacementGroup(group_id, specs, creation)
    if name:
        try:
            creation.result()
        except GcsError as e:
            raise RaySystemError(f"Failed to create placement group {group_id.hex()}: "
                                 f"{e}") from None
    return group


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Return the group's bundles; tasks and actors running in it are killed."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group needs a PlacementGroup, got "
                        f"{type(placement_group).__name__}")
    _gcs().placement_groups.remove(placement_group.id.binary())


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live group of that name in this job's namespace."""
    from ray_core._private import worker
    if not placement_group_name:
        raise ValueError("get_placement_group needs a non-empty name")
    w = worker.global_worker()
    row = w.gcs.sync.get_named_placement_group(placement_group_name, w.namespace)
    if row is None:
        raise ValueError(f"no placement group named {placement_group_name!r} in namespace "
                         f"{w.namespace!r}")
    return PlacementGroup(PlacementGroupID(row.placement_group_id),
                          [dict(b.unit_resources) for b in row.bundles])


def placement_group_table(placement_group: Optional[PlacementGroup] = None) -> dict:
    """One group's state (or every group's, by hex id) as Ray's state API shows it."""
    gcs = _gcs()
    if placement_group is not None:
        row = gcs.sync.get_placement_group(placement_group.id.binary())
        return _describe(row) if row is not None else {}
    return {row.placement_group_id.hex(): _describe(row)
            for row in gcs.sync.get_all_placement_group()}


def _describe(row: pb.PlacementGroupTableData) -> dict:
    return {
        "placement_group_id": row.placement_group_id.hex(),
        "name": row.name,
        "bundles": {b.bundle_index: dict(b.unit_resources) for b in row.bundles},
        "bundles_to_node_id": {b.bundle_index: b.node_id.hex() for b in row.bundles
                               if b.node_id},
        "strategy": row.strategy or "PACK",
        "state": _STATE_NAMES.get(row.state, str(row.state)),
        "stats": {"scheduling_state": "FINISHED" if row.state == pb.PG_CREATED
                  else row.scheduling_detail or "QUEUED"},
    }


def get_current_placement_group() -> Optional[PlacementGroup]:
    """The group the running task or actor was placed in; None in the driver."""
    from ray_core._private import worker
    group_id = worker.global_worker().core_worker.current_placement_group()[0]
    return PlacementGroup(PlacementGroupID(group_id)) if group_id else None
