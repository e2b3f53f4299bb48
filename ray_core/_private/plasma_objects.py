"""This process's side of plasma: writing large values, reading them zero-copy, and
freeing them (steps 7-8 of a task's life, for values above max_direct_call_object_size).

Who keeps a primary copy alive:
- a value this process put(): its own plasma reference (hold_primary), released and
  deleted when the last ref goes -- no raylet round trip on put or free;
- a large task return: the raylet of the executing node, through PinObjectIDs on behalf
  of the owner (pin), until the owner's FreeObjects.
Reads hand out numpy/Arrow views of shared memory wrapped in a SharedBuffer, whose death
queues the plasma release. Releases, deletes and frees are queued and done from a pool
thread or the io loop, never from inside a garbage-collector callback that may run while
this thread holds the plasma client's lock.
"""
import collections
import concurrent.futures
import logging
import threading
from typing import Dict, List, Optional

from ray_common import rpc
from ray_common.config import config
from ray_common.ids import ObjectID
from ray_common.protocol import common_pb2

from ray_core import exceptions
from ray_core._private import hang_report, serialization
from ray_core._private._shared_buffer import SharedBuffer
from ray_core._private.background import background_pool
from ray_core._private.serialization import META_PICKLE_OOB

logger = logging.getLogger(__name__)


class _ReleaseQueue(collections.deque):
    """Plasma object ids whose last view died; appending asks for a drain soon."""

    def __init__(self, on_append):
        super().__init__()
        self._on_append = on_append

    def append(self, key) -> None:
        super().append(key)
        self._on_append()


class PlasmaObjects:
    def __init__(self, socket_path: str, node_id: bytes, lease_client, gcs, loop):
        self.socket_path = socket_path
        self._node_id = node_id
        self._lease_client = lease_client
        self._gcs = gcs
        self._client = None
        self._client_lock = threading.Lock()
        # Releases go from a pool thread (plasma calls block), asked for via the io loop.
        self._release_drain = rpc.SoonOnLoop(loop, self._submit_release_drain)
        self._releases = _ReleaseQueue(self._schedule_release_drain)
        self._frees = collections.deque()        # (key, node_id) dropped by their owner here
        self._free_flush = rpc.SoonOnLoop(loop, self._flush_frees)
        self._deletes = collections.deque()      # held primary copies to release + delete
        self._held = set()                       # keys whose primary copy this process holds
        self._raylet_addresses: Dict[bytes, str] = {}
        self._closed = False
        # on_lost(object_id, marker, why, timeout) -> (value, is_error), for copies no node
        # could provide (the CoreWorker rebuilds owned ones through lineage).
        self.on_lost = None
        self.owner_address = None   # this process's Address (PinObjectIDs on its behalf)

    @property
    def client(self):
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    from ray_plasma.client import PlasmaClient
                    self._client = PlasmaClient(self.socket_path)
        return self._client

    def close(self) -> None:
        self._closed = True
        with self._client_lock:
            if self._client is not None:
                try:
                    self._client.disconnect()
                except Exception:
                    pass
                self._client = None

    # ---- writing -----------------------------------------------------------------------
    def write(self, object_id: ObjectID, ser, copy_threads: int = 0) -> None:
        """Create, fill and seal a large value (ObjectStoreFullError if it cannot fit),
        copying with up to copy_threads threads (0: the copy_threads tunable)."""
        from ray_plasma import errors as plasma_errors
        # Free what was dropped before allocating: a put right after dropping a large
        # object then reuses its (already faulted-in) memory instead of fresh pages.
        self.drain_releases()
        self.free_now()
        client = self.client
        key = object_id.binary()
        attempts = config.object_store_full_max_retries
        for attempt in range(attempts + 1):
            try:
                dest = client.create(key, ser.total_size, ser.metadata)
                break
            except plasma_errors.ObjectExistsError:
                if self._sealed_by_another_run(key):
                    return
                raise
            except plasma_errors.ObjectStoreFullError as e:
                # The store is full of pinned copies: ask the raylet to spill some to disk
                # (ray_raylet/spill_manager.py), then try again.
                reply = None
                if attempt < attempts:
                    self._hand_held_to_raylet()
                    reply = rpc.run_sync(self._lease_client.spill_objects(ser.total_size, key))
                if reply is None or not reply.success:
                    note = f"; spilling did not help: {reply.message}" if reply else ""
                    raise exceptions.ObjectStoreFullError(
                        f"Could not put object {object_id.hex()} ({ser.total_size} bytes) in "
                        f"the object store of node {self._node_id.hex()[:12]}: {e}{note}. "
                        f"Free refs you no longer need, or start the cluster with a larger "
                        f"object_store_memory.") from None
        try:
            ser.write_to(dest, copy_threads)
        except BaseException:
            del dest
            client.abort(key)
            raise
        del dest
        client.seal(key)

    def _sealed_by_another_run(self, key: bytes) -> bool:
        """A retried task's return already here: an earlier run of the same task sealed it
        (its worker was killed before it could reply), or a run still going seals it
        soon. Same task, same value: that copy serves."""
        client = self.client
        found = client.get([key], config.plasma_existing_object_wait_ms)[0]
        if found is None:
            return False
        del found
        client.release(key)
        logger.info("Object %s was already in the store (an earlier run of its task made "
                    "it); keeping that copy", key.hex())
        return True

    def hold_primary(self, key: bytes) -> None:
        """Keep the primary copy of an object this process put, by holding a reference.

        The copy lives exactly as long as the owner wants it or the owner itself, which
        is when its value could still be asked for (a dead owner's objects are lost
        anyway, OwnerDiedError). Seam for spilling (issue 8): a raylet that spills
        primary copies needs them pinned through PinObjectIDs instead, as returns are.
        """
        if self.client.get([key], 0)[0] is not None:
            self._held.add(key)

    def _hand_held_to_raylet(self) -> None:
        """The store is full: hand the primary copies this process holds (hold_primary)
        to the raylet (PinObjectIDs), so that it may spill them; from then on they are
        freed through FreeObjects like task returns."""
        self.drain_releases()
        keys = list(self._held)
        if not keys:
            return
        try:
            rpc.run_sync(self._lease_client.pin_object_ids(self.owner_address, keys))
        except Exception as e:
            logger.warning("Raylet could not pin %d object(s) for spilling: %s", len(keys), e)
            return
        client = self.client
        for key in keys:
            try:
                self._held.remove(key)
            except KeyError:            # freed meanwhile: the raylet's pin must go too
                self.queue_free(key, self._node_id)
                continue
            try:
                client.release(key)
            except Exception as e:
                logger.debug("release of handed-over object %s failed: %s", key.hex(), e)

    def pin(self, object_ids: List[bytes], owner: common_pb2.Address) -> None:
        """Have the raylet hold the primary copies; hold them ourselves until it does.

        A sealed object nobody references may be evicted, so this process takes a
        reference for the length of the PinObjectIDs call.
        """
        client = self.client
        held = [key for key, obj in zip(object_ids, client.get(object_ids, 0)) if obj is not None]
        try:
            rpc.run_sync(self._lease_client.pin_object_ids(owner, object_ids))
        except Exception as e:
            logger.warning("Raylet could not pin %d object(s): %s", len(object_ids), e)
        finally:
            for key in held:
                client.release(key)

    # ---- reading -----------------------------------------------------------------------
    def read(self, ids: List[ObjectID], found, timeout: Optional[float]) -> dict:
        """object id -> (value, is_error) for objects whose memory-store entry is a marker
        (`timeout`: the get's, for on_lost)."""
        self.drain_releases()
        ids = list(dict.fromkeys(ids))
        client = self.client
        local = [oid for oid in ids if found[oid].plasma_node in (b"", self._node_id)]
        objects = dict(zip(local, client.get([oid.binary() for oid in local], 0))) \
            if local else {}
        # Remote copies, and local ones that were spilled: the raylet brings them here.
        fetch = [oid for oid in ids if objects.get(oid) is None]
        failed = self._pull(fetch, found) if fetch else {}
        values = {}
        for object_id, why in failed.items():
            if self.on_lost is not None:
                values[object_id] = self.on_lost(object_id, found[object_id], why, timeout)
            else:
                values[object_id] = (exceptions.ObjectLostError(object_id.hex(), message=why), True)
        pulled = [oid for oid in fetch if oid not in failed]
        if pulled:
            # Only look: a marker means the copy was sealed (here, or pulled here above),
            # so one that is missing now is lost, and waiting for it would never end.
            objects.update(zip(pulled, client.get([oid.binary() for oid in pulled], 0)))
        for object_id, pobj in objects.items():
            key = object_id.binary()
            if pobj is None:
                values[object_id] = (exceptions.ObjectLostError(
                    object_id.hex(), message=f"Object {object_id.hex()} is lost: it is not in the "
                    f"object store of node {self._node_id.hex()[:12]} and could not be "
                    f"fetched from node {found[object_id].plasma_node.hex()[:12]}."), True)
                continue
            metadata = bytes(pobj.metadata)
            if metadata == META_PICKLE_OOB:
                holder = SharedBuffer(pobj.data, key, self._releases)
                value = serialization.deserialize(memoryview(holder), metadata)
                del holder
            else:
                try:
                    value = serialization.deserialize(pobj.data, metadata)
                finally:
                    self._releases.append(key)
            values[object_id] = (value, metadata == serialization.META_ERROR)
        return values

    def _pull(self, object_ids: List[ObjectID], found) -> Dict[ObjectID, str]:
        """Ask the raylet to bring plasma objects here (from other nodes, or back from
        its spill files); returns {object id: why} for those it could not."""
        refs = [common_pb2.ObjectReference(object_id=oid.binary()) for oid in object_ids]
        locations = {oid.binary(): [found[oid].plasma_node or self._node_id]
                     for oid in object_ids}
        pulling = rpc.spawn(self._lease_client.pull_objects(refs, locations))
        threshold = config.get_hang_warning_s
        try:
            reply = pulling.result(threshold if threshold > 0 else None)
        except concurrent.futures.TimeoutError:
            hang_report.warn(
                f"get() has waited {threshold:g} s for {len(object_ids)} object(s) being "
                f"transferred to node {self._node_id.hex()[:12]}: " + ", ".join(
                    f"{oid.hex()} ({found[oid].size} bytes) from node "
                    f"{(found[oid].plasma_node or self._node_id).hex()[:12]}"
                    for oid in object_ids[:8]))
            reply = pulling.result()
        failed = {}
        for result in reply.results:
            if not result.success:
                logger.warning("Could not pull object %s: %s", result.object_id.hex(),
                               result.error_message)
                failed[ObjectID(result.object_id)] = result.error_message
        return failed

    # ---- releasing views -----------------------------------------------------------------
    def _schedule_release_drain(self) -> None:
        # Called where a plasma view died, possibly inside the garbage collector on a
        # thread that holds any lock -- the plasma client's, even the background pool's
        # own (its submit() allocates under a lock) -- so nothing here may take one: the
        # io loop's SoonOnLoop takes none, and the io loop then hands the blocking
        # releases to a pool thread.
        if not self._closed:
            self._release_drain.request()

    def _submit_release_drain(self) -> None:
        try:
            background_pool().submit(self.drain_releases)
        except RuntimeError:    # the pool is shut down: this process is ending
            pass

    def drain_releases(self) -> None:
        releases = self._releases
        if not releases or self._client is None:
            return
        client = self._client
        while releases:
            key = releases.popleft()
            try:
                client.release(key)
            except Exception as e:
                logger.debug("plasma release of %s failed: %s", key.hex(), e)

    # ---- freeing -----------------------------------------------------------------------
    def queue_free(self, key: bytes, node_id: bytes = b"") -> None:
        """The owner dropped its last ref to this plasma object: free it soon."""
        self._frees.append((key, node_id or self._node_id))
        if not self._closed:
            self._free_flush.request()

    def _take_frees(self) -> Dict[bytes, list]:
        by_node: Dict[bytes, list] = {}
        while self._frees:
            key, node_id = self._frees.popleft()
            if key in self._held:
                self._held.discard(key)
                self._deletes.append(key)
            else:
                by_node.setdefault(node_id, []).append(key)
        return by_node

    def _flush_frees(self) -> None:
        for node_id, keys in self._take_frees().items():
            rpc.spawn(self._free_at_raylet(keys, node_id))
        if self._deletes:
            # Plasma calls block on a socket: not on the io loop.
            background_pool().submit(self._delete_held)

    def free_now(self) -> None:
        """Free what was dropped and wait for it (off the io loop only)."""
        if not self._frees or rpc.in_io_thread():
            return
        for node_id, keys in self._take_frees().items():
            rpc.run_sync(self._free_at_raylet(keys, node_id))
        self._delete_held()

    def _delete_held(self) -> None:
        """Release and delete primary copies this process held (see hold_primary)."""
        keys = []
        while self._deletes:
            keys.append(self._deletes.popleft())
        if not keys or self._client is None:
            return
        client = self._client
        for key in keys:
            try:
                client.release(key)
            except Exception as e:
                logger.debug("release of held object %s failed: %s", key.hex(), e)
        try:
            client.delete(keys)
        except Exception as e:
            logger.info("plasma delete of %d object(s) failed: %s", len(keys), e)

    async def _free_at_raylet(self, keys, node_id: bytes) -> None:
        try:
            raylet = None if node_id == self._node_id else await self._raylet_of(node_id)
            await self._lease_client.free_objects(keys, raylet)
        except Exception as e:
            logger.info("FreeObjects of %d object(s) on node %s failed: %s", len(keys),
                        node_id.hex()[:12], e)

    async def _raylet_of(self, node_id: bytes) -> str:
        address = self._raylet_addresses.get(node_id)
        if address is None:
            for info in await self._gcs.get_all_node_info():
                self._raylet_addresses[info.node_id] = \
                    f"{info.node_manager_address}:{info.node_manager_port}"
            address = self._raylet_addresses[node_id]
        return address
