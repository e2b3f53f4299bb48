"""The GCS internal key-value store: function table, named things, user KV.

Rows live in the storage's KV table only (no in-memory copy), so a GCS on Redis holds
no KV state of its own. A (namespace, key) pair is stored under
`<len(namespace)>:<namespace>:<key>`: the length prefix keeps namespaces from bleeding
into each other ("a" + "b:c" vs "a:b" + "c"), and a key prefix inside one namespace is
still a storage prefix, so `keys` and delete-by-prefix are one prefix scan.
"""
from ray_common.config import config
from ray_common.protocol import gcs_service_pb2 as pb, gcs_service_pb2_grpc
from ray_gcs import errors
from ray_gcs.storage import Storage, Table


def namespace_prefix(namespace: str) -> bytes:
    """The storage-key prefix of a KV namespace (see the module docstring)."""
    encoded = namespace.encode()
    return str(len(encoded)).encode() + b":" + encoded + b":"


class GcsKVManager(gcs_service_pb2_grpc.InternalKVGcsServiceServicer):
    def __init__(self, storage: Storage):
        self._storage = storage

    def _key(self, namespace: str, key: bytes, what: str) -> bytes:
        if not key:
            raise errors.invalid(f"{what}: the key is empty (namespace {namespace!r})")
        return namespace_prefix(namespace) + key

    @errors.handler
    async def InternalKVGet(self, request, context):
        value = await self._storage.get(Table.KV, self._key(request.namespace, request.key,
                                                            "InternalKVGet"))
        return pb.InternalKVGetReply(found=value is not None, value=value or b"")

    @errors.handler
    async def InternalKVMultiGet(self, request, context):
        prefix = namespace_prefix(request.namespace)
        found = await self._storage.multi_get(Table.KV, [prefix + k for k in request.keys])
        skip = len(prefix)
        return pb.InternalKVMultiGetReply(
            results=[pb.KVEntry(key=k[skip:], value=v) for k, v in found.items()])

    @errors.handler
    async def InternalKVPut(self, request, context):
        key = self._key(request.namespace, request.key, "InternalKVPut")
        limit = config.gcs_kv_max_value_bytes
        if len(request.value) > limit:
            raise errors.invalid(
                f"InternalKVPut: value of key {request.key[:64]!r} (namespace "
                f"{request.namespace!r}) is {len(request.value)} bytes, over the "
                f"{limit}-byte limit (gcs_kv_max_value_bytes); store large data as an "
                f"object instead")
        added = await self._storage.put(Table.KV, key, request.value, request.overwrite)
        return pb.InternalKVPutReply(added=added)

    @errors.handler
    async def InternalKVDel(self, request, context):
        if request.del_by_prefix:
            prefix = namespace_prefix(request.namespace) + request.key
            keys = await self._storage.scan_keys(Table.KV, prefix)
        else:
            keys = [self._key(request.namespace, request.key, "InternalKVDel")]
        deleted = await self._storage.delete(Table.KV, keys) if keys else 0
        return pb.InternalKVDelReply(deleted_num=deleted)

    @errors.handler
    async def InternalKVExists(self, request, context):
        value = await self._storage.get(Table.KV, self._key(request.namespace, request.key,
                                                            "InternalKVExists"))
        return pb.InternalKVExistsReply(exists=value is not None)

    @errors.handler
    async def InternalKVKeys(self, request, context):
        prefix = namespace_prefix(request.namespace)
        keys = await self._storage.scan_keys(Table.KV, prefix + request.prefix)
        skip = len(prefix)
        return pb.InternalKVKeysReply(results=sorted(k[skip:] for k in keys))
