"""Hand-coded protobuf encoding of the two file-streaming responses (ReadSectorFileResponse and
ReadSectorDirResponse: `Chunk chunk = 1; optional uint64 size = 2; optional fixed32 crc32c = 3;`).

Why: with the generated classes every 1 MiB chunk is copied into a message, copied again when
serialised, copied when parsed, and once more each time `.chunk.data` is read; on a small
machine that caps a transfer at a third of what the transport carries. These functions produce
and read exactly the bytes protobuf does (the tests compare them), with one copy on each side,
so peers using the generated classes interoperate unchanged.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Field 3 (crc32c), wire type 5 (fixed32, little-endian).
_CRC_KEY = b"\x1d"
_FIXED32 = struct.Struct("<I")


class WireError(ValueError):
    pass


def varint(value: int) -> bytes:
    """Unsigned LEB128, the varint of protobuf and of Filecoin ID addresses."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_chunk_response(offset: int, data: bytes, size: int | None = None, crc32c: int | None = None) -> bytes:
    """The serialised response: field 1 (Chunk{offset = 1, data = 2}), then field 2 (size) and
    field 3 (crc32c) when given; fields at their default value are omitted, as protobuf does."""
    inner = b""
    if offset:
        inner += b"\x08" + varint(offset)
    if data:
        inner += b"\x12" + varint(len(data))
    head = b"\x0a" + varint(len(inner) + len(data)) + inner
    tail = b"\x10" + varint(size) if size is not None else b""
    crc = _CRC_KEY + _FIXED32.pack(crc32c) if crc32c is not None else b""
    return b"".join((head, data, tail, crc))


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def _skip(buf: memoryview, pos: int, wire_type: int) -> int:
    if wire_type == 0:
        return _read_varint(buf, pos)[1]
    if wire_type == 1:
        return pos + 8
    if wire_type == 2:
        length, pos = _read_varint(buf, pos)
        return pos + length
    if wire_type == 5:
        return pos + 4
    raise WireError(f"unsupported wire type {wire_type}")


@dataclass
class ChunkResponse:
    offset: int
    data: memoryview
    size: int | None
    crc32c: int | None = None


def decode_chunk_response(raw: bytes) -> ChunkResponse:
    """Parses a serialised chunk response without copying the data (the memoryview points into
    `raw`). Unknown fields are skipped, fields may come in any order, as protobuf allows."""
    buf = memoryview(raw)
    pos = 0
    offset = 0
    data = buf[0:0]
    size: int | None = None
    crc32c: int | None = None
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire_type = key >> 3, key & 7
        if field == 1 and wire_type == 2:
            length, pos = _read_varint(buf, pos)
            end = pos + length
            if end > len(buf):
                raise WireError("truncated chunk")
            while pos < end:
                k, pos = _read_varint(buf, pos)
                f, wt = k >> 3, k & 7
                if f == 1 and wt == 0:
                    offset, pos = _read_varint(buf, pos)
                elif f == 2 and wt == 2:
                    n, pos = _read_varint(buf, pos)
                    if pos + n > end:
                        raise WireError("truncated chunk data")
                    data = buf[pos : pos + n]
                    pos += n
                else:
                    pos = _skip(buf, pos, wt)
            if pos != end:
                raise WireError("malformed chunk")
        elif field == 2 and wire_type == 0:
            size, pos = _read_varint(buf, pos)
        elif field == 3 and wire_type == 5:
            if pos + 4 > len(buf):
                raise WireError("truncated crc32c")
            (crc32c,) = _FIXED32.unpack_from(buf, pos)
            pos += 4
        else:
            pos = _skip(buf, pos, wire_type)
    if pos != len(buf):
        raise WireError("malformed message")
    return ChunkResponse(offset, data, size, crc32c)
