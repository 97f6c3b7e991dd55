"""The manager's domain values: what a sealing request means once its message was checked
(services/manager/convert.py builds these from the protos). Plain data, no grpc, no stubs, so
the sealing code can be called and tested without messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.manager.lifecycle import PieceRef
from services.manager.resources import SealProof

__all__ = [
    "AddPieceInput",
    "BadSector",
    "ByteRange",
    "Commit1Input",
    "Commit2Input",
    "FinalizeInput",
    "PieceChunk",
    "PieceRef",
    "PieceStream",
    "PreCommit1Input",
    "PreCommit2Input",
    "ProvingSector",
    "ReadPieceInput",
    "ReleaseUnsealedInput",
    "RemovedFile",
    "SectorId",
    "SealVerification",
    "SectorRef",
    "TaskAssignment",
    "UnsealInput",
    "WinningChallenge",
]


@dataclass(frozen=True)
class SectorId:
    miner: int
    number: int

    @property
    def name(self) -> str:
        """The sector's name in messages and logs (the reference's `s-t0<miner>-<number>`)."""
        return f"s-t0{self.miner}-{self.number}"


@dataclass(frozen=True)
class SectorRef:
    """A sector and the seal proof it is (being) sealed with; the proof fixes its size."""

    id: SectorId
    proof: SealProof

    @property
    def miner(self) -> int:
        return self.id.miner

    @property
    def number(self) -> int:
        return self.id.number

    @property
    def name(self) -> str:
        return self.id.name


@dataclass(frozen=True)
class ByteRange:
    """An unpadded byte range of a sector (offset and size multiples of 127 * 2^k)."""

    offset: int
    size: int


@dataclass(frozen=True)
class AddPieceInput:
    sector: SectorRef
    existing_piece_sizes: tuple[int, ...]
    piece_size: int
    priority: int = 0


@dataclass(frozen=True)
class PreCommit1Input:
    sector: SectorRef
    ticket: bytes
    # All pieces of the sector, in order, padded sizes adding up to the sector size.
    pieces: tuple[PieceRef, ...]
    priority: int = 0


@dataclass(frozen=True)
class PreCommit2Input:
    sector: SectorRef
    pre_commit1_output: bytes
    priority: int = 0


@dataclass(frozen=True)
class Commit1Input:
    sector: SectorRef
    ticket: bytes
    seed: bytes
    pieces: tuple[PieceRef, ...]
    comm_r: bytes
    comm_d: bytes
    priority: int = 0


@dataclass(frozen=True)
class Commit2Input:
    sector: SectorRef
    commit1_output: bytes
    priority: int = 0


@dataclass(frozen=True)
class FinalizeInput:
    sector: SectorRef
    keep_unsealed: tuple[ByteRange, ...]
    priority: int = 0


@dataclass(frozen=True)
class ReleaseUnsealedInput:
    sector: SectorRef
    ranges: tuple[ByteRange, ...]
    all: bool
    priority: int = 0


@dataclass(frozen=True)
class UnsealInput:
    """UnsealPiece's input. The CID is checked only once the sector is known to be sealed (a
    call on an unsealed sector is refused for that first), so it stays a string here."""

    sector: SectorRef
    range: ByteRange
    ticket: bytes
    unsealed_cid: str
    priority: int = 0


@dataclass(frozen=True)
class ReadPieceInput:
    """ReadPiece's input; ticket and CID matter (and are checked) only when it must unseal."""

    sector: SectorRef
    range: ByteRange
    ticket: bytes
    unsealed_cid: str
    priority: int = 0


@dataclass(frozen=True)
class PieceChunk:
    """Bytes of a piece stream at `offset`, counted from the stream's first byte."""

    offset: int
    data: bytes


@dataclass
class PieceStream:
    """ReadPiece's answer: whether the sector was unsealed for it, the size that follows, and
    the bytes (checked to come in order and in full; a worker that breaks off is Unavailable)."""

    did_unseal: bool
    size: int
    chunks: AsyncIterator[PieceChunk]


@dataclass(frozen=True)
class RemovedFile:
    """A sector file a worker removed: the path it was in and its file type."""

    storage_id: str
    file_type: int


@dataclass(frozen=True)
class ProvingSector:
    """A sector to prove or check: its ref and CommR (checked to be 32 bytes where needed)."""

    sector: SectorRef
    comm_r: bytes


@dataclass(frozen=True)
class BadSector:
    """A sector that cannot be proven (skipped by a PoSt, or failing CheckProvable), and why."""

    sector: SectorId
    reason: str


@dataclass(frozen=True)
class WinningChallenge:
    """GenerateWinningPoStSectorChallenge's input: which of a miner's eligible sectors to prove."""

    seal: SealProof
    randomness: bytes
    miner: int
    eligible_sector_count: int


@dataclass(frozen=True)
class SealVerification:
    """VerifySeal's input: a sector's commitments, ticket, seed and the proof to check."""

    sector: SectorRef
    comm_r: bytes
    comm_d: bytes
    ticket: bytes
    seed: bytes
    proof: bytes


@dataclass(frozen=True)
class TaskAssignment:
    """What a dispatched task carries besides its params (worker_link.py sends it as worker.proto's
    TaskAssignment): its call, the work and attempt it belongs to, the resources granted to it, its
    time limit (0: none), the dispatching manager's lease epoch and the worker session it was
    placed on, which workers fence on."""

    sector: SectorId
    call_id: str
    work_id: str
    attempt: int
    gpu_ordinals: tuple[int, ...] = ()
    threads: int = 0
    timeout_s: float = 0.0
    leader_epoch: int = 0
    # The worker session the call was placed on (the worker refuses another one); "": unchecked.
    worker_session_id: str = ""
