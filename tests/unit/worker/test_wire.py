"""The hand-coded file-stream messages are byte-for-byte what protobuf produces, and parse
whatever protobuf produces (including unknown fields)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from services.worker.wire import WireError, decode_chunk_response, encode_chunk_response


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 2**64 - 1),
    st.binary(max_size=3000),
    st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    st.one_of(st.none(), st.integers(0, 2**32 - 1)),
)
def test_encode_matches_protobuf(offset: int, data: bytes, size: int | None, crc: int | None) -> None:
    for cls, name in ((worker_pb2.ReadSectorFileResponse, "file_size"), (worker_pb2.ReadSectorDirResponse, "tar_size")):
        msg = cls(chunk=common_pb2.Chunk(offset=offset, data=data))
        if size is not None:
            setattr(msg, name, size)
        if crc is not None:
            msg.crc32c = crc
        raw = encode_chunk_response(offset, data, size, crc)
        assert raw == msg.SerializeToString()
        assert cls.FromString(raw) == msg
        parsed = decode_chunk_response(msg.SerializeToString())
        assert (parsed.offset, bytes(parsed.data), parsed.size, parsed.crc32c) == (offset, data, size, crc)


def test_decode_skips_unknown_fields() -> None:
    # Field 3 as a varint (not crc32c's fixed32), field 4 (bytes), field 5 (fixed32).
    raw = encode_chunk_response(5, b"abc", 9) + b"\x18\x07" + b"\x22\x02hi" + b"\x2d\x01\x02\x03\x04"
    parsed = decode_chunk_response(raw)
    assert (parsed.offset, bytes(parsed.data), parsed.size, parsed.crc32c) == (5, b"abc", 9, None)


def test_a_checksum_alone_or_truncated() -> None:
    assert decode_chunk_response(b"\x1d\x01\x00\x00\x80").crc32c == 0x80000001
    with pytest.raises(WireError, match="truncated crc32c"):
        decode_chunk_response(b"\x1d\x01\x00")
