"""Who owns each primary copy this raylet keeps (pinned in plasma, or spilled).

A primary copy is kept until its owner frees it (FreeObjects). An owner that dies never
will: its objects are unreachable from then on (OwnerDiedError for whoever still holds
a ref), so the raylet frees them itself when it learns of the death -- of the owner's
process, or of the node it ran on. Without this, every object of a killed driver or
worker would stay pinned (or on disk) for the node's life.
"""
from typing import Dict, List, Set, Tuple

from ray_common.protocol import common_pb2


class ObjectOwners:
    def __init__(self):
        self._owner_of: Dict[bytes, bytes] = {}           # object id -> owner worker id
        self._objects_of: Dict[bytes, Set[bytes]] = {}    # owner worker id -> object ids
        self._address_of: Dict[bytes, common_pb2.Address] = {}  # owner worker id -> address

    def add(self, object_id: bytes, owner: common_pb2.Address) -> None:
        worker_id = owner.worker_id
        if not worker_id or object_id in self._owner_of:
            return
        self._owner_of[object_id] = worker_id
        self._objects_of.setdefault(worker_id, set()).add(object_id)
        self._address_of[worker_id] = owner

    def discard(self, object_id: bytes) -> None:
        worker_id = self._owner_of.pop(object_id, None)
        if worker_id is None:
            return
        objects = self._objects_of.get(worker_id)
        if objects is not None:
            objects.discard(object_id)
            if not objects:
                del self._objects_of[worker_id]
                self._address_of.pop(worker_id, None)

    def take_owned_by(self, worker_id: bytes) -> List[bytes]:
        """Forget and return the objects a (dead) owner had here."""
        objects = self._objects_of.pop(worker_id, set())
        self._address_of.pop(worker_id, None)
        for object_id in objects:
            self._owner_of.pop(object_id, None)
        return list(objects)

    def take_owned_on_node(self, node_id: bytes) -> List[bytes]:
        """As take_owned_by, for every owner that lived on a (dead) node."""
        owners = [w for w, a in self._address_of.items() if a.node_id == node_id]
        return [object_id for worker_id in owners for object_id in self.take_owned_by(worker_id)]

    def by_owner(self) -> List[Tuple[common_pb2.Address, List[bytes]]]:
        """(owner address, its objects here) for every owner."""
        return [(self._address_of[w], sorted(objects))
                for w, objects in self._objects_of.items()]

    def __len__(self) -> int:
        return len(self._owner_of)
