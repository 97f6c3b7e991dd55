"""The sealing operations on files, through rust_core: typed, blocking functions (rust_core
releases the GIL, so callers run them with asyncio.to_thread and the event loop keeps serving).

This is the only module that calls rust_core's PoRep functions, so a change in that API is one
edit here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rust_core
from services.worker.partialfile import PartialFile
from services.worker.sectors import PostKind

# The PoRep bindings are typed in rust_core.pyi by their own branch; until that stub lands they
# are reached through an untyped alias so mypy strict stays clean here.
_rc: Any = rust_core

# Unpadded bytes per fr32/commP step of AddPiece: 8192 fr32 blocks = 1 MiB padded.
PAD_BLOCK = 127 * 8192


@dataclass(frozen=True)
class Piece:
    padded_size: int
    commp: bytes

    def as_tuple(self) -> tuple[int, bytes]:
        return (self.padded_size, self.commp)


class PieceWriter:
    """fr32-pads a piece's bytes into a partial file at a padded offset while computing its
    commP, in one pass over the data with constant memory."""

    def __init__(self, target: PartialFile, padded_offset: int) -> None:
        self.target = target
        self.offset = padded_offset
        self.hasher = rust_core.PieceHasher()
        self.pending = bytearray()
        self.consumed = 0

    def feed(self, data: bytes) -> None:
        self.pending += data
        whole = len(self.pending) // PAD_BLOCK * PAD_BLOCK
        if whole:
            self._write(self.pending[:whole])
            del self.pending[:whole]

    def _write(self, block: bytes | bytearray) -> None:
        padded = rust_core.fr32_pad(block)
        self.hasher.update(block)
        self.target.write_at(self.offset, padded)
        self.offset += len(padded)
        self.consumed += len(block)

    def finish(self) -> bytes:
        """Writes the rest (a multiple of 127 bytes, as piece sizes are) and returns commP."""
        if self.pending:
            if len(self.pending) % 127:
                raise ValueError(f"piece data ends with {len(self.pending) % 127} bytes that are not a whole fr32 block")
            self._write(bytes(self.pending))
            self.pending.clear()
        return self.hasher.finish()


def zero_commp(padded_size: int) -> bytes:
    return rust_core.zero_piece_commitment(padded_size)


def piece_cid(commp: bytes) -> str:
    return rust_core.piece_cid(commp)


def sealed_cid(commr: bytes) -> str:
    return rust_core.sealed_cid(commr)


def commp_from_cid(cid: str) -> bytes:
    return rust_core.commp_from_cid(cid)


def pre_commit1(
    sector_size: int, cache: Path, unsealed: Path, prover: bytes, number: int, ticket: bytes, pieces: list[Piece]
) -> bytes:
    return bytes(
        _rc.seal_pre_commit_phase1(sector_size, str(cache), str(unsealed), prover, number, ticket, [p.as_tuple() for p in pieces])
    )


def pre_commit2(p1_output: bytes, cache: Path, sealed: Path, backend: str) -> tuple[bytes, bytes]:
    """(comm_r, comm_d)."""
    comm_r, comm_d = _rc.seal_pre_commit_phase2(p1_output, str(cache), str(sealed), backend)
    return bytes(comm_r), bytes(comm_d)


def commit1(
    sector_size: int,
    cache: Path,
    sealed: Path,
    prover: bytes,
    number: int,
    ticket: bytes,
    seed: bytes,
    pieces: list[Piece],
    comm_r: bytes,
    comm_d: bytes,
) -> bytes:
    return bytes(
        _rc.seal_commit_phase1(
            sector_size, str(cache), str(sealed), prover, number, ticket, seed, [p.as_tuple() for p in pieces], comm_r, comm_d
        )
    )


def commit2(c1_output: bytes, prover: bytes, number: int, backend: str) -> bytes:
    return bytes(_rc.seal_commit_phase2(c1_output, prover, number, backend))


def verify_seal(
    sector_size: int, comm_r: bytes, comm_d: bytes, prover: bytes, number: int, ticket: bytes, seed: bytes, proof: bytes
) -> bool:
    return bool(_rc.verify_seal(sector_size, comm_r, comm_d, prover, number, ticket, seed, proof))


def unseal(
    sector_size: int,
    cache: Path,
    sealed: Path,
    unsealed: Path,
    prover: bytes,
    number: int,
    ticket: bytes,
    comm_d: bytes,
    unpadded_offset: int,
    unpadded_length: int,
) -> None:
    """Writes the padded data of the unpadded range into the unsealed file's data area."""
    _rc.unseal_range(
        sector_size, str(cache), str(sealed), str(unsealed), prover, number, ticket, comm_d, unpadded_offset, unpadded_length
    )


def clear_cache(cache: Path, sector_size: int) -> None:
    _rc.clear_cache(str(cache), sector_size)


def vanilla_proof(
    kind: PostKind, sector_size: int, randomness: bytes, prover: bytes, number: int, comm_r: bytes, sealed: Path, cache: Path
) -> bytes:
    return bytes(
        _rc.generate_single_vanilla_proof(
            sector_size,
            randomness,
            prover,
            (number, comm_r, str(sealed), str(cache)),
            "window" if kind == PostKind.WINDOW else "winning",
        )
    )


def backend_for(gpu_ordinals: list[int], configured: str) -> str:
    """The compute backend a task runs on: the GPU the scheduler granted, else the CPU (a task
    given no GPU must not take one that another task may hold)."""
    if gpu_ordinals:
        return f"cuda:{gpu_ordinals[0]}"
    return "cpu" if configured == "auto" else configured
