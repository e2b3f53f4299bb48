"""A holder raylet SIGKILLed in the middle of a large transfer, between real raylets.

With a second copy the pull finishes from it; with none it fails with the reason, in
bounded time, and the puller's store holds no half-written object (its used bytes are
back where they were). The holder is stopped (SIGSTOP) as soon as the puller's buffer
exists, so the kill always lands mid-transfer; an attempt whose pull had already
finished by then is repeated with a new object.
"""
import hashlib
import os
import signal
import time

from ray_plasma.client import PlasmaClient
from tests.raylet.test_objects import pull_request, read

SIZE = 256 * 1024 ** 2
STORE = SIZE + 64 * 1024 ** 2
ATTEMPTS = 5


def put_as(raylet, object_id: bytes, data: bytes) -> None:
    client = PlasmaClient(raylet.info["object_store_socket"])
    try:
        client.create(object_id, len(data), b"meta")[:] = data
        client.seal(object_id)
    finally:
        client.disconnect()


def delete(raylet, object_id: bytes) -> None:
    client = PlasmaClient(raylet.info["object_store_socket"])
    try:
        client.delete([object_id])
    finally:
        client.disconnect()


def kill_mid_transfer(puller, victim, holders, data):
    """Pull a new copy of `data` (put on every holder) and SIGKILL `victim` while its
    bytes are on the way; returns (object_id, the PullObjects reply)."""
    baseline = puller.stats().object_store_used_bytes
    for _ in range(ATTEMPTS):
        object_id = os.urandom(28)
        for holder in holders:
            put_as(holder, object_id, data)
        pull = puller.spawn("PullObjects", pull_request(object_id,
                                                        [h.node_id for h in holders]),
                            timeout=120)
        while puller.stats().object_store_used_bytes == baseline and not pull.done():
            time.sleep(0.002)
        os.kill(victim.proc.pid, signal.SIGSTOP)
        if not pull.done():
            victim.proc.kill()
            victim.proc.wait()
            return object_id, pull.result(120)
        os.kill(victim.proc.pid, signal.SIGCONT)      # too late: try again with another
        assert pull.result().success
        delete(puller, object_id)
        for holder in holders:
            delete(holder, object_id)
    raise AssertionError(f"every pull of {ATTEMPTS} finished before its holder stopped")


def test_a_pull_finishes_from_the_other_copy_when_a_holder_dies(cluster):
    puller = cluster.add_raylet(num_cpus=0, object_store_memory=STORE)
    dying = cluster.add_raylet(num_cpus=0, object_store_memory=STORE)
    other = cluster.add_raylet(num_cpus=0, object_store_memory=STORE)
    data = os.urandom(SIZE)
    object_id, reply = kill_mid_transfer(puller, dying, [dying, other], data)
    assert reply.success and reply.results[0].success, reply
    assert read(puller, object_id) == (hashlib.sha256(data).hexdigest(), SIZE, b"meta")
    assert puller.stats().object_store_used_bytes >= SIZE


def test_a_pull_fails_cleanly_when_its_only_holder_dies(cluster):
    puller = cluster.add_raylet(num_cpus=0, object_store_memory=STORE)
    dying = cluster.add_raylet(num_cpus=0, object_store_memory=STORE)
    baseline = puller.stats().object_store_used_bytes
    object_id, reply = kill_mid_transfer(puller, dying, [dying], os.urandom(SIZE))
    result = reply.results[0]
    assert not result.success
    assert f"object {object_id.hex()} could not be pulled" in result.error_message
    assert read(puller, object_id) is None
    assert puller.stats().object_store_used_bytes == baseline   # the buffer was aborted
    # The puller goes on serving: a pull from a live holder works.
    holder = cluster.add_raylet(num_cpus=0, object_store_memory=STORE)
    data = os.urandom(1024 ** 2)
    put_as(holder, object_id, data)
    assert puller.call("PullObjects", pull_request(object_id, [holder.node_id])).success
    assert read(puller, object_id)[0] == hashlib.sha256(data).hexdigest()
