"""Spilling: pinned primary copies go to disk when the plasma store is full, and come back
on demand.

How a full store reaches the raylet: the store and the raylet are separate processes, and
the store only answers a create it cannot fit (after evicting unpinned copies) with
ObjectStoreFullError. The client that asked (a CoreWorker's put or task return, or this
raylet's own object manager) then asks the raylet to make room: NodeManagerService.
SpillObjects(bytes_needed) for workers, SpillManager.spill() in-process. The reply comes
once the bytes are on disk and their memory is released; the client retries its create,
up to object_store_full_max_retries times. Only when nothing is left to spill (every
primary copy is already on disk, or in use by a reader) or the disk is full does the
put fail, with the sizes.

What spills: the raylet's pinned primaries, oldest pin first, batched: one round writes
at least min_spilling_size bytes (at most max_spill_file_objects objects) into one file
`<spill dir>/<node>/spill-<n>`, so many small objects cost one file. The spill dir is
`object_spilling_directory` or `<session>/spill`. A spilled object is unpinned and
deleted from plasma; its (file, offset, size) is kept here. A get or a task argument that
needs it (ObjectManager.pull on this node, or a Pull from another node) restores it into
plasma as an unpinned copy, which the store may evict again; the file stays the primary
copy until the owner frees the object (FreeObjects), and a file goes when its last object
does. Every spill file is deleted at shutdown.

File writes and reads run in a thread, off the raylet's io loop.
"""
import asyncio
import logging
import os
import shutil
import time
from typing import Callable, Dict, List, Tuple

from ray_common.config import config
from ray_plasma.errors import ObjectExistsError, ObjectStoreFullError

logger = logging.getLogger(__name__)


class SpilledObject:
    __slots__ = ("path", "offset", "data_size", "metadata")

    def __init__(self, path: str, offset: int, data_size: int, metadata: bytes):
        self.path = path
        self.offset = offset
        self.data_size = data_size
        self.metadata = metadata


def spill_directory(session_dir: str, node_id: bytes) -> str:
    """Where a node spills: its own folder under object_spilling_directory or
    <session>/spill."""
    base = config.object_spilling_directory or os.path.join(session_dir, "spill")
    return os.path.join(base, node_id.hex()[:12])


class SpillManager:
    def __init__(self, *, plasma, node_id: bytes, session_dir: str,
                 pinned: Dict[bytes, object], unpin: Callable[[bytes], None]):
        """`pinned` is the raylet's pin table (insertion order = pin order: oldest first);
        `unpin(object_id)` releases one pin."""
        self.plasma = plasma
        self.node_id = node_id
        self.directory = spill_directory(session_dir, node_id)
        self._pinned = pinned
        self._unpin = unpin
        self.spilled: Dict[bytes, SpilledObject] = {}
        self._file_objects: Dict[str, set] = {}
        self._file_counter = 0
        self._lock = asyncio.Lock()
        self.total_spilled_bytes = 0
        self.total_restored_bytes = 0
        self.spill_seconds = 0.0
        self.restore_seconds = 0.0

    # ---- spilling -----------------------------------------------------------------
    async def spill(self, bytes_needed: int, why: str = "") -> Tuple[int, int, str]:
        """Spill pinned primaries, oldest first, until bytes_needed are freed (batched up
        to min_spilling_size). Returns (bytes spilled, objects spilled, message)."""
        if not config.object_spilling_enabled:
            return 0, 0, "object spilling is disabled (object_spilling_enabled=False)"
        async with self._lock:
            batch, size = self._pick(max(bytes_needed, config.min_spilling_size))
            if not batch:
                return 0, 0, (f"no pinned primary copy is left to spill ({len(self.spilled)} "
                              f"objects of this node are already on disk)")
            reason = self._disk_problem(size)
            if reason:
                return 0, 0, reason
            try:
                written = await asyncio.to_thread(self._write_batch, batch)
            except OSError as e:
                return 0, 0, f"writing spill file in {self.directory} failed: {e}"
            spilled = 0
            # An object freed while its batch was being written stays out of the table.
            written = [(oid, entry) for oid, entry in written if oid in self._pinned]
            for object_id, entry in written:
                self.spilled[object_id] = entry
                self._file_objects.setdefault(entry.path, set()).add(object_id)
                self._unpin(object_id)
                spilled += entry.data_size + len(entry.metadata)
            if written:
                self.plasma.delete([object_id for object_id, _ in written])
            else:
                self._remove_orphan_files()
            self.total_spilled_bytes += spilled
            logger.info("Spilled %d object(s), %d bytes, to %s (needed %d bytes%s)",
                        len(written), spilled, written[0][1].path if written else "-",
                        bytes_needed, f" for {why}" if why else "")
            return spilled, len(written), ""

    def _pick(self, target: int) -> Tuple[List[bytes], int]:
        batch, size = [], 0
        for object_id in self._pinned:
            if object_id in self.spilled:
                continue
            obj = self.plasma.get([object_id], timeout_ms=0)[0]
            if obj is None:
                continue
            size += len(obj.data) + len(obj.metadata)
            del obj
            self.plasma.release(object_id)
            batch.append(object_id)
            if size >= target or len(batch) >= config.max_spill_file_objects:
                break
        return batch, size

    def _disk_problem(self, size: int) -> str:
        os.makedirs(self.directory, exist_ok=True)
        free = shutil.disk_usage(self.directory).free
        if free - size < config.object_spilling_min_free_disk_bytes:
            return (f"the spill disk is full: {self.directory} has {free} bytes free, "
                    f"spilling {size} more would leave less than "
                    f"object_spilling_min_free_disk_bytes={config.object_spilling_min_free_disk_bytes}")
        return ""

    def _write_batch(self, batch: List[bytes]) -> List[Tuple[bytes, SpilledObject]]:
        start = time.monotonic()
        self._file_counter += 1
        path = os.path.join(self.directory, f"spill-{self._file_counter}")
        written = []
        with open(path, "wb") as f:
            offset = 0
            for object_id in batch:
                obj = self.plasma.get([object_id], timeout_ms=0)[0]
                if obj is None:
                    continue
                try:
                    data = obj.data
                    f.write(data)
                    entry = SpilledObject(path, offset, len(data), bytes(obj.metadata))
                    offset += len(data)
                    del data
                finally:
                    del obj
                    self.plasma.release(object_id)
                written.append((object_id, entry))
        if not written:
            os.unlink(path)
        self.spill_seconds += time.monotonic() - start
        return written

    # ---- restoring ----------------------------------------------------------------
    async def restore(self, object_id: bytes) -> bool:
        """Bring a spilled object back into plasma (unpinned); False if not spilled here."""
        entry = self.spilled.get(object_id)
        if entry is None:
            return False
        for _ in range(config.object_store_full_max_retries):
            try:
                await asyncio.to_thread(self._read_into_plasma, object_id, entry)
                return True
            except ObjectExistsError:
                return True
            except ObjectStoreFullError:
                bytes_spilled, _, message = await self.spill(
                    entry.data_size, f"restoring object {object_id.hex()}")
                if not bytes_spilled:
                    raise ObjectStoreFullError(
                        f"cannot restore spilled object {object_id.hex()} "
                        f"({entry.data_size} bytes): the store is full and {message}")
        return self.plasma.contains(object_id)

    def _read_into_plasma(self, object_id: bytes, entry: SpilledObject) -> None:
        start = time.monotonic()
        buffer = self.plasma.create(object_id, entry.data_size, entry.metadata)
        try:
            with open(entry.path, "rb") as f:
                f.seek(entry.offset)
                view = memoryview(buffer)
                done = 0
                while done < entry.data_size:
                    n = f.readinto(view[done:])
                    if not n:
                        raise OSError(f"spill file {entry.path} ended early")
                    done += n
                del view
        except BaseException:
            del buffer
            self.plasma.abort(object_id)
            raise
        del buffer
        self.plasma.seal(object_id)
        self.total_restored_bytes += entry.data_size
        self.restore_seconds += time.monotonic() - start
        logger.info("Restored object %s (%d bytes) from %s", object_id.hex(), entry.data_size,
                    entry.path)

    # ---- freeing ------------------------------------------------------------------
    def free(self, object_ids) -> None:
        for object_id in object_ids:
            entry = self.spilled.pop(object_id, None)
            if entry is None:
                continue
            live = self._file_objects.get(entry.path)
            if live is not None:
                live.discard(object_id)
                if not live:
                    del self._file_objects[entry.path]
                    self._remove(entry.path)

    def _remove_orphan_files(self) -> None:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            path = os.path.join(self.directory, name)
            if path not in self._file_objects:
                self._remove(path)

    def shutdown(self) -> None:
        self.spilled.clear()
        self._file_objects.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.unlink(path)
        except OSError as e:
            logger.warning("Could not delete spill file %s: %s", path, e)

    def spilled_bytes(self) -> int:
        return sum(e.data_size for e in self.spilled.values())
