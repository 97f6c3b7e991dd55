"""The hand-coded file-stream messages are byte-for-byte what protobuf produces, and parse
whatever protobuf produces (including unknown fields)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from services.worker.wire import decode_chunk_response, encode_chunk_response


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**64 - 1), st.binary(max_size=3000), st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_encode_matches_protobuf(offset: int, data: bytes, size: int | None) -> None:
    for cls, name in ((worker_pb2.ReadSectorFileResponse, "file_size"), (worker_pb2.ReadSectorDirResponse, "tar_size")):
        msg = cls(chunk=common_pb2.Chunk(offset=offset, data=data))
        if size is not None:
            setattr(msg, name, size)
        raw = encode_chunk_response(offset, data, size)
        assert raw == msg.SerializeToString()
        assert cls.FromString(raw) == msg
        parsed = decode_chunk_response(msg.SerializeToString())
        assert (parsed.offset, bytes(parsed.data), parsed.size) == (offset, data, size)


def test_decode_skips_unknown_fields() -> None:
    raw = encode_chunk_response(5, b"abc", 9) + b"\x18\x07" + b"\x22\x02hi"  # fields 3 (varint), 4 (bytes)
    parsed = decode_chunk_response(raw)
    assert (parsed.offset, bytes(parsed.data), parsed.size) == (5, b"abc", 9)
