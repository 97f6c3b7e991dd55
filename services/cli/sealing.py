"""A client's view of sealing one sector through the manager's API: AddPiece (streamed), PC1,
PC2, C1, C2, VerifySeal, Finalize — the sequence a sealing state machine drives. Used by the
demo and by `sectorctl sectors seal` (which also lays several files out as pieces)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, manager_pb2_grpc

CHUNK = 1 << 20
TIMEOUT_S = 600.0
T = TypeVar("T")


class Runner(Protocol):
    """Runs one step of the pipeline (a blocking call) and returns its result; lets a caller
    time it or show progress while it runs."""

    def __call__(self, task: str, call: Callable[[], T]) -> T: ...


@dataclass
class SealedSector:
    ref: common_pb2.SectorRef
    piece: common_pb2.PieceInfo
    commitments: common_pb2.SectorCommitments
    proof: bytes
    verified: bool
    seconds: dict[str, float] = field(default_factory=dict)
    # Every piece of the sector in order (padding pieces included); `piece` is the first.
    pieces: list[common_pb2.PieceInfo] = field(default_factory=list)
    # Why VerifySeal said no, when verified is False.
    verify_reason: str = ""


@dataclass
class PieceSource:
    """One piece to add: `size` unpadded bytes (127*2^k) produced by `chunks()`."""

    label: str
    size: int
    chunks: Callable[[], Iterator[bytes]]
    # Bytes of real data in it (the rest is zero padding); 0 for a padding piece.
    data_size: int = 0


def add_piece_stream(
    stub: manager_pb2_grpc.ManagerServiceStub,
    ref: common_pb2.SectorRef,
    existing: Sequence[int],
    size: int,
    chunks: Iterator[bytes],
) -> common_pb2.PieceInfo:
    """Streams a piece of `size` bytes after the `existing` pieces; the manager relays the chunks
    to the worker it chose."""

    def messages() -> Iterator[manager_pb2.AddPieceRequest]:
        yield manager_pb2.AddPieceRequest(
            header=manager_pb2.AddPieceHeader(sector=ref, piece_size=size, existing_piece_sizes=existing)
        )
        offset = 0
        for data in chunks:
            yield manager_pb2.AddPieceRequest(chunk=common_pb2.Chunk(offset=offset, data=data))
            offset += len(data)

    reply: manager_pb2.AddPieceResponse = stub.AddPiece(messages(), timeout=TIMEOUT_S)
    return reply.piece


def add_piece(
    stub: manager_pb2_grpc.ManagerServiceStub, ref: common_pb2.SectorRef, data: bytes
) -> common_pb2.PieceInfo:
    """A sector's first (here: only) piece, streamed in 1 MiB chunks."""
    return add_piece_stream(
        stub, ref, [], len(data), (data[start : start + CHUNK] for start in range(0, len(data), CHUNK))
    )


def timed_runner(seconds: dict[str, float], progress: Callable[[str, float], None]) -> Runner:
    class _Timed:
        def __call__(self, task: str, call: Callable[[], T]) -> T:
            start = time.monotonic()
            result = call()
            seconds[task] = time.monotonic() - start
            progress(task, seconds[task])
            return result

    return _Timed()


def seal_sector(
    stub: manager_pb2_grpc.ManagerServiceStub,
    ref: common_pb2.SectorRef,
    data: bytes,
    ticket: bytes,
    seed: bytes,
    progress: Callable[[str, float], None] = lambda task, seconds: None,
) -> SealedSector:
    """Runs the whole pipeline for a one-piece sector; `progress(task, seconds)` after each step."""
    seconds: dict[str, float] = {}
    source = PieceSource(
        "AddPiece", len(data), lambda: (data[s : s + CHUNK] for s in range(0, len(data), CHUNK)), len(data)
    )
    result = seal_pieces(stub, ref, [source], ticket, seed, timed_runner(seconds, progress))
    result.seconds = seconds
    return result


def seal_pieces(
    stub: manager_pb2_grpc.ManagerServiceStub,
    ref: common_pb2.SectorRef,
    sources: Sequence[PieceSource],
    ticket: bytes,
    seed: bytes,
    run: Runner,
    keep_unsealed: bool = False,
) -> SealedSector:
    """Adds the pieces in order (their padded sizes must fill the sector, each aligned to its own
    size: see services.cli.pieces.layout), then PC1, PC2, C1, C2, VerifySeal and Finalize."""
    pieces: list[common_pb2.PieceInfo] = []
    for source in sources:
        existing = [p.size // 128 * 127 for p in pieces]
        pieces.append(run(source.label, lambda: add_piece_stream(stub, ref, existing, source.size, source.chunks())))
    p1 = run(
        "PreCommit1",
        lambda: stub.SealPreCommit1(
            manager_pb2.SealPreCommit1Request(sector=ref, ticket=ticket, pieces=pieces), timeout=TIMEOUT_S
        ),
    )
    p2 = run(
        "PreCommit2",
        lambda: stub.SealPreCommit2(
            manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1.pre_commit1_output), timeout=TIMEOUT_S
        ),
    )
    comm = p2.commitments
    c1 = run(
        "Commit1",
        lambda: stub.SealCommit1(
            manager_pb2.SealCommit1Request(
                sector=ref, ticket=ticket, seed=seed, pieces=pieces, comm_r=comm.comm_r, comm_d=comm.comm_d
            ),
            timeout=TIMEOUT_S,
        ),
    )
    c2 = run(
        "Commit2",
        lambda: stub.SealCommit2(
            manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=TIMEOUT_S
        ),
    )
    verdict = stub.VerifySeal(
        manager_pb2.VerifySealRequest(
            sector=ref, comm_r=comm.comm_r, comm_d=comm.comm_d, ticket=ticket, seed=seed, proof=c2.proof
        ),
        timeout=TIMEOUT_S,
    )
    keep = (
        [common_pb2.UnpaddedByteRange(offset=0, size=sum(p.size for p in pieces) // 128 * 127)] if keep_unsealed else []
    )
    run(
        "Finalize",
        lambda: stub.FinalizeSector(
            manager_pb2.FinalizeSectorRequest(sector=ref, keep_unsealed=keep), timeout=TIMEOUT_S
        ),
    )
    return SealedSector(
        ref, pieces[0], comm, bytes(c2.proof), verdict.valid, pieces=pieces, verify_reason=verdict.reason
    )


def read_piece(
    stub: manager_pb2_grpc.ManagerServiceStub,
    ref: common_pb2.SectorRef,
    offset: int,
    size: int,
    ticket: bytes,
    unsealed_cid: str,
) -> tuple[bytes, bool]:
    """The unpadded bytes of a range, and whether the manager had to unseal them first."""
    stream = stub.ReadPiece(
        manager_pb2.ReadPieceRequest(
            sector=ref,
            range=common_pb2.UnpaddedByteRange(offset=offset, size=size),
            ticket=ticket,
            unsealed_cid=unsealed_cid,
        ),
        timeout=TIMEOUT_S,
    )
    header = next(stream).header
    data = b"".join(message.chunk.data for message in stream)
    return data, header.did_unseal
