"""The hand-made ObjectChunk encoding is plain protobuf on the wire, both ways."""
import os

import pytest

from ray_common.protocol import object_manager_pb2 as om
from ray_raylet.object_manager import decode_chunk, encode_chunk


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 5 * 1024 ** 2 + 3])
def test_encoded_chunks_parse_as_protobuf_and_back(size):
    payload = os.urandom(size)
    header = om.ObjectChunk(object_id=b"o" * 28, data_size=10 ** 9, chunk_index=3,
                            num_chunks=200, metadata=b"meta", has_metadata=True)
    raw = encode_chunk(header, memoryview(payload))
    parsed = om.ObjectChunk.FromString(raw)
    assert parsed.payload == payload and parsed.chunk_index == 3 and parsed.metadata == b"meta"
    decoded, view = decode_chunk(raw)
    assert bytes(view) == payload and decoded.num_chunks == 200 and decoded.has_metadata


def test_a_chunk_from_a_generated_stub_decodes_too():
    chunk = om.ObjectChunk(object_id=b"o" * 28, chunk_index=1, payload=b"abc")
    header, view = decode_chunk(chunk.SerializeToString())
    assert bytes(view) == b"abc" and header.chunk_index == 1
