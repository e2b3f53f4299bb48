"""The Redis storage backend: one Redis hash per table, under a per-cluster namespace.

Layout: table T of cluster namespace N is the hash `N:T`; a row is one field of it.
Two clusters can share one redis-server by using different namespaces, and a GCS
restarted with the same namespace finds every table where it left it.

The client is redis-py's asyncio client, which parses replies with hiredis when the
hiredis package is installed (it is a dependency; `parser_name()` says which parser is
in use, and the server logs it). Batches go out as pipelines of
gcs_storage_operation_batch_size keys.
"""
import logging
from typing import Dict, List, Optional

import redis.asyncio as aioredis
import redis.exceptions
import redis.utils

from ray_common.config import config
from ray_gcs.storage import Storage, StorageError

logger = logging.getLogger(__name__)

_GLOB_SPECIALS = b"\\*?[]"


def _glob_prefix(prefix: bytes) -> bytes:
    """A MATCH pattern that matches keys starting with `prefix` literally."""
    out = bytearray()
    for byte in prefix:
        if byte in _GLOB_SPECIALS:
            out += b"\\"
        out.append(byte)
    return bytes(out) + b"*"


def _chunks(items: List, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def parser_name() -> str:
    return "hiredis" if redis.utils.HIREDIS_AVAILABLE else "python"


class RedisStorage(Storage):
    def __init__(self, host: str, port: int, namespace: Optional[str] = None,
                 password: Optional[str] = None):
        self.host, self.port = host, port
        self.namespace = namespace or config.external_storage_namespace
        self._client = aioredis.Redis(host=host, port=port, password=password,
                                      decode_responses=False)
        self._batch = max(1, int(config.gcs_storage_operation_batch_size))

    def describe(self):
        return f"redis://{self.host}:{self.port}/{self.namespace} (parser {parser_name()})"

    def _hash(self, table: str) -> bytes:
        return f"{self.namespace}:{table}".encode()

    async def _do(self, what: str, coro):
        try:
            return await coro
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            raise StorageError(f"Redis at {self.host}:{self.port} failed during {what}: {e}") from e
        except redis.exceptions.RedisError as e:
            raise StorageError(f"Redis at {self.host}:{self.port} refused {what}: {e}") from e

    async def connect(self):
        await self._do("PING", self._client.ping())

    async def close(self):
        await self._client.aclose()

    async def get(self, table, key):
        return await self._do(f"get from {table}", self._client.hget(self._hash(table), key))

    async def multi_get(self, table, keys):
        keys = list(keys)
        found: Dict[bytes, bytes] = {}
        for chunk in _chunks(keys, self._batch):
            values = await self._do(f"multi-get from {table}",
                                    self._client.hmget(self._hash(table), chunk))
            found.update((k, v) for k, v in zip(chunk, values) if v is not None)
        return found

    async def put(self, table, key, value, overwrite=True):
        name = self._hash(table)
        if overwrite:
            added = await self._do(f"put into {table}", self._client.hset(name, key, value))
        else:
            added = await self._do(f"put into {table}", self._client.hsetnx(name, key, value))
        return bool(added)

    async def multi_put(self, table, items):
        pairs = list(items.items())
        for chunk in _chunks(pairs, self._batch):
            await self._do(f"multi-put into {table}",
                           self._client.hset(self._hash(table), mapping=dict(chunk)))

    async def delete(self, table, keys):
        keys = list(keys)
        deleted = 0
        for chunk in _chunks(keys, self._batch):
            deleted += await self._do(f"delete from {table}",
                                      self._client.hdel(self._hash(table), *chunk))
        return deleted

    async def scan(self, table, prefix=b""):
        name = self._hash(table)
        match = _glob_prefix(prefix) if prefix else None
        rows: Dict[bytes, bytes] = {}
        cursor = 0
        while True:
            cursor, page = await self._do(
                f"scan of {table}", self._client.hscan(name, cursor, match=match,
                                                       count=self._batch))
            rows.update(page)
            if cursor == 0:
                return rows

    async def scan_keys(self, table, prefix=b""):
        return list(await self.scan(table, prefix))

    async def increment(self, table, key):
        return int(await self._do(f"increment in {table}",
                                  self._client.hincrby(self._hash(table), key, 1)))
