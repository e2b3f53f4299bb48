"""The Cython allocator: alignment, best fit, coalescing, statistics, a randomized stress."""
import random

import pytest

from ray_plasma._allocator import Allocator


def test_blocks_are_aligned_and_rounded_up():
    alloc = Allocator(1 << 20)
    offsets = [alloc.allocate(size) for size in (1, 63, 64, 65, 1000, 0)]
    assert all(o >= 0 and o % 64 == 0 for o in offsets)
    assert [alloc.block_size(o) for o in offsets] == [64, 64, 64, 128, 1024, 64]
    assert alloc.used == 64 * 3 + 128 + 1024 + 64
    alloc.check()


def test_free_merges_with_both_neighbours():
    alloc = Allocator(64 * 10)
    a, b, c = (alloc.allocate(64 * 2) for _ in range(3))
    alloc.free(a)
    alloc.free(c)  # c merges with the free tail
    assert alloc.num_free_blocks == 2
    alloc.free(b)  # b joins a on the left and the tail on the right: one block again
    assert alloc.blocks() == [(0, 640, True)]
    assert alloc.largest_free() == 640 and alloc.used == 0
    alloc.check()


def test_best_fit_takes_the_smallest_hole_that_fits():
    alloc = Allocator(64 * 100)
    blocks = [alloc.allocate(64 * n) for n in (4, 1, 2, 1, 8, 1)]
    alloc.free(blocks[0])   # hole of 4 blocks at 0
    alloc.free(blocks[2])   # hole of 2 blocks
    alloc.free(blocks[4])   # hole of 8 blocks
    assert alloc.allocate(64 * 2) == blocks[2]
    assert alloc.allocate(64 * 3) == blocks[0]
    assert alloc.allocate(64 * 5) == blocks[4]
    alloc.check()


def test_out_of_space_and_statistics():
    alloc = Allocator(64 * 4)
    assert alloc.allocate(64 * 5) == -1
    first = alloc.allocate(64)
    middle = alloc.allocate(64)
    alloc.allocate(64)
    alloc.free(first)
    stats = alloc.stats()
    assert stats["used"] == 128 and stats["free"] == 128
    assert stats["largest_free"] == 64 and stats["num_free_blocks"] == 2
    assert stats["fragmentation"] == pytest.approx(0.5)
    assert alloc.allocate(128) == -1   # 128 bytes free, but in two pieces
    alloc.free(middle)
    assert alloc.allocate(128) == first


def test_bad_frees_and_arguments_are_refused():
    alloc = Allocator(4096)
    offset = alloc.allocate(100)
    with pytest.raises(KeyError, match="not an allocated block"):
        alloc.free(offset + 64)
    alloc.free(offset)
    with pytest.raises(KeyError):
        alloc.free(offset)
    with pytest.raises(ValueError, match="power of two"):
        Allocator(4096, alignment=48)
    with pytest.raises(ValueError, match="smaller than one"):
        Allocator(10)


def test_randomized_alloc_free_keeps_free_lists_consistent():
    rng = random.Random(4)
    capacity = 64 * 1024 * 64
    alloc = Allocator(capacity)
    live = {}
    for step in range(100_000):
        if live and (rng.random() < 0.5 or alloc.free_bytes < capacity // 8):
            offset = rng.choice(list(live))
            size = live.pop(offset)
            assert alloc.free(offset) == size
        else:
            size = rng.choice((1, 64, 100, 4096, 5000, 65536)) * rng.randint(1, 4)
            offset = alloc.allocate(size)
            if offset >= 0:
                assert offset % 64 == 0
                live[offset] = alloc.block_size(offset)
        if step % 10_000 == 0:
            alloc.check()
    alloc.check()
    spans = sorted((o, o + s) for o, s in live.items())
    assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:]))
    assert alloc.used == sum(live.values())
    for offset in list(live):
        alloc.free(offset)
    alloc.check()
    assert alloc.blocks() == [(0, capacity, True)]
