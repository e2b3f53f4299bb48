"""GCS: KV round trips through GcsClient (in-memory vs Redis storage) and restart time.

References measured in the same run: a raw redis-py round trip to the same
redis-server for the in-memory GCS rows (what one hop to Redis costs without gRPC),
the in-memory GCS for the Redis GCS rows, and an empty GCS's start for the restart row.
"""
import asyncio
import shutil
import tempfile
import time

import redis

from ray_common import rpc
from ray_common.ids import NodeID
from ray_common.protocol import common_pb2
from ray_gcs.client import GcsClient
from ray_gcs.kv_manager import namespace_prefix
from ray_gcs.launcher import start_gcs
from ray_gcs.redis_server import start_redis
from ray_gcs.storage import Table, open_storage

ROUND_TRIPS = 2000
RESTART_KV_ENTRIES = 10_000
RESTART_NODES = 100
VALUE = b"v" * 100


def _rate(fn, n=ROUND_TRIPS):
    start = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - start)


def _client_rates(address):
    client = GcsClient(address)

    async def puts(n):
        for i in range(n):
            await client.kv_put(b"bench:%d" % i, VALUE)

    async def gets(n):
        for i in range(n):
            await client.kv_get(b"bench:%d" % i)

    rpc.run_sync(puts(100))  # warm the channel
    put = _rate(lambda n: rpc.run_sync(puts(n)))
    get = _rate(lambda n: rpc.run_sync(gets(n)))
    sync_get = _rate(lambda n: [client.sync.kv_get(b"bench:1") for _ in range(n)], n=500)
    return put, get, sync_get


def _raw_redis_rates(port):
    r = redis.Redis(port=port)
    put = _rate(lambda n: [r.set(b"raw:%d" % i, VALUE) for i in range(n)])
    get = _rate(lambda n: [r.get(b"raw:%d" % i) for i in range(n)])
    r.close()
    return put, get


def _fill(url):
    async def fill():
        storage = open_storage(url)
        prefix = namespace_prefix("")
        kv = {prefix + b"bench:%d" % i: VALUE for i in range(RESTART_KV_ENTRIES)}
        await storage.multi_put(Table.KV, kv)
        nodes = {}
        for i in range(RESTART_NODES):
            info = common_pb2.NodeInfo(node_id=NodeID.from_random().binary(),
                                       node_manager_address="127.0.0.1",
                                       node_manager_port=20000 + i,
                                       resources_total={"CPU": 8.0, "memory": 1e10})
            nodes[info.node_id] = info.SerializeToString()
        await storage.multi_put(Table.NODE, nodes)
        await storage.close()
    asyncio.run(fill())


def _time_to_serve(session_dir, url, expect_nodes):
    start = time.perf_counter()
    proc, address = start_gcs(session_dir, storage=url)
    client = GcsClient(address)
    nodes = client.sync.get_all_node_info()
    assert len(nodes) == expect_nodes, (len(nodes), expect_nodes)
    if expect_nodes:
        assert client.sync.kv_get(b"bench:9999") == VALUE
    elapsed = time.perf_counter() - start
    proc.terminate()
    proc.wait()
    return elapsed * 1000


def run():
    tmp = tempfile.mkdtemp(prefix="bench_gcs_")
    redis_server = start_redis(f"{tmp}/redis")
    procs = []
    try:
        proc, memory_address = start_gcs(f"{tmp}/memory")
        procs.append(proc)
        proc, redis_address = start_gcs(f"{tmp}/redis_gcs", storage=f"{redis_server.url}/bench")
        procs.append(proc)
        mem_put, mem_get, mem_sync_get = _client_rates(memory_address)
        red_put, red_get, red_sync_get = _client_rates(redis_address)
        raw_put, raw_get = _raw_redis_rates(redis_server.port)

        _fill(f"{redis_server.url}/restart")
        restart = min(_time_to_serve(f"{tmp}/restart", f"{redis_server.url}/restart",
                                     RESTART_NODES) for _ in range(2))
        empty = min(_time_to_serve(f"{tmp}/empty", f"{redis_server.url}/empty", 0)
                    for _ in range(2))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return [
        ("kv_put via GcsClient, in-memory GCS (ref: raw redis-py SET)", mem_put, "ops/s",
         raw_put, "ops/s"),
        ("kv_get via GcsClient, in-memory GCS (ref: raw redis-py GET)", mem_get, "ops/s",
         raw_get, "ops/s"),
        ("kv_get via client.sync, in-memory GCS (ref: async form)", mem_sync_get, "ops/s",
         mem_get, "ops/s"),
        ("kv_put via GcsClient, Redis GCS (ref: in-memory GCS)", red_put, "ops/s",
         mem_put, "ops/s"),
        ("kv_get via GcsClient, Redis GCS (ref: in-memory GCS)", red_get, "ops/s",
         mem_get, "ops/s"),
        ("kv_get via client.sync, Redis GCS (ref: in-memory GCS)", red_sync_get, "ops/s",
         mem_sync_get, "ops/s"),
        (f"restart to serving, {RESTART_KV_ENTRIES} KV + {RESTART_NODES} nodes in Redis "
         f"(ref: empty Redis)", restart, "ms", empty, "ms"),
    ]
