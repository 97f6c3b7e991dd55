"""The manager's edge to its workers for the sealing calls: builds the WorkerService requests a
work runs (their serialized form, less the assignment, is the work's params and identity, so
these builders must stay byte-for-byte stable), relays AddPiece's stream, reads pieces, asks
IsAllocated and Remove, and turns a worker's gRPC errors into the fleet's domain errors, so
that sealing.py deals in domain values only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from enum import IntEnum

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from services.common.cid import unsealed_cid
from services.common.errors import Cancelled, DomainError, InvalidArgument, Unavailable, from_status
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from services.manager.calls import BY_CALL_TYPE, CallSpec
from services.manager.calltracker import ErrorCode, Outcome
from services.manager.domain import (
    AddPieceInput,
    ByteRange,
    Commit1Input,
    Commit2Input,
    FinalizeInput,
    PieceChunk,
    PieceRef,
    PreCommit1Input,
    PreCommit2Input,
    ProvingSector,
    ReleaseUnsealedInput,
    RemovedFile,
    SectorId,
    SectorRef,
)
from services.manager.workers import WorkerClient, WorkerHandle

RPC_TIMEOUT_S = 30.0
# StatSectorFile, and a vanilla proof call without a deadline, as Proving always had them.
POST_RPC_TIMEOUT_S = 60.0
# AbortCall, ListCallResults (x3) and AckCallResult, as the job runner always had them.
DISPATCH_RPC_TIMEOUT_S = 10.0

# A worker request as the builders below make it: opaque to the sealing code, which hands it to
# the job runner (its serialized form is the work's params).
WorkerRequest = Message


# Dispatch RPC codes after which the worker may or may not have the call: the runner retries
# them (same call id, the worker deduplicates) before the call is given up.
_UNKNOWN_DELIVERY = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
)


class DispatchFailed(Exception):
    """A custom dispatcher (AddPiece's relay) failed in a way that decides the call's outcome."""

    def __init__(self, code: ErrorCode, message: str, caller_error: type[DomainError] | None = None) -> None:
        super().__init__(message)
        self.code = code
        # What the waiting caller gets instead of the outcome's generic error (e.g. InvalidArgument
        # for a malformed piece stream, which is the client's mistake, not the worker's).
        self.caller_error = caller_error


class WorkerCallFailed(Exception):
    """A call to a worker answered a gRPC error: the status's name and details, and what the
    job runner needs to know to decide (retry, requeue, fail for good)."""

    def __init__(self, code: str, details: str, maybe_delivered: bool, refused: bool) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details
        # The call may have reached the worker (a timeout, a lost connection): resending it with
        # the same call id is safe.
        self.maybe_delivered = maybe_delivered
        # The worker refused the request as invalid: sending it again cannot help.
        self.refused = refused


def _call_failed(exc: grpc.aio.AioRpcError) -> WorkerCallFailed:
    code = exc.code()
    return WorkerCallFailed(
        code.name, exc.details() or "", code in _UNKNOWN_DELIVERY, code is grpc.StatusCode.INVALID_ARGUMENT
    )


class FetchMode(IntEnum):
    """How a FETCH task brings files: MOVE leaves no copy behind, COPY keeps the source."""

    MOVE = worker_pb2.FETCH_MODE_MOVE
    COPY = worker_pb2.FETCH_MODE_COPY


# --- messages ----------------------------------------------------------------------------------


def sector_msg(ref: SectorRef) -> common_pb2.SectorRef:
    return common_pb2.SectorRef(
        id=sector_id_msg(ref.id), proof_type=common_pb2.RegisteredSealProof.ValueType(int(ref.proof))
    )


def sector_name(ref: common_pb2.SectorRef | common_pb2.SectorId) -> str:
    """A sector message's name in messages and logs (as domain.SectorId.name spells it)."""
    sid = ref.id if isinstance(ref, common_pb2.SectorRef) else ref
    return SectorId(sid.miner, sid.number).name


def sector_id_msg(sid: SectorId) -> common_pb2.SectorId:
    return common_pb2.SectorId(miner=sid.miner, number=sid.number)


def _range(r: ByteRange) -> common_pb2.UnpaddedByteRange:
    return common_pb2.UnpaddedByteRange(offset=r.offset, size=r.size)


def _pieces(pieces: Iterable[PieceRef]) -> list[common_pb2.PieceInfo]:
    # All three fields, as a client's normalized PieceInfo (part of the work's identity).
    return [common_pb2.PieceInfo(size=p.size, piece_cid=unsealed_cid(p.commp), commp=p.commp) for p in pieces]


def _types(types: Iterable[int]) -> list[common_pb2.SectorFileType.ValueType]:
    return [common_pb2.SectorFileType.ValueType(int(t)) for t in types]


def add_piece_header(inp: AddPieceInput) -> worker_pb2.WorkerServiceAddPieceHeader:
    return worker_pb2.WorkerServiceAddPieceHeader(
        sector=sector_msg(inp.sector), existing_piece_sizes=inp.existing_piece_sizes, piece_size=inp.piece_size
    )


def pre_commit1(inp: PreCommit1Input) -> worker_pb2.WorkerServiceSealPreCommit1Request:
    return worker_pb2.WorkerServiceSealPreCommit1Request(
        sector=sector_msg(inp.sector), ticket=inp.ticket, pieces=_pieces(inp.pieces)
    )


def pre_commit2(inp: PreCommit2Input) -> worker_pb2.WorkerServiceSealPreCommit2Request:
    return worker_pb2.WorkerServiceSealPreCommit2Request(
        sector=sector_msg(inp.sector), pre_commit1_output=inp.pre_commit1_output
    )


def commit1(inp: Commit1Input) -> worker_pb2.WorkerServiceSealCommit1Request:
    return worker_pb2.WorkerServiceSealCommit1Request(
        sector=sector_msg(inp.sector),
        ticket=inp.ticket,
        seed=inp.seed,
        pieces=_pieces(inp.pieces),
        comm_r=inp.comm_r,
        comm_d=inp.comm_d,
    )


def commit2(inp: Commit2Input) -> worker_pb2.WorkerServiceSealCommit2Request:
    return worker_pb2.WorkerServiceSealCommit2Request(sector=sector_msg(inp.sector), commit1_output=inp.commit1_output)


def finalize(inp: FinalizeInput) -> worker_pb2.WorkerServiceFinalizeSectorRequest:
    return worker_pb2.WorkerServiceFinalizeSectorRequest(
        sector=sector_msg(inp.sector), keep_unsealed=[_range(r) for r in inp.keep_unsealed]
    )


def move_storage(sector: SectorRef, types: Iterable[int]) -> worker_pb2.MoveStorageRequest:
    return worker_pb2.MoveStorageRequest(sector=sector_msg(sector), types=_types(types))


def release_unsealed(inp: ReleaseUnsealedInput) -> worker_pb2.WorkerServiceReleaseUnsealedRequest:
    return worker_pb2.WorkerServiceReleaseUnsealedRequest(
        sector=sector_msg(inp.sector), ranges=[_range(r) for r in inp.ranges], all=inp.all
    )


def unseal(
    sector: SectorRef, whole: ByteRange, ticket: bytes, comm_d: bytes
) -> worker_pb2.WorkerServiceUnsealPieceRequest:
    return worker_pb2.WorkerServiceUnsealPieceRequest(
        sector=sector_msg(sector), range=_range(whole), ticket=ticket, comm_d=comm_d
    )


def fetch(sector: SectorRef, types: Iterable[int], mode: FetchMode) -> worker_pb2.FetchRequest:
    return worker_pb2.FetchRequest(
        sector=sector_msg(sector),
        types=_types(sorted(int(t) for t in types)),
        path_type=common_pb2.PATH_TYPE_SEALING,
        mode=worker_pb2.FetchMode.ValueType(int(mode)),
    )


def commitments_of(output: bytes) -> tuple[bytes, bytes]:
    """(comm_r, comm_d) of a SealPreCommit2 result as a work stores it."""
    out = common_pb2.SectorCommitments.FromString(output)
    return bytes(out.comm_r), bytes(out.comm_d)


def _failure(exc: grpc.aio.AioRpcError) -> DomainError:
    """A worker call's failure as a domain error whose message is `CODE details`."""
    return from_status(exc.code(), f"{exc.code().name} {exc.details()}")


# --- AddPiece ----------------------------------------------------------------------------------


@dataclass
class PieceRelay:
    """AddPiece's dispatch: relays the client's chunks to the chosen worker as they arrive. Each
    write waits for the worker's flow control, and the next chunk is read from the client only
    then, so the manager holds at most one chunk of the piece. A malformed client stream (the
    `chunks` iterator raises InvalidArgument) fails the work for good and the caller gets
    INVALID_ARGUMENT; a client that goes away, CANCELLED."""

    chunks: AsyncIterator[PieceChunk]
    header: worker_pb2.WorkerServiceAddPieceHeader
    size: int

    async def __call__(self, handle: WorkerHandle, assignment: worker_pb2.TaskAssignment) -> None:
        try:
            await self._relay(handle, assignment)
        except grpc.aio.AioRpcError as exc:
            raise _call_failed(exc) from None

    async def _relay(self, handle: WorkerHandle, assignment: worker_pb2.TaskAssignment) -> None:
        assert handle.client is not None
        header = worker_pb2.WorkerServiceAddPieceHeader()
        header.CopyFrom(self.header)
        header.assignment.CopyFrom(assignment)
        call = handle.client.stub.AddPiece()
        try:
            await call.write(worker_pb2.WorkerServiceAddPieceRequest(header=header))
            received = 0
            try:
                async for chunk in self.chunks:
                    if chunk.offset != received:
                        raise DispatchFailed(
                            ErrorCode.PERMANENT,
                            f"chunk offset {chunk.offset} but {received} bytes were sent so far",
                            InvalidArgument,
                        )
                    received += len(chunk.data)
                    if received > self.size:
                        raise DispatchFailed(
                            ErrorCode.PERMANENT,
                            f"more than piece_size ({self.size}) bytes were sent; nothing was written",
                            InvalidArgument,
                        )
                    if chunk.data:
                        await call.write(
                            worker_pb2.WorkerServiceAddPieceRequest(
                                chunk=common_pb2.Chunk(offset=chunk.offset, data=chunk.data)
                            )
                        )
            except InvalidArgument as exc:
                raise DispatchFailed(ErrorCode.PERMANENT, str(exc), InvalidArgument) from None
            except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
                if isinstance(exc, grpc.aio.AioRpcError) and call.done():
                    raise  # the worker failed the stream: handled as a dispatch failure
                raise DispatchFailed(
                    ErrorCode.PERMANENT,
                    "the client's piece stream ended early; nothing was written",
                    Cancelled,
                ) from None
            if received != self.size:
                raise DispatchFailed(
                    ErrorCode.PERMANENT,
                    f"only {received} of piece_size {self.size} bytes were sent; nothing was written",
                    InvalidArgument,
                )
            await call.done_writing()
            reply = await call
            if reply.call_id.id and reply.call_id.id != assignment.call_id.id:
                raise DispatchFailed(ErrorCode.TEMPORARY, f"worker answered with call {reply.call_id.id}")
        except BaseException:
            call.cancel()
            raise


# --- dispatching tasks and collecting their results -------------------------------------------


def piece_result(padded_size: int, commp: bytes) -> bytes:
    """An AddPiece result as a worker returns it (the stored result format), for a piece the
    lifecycle already recorded."""
    return common_pb2.PieceInfo(size=padded_size, commp=commp, piece_cid=unsealed_cid(commp)).SerializeToString()


def assignment(
    miner: int,
    number: int,
    call_id: str,
    work_id: str,
    attempt: int,
    gpu_ordinals: Iterable[int],
    threads: int,
    timeout_s: float,
    leader_epoch: int = 0,
) -> worker_pb2.TaskAssignment:
    """The TaskAssignment a dispatched task carries (its call, the resources granted to it, its
    time limit, 0: none; and the dispatching manager's lease epoch, which workers fence on)."""
    out = worker_pb2.TaskAssignment(
        call_id=common_pb2.CallId(sector=common_pb2.SectorId(miner=miner, number=number), id=call_id),
        work_id=work_id,
        attempt=attempt,
        gpu_ordinals=list(gpu_ordinals),
        threads=threads,
        leader_epoch=leader_epoch,
    )
    if timeout_s:
        out.timeout.CopyFrom(Duration(seconds=int(timeout_s), nanos=int((timeout_s % 1) * 1e9)))
    return out


async def send_task(
    handle: WorkerHandle, spec: CallSpec, params: bytes, assignment: worker_pb2.TaskAssignment, timeout: float
) -> None:
    """Sends a work's task to its worker (the work's params with the assignment). Raises
    WorkerCallFailed, or DispatchFailed when the worker accepted another call."""
    assert handle.client is not None and spec.worker_rpc is not None
    rpc = getattr(handle.client.stub, spec.worker_rpc)
    try:
        reply = await rpc(spec.worker_request(params, assignment), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        raise _call_failed(exc) from None
    if reply.call_id.id and reply.call_id.id != assignment.call_id.id:
        raise DispatchFailed(
            ErrorCode.TEMPORARY, f"worker answered with call {reply.call_id.id}, expected {assignment.call_id.id}"
        )


async def abort_call(client: WorkerClient, miner: int, number: int, call_id: str, reason: str) -> None:
    """Tells a worker to stop a call (AbortCall). Raises WorkerCallFailed."""
    try:
        await client.stub.AbortCall(
            worker_pb2.AbortCallRequest(
                call_id=common_pb2.CallId(sector=common_pb2.SectorId(miner=miner, number=number), id=call_id),
                reason=reason,
            ),
            timeout=DISPATCH_RPC_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError as exc:
        raise _call_failed(exc) from None


@dataclass(frozen=True)
class StoredResult:
    """A call result a worker holds until the manager acknowledges it (ListCallResults): which
    call (and its sector, to acknowledge it), the method and outcome (None: unreadable, e.g. an
    unknown call type: dropped), and when the task ran (0.0: unknown)."""

    miner: int
    number: int
    call_id: str
    method: str | None
    outcome: Outcome | None
    started_at: float
    finished_at: float


async def stored_results(client: WorkerClient) -> AsyncIterator[StoredResult]:
    """The call results a worker holds (ListCallResults). Raises WorkerCallFailed (UNIMPLEMENTED
    from a worker that keeps none)."""
    try:
        stream = client.stub.ListCallResults(worker_pb2.ListCallResultsRequest(), timeout=DISPATCH_RPC_TIMEOUT_S * 3)
        async for reply in stream:
            stored = reply.result
            spec = BY_CALL_TYPE.get(stored.call_type)
            outcome = spec.outcome_of(stored) if spec is not None else None
            yield StoredResult(
                stored.call_id.sector.miner,
                stored.call_id.sector.number,
                stored.call_id.id,
                spec.method if spec is not None and outcome is not None else None,
                outcome,
                stored.started_at.ToNanoseconds() / 1e9 if stored.HasField("started_at") else 0.0,
                stored.finished_at.ToNanoseconds() / 1e9 if stored.HasField("finished_at") else 0.0,
            )
    except grpc.aio.AioRpcError as exc:
        raise _call_failed(exc) from None


async def ack_results(client: WorkerClient, results: Iterable[StoredResult]) -> None:
    """Lets a worker forget results the manager recorded (AckCallResult). Raises WorkerCallFailed."""
    call_ids = [
        common_pb2.CallId(sector=common_pb2.SectorId(miner=r.miner, number=r.number), id=r.call_id) for r in results
    ]
    try:
        await client.stub.AckCallResult(
            worker_pb2.AckCallResultRequest(call_ids=call_ids), timeout=DISPATCH_RPC_TIMEOUT_S
        )
    except grpc.aio.AioRpcError as exc:
        raise _call_failed(exc) from None


# --- proving ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VanillaReply:
    """One sector's answer to GenerateVanillaProofs: its vanilla proof, or why not (the
    TaskErrorCode's name and the message)."""

    number: int
    proof: bytes | None
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class FileStat:
    """A worker's copy of a sector file (StatSectorFile): its size, and a directory's entries."""

    size: int
    entries: dict[str, int]


async def vanilla_proofs(
    client: WorkerClient,
    assignment: worker_pb2.TaskAssignment,
    proof_type: int,
    randomness: bytes,
    sectors: Iterable[ProvingSector],
    timeout: float,
) -> AsyncGenerator[VanillaReply, None]:
    """A worker's vanilla proofs (or per-sector errors) as they come (GenerateVanillaProofs);
    the call is cancelled when the caller stops reading. Raises WorkerCallFailed."""
    stream = client.stub.GenerateVanillaProofs(
        worker_pb2.GenerateVanillaProofsRequest(
            assignment=assignment,
            proof_type=common_pb2.RegisteredPoStProof.ValueType(proof_type),
            randomness=randomness,
            sectors=[common_pb2.ProvingSector(sector=sector_msg(s.sector), comm_r=s.comm_r) for s in sectors],
        ),
        timeout=timeout,
    )
    try:
        async for reply in stream:
            if reply.WhichOneof("outcome") == "vanilla_proof":
                yield VanillaReply(reply.sector.number, reply.vanilla_proof)
            else:
                code = common_pb2.TaskErrorCode.Name(reply.error.code)
                yield VanillaReply(reply.sector.number, None, code, reply.error.message)
    except grpc.aio.AioRpcError as exc:
        raise _call_failed(exc) from None
    finally:
        stream.cancel()


async def stat_sector_file(client: WorkerClient, sector: SectorId, file_type: int, storage_id: str) -> FileStat:
    """What a worker's copy of one sector file is like (StatSectorFile). Raises WorkerCallFailed."""
    try:
        reply = await client.stub.StatSectorFile(
            worker_pb2.StatSectorFileRequest(
                sector=sector_id_msg(sector),
                type=common_pb2.SectorFileType.ValueType(int(file_type)),
                storage_id=storage_id,
            ),
            timeout=POST_RPC_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError as exc:
        raise _call_failed(exc) from None
    return FileStat(reply.size, {e.name: e.size for e in reply.entries})


# --- reading, checking and removing files ------------------------------------------------------


async def is_allocated(client: WorkerClient, sector: SectorRef, r: ByteRange, storage_id: str) -> bool:
    """Whether the worker holds the range unsealed (in `storage_id`, or any of its paths for "")."""
    try:
        reply = await client.stub.IsAllocated(
            worker_pb2.IsAllocatedRequest(sector=sector_msg(sector), range=_range(r), storage_id=storage_id),
            timeout=RPC_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError as exc:
        raise from_status(exc.code(), exc.details() or exc.code().name) from None
    return bool(reply.allocated)


async def read_piece(
    client: WorkerClient, sector: SectorRef, r: ByteRange, storage_id: str, timeout: float | None
) -> AsyncIterator[PieceChunk]:
    """The range's bytes as the worker sends them; a failed read is Unavailable (retry)."""
    stream = client.stub.ReadPiece(
        worker_pb2.WorkerServiceReadPieceRequest(sector=sector_msg(sector), range=_range(r), storage_id=storage_id),
        timeout=timeout,
    )
    try:
        async for reply in stream:
            yield PieceChunk(reply.chunk.offset, reply.chunk.data)
    except grpc.aio.AioRpcError as exc:
        raise Unavailable(f"reading from the worker failed: {exc.code().name}: {exc.details()}") from None


async def remove(client: WorkerClient, sector: SectorId, types: Iterable[int]) -> list[RemovedFile]:
    """Removes the sector's files of `types` on the worker; its failure's message is `CODE details`."""
    try:
        reply = await client.stub.Remove(
            worker_pb2.WorkerServiceRemoveRequest(sector=sector_id_msg(sector), types=_types(sorted(types))),
            timeout=RPC_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError as exc:
        raise _failure(exc) from None
    return [RemovedFile(f.storage_id, int(f.type)) for f in reply.removed]
