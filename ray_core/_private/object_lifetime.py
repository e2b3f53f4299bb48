"""Object lifetime beyond one process: borrowers, contained refs, copies, lineage.

The ReferenceCounter counts; this module speaks for it to other processes, and keeps
what the CoreWorker needs to free or rebuild objects:

- Contained refs: the refs serialized inside an object this process owns (a put value, a
  task's return) stay alive as long as that object does (held here as ObjectRefs).
- Borrower registration (see reference_counter.py for the counting): refs deserialized
  inside get() are registered at their owner before get() returns; refs deserialized
  from a task's arguments are registered when the task ends, only if still held (the
  submitter vouches for them while the task runs); refs nested in a return are
  registered for the caller by the executor before it replies. Registrations go out
  synchronously (UpdateRefCounts); removals are batched per owner on the io loop.
- Copies: nodes that reported a copy (UpdateObjectLocationBatch); the owner frees all
  of them, not only the primary.
- Lineage: a finished task with plasma returns is remembered (spec + argument refs)
  while one of its returns is referenced here, so the owner can re-run it when every
  copy was lost with its node (and, recursively, its lost arguments). Unlike Ray, which
  keeps only the lineage of freed arguments, the arguments' values stay pinned too: a
  rebuilt task then finds them or rebuilds them the same way.
"""
import collections
import logging
import os
import threading
import time
from typing import Dict, List, Set

from ray_common import rpc
from ray_common.config import config
from ray_common.ids import ObjectID
from ray_common.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc

from ray_core import exceptions

logger = logging.getLogger(__name__)


class _BorrowCapture(threading.local):
    """Per-thread state of get(): refs not owned here that this thread deserialized and
    has not yet registered, and whether a lost borrowed copy's owner was already asked."""

    def __init__(self):
        self.refs = []
        self.deferred = False      # True while a task's arguments are loaded
        self.asked_owner = False   # a lost borrowed copy: its owner was asked to rebuild it


borrow_capture = _BorrowCapture()


class ObjectLifetime:
    def __init__(self, core):
        self._core = core
        self._lock = threading.Lock()
        self.contained: Dict[ObjectID, list] = {}
        self.copies: Dict[ObjectID, Set[bytes]] = {}
        self.lineage: Dict[object, object] = {}     # TaskID -> PendingTask (finished)
        self._updates = collections.deque()          # (owner bytes, object id, added, n)
        self._update_flush = rpc.SoonOnLoop(core.loop, self._flush_updates)
        self._arg_borrows = None
        self._node_alive_cache = (0.0, {})
        self.num_reconstructions = 0
        self._failure_subscription = None
        # Borrowed plasma objects whose location came from their owner: who to ask when
        # that copy is lost.
        self.fetched_owner: Dict[ObjectID, bytes] = {}
        self._borrower_nodes: Dict[bytes, bytes] = {}   # borrower worker id -> its node

    # ---- contained refs --------------------------------------------------------------
    def hold_contained(self, object_id: ObjectID, refs: list) -> None:
        with self._lock:
            self.contained.setdefault(object_id, []).extend(refs)

    def on_owned_freed(self, object_id: ObjectID) -> None:
        """An owned object is gone: let go of what it contained, and of its lineage."""
        if not self.contained and not self.lineage:
            return      # the common case, on the path of every freed object
        with self._lock:
            held = self.contained.pop(object_id, None)
            task = self.lineage.get(object_id.task_id())
            if task is not None:
                task.lineage_live.discard(object_id)
                if not task.lineage_live:
                    del self.lineage[object_id.task_id()]
                    task.arg_refs = None
        del held  # dropping the refs queues their decrements

    def pop_copies(self, object_id: ObjectID) -> Set[bytes]:
        return self.copies.pop(object_id, set())

    def add_copy(self, object_id: ObjectID, node_id: bytes) -> None:
        if self._core.reference_counter.is_owned(object_id):
            self.copies.setdefault(object_id, set()).add(node_id)

    # ---- borrower registration -------------------------------------------------------
    @staticmethod
    def begin_arg_capture():
        borrow_capture.deferred = True
        return borrow_capture

    def end_arg_capture(self, capture) -> None:
        """Refs deserialized from a task's arguments: registered when the task ends."""
        capture.deferred = False
        if capture.refs:
            self._arg_borrows, capture.refs = capture.refs, []

    def register_arg_borrows(self) -> None:
        """At a task's end: register for argument refs the task still holds."""
        captured, self._arg_borrows = self._arg_borrows, None
        if captured:
            self.register_borrows(captured)
        else:
            self._core.reference_counter.flush()

    def register_borrows(self, captured) -> None:
        rc = self._core.reference_counter
        todo = rc.unregistered_held(captured)
        if not todo:
            return
        by_owner: Dict[bytes, List[ObjectID]] = {}
        for object_id, owner in todo:
            by_owner.setdefault(owner, []).append(object_id)
        me = self._core.address
        for owner, ids in by_owner.items():
            if self._send_adds(owner, ids, me):
                for object_id in ids:
                    rc.note_borrowed(object_id, owner, 1)

    def register_for_caller(self, nested_refs, caller: common_pb2.Address) -> None:
        """Register the caller as borrower of refs nested in a return (executor side)."""
        rc = self._core.reference_counter
        caller_key = caller.worker_id
        by_owner: Dict[bytes, List[ObjectID]] = {}
        for ref in nested_refs:
            owner = self._core._owner_pb(ref.owner_address())
            if owner.worker_id == caller_key:
                continue                      # the caller owns it: it holds it itself
            object_id = ref.object_id()
            if owner.worker_id == self._core.worker_id.binary():
                rc.add_borrower(object_id, caller_key, 1)
                if caller_key not in self._borrower_nodes:
                    self._borrower_nodes[caller_key] = caller.node_id
                    self._core.loop.call_soon_threadsafe(self._watch_borrower_failures)
            else:
                by_owner.setdefault(ref.owner_address(), []).append(object_id)
        for owner, ids in by_owner.items():
            self._send_adds(owner, ids, caller)

    def on_return_nested(self, object_id: ObjectID, nested, stored: bool) -> None:
        """The caller's side of register_for_caller: hold the nested refs inside the
        stored return (or let go at once if nobody kept it)."""
        core = self._core
        rc = core.reference_counter
        me = core.worker_id.binary()
        if stored:
            self.hold_contained(object_id, [
                core.deserialized_ref(ObjectID(e.object_id), e.owner_address.SerializeToString())
                for e in nested])
        for entry in nested:
            if entry.owner_address.worker_id != me:
                rc.note_borrowed(ObjectID(entry.object_id),
                                 entry.owner_address.SerializeToString(), 1)

    def _send_adds(self, owner: bytes, ids: List[ObjectID], borrower: common_pb2.Address) -> bool:
        request = core_worker_pb2.UpdateRefCountsRequest()
        for object_id in ids:
            request.updates.add(object_id=object_id.binary(), borrower_address=borrower,
                                added=True, count=1)
        address = self._core._owner_pb(owner)
        try:
            if rpc.in_io_thread():
                rpc.spawn(self._send(address, request))
            else:
                rpc.run_sync(self._send(address, request))
            return True
        except Exception as e:
            logger.info("Could not register as borrower of %d object(s) (e.g. %s) at owner "
                        "%s: %s", len(ids), ids[0].hex(), address.worker_id.hex()[:16], e)
            return False

    @staticmethod
    async def _send(address: common_pb2.Address, request) -> None:
        stub = rpc.stub(core_worker_pb2_grpc.CoreWorkerServiceStub,
                        f"{address.ip_address}:{address.port}")
        await rpc.call_with_retry(stub.UpdateRefCounts, request,
                                  timeout=config.rpc_default_deadline_s)

    def queue_ref_update(self, owner: bytes, object_id: ObjectID, added: bool, n: int) -> None:
        self._updates.append((owner, object_id, added, n))
        if not self._core._closed:
            self._update_flush.request()

    def _flush_updates(self) -> None:
        for owner, request in self._drain_updates_by_owner().items():
            rpc.spawn(self._send_quietly(self._core._owner_pb(owner), request))

    def _drain_updates_by_owner(self) -> Dict[bytes, core_worker_pb2.UpdateRefCountsRequest]:
        """Take every queued borrower update, one request per owner, in queue order."""
        by_owner: Dict[bytes, core_worker_pb2.UpdateRefCountsRequest] = {}
        me = self._core.address
        while self._updates:
            owner, object_id, added, n = self._updates.popleft()
            request = by_owner.setdefault(owner, core_worker_pb2.UpdateRefCountsRequest())
            request.updates.add(object_id=object_id.binary(), borrower_address=me,
                                added=added, count=n)
        return by_owner

    async def _send_quietly(self, address, request) -> None:
        try:
            await self._send(address, request)
        except Exception as e:   # the owner died: nothing left to tell it
            logger.info("UpdateRefCounts to owner %s failed: %s", address.worker_id.hex()[:16], e)

    def adopt(self, object_id: ObjectID, node_id: bytes, size: int,
              borrower: common_pb2.Address) -> None:
        """Own an object another process put for us (put(_owner=...)): its primary copy is
        on `node_id`, and its maker borrows it until it drops its ref (io loop)."""
        from ray_core._private.memory_store import StoredObject
        core = self._core
        core.reference_counter.add_owned(object_id)
        core.memory_store.put(object_id, StoredObject.plasma_marker(node_id, size))
        self._watch_borrower_failures()
        self._borrower_nodes[borrower.worker_id] = borrower.node_id
        core.reference_counter.add_borrower(object_id, borrower.worker_id, 1)
        logger.info("Owning object %s, put on node %s by worker %s", object_id.hex(),
                    node_id.hex()[:12], borrower.worker_id.hex()[:16])

    def handle_update(self, request) -> None:
        """UpdateRefCounts at the owner (on the io loop)."""
        rc = self._core.reference_counter
        for update in request.updates:
            object_id = ObjectID(update.object_id)
            key = update.borrower_address.worker_id
            n = update.count or 1
            if update.added:
                self._watch_borrower_failures()
                self._borrower_nodes[key] = update.borrower_address.node_id
                if not rc.add_borrower(object_id, key, n):
                    logger.info("Borrower %s registered for object %s, already freed here",
                                key.hex()[:16], object_id.hex())
            else:
                rc.remove_borrower(object_id, key, n)

    def _watch_borrower_failures(self) -> None:
        """Once this owner has borrowers: a borrower that dies (reported to the GCS by its
        raylet), or whose node dies, holds nothing any more."""
        if self._failure_subscription is not None or not rpc.in_io_thread():
            return
        from ray_common.protocol import gcs_service_pb2
        rc = self._core.reference_counter

        def on_failure(message) -> None:
            which = message.WhichOneof("inner_message")
            if which == "worker_failure_message":
                dead = [message.worker_failure_message.worker_id]
            elif which == "node_info_message" and \
                    message.node_info_message.state == common_pb2.NodeInfo.DEAD:
                node_id = message.node_info_message.node_id
                dead = [w for w, n in self._borrower_nodes.items() if n == node_id]
            else:
                return
            for worker_id in dead:
                if self._borrower_nodes.pop(worker_id, None) is not None:
                    logger.info("Borrower %s died: dropping its references",
                                worker_id.hex()[:16])
                    rc.remove_borrower_everywhere(worker_id)

        try:
            self._failure_subscription = self._core.gcs.subscribe(
                [gcs_service_pb2.WORKER_FAILURE_CHANNEL, gcs_service_pb2.NODE_INFO_CHANNEL],
                on_failure)
        except Exception as e:
            logger.warning("Could not follow worker failures at the GCS: %s", e)

    def release_all_borrowed(self) -> None:
        """This process is exiting: tell every owner it borrows from that it is done."""
        rc = self._core.reference_counter
        for object_id, (owner, n) in rc.snapshot()["borrowed"].items():
            self.queue_ref_update(owner, object_id, False, n)
        if not self._updates:
            return
        for owner, request in self._drain_updates_by_owner().items():
            try:
                rpc.run_sync(self._send_quietly(self._core._owner_pb(owner), request),
                             timeout=config.shutdown_grace_s)
            except Exception:
                pass

    def close(self) -> None:
        if self._failure_subscription is not None:
            self._failure_subscription.close()
            self._failure_subscription = None

    # ---- lineage ---------------------------------------------------------------------
    def remember(self, task) -> None:
        """A task finished with plasma returns: keep what re-running it needs (its
        arguments only if it may be re-run)."""
        if task.retries_left == 0:
            task.arg_refs = None
        with self._lock:
            task.lineage_live = set(task.return_ids)
            self.lineage[task.task_id] = task

    def node_alive(self, node_id: bytes) -> bool:
        """The GCS still lists the node alive and its raylet answers."""
        checked_at, alive = self._node_alive_cache
        if time.monotonic() - checked_at > 1.0:
            try:
                infos = self._core.gcs.sync.get_all_node_info()
                alive = {i.node_id: i.state == common_pb2.NodeInfo.ALIVE for i in infos}
                self._node_alive_cache = (time.monotonic(), alive)
            except Exception as e:
                logger.warning("Could not read the node table: %s", e)
        if not alive.get(node_id, False):
            return False
        if node_id == self._core.node_id:
            return True
        try:
            address = rpc.run_sync(self._core.plasma_objects._raylet_of(node_id))
            rpc.run_sync(self._core.lease_client.health_check(address))
            return True
        except Exception:
            return False

    def recover(self, object_id: ObjectID, node_id: bytes, why: str):
        """Every copy of an owned plasma object is gone (its node died): re-run the task
        that made it if allowed. Returns None when re-running, else the error to store."""
        core = self._core
        task = self.lineage.get(object_id.task_id())
        node = node_id.hex()[:12]
        if task is None:
            if core.task_manager.is_pending(object_id.task_id()):
                return None   # already being rebuilt
            # Every owned task return in plasma has its lineage here: this is a put.
            return exceptions.ObjectLostError(object_id.hex(), message=(
                f"Object {object_id.hex()} is lost: it was created by put() and its only "
                f"copy was on node {node}, which died ({why}). Objects made by put() "
                f"cannot be reconstructed; keep such data in a task's return instead."))
        if task.retries_left == 0:
            return exceptions.ObjectReconstructionFailedError(object_id.hex(), message=(
                f"Object {object_id.hex()} is lost: its copy on node {node} is gone ({why}) "
                f"and its task {task.function_name} ({task.task_id.hex()}) may not be re-run "
                f"(max_retries=0 or retries used up)."))
        self._reconstruct(task, why)
        return None

    def recover_reported(self, object_id: ObjectID) -> None:
        """A borrower could not fetch the copy we named: rebuild it if its node is gone
        (off the io loop: this asks the GCS and the raylet)."""
        core = self._core
        obj = core.memory_store.get_if_exists(object_id)
        if obj is None or not obj.in_plasma or not core.reference_counter.is_owned(object_id):
            return
        node_id = obj.plasma_node or core.node_id
        if self.node_alive(node_id):
            return
        error = self.recover(object_id, node_id, f"node {node_id.hex()[:12]} died (reported "
                             f"by a borrower that could not fetch it)")
        if error is not None:
            from ray_core._private.memory_store import StoredObject
            core.memory_store.put(object_id, StoredObject.error(error))

    def _reconstruct(self, task, why: str) -> None:
        core = self._core
        store = core.memory_store
        # Lost arguments first (recursively): the resolver then waits for them.
        for arg in task.spec.args:
            if arg.is_inlined:
                continue
            arg_id = ObjectID(arg.object_ref.object_id)
            obj = store.get_if_exists(arg_id)
            if obj is not None and obj.in_plasma and core.reference_counter.is_owned(arg_id) \
                    and not self.node_alive(obj.plasma_node or core.node_id):
                error = self.recover(arg_id, obj.plasma_node, why)
                if error is not None:
                    logger.info("Lost argument %s of task %s cannot be rebuilt: %s",
                                arg_id.hex(), task.task_id.hex(), error)
        with self._lock:
            self.lineage.pop(task.task_id, None)
        store.delete(task.return_ids)
        self.num_reconstructions += 1
        logger.info("Reconstructing object(s) %s: re-running task %s (%s)",
                    ",".join(o.hex() for o in task.return_ids), task.task_id.hex(), why)
        core.task_manager.resubmit_lineage(task, lambda t: core.loop.call_soon_threadsafe(
            core.resolver.resolve, t, core.submitter.submit))

    # ---- memory summary ----------------------------------------------------------------
    def objects_info(self) -> List[dict]:
        """One row per object this process holds or owns: why it is still referenced."""
        core = self._core
        snap = core.reference_counter.snapshot()
        pending_args: Dict[ObjectID, int] = {}
        for task in core.task_manager.pending_tasks():
            for ref in task.arg_refs or ():
                pending_args[ref.object_id()] = pending_args.get(ref.object_id(), 0) + 1
        contained_in: Dict[ObjectID, list] = {}
        with self._lock:
            for outer, refs in self.contained.items():
                for ref in refs:
                    contained_in.setdefault(ref.object_id(), []).append(outer.hex())
            lineage = {oid for task in self.lineage.values() for oid in (task.lineage_live or ())}
        try:
            client = core.plasma_objects._client
            held = {ObjectID(k): n for k, n in client.held().items()} if client else {}
        except Exception:
            held = {}
        own_primaries = core.plasma_objects._held    # this process's hold on its puts
        me = core.worker_id.hex()
        rows = []
        ids = set(snap["counts"]) | set(snap["borrowers"]) | set(snap["owned"]) | set(held)
        for object_id in ids:
            obj = core.memory_store.get_if_exists(object_id)
            count = snap["counts"].get(object_id, 0)
            reasons = []
            n_args = pending_args.get(object_id, 0)
            n_contained = len(contained_in.get(object_id, ()))
            if count - n_args - n_contained > 0:
                reasons.append("LOCAL_REFERENCE")
            if n_args:
                reasons.append(f"USED_BY_PENDING_TASK({n_args})")
            if n_contained:
                reasons.append("CONTAINED_IN(" + ",".join(contained_in[object_id][:3]) + ")")
            borrowers = snap["borrowers"].get(object_id)
            if borrowers:
                reasons.append("BORROWED_BY(" + ",".join(
                    f"{w.hex()[:12]}x{n}" for w, n in borrowers.items()) + ")")
            in_gets = held.get(object_id, 0) - (object_id.binary() in own_primaries)
            if in_gets > 0:
                reasons.append(f"PINNED_BY_GET({in_gets})")
            if object_id in lineage:
                reasons.append("LINEAGE")
            owned = object_id in snap["owned"]
            if not owned and object_id in snap["borrowed"]:
                reasons.append("BORROWER")
            if obj is None:
                where, size = ("pending" if core.task_manager.is_pending(object_id.task_id())
                               else "-"), 0
            elif obj.in_plasma:
                where, size = f"plasma:{(obj.plasma_node or core.node_id).hex()[:12]}", obj.size
            else:
                where, size = ("error" if obj.is_error else "memory_store"), obj.size
            owner = me if owned else ""
            if not owned and object_id in snap["borrowed"]:
                owner = core._owner_pb(snap["borrowed"][object_id][0]).worker_id.hex()
            rows.append({"object_id": object_id.hex(), "owned": owned,
                         "owner_worker_id": owner, "worker_id": me, "mode": core.mode,
                         "node_id": core.node_id.hex(), "pid": os.getpid(),
                         "size": size, "where": where, "reasons": reasons or ["UNREFERENCED"],
                         "local_count": count})
        rows.sort(key=lambda r: (-r["size"], r["object_id"]))
        return rows
