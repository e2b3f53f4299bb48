"""The bounded memory of ended rows: dead actors and workers, removed placement groups.

A table keeps the rows of what ended so that a caller can tell "ended, and why" from
"unknown" (and the state API can list what died recently), but a long-lived cluster's
tables must not grow with its history. Each such table remembers at most a configured
number of ended rows and forgets the oldest ending first, as Ray's GCS does with
maximum_gcs_destroyed_actor_cached_count and maximum_gcs_dead_worker_cached_count. The
bound is read at each ending, so a test's _system_config takes effect at once.
"""
import collections
from typing import Dict, List

from ray_common.config import config
from ray_gcs.storage import Storage


class EndedRows:
    """The keys of a table's ended rows, oldest ending first, held to `config.<bound>`."""

    def __init__(self, bound: str):
        self._bound = bound
        self._keys = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: bytes) -> None:
        """Note that the row `key` ended (again: it keeps its place)."""
        self._keys.setdefault(key, None)

    async def forget_overflow(self, rows: Dict[bytes, object], storage: Storage,
                              table: str) -> List[bytes]:
        """Forget the oldest ended rows past the bound: here, in `rows` (the table's map)
        and in storage. Returns their keys."""
        extra = len(self._keys) - max(0, int(getattr(config, self._bound)))
        old = [self._keys.popitem(last=False)[0] for _ in range(max(0, extra))]
        if old:
            for key in old:
                rows.pop(key, None)
            await storage.delete(table, old)
        return old
