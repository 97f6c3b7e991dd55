"""Commitment CIDs (commP/commD as `baga6ea4sea...`, commR as `bagboea4b5abc...`) to and from
their 32 raw bytes: CIDv1 = varint version, varint codec, multihash (varint code, varint length,
digest), in multibase base32 (lower case, no padding, prefix 'b').

The manager only needs this at its edge: clients may name a piece by CID or by commP, and a
worker's UnsealPiece wants CommD raw while the client passes the unsealed CID.
"""

from __future__ import annotations

import base64

FIL_COMMITMENT_UNSEALED = 0xF101
FIL_COMMITMENT_SEALED = 0xF102
SHA2_256_TRUNC254_PADDED = 0x1012
POSEIDON_BLS12_381_A2_FC1 = 0xB401


class CidError(ValueError):
    """Not a commitment CID of the expected kind."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise CidError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _encode(codec: int, hash_code: int, digest: bytes) -> str:
    if len(digest) != 32:
        raise CidError(f"a commitment is 32 bytes, got {len(digest)}")
    raw = _varint(1) + _varint(codec) + _varint(hash_code) + _varint(len(digest)) + digest
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def _decode(text: str, codec: int, hash_code: int) -> bytes:
    if not text.startswith("b"):
        raise CidError(f"{text!r} is not a base32 CIDv1 (must start with 'b')")
    body = text[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except (ValueError, TypeError) as exc:
        raise CidError(f"{text!r} is not valid base32") from exc
    version, pos = _read_varint(raw, 0)
    got_codec, pos = _read_varint(raw, pos)
    got_hash, pos = _read_varint(raw, pos)
    length, pos = _read_varint(raw, pos)
    if version != 1 or got_codec != codec or got_hash != hash_code:
        raise CidError(f"{text!r} is not the expected commitment CID (codec {codec:#x}, multihash {hash_code:#x})")
    digest = raw[pos:]
    if length != 32 or len(digest) != 32:
        raise CidError(f"{text!r} does not carry a 32-byte digest")
    return digest


def unsealed_cid(comm: bytes) -> str:
    """commP or commD as a CID."""
    return _encode(FIL_COMMITMENT_UNSEALED, SHA2_256_TRUNC254_PADDED, comm)


def sealed_cid(comm_r: bytes) -> str:
    return _encode(FIL_COMMITMENT_SEALED, POSEIDON_BLS12_381_A2_FC1, comm_r)


def parse_unsealed_cid(text: str) -> bytes:
    return _decode(text, FIL_COMMITMENT_UNSEALED, SHA2_256_TRUNC254_PADDED)


def parse_sealed_cid(text: str) -> bytes:
    return _decode(text, FIL_COMMITMENT_SEALED, POSEIDON_BLS12_381_A2_FC1)
