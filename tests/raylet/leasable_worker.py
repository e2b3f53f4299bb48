"""A stand-in worker for raylet tests (set through RAY_CORE_WORKER_ENTRY_MODULE).

It does what the raylet contract asks of a worker and nothing more: dies with its raylet,
serves CoreWorkerService (Exit only), registers with RegisterWorker, and prints its
environment facts (pid, port, CUDA_VISIBLE_DEVICES, job) for tests to read from its .out log.
"""
import argparse
import json
import os
import signal
import sys

from ray_common import rpc
from ray_common.process import die_with_parent
from ray_common.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc
from ray_common.protocol import node_manager_pb2, node_manager_pb2_grpc


class Servicer(core_worker_pb2_grpc.CoreWorkerServiceServicer):
    async def Exit(self, request, context):
        rpc.io_loop().call_later(0.01, os._exit, 0)
        return core_worker_pb2.ExitReply(success=True)


async def serve_and_register(args):
    _, port = await rpc.start_server(
        [(core_worker_pb2_grpc.add_CoreWorkerServiceServicer_to_server, Servicer())],
        port=0, host=args.node_ip_address)
    stub = rpc.stub(node_manager_pb2_grpc.NodeManagerServiceStub, args.raylet_address)
    job = os.environ.get("RAY_CORE_JOB_ID", "")
    reply = await stub.RegisterWorker(node_manager_pb2.RegisterWorkerRequest(
        worker_id=bytes.fromhex(args.worker_id), pid=os.getpid(), port=port,
        worker_type=common_pb2.WORKER, job_id=bytes.fromhex(job),
        ip_address=args.node_ip_address))
    return port, reply


def main():
    die_with_parent()
    parser = argparse.ArgumentParser()
    for name in ("node-ip-address", "raylet-address", "gcs-address", "node-id", "worker-id",
                 "object-store-socket", "session-dir", "startup-token"):
        parser.add_argument("--" + name, required=True)
    args = parser.parse_args()
    port, reply = rpc.run_sync(serve_and_register(args))
    if not reply.success:
        print(f"registration refused: {reply.failure_message}", file=sys.stderr)
        return 1
    print(json.dumps({"pid": os.getpid(), "port": port,
                      "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                      "job_id": os.environ.get("RAY_CORE_JOB_ID")}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
