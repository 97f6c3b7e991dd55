"""A client's view of sealing one sector through the manager's API: AddPiece (streamed), PC1,
PC2, C1, C2, VerifySeal, Finalize — the sequence a sealing state machine drives. Used by the
demo (and by `sectorctl sectors seal`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, manager_pb2_grpc

CHUNK = 1 << 20
TIMEOUT_S = 600.0


@dataclass
class SealedSector:
    ref: common_pb2.SectorRef
    piece: common_pb2.PieceInfo
    commitments: common_pb2.SectorCommitments
    proof: bytes
    verified: bool
    seconds: dict[str, float] = field(default_factory=dict)


def add_piece(stub: manager_pb2_grpc.ManagerServiceStub, ref: common_pb2.SectorRef, data: bytes) -> common_pb2.PieceInfo:
    """Streams the piece in 1 MiB chunks; the manager relays them to the worker it chose."""

    def messages() -> Iterator[manager_pb2.AddPieceRequest]:
        yield manager_pb2.AddPieceRequest(header=manager_pb2.AddPieceHeader(sector=ref, piece_size=len(data)))
        for start in range(0, len(data), CHUNK):
            yield manager_pb2.AddPieceRequest(chunk=common_pb2.Chunk(offset=start, data=data[start : start + CHUNK]))

    reply: manager_pb2.AddPieceResponse = stub.AddPiece(messages(), timeout=TIMEOUT_S)
    return reply.piece


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

    def timed(task: str, call: Callable[[], object]) -> object:
        start = time.monotonic()
        result = call()
        seconds[task] = time.monotonic() - start
        progress(task, seconds[task])
        return result

    piece = timed("AddPiece", lambda: add_piece(stub, ref, data))
    assert isinstance(piece, common_pb2.PieceInfo)
    p1 = timed("PreCommit1", lambda: stub.SealPreCommit1(manager_pb2.SealPreCommit1Request(sector=ref, ticket=ticket, pieces=[piece]), timeout=TIMEOUT_S))
    assert isinstance(p1, manager_pb2.SealPreCommit1Response)
    p2 = timed("PreCommit2", lambda: stub.SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1.pre_commit1_output), timeout=TIMEOUT_S))
    assert isinstance(p2, manager_pb2.SealPreCommit2Response)
    comm = p2.commitments
    c1 = timed(
        "Commit1",
        lambda: stub.SealCommit1(
            manager_pb2.SealCommit1Request(sector=ref, ticket=ticket, seed=seed, pieces=[piece], comm_r=comm.comm_r, comm_d=comm.comm_d),
            timeout=TIMEOUT_S,
        ),
    )
    assert isinstance(c1, manager_pb2.SealCommit1Response)
    c2 = timed("Commit2", lambda: stub.SealCommit2(manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=TIMEOUT_S))
    assert isinstance(c2, manager_pb2.SealCommit2Response)
    verdict = stub.VerifySeal(
        manager_pb2.VerifySealRequest(sector=ref, comm_r=comm.comm_r, comm_d=comm.comm_d, ticket=ticket, seed=seed, proof=c2.proof),
        timeout=TIMEOUT_S,
    )
    timed("Finalize", lambda: stub.FinalizeSector(manager_pb2.FinalizeSectorRequest(sector=ref), timeout=TIMEOUT_S))
    return SealedSector(ref, piece, comm, bytes(c2.proof), verdict.valid, seconds)


def read_piece(stub: manager_pb2_grpc.ManagerServiceStub, ref: common_pb2.SectorRef, offset: int, size: int, ticket: bytes, unsealed_cid: str) -> tuple[bytes, bool]:
    """The unpadded bytes of a range, and whether the manager had to unseal them first."""
    stream = stub.ReadPiece(
        manager_pb2.ReadPieceRequest(sector=ref, range=common_pb2.UnpaddedByteRange(offset=offset, size=size), ticket=ticket, unsealed_cid=unsealed_cid),
        timeout=TIMEOUT_S,
    )
    header = next(stream).header
    data = b"".join(message.chunk.data for message in stream)
    return data, header.did_unseal
