"""The storage contract, run against both backends (in-memory and a real redis-server)."""
import asyncio
import uuid

import pytest

from ray_gcs.redis_storage import RedisStorage
from ray_gcs.storage import InMemoryStorage, open_storage


@pytest.fixture
def make_storage(backend, request):
    """Returns a factory: each call gives a fresh storage of the backend (same namespace)."""
    namespace = f"test_{uuid.uuid4().hex[:12]}"

    def make():
        if backend == "memory":
            return InMemoryStorage()
        redis_server = request.getfixturevalue("redis_server")
        return RedisStorage("127.0.0.1", redis_server.port, namespace=namespace)

    return make


def run(storage, body):
    async def go():
        await storage.connect()
        try:
            return await body(storage)
        finally:
            await storage.close()
    return asyncio.run(go())


def test_get_put_overwrite_and_delete(make_storage):
    async def body(s):
        assert await s.get("t", b"k") is None
        assert await s.put("t", b"k", b"v1") is True
        assert await s.put("t", b"k", b"v2", overwrite=False) is False
        assert await s.get("t", b"k") == b"v1"
        assert await s.put("t", b"k", b"v3") is False
        assert await s.get("t", b"k") == b"v3"
        assert await s.get("other", b"k") is None  # tables are separate
        assert await s.delete("t", [b"k", b"missing"]) == 1
        assert await s.get("t", b"k") is None
    run(make_storage(), body)


def test_batches_and_prefix_scan(make_storage):
    async def body(s):
        items = {b"p:%05d" % i: b"v%d" % i for i in range(2500)}
        items[b"q*[odd]?\\"] = b"glob characters are literal"
        await s.multi_put("t", items)
        assert await s.multi_get("t", [b"p:00007", b"nope", b"p:02499"]) == {
            b"p:00007": b"v7", b"p:02499": b"v2499"}
        assert len(await s.scan("t")) == 2501
        assert sorted(await s.scan_keys("t", b"p:0001")) == [b"p:%05d" % i for i in range(10, 20)]
        assert await s.scan("t", b"q*[") == {b"q*[odd]?\\": b"glob characters are literal"}
        assert await s.scan("t", b"q?") == {}
        assert await s.delete("t", list(items)) == 2501
        assert await s.scan("t") == {}
    run(make_storage(), body)


def test_counter_increments(make_storage):
    async def body(s):
        assert [await s.increment("c", b"n") for _ in range(3)] == [1, 2, 3]
        assert await s.increment("c", b"other") == 1
    run(make_storage(), body)


def test_redis_rows_outlive_the_client_and_namespaces_are_separate(redis_server):
    async def body():
        first = RedisStorage("127.0.0.1", redis_server.port, namespace="cluster_a")
        await first.put("t", b"k", b"a")
        await first.close()
        again = RedisStorage("127.0.0.1", redis_server.port, namespace="cluster_a")
        other = RedisStorage("127.0.0.1", redis_server.port, namespace="cluster_b")
        try:
            assert await again.get("t", b"k") == b"a"
            assert await other.get("t", b"k") is None
        finally:
            await again.delete("t", [b"k"])
            await again.close()
            await other.close()
    asyncio.run(body())


@pytest.mark.parametrize("url,word", [
    ("mysql://h:1", "unknown scheme 'mysql'"),
    ("redis://localhost", "needs a host and a numeric port"),
    ("redis://localhost:notaport", "needs a host and a numeric port"),
    ("redis://h:1/a/b", "the path may hold only a namespace"),
    ("localhost:6379", "unknown scheme"),
])
def test_malformed_storage_urls_are_named(url, word):
    with pytest.raises(ValueError) as info:
        open_storage(url)
    assert url in str(info.value) and word in str(info.value)


def test_storage_url_forms():
    assert isinstance(open_storage("memory"), InMemoryStorage)
    redis_storage = open_storage("redis://:pw@127.0.0.1:7000/mycluster")
    assert (redis_storage.host, redis_storage.port, redis_storage.namespace) == (
        "127.0.0.1", 7000, "mycluster")
    assert open_storage("redis://127.0.0.1:7000").namespace == "default"

