"""A process serving a dict-backed InternalKVGcsService, for the rpc round-trip test.

Usage: python -m tests.common.kv_server_proc PORT_FILE [TOKEN]
"""
import asyncio
import os
import sys

from ray_common import rpc
from ray_common.protocol import gcs_service_pb2, gcs_service_pb2_grpc


class DictKV(gcs_service_pb2_grpc.InternalKVGcsServiceServicer):
    def __init__(self):
        self.data = {}

    async def InternalKVPut(self, request, context):
        key = (request.namespace, request.key)
        added = key not in self.data
        if added or request.overwrite:
            self.data[key] = request.value
        return gcs_service_pb2.InternalKVPutReply(added=added)

    async def InternalKVGet(self, request, context):
        value = self.data.get((request.namespace, request.key))
        return gcs_service_pb2.InternalKVGetReply(found=value is not None, value=value or b"")


async def main(port_file, token):
    server, port = await rpc.start_server(
        [(gcs_service_pb2_grpc.add_InternalKVGcsServiceServicer_to_server, DictKV())],
        host="127.0.0.1", token=token)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.rename(tmp, port_file)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
