"""The generated protobuf and gRPC modules, under the names the rest of the code imports.

They are produced by `make build` into `_generated/` (never committed); importing them
through here keeps that folder private to ray_common.
"""
from ray_common._generated import (  # noqa: F401
    common_pb2,
    core_worker_pb2,
    core_worker_pb2_grpc,
    gcs_service_pb2,
    gcs_service_pb2_grpc,
    node_manager_pb2,
    node_manager_pb2_grpc,
    object_manager_pb2,
    object_manager_pb2_grpc,
)

__all__ = ["common_pb2", "core_worker_pb2", "core_worker_pb2_grpc", "gcs_service_pb2",
           "gcs_service_pb2_grpc", "node_manager_pb2", "node_manager_pb2_grpc",
           "object_manager_pb2", "object_manager_pb2_grpc"]
