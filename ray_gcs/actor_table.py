"""The actor table: actor rows, the named-actor index, and the read RPCs.

The actor manager (creation, scheduling, restarts, kill) writes rows through `put`;
RegisterActor and KillActorViaGcs are its RPCs and answer UNIMPLEMENTED until it
exists. The named index maps (namespace, name) to the actor holding that name; a DEAD
actor gives its name up. Only the newest maximum_gcs_destroyed_actor_cached_count DEAD
rows are kept (ended_rows.py); an actor forgotten is unknown, which callers treat as
dead (get_actor raises ValueError either way).
"""
import logging
import time
from typing import Dict, List, Optional, Tuple

from ray_common.ids import ActorID
from ray_common.protocol import gcs_service_pb2 as pb, gcs_service_pb2_grpc
from ray_gcs import errors
from ray_gcs.ended_rows import EndedRows
from ray_gcs.pubsub import GcsPublisher
from ray_gcs.storage import Storage, Table, load_rows

logger = logging.getLogger(__name__)

DEAD = pb.ActorTableData.DEAD


class GcsActorTable(gcs_service_pb2_grpc.ActorInfoGcsServiceServicer):
    def __init__(self, storage: Storage, publisher: GcsPublisher):
        self._storage = storage
        self._publisher = publisher
        self._actors: Dict[bytes, pb.ActorTableData] = {}
        self._named: Dict[Tuple[str, str], bytes] = {}
        self._dead = EndedRows("maximum_gcs_destroyed_actor_cached_count")

    def num_rows(self) -> int:
        """Rows in the table (actors): a metrics gauge."""
        return len(self._actors)

    def num_dead(self) -> int:
        """DEAD rows kept (at most maximum_gcs_destroyed_actor_cached_count): a gauge."""
        return len(self._dead)

    def num_named(self) -> int:
        """Names held by actors not DEAD: a gauge."""
        return len(self._named)

    async def load(self) -> None:
        rows = await load_rows(self._storage, Table.ACTOR, pb.ActorTableData)
        for actor in sorted(rows.values(), key=lambda a: a.end_time_ms):
            self._index(actor)
        logger.info("Recovered %d actor(s), %d named", len(self._actors), len(self._named))
        await self._forget_oldest_dead()

    def _index(self, actor: pb.ActorTableData) -> None:
        self._actors[actor.actor_id] = actor
        if actor.state == DEAD:
            self._dead.add(actor.actor_id)
        if not actor.name:
            return
        key = (actor.ray_namespace, actor.name)
        if actor.state == DEAD:
            if self._named.get(key) == actor.actor_id:
                del self._named[key]
        else:
            self._named[key] = actor.actor_id

    async def _forget_oldest_dead(self) -> None:
        old = await self._dead.forget_overflow(self._actors, self._storage, Table.ACTOR)
        if old:
            logger.debug("Forgot %d dead actor(s), the oldest: %s", len(old), old[0].hex())

    async def put(self, actor: pb.ActorTableData) -> None:
        """Store a row (new or changed), then publish it on ACTOR_CHANNEL."""
        errors.check_id(actor.actor_id, ActorID, "actor_id")
        if actor.name and actor.state != DEAD:
            holder = self._named.get((actor.ray_namespace, actor.name))
            if holder is not None and holder != actor.actor_id:
                raise errors.already_exists(
                    f"actor name {actor.name!r} in namespace {actor.ray_namespace!r} is held "
                    f"by actor {holder.hex()}")
        if actor.state == DEAD and not actor.end_time_ms:
            actor.end_time_ms = int(time.time() * 1000)
        await self._storage.put(Table.ACTOR, actor.actor_id, actor.SerializeToString())
        self._index(actor)
        self._publisher.publish(pb.ACTOR_CHANNEL, actor.actor_id, actor_message=actor)
        await self._forget_oldest_dead()

    def get(self, actor_id: bytes) -> Optional[pb.ActorTableData]:
        return self._actors.get(actor_id)

    def get_named(self, name: str, namespace: str) -> Optional[pb.ActorTableData]:
        actor_id = self._named.get((namespace, name))
        return None if actor_id is None else self._actors[actor_id]

    def all(self) -> List[pb.ActorTableData]:
        return list(self._actors.values())

    @errors.handler
    async def GetActorInfo(self, request, context):
        actor = self.get(errors.check_id(request.actor_id, ActorID, "GetActorInfo actor_id"))
        if actor is None:
            return pb.GetActorInfoReply(found=False)
        return pb.GetActorInfoReply(found=True, actor_table_data=actor)

    @errors.handler
    async def GetNamedActorInfo(self, request, context):
        if not request.name:
            raise errors.invalid("GetNamedActorInfo: the actor name is empty")
        actor = self.get_named(request.name, request.ray_namespace)
        if actor is None:
            return pb.GetNamedActorInfoReply(found=False)
        return pb.GetNamedActorInfoReply(found=True, actor_table_data=actor)

    @errors.handler
    async def ListNamedActors(self, request, context):
        return pb.ListNamedActorsReply(named_actors_list=[
            pb.NamedActorEntry(ray_namespace=ns, name=name)
            for ns, name in sorted(self._named)
            if request.all_namespaces or ns == request.ray_namespace])

    @errors.handler
    async def GetAllActorInfo(self, request, context):
        return pb.GetAllActorInfoReply(actor_table_data=self.all())
