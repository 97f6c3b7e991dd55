"""Filecoin commitment CIDs (CIDv1, base32): CommP/CommD as `fil-commitment-unsealed` with the
`sha2-256-trunc254-padded` multihash, CommR as `fil-commitment-sealed` with
`poseidon-bls12_381-a2-fc1`. Pure Python, so the command line needs no rust_core;
tests/unit/common/test_cid.py checks it against rust_core's encoding bit for bit."""

from __future__ import annotations

import base64

UNSEALED_CODEC = 0xF101
SEALED_CODEC = 0xF102
UNSEALED_HASH = 0x1012
SEALED_HASH = 0xB401


class CidError(ValueError):
    """Not a commitment CID of the expected kind."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while at < len(data) and shift < 63:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    raise CidError("truncated varint")


def _encode(codec: int, multihash: int, commitment: bytes) -> str:
    if len(commitment) != 32:
        raise CidError(f"a commitment is 32 bytes, got {len(commitment)}")
    raw = b"\x01" + _varint(codec) + _varint(multihash) + _varint(32) + commitment
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def _decode(text: str, codec: int, multihash: int, what: str) -> bytes:
    if not text.startswith("b"):
        raise CidError(f"{what} CID {text!r} is not base32 (it starts with 'b')")
    body = text[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        raise CidError(f"{what} CID {text!r} is not valid base32") from None
    if not raw or raw[0] != 1:
        raise CidError(f"{what} CID {text!r} is not a CIDv1")
    got_codec, at = _read_varint(raw, 1)
    got_hash, at = _read_varint(raw, at)
    length, at = _read_varint(raw, at)
    if got_codec != codec or got_hash != multihash:
        raise CidError(f"{text!r} is not a {what} CID (codec {got_codec:#x}, multihash {got_hash:#x})")
    digest = raw[at:]
    if length != 32 or len(digest) != 32:
        raise CidError(f"{what} CID {text!r} does not hold a 32-byte commitment")
    return digest


def unsealed_cid(commitment: bytes) -> str:
    """CommP or CommD as a CID ("baga6ea4sea...")."""
    return _encode(UNSEALED_CODEC, UNSEALED_HASH, commitment)


def sealed_cid(comm_r: bytes) -> str:
    """CommR as a CID ("bagboea4b5abc...")."""
    return _encode(SEALED_CODEC, SEALED_HASH, comm_r)


def commitment_of_unsealed_cid(text: str) -> bytes:
    return _decode(text, UNSEALED_CODEC, UNSEALED_HASH, "unsealed (CommP/CommD)")


def commitment_of_sealed_cid(text: str) -> bytes:
    return _decode(text, SEALED_CODEC, SEALED_HASH, "sealed (CommR)")


# The names the manager's request checks use.
parse_unsealed_cid = commitment_of_unsealed_cid
parse_sealed_cid = commitment_of_sealed_cid
