"""A process that answers NodeManagerService.HealthCheck like a raylet, and nothing else.

Usage: python -m tests.gcs.fake_raylet PORT_FILE
Killing it (or SIGSTOP) is how the health-check tests make a node stop answering.
"""
import asyncio
import sys

from ray_common import rpc
from ray_common.process import die_with_parent, write_file_atomically
from ray_common.protocol import node_manager_pb2, node_manager_pb2_grpc


class HealthOnly(node_manager_pb2_grpc.NodeManagerServiceServicer):
    async def HealthCheck(self, request, context):
        return node_manager_pb2.HealthCheckReply()


async def main(port_file):
    server, port = await rpc.start_server(
        [(node_manager_pb2_grpc.add_NodeManagerServiceServicer_to_server, HealthOnly())],
        host="127.0.0.1")
    write_file_atomically(port_file, str(port))
    await server.wait_for_termination()


if __name__ == "__main__":
    die_with_parent()
    asyncio.run(main(sys.argv[1]))
