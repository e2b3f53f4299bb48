"""ray_common: what every ray_core component shares.

  ids        fixed-size IDs with Ray's sizes and derivation rules (Cython)
  config     every tunable, its default and its override order
  logging    glog-style per-process log files
  protocol   the generated protobuf/gRPC modules (built from protos/, never committed)
  rpc        the io loop, servers, channels, the cluster token, retries

Nothing here imports a higher layer (ray_gcs, ray_plasma, ray_raylet, ray_core).
"""
