"""The storage interface every GCS table sits behind, and its in-memory backend.

A backend stores opaque byte values under (table, key). Tables are flat maps; the
callers serialize protobuf rows. Every method is a coroutine so that the Redis
backend can do its network I/O on the server's event loop; the in-memory one never
awaits anything. Batched forms (multi_get, multi_put, delete of many keys, scan) exist
because recovery and prefix deletes touch thousands of keys, and the Redis backend
turns each batch into a few round trips (gcs_storage_operation_batch_size keys each).
"""
import abc
from typing import Dict, Iterable, List, Optional
from urllib.parse import urlsplit


class Table:
    """Names of the tables the GCS keeps (also the Redis hash names' suffixes)."""
    NODE = "node"
    JOB = "job"
    WORKER = "worker"
    ACTOR = "actor"
    PLACEMENT_GROUP = "placement_group"
    KV = "kv"
    COUNTER = "counter"


class StorageError(Exception):
    """The storage backend failed or cannot be reached (the message says which and why)."""


class Storage(abc.ABC):
    @abc.abstractmethod
    async def get(self, table: str, key: bytes) -> Optional[bytes]:
        ...

    @abc.abstractmethod
    async def multi_get(self, table: str, keys: Iterable[bytes]) -> Dict[bytes, bytes]:
        """Values of the keys that exist (absent keys are left out)."""

    @abc.abstractmethod
    async def put(self, table: str, key: bytes, value: bytes, overwrite: bool = True) -> bool:
        """Store the value (unless the key exists and not `overwrite`); True if the key is new."""

    @abc.abstractmethod
    async def multi_put(self, table: str, items: Dict[bytes, bytes]) -> None:
        ...

    @abc.abstractmethod
    async def delete(self, table: str, keys: Iterable[bytes]) -> int:
        """Delete the keys; returns how many existed."""

    @abc.abstractmethod
    async def scan(self, table: str, prefix: bytes = b"") -> Dict[bytes, bytes]:
        """Every (key, value) of the table whose key starts with `prefix`."""

    @abc.abstractmethod
    async def scan_keys(self, table: str, prefix: bytes = b"") -> List[bytes]:
        ...

    @abc.abstractmethod
    async def increment(self, table: str, key: bytes) -> int:
        """Atomically add one to an integer counter (starting at 0) and return the new value."""

    async def connect(self) -> None:
        """Check that the backend answers; raises StorageError saying why not."""

    async def close(self) -> None:
        ...

    @abc.abstractmethod
    def describe(self) -> str:
        ...


class InMemoryStorage(Storage):
    """The default backend: tables die with the GCS process."""

    def __init__(self):
        self._tables: Dict[str, Dict[bytes, bytes]] = {}

    def _table(self, table: str) -> Dict[bytes, bytes]:
        rows = self._tables.get(table)
        if rows is None:
            rows = self._tables[table] = {}
        return rows

    async def get(self, table, key):
        return self._table(table).get(key)

    async def multi_get(self, table, keys):
        rows = self._table(table)
        return {k: rows[k] for k in keys if k in rows}

    async def put(self, table, key, value, overwrite=True):
        rows = self._table(table)
        added = key not in rows
        if added or overwrite:
            rows[key] = value
        return added

    async def multi_put(self, table, items):
        self._table(table).update(items)

    async def delete(self, table, keys):
        rows = self._table(table)
        return sum(rows.pop(k, None) is not None for k in list(keys))

    async def scan(self, table, prefix=b""):
        return {k: v for k, v in self._table(table).items() if k.startswith(prefix)}

    async def scan_keys(self, table, prefix=b""):
        return [k for k in self._table(table) if k.startswith(prefix)]

    async def increment(self, table, key):
        rows = self._table(table)
        value = int(rows.get(key, b"0")) + 1
        rows[key] = str(value).encode()
        return value

    def describe(self):
        return "memory"


async def load_rows(storage: Storage, table: str, message_class) -> Dict[bytes, object]:
    """Every row of a table parsed as `message_class` (a protobuf class), by key."""
    return {key: message_class.FromString(value)
            for key, value in (await storage.scan(table)).items()}


STORAGE_URL_FORMS = "'memory' or 'redis://[:PASSWORD@]HOST:PORT[/NAMESPACE]'"


def open_storage(url: str) -> Storage:
    """The backend a `--storage` URL names; raises ValueError naming what is malformed.

    The Redis namespace (the per-cluster key prefix) comes from the URL's path, else
    from config.external_storage_namespace.
    """
    if url in ("", "memory"):
        return InMemoryStorage()
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"malformed GCS storage URL {url!r}: unknown scheme "
                         f"{parts.scheme or '(none)'!r}; expected {STORAGE_URL_FORMS}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ValueError(f"malformed GCS storage URL {url!r}: it needs a host and a numeric "
                         f"port; expected {STORAGE_URL_FORMS}")
    namespace = parts.path.strip("/")
    if "/" in namespace or parts.query or parts.fragment:
        raise ValueError(f"malformed GCS storage URL {url!r}: the path may hold only a "
                         f"namespace; expected {STORAGE_URL_FORMS}")
    from ray_gcs.redis_storage import RedisStorage
    return RedisStorage(parts.hostname, port, namespace=namespace or None,
                        password=parts.password)
