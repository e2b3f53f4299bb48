"""SpillManager against a real plasma store: oldest pinned primaries go to batched files,
come back on demand, and their files go when freed; a full disk is a clear refusal."""
import asyncio
import os

import pytest

from ray_common.config import config
from ray_plasma.client import PlasmaClient
from ray_plasma.launcher import start_plasma_store
from ray_raylet.spill_manager import SpillManager
from tests.plasma.conftest import oid, stop_process

MB = 1024 ** 2


@pytest.fixture
def spiller(tmp_path):
    proc = start_plasma_store(str(tmp_path / "p.sock"), 16 * MB, logs_dir=str(tmp_path / "logs"))
    client = PlasmaClient(str(tmp_path / "p.sock"))
    pinned = {}

    def unpin(object_id):
        if pinned.pop(object_id, None) is not None:
            client.release(object_id)

    overrides = dict(config._system_config)
    config.update({"min_spilling_size": 3 * MB, "object_spilling_directory": str(tmp_path)})
    manager = SpillManager(plasma=client, node_id=b"\x01" * 28, session_dir=str(tmp_path),
                           pinned=pinned, unpin=unpin)
    try:
        yield manager, client, pinned
    finally:
        config._system_config.clear()
        config._system_config.update(overrides)
        manager.shutdown()
        client.disconnect()
        stop_process(proc)


def _put_pinned(client, pinned, n, size):
    for i in range(n):
        client.create_and_seal(oid(i), bytes([i]) * size, b"meta")
        assert client.get([oid(i)], 0)[0] is not None     # the raylet's pin
        pinned[oid(i)] = True


def test_spill_oldest_first_in_one_batch_restore_and_free(spiller):
    manager, client, pinned = spiller
    _put_pinned(client, pinned, 4, MB)
    spilled, count, message = asyncio.run(manager.spill(MB))
    assert (spilled, count, message) == (3 * MB + 12, 3, "")   # batched up to min_spilling_size
    assert set(manager.spilled) == {oid(0), oid(1), oid(2)} and oid(3) in pinned
    files = os.listdir(manager.directory)
    assert len(files) == 1                                      # one file for the batch
    assert not client.contains(oid(0))                          # its memory is free
    assert asyncio.run(manager.restore(oid(1)))
    obj = client.get([oid(1)], 0)[0]
    assert bytes(obj.data) == bytes([1]) * MB and bytes(obj.metadata) == b"meta"
    del obj
    client.release(oid(1))
    manager.free([oid(0), oid(1)])
    assert os.listdir(manager.directory) == files               # oid(2) still lives there
    manager.free([oid(2)])
    assert os.listdir(manager.directory) == []
    assert not asyncio.run(manager.restore(oid(9)))             # never spilled


def test_full_disk_refuses_with_the_sizes(spiller):
    manager, client, pinned = spiller
    _put_pinned(client, pinned, 2, MB)
    config.update({"object_spilling_min_free_disk_bytes": 1 << 60})
    spilled, count, message = asyncio.run(manager.spill(MB))
    assert spilled == 0 and count == 0
    assert "spill disk is full" in message and "bytes free" in message
    assert manager.spilled == {} and len(pinned) == 2


def test_nothing_pinned_nothing_to_spill(spiller):
    manager, _, _ = spiller
    spilled, _, message = asyncio.run(manager.spill(MB))
    assert spilled == 0 and "no pinned primary copy" in message
