"""Helpers for the PoRep tests: sealing a sector end to end through the Python API, with the
pieces fr32-padded and committed by rust_core's own fr32 and commP functions."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rust_core

PROVER = bytes(range(32))
TICKET = bytes([0x11] * 31 + [0x05])
SEED = bytes([0x22] * 31 + [0x07])


def fr32_pad(data: bytes) -> bytes:
    return bytes(rust_core.fr32_pad(data))


def fr32_unpad(data: bytes) -> bytes:
    return bytes(rust_core.fr32_unpad(data))


def node_hash(left: bytes, right: bytes) -> bytes:
    d = bytearray(hashlib.sha256(left + right).digest())
    d[31] &= 0x3F
    return bytes(d)


def merkle_root(padded: bytes) -> bytes:
    level = [padded[i : i + 32] for i in range(0, len(padded), 32)]
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


@dataclass
class Sector:
    """A sealed sector and everything the tests need to prove or tamper with it."""

    size: int
    number: int
    dir: Path
    unsealed: Path
    sealed: Path
    cache: Path
    payload: bytes  # unpadded sector bytes (pieces and zero gaps)
    pieces: list[tuple[int, bytes]]
    comm_r: bytes
    comm_d: bytes
    c1_output: bytes
    proof: bytes

    def verify(self, **overrides: Any) -> bool:
        args: dict[str, Any] = dict(
            sector_size=self.size,
            comm_r=self.comm_r,
            comm_d=self.comm_d,
            prover_id=PROVER,
            sector_number=self.number,
            ticket=TICKET,
            seed=SEED,
            proof=self.proof,
        )
        args.update(overrides)
        return bool(rust_core.verify_seal(*args.values()))

    def post_sector(self) -> tuple[int, bytes, str, str]:
        return (self.number, self.comm_r, str(self.sealed), str(self.cache))


def make_unsealed(size: int, piece_sizes: list[int], rng_seed: int) -> tuple[bytes, list[tuple[int, bytes]]]:
    """Pieces of random data laid out from offset 0 (sizes in padded bytes, each aligned by the
    caller's choice of order); returns the padded sector and the (padded size, commP) list."""
    rng = random.Random(rng_seed)
    padded = bytearray(size)
    pieces = []
    offset = 0
    for ps in piece_sizes:
        offset = (offset + ps - 1) // ps * ps
        raw = rng.randbytes(ps // 128 * 127)
        p = fr32_pad(raw)
        padded[offset : offset + ps] = p
        pieces.append((ps, bytes(rust_core.piece_commitment(raw))))
        offset += ps
    return bytes(padded), pieces


def seal_sector(
    tmp: Path,
    size: int,
    number: int,
    piece_sizes: list[int],
    rng_seed: int = 1,
    backend: str = "auto",
    tamper_sealed_at: int | None = None,
) -> Sector:
    tmp.mkdir(parents=True, exist_ok=True)
    padded, pieces = make_unsealed(size, piece_sizes, rng_seed)
    unsealed = tmp / "unsealed"
    unsealed.write_bytes(padded)
    cache = tmp / "cache"
    sealed = tmp / "sealed"
    p1 = rust_core.seal_pre_commit_phase1(size, str(cache), str(unsealed), PROVER, number, TICKET, pieces)
    comm_r, comm_d = rust_core.seal_pre_commit_phase2(p1, str(cache), str(sealed), backend)
    if tamper_sealed_at is not None:
        flip(sealed, tamper_sealed_at)
    c1 = rust_core.seal_commit_phase1(
        size, str(cache), str(sealed), PROVER, number, TICKET, SEED, pieces, comm_r, comm_d
    )
    proof = rust_core.seal_commit_phase2(c1, PROVER, number, backend)
    return Sector(size, number, tmp, unsealed, sealed, cache, fr32_unpad(padded), pieces, comm_r, comm_d, c1, proof)


def flip(path: Path, offset: int, mask: int = 0x01) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


def flipped(data: bytes, i: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[i] ^= mask
    return bytes(out)
