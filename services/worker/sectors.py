"""Sector vocabulary the worker's modules share: sector ids and file names, file types, proof
types and their sizes, piece-size rules, and the prover id the PoRep emulation is keyed by.

Kept free of gRPC so the stores and the partial-file code can be used (and tested) alone; their
message forms are in messages.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from services.common.pieces import is_unpadded_piece_size
from services.common.pieces import padded_size as padded
from services.common.vocabulary import SECTOR_SIZES, prover_id

__all__ = ["is_unpadded_piece_size", "padded", "prover_id"]

NODE_SIZE = 32
MAX_SECTOR_NUMBER = 2**63 - 1

# Seal proof id (RegisteredSealProof value) -> sector size in bytes (services/common/vocabulary.py).
SEAL_PROOF_SIZES: dict[int, int] = {int(proof): size for proof, size in SECTOR_SIZES.items()}
SIZE_LABELS: dict[int, str] = {2 << 10: "2K", 8 << 20: "8M", 512 << 20: "512M", 32 << 30: "32G", 64 << 30: "64G"}


class PostKind(IntEnum):
    WINDOW = 1
    WINNING = 2


def post_proof_info(proof_type: int) -> tuple[PostKind, int]:
    """(window or winning, sector size) of a RegisteredPoStProof value; ValueError if unknown.

    Window values are the on-chain ids 5..9; winning values are on-chain id + 10 (10..14), so
    both map onto the seal proof with the same size by their distance from the first id."""
    if 5 <= proof_type <= 9:
        return PostKind.WINDOW, SEAL_PROOF_SIZES[proof_type]
    if 10 <= proof_type <= 14:
        return PostKind.WINNING, SEAL_PROOF_SIZES[proof_type - 5]
    raise ValueError(f"unknown PoSt proof type {proof_type}")


def sector_size_of(seal_proof: int) -> int:
    try:
        return SEAL_PROOF_SIZES[seal_proof]
    except KeyError:
        raise ValueError(
            f"unsupported seal proof type {seal_proof} (supported: StackedDrg*V1_1, values 5..9)"
        ) from None


class FileType(IntFlag):
    """Sector file kinds; values are the reference's bits (and the proto enum's values)."""

    UNSEALED = 1
    SEALED = 2
    CACHE = 4

    @property
    def dirname(self) -> str:
        return _DIRNAMES[self]

    @classmethod
    def parse_proto(cls, value: int) -> FileType:
        """One file type from a SectorFileType value; ValueError for UNSPECIFIED or unknown."""
        if value not in (1, 2, 4):
            raise ValueError(f"unknown sector file type {value} (expected UNSEALED, SEALED or CACHE)")
        return cls(value)

    def singles(self) -> list[FileType]:
        """The single types in this set, in the reference's order (unsealed, sealed, cache)."""
        return [t for t in FILE_TYPES if t & self]


FILE_TYPES = (FileType.UNSEALED, FileType.SEALED, FileType.CACHE)
ALL_TYPES = FileType.UNSEALED | FileType.SEALED | FileType.CACHE
_DIRNAMES = {FileType.UNSEALED: "unsealed", FileType.SEALED: "sealed", FileType.CACHE: "cache"}
TYPE_BY_NAME = {v: k for k, v in _DIRNAMES.items()}


def types_from_proto(values: list[int] | tuple[int, ...]) -> FileType:
    """A set of types from a repeated SectorFileType (duplicates ignored); ValueError if empty."""
    if not values:
        raise ValueError("no sector file types given")
    out = FileType(0)
    for value in values:
        out |= FileType.parse_proto(value)
    return out


class PathType(IntEnum):
    SEALING = 1
    STORAGE = 2


# Space a file type needs, in tenths of the sector size (the reference's FSOverheadSeal and
# FsOverheadFinalized): while sealing the cache holds every layer and tree (14.1x).
SEAL_OVERHEAD = {FileType.UNSEALED: 10, FileType.SEALED: 10, FileType.CACHE: 141}
FINALIZED_OVERHEAD = {FileType.UNSEALED: 10, FileType.SEALED: 10, FileType.CACHE: 2}


def space_needed(types: FileType, sector_size: int, path_type: PathType) -> int:
    table = SEAL_OVERHEAD if path_type == PathType.SEALING else FINALIZED_OVERHEAD
    return sum(table[t] * sector_size // 10 for t in types.singles())


_NAME = re.compile(r"^s-t0(0|[1-9][0-9]*)-(0|[1-9][0-9]*)$")


@dataclass(frozen=True, order=True)
class SectorId:
    miner: int
    number: int

    def __post_init__(self) -> None:
        if not 0 < self.miner <= 2**63 - 1:
            raise ValueError(f"miner id {self.miner} out of range (1..2^63-1)")
        if not 0 <= self.number <= MAX_SECTOR_NUMBER:
            raise ValueError(f"sector number {self.number} out of range (0..2^63-1)")

    @property
    def name(self) -> str:
        """The reference's file name, `s-t0<miner>-<number>`."""
        return f"s-t0{self.miner}-{self.number}"

    @classmethod
    def parse_name(cls, name: str) -> SectorId:
        match = _NAME.match(name)
        if not match:
            raise ValueError(f"{name!r} is not a sector file name (s-t0<miner>-<number>)")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.miner}-{self.number}"


def unpadded(size: int) -> int:
    return size - size // 128


def check_unpadded_range(offset: int, size: int, sector_size: int, *, piece_sized: bool = True) -> None:
    """The UnpaddedByteRange rules: offset a multiple of 127, size a piece size (or, when
    piece_sized is False, a positive multiple of 127), and the range inside the sector."""
    if offset % 127:
        raise ValueError(f"range offset {offset} is not a multiple of 127")
    if piece_sized and not is_unpadded_piece_size(size):
        raise ValueError(f"range size {size} is not a valid unpadded piece size (127*2^k)")
    if not piece_sized and (size <= 0 or size % 127):
        raise ValueError(f"range size {size} is not a positive multiple of 127")
    capacity = unpadded(sector_size)
    if offset + size > capacity:
        raise ValueError(f"range [{offset}, {offset + size}) exceeds the sector's {capacity} unpadded bytes")
