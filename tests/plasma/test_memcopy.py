"""ray_plasma.memcopy: every split and alignment copies exactly the source's bytes."""
import numpy as np
import pytest

from ray_plasma import memcopy
from ray_plasma._memcopy import stream_copy

MIB = 1024 ** 2


@pytest.mark.parametrize("size", [0, 1, 15, 16, 63, 64, 65, 1000, 4096 + 7])
@pytest.mark.parametrize("offset", [0, 1, 8, 17])
def test_stream_copy_any_size_and_alignment(size, offset):
    src = np.random.default_rng(size).integers(0, 256, size + offset, dtype=np.uint8)
    dest = np.full(size + 2 * offset + 1, 0xAB, dtype=np.uint8)
    stream_copy(dest[offset:offset + size], src[offset:])
    assert dest[offset:offset + size].tobytes() == src[offset:].tobytes()
    # Bytes around the destination are untouched.
    assert not (dest[:offset] != 0xAB).any()
    assert not (dest[offset + size:] != 0xAB).any()


def test_stream_copy_rejects_length_mismatch():
    with pytest.raises(ValueError, match="destination holds 3 bytes, source 4"):
        stream_copy(bytearray(3), b"abcd")


def test_stream_copy_rejects_read_only_destination():
    with pytest.raises((TypeError, ValueError, BufferError)):
        stream_copy(b"abcd", b"efgh")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_copy_into_large_buffer_split_across_threads(monkeypatch, threads):
    monkeypatch.setenv("RAY_CORE_COPY_THREADS", str(threads))
    monkeypatch.setenv("RAY_CORE_PARALLEL_COPY_MIN_BYTES", str(MIB))
    src = np.random.default_rng(threads).integers(0, 2 ** 63, 3 * MIB // 8 + 3, dtype=np.int64)
    dest = bytearray(src.nbytes)
    memcopy.copy_into(memoryview(dest), memoryview(src))
    assert bytes(dest) == src.tobytes()


def test_copy_into_small_and_typed_buffers():
    src = np.arange(1000, dtype=np.float64)
    dest = bytearray(src.nbytes)
    memcopy.copy_into(memoryview(dest), memoryview(src))
    assert np.frombuffer(dest, dtype=np.float64).tolist() == src.tolist()
