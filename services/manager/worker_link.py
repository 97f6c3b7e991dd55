"""The manager's edge to its workers: the only manager module (with convert.py, views.py,
servicer.py, forward.py and index_client.py) that knows the WorkerService messages. It holds
the channel to each worker (WorkerClient, which the registry opens through the app), builds the
WorkerService requests a work runs (their serialized form, less the assignment, is the work's
params and identity, so these builders must stay byte-for-byte stable) and the TaskAssignment
they carry, decodes stored params and results for the store (CODEC) and the outcomes workers
return, relays AddPiece's stream, reads pieces, asks IsAllocated and Remove, and turns a worker's
gRPC errors into the fleet's domain errors, so that sealing.py, jobs.py and post.py deal in
domain values only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.empty_pb2 import Empty
from google.protobuf.message import DecodeError, Message

from services.common.cid import unsealed_cid
from services.common.client import aio_channel
from services.common.errors import Cancelled, DomainError, InvalidArgument, Unavailable, from_status
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from services.common.vocabulary import TaskErrorCode as ErrorCode
from services.manager.calls import BY_CALL_TYPE, CallSpec
from services.manager.calltracker import Outcome
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
    TaskAssignment,
)
from services.manager.workers import WorkerConnection, WorkerHandle

M = TypeVar("M", bound=Message)

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


class WorkerClient:
    """The manager's channel to one worker (workers.py's WorkerConnection: the registry opens one
    per registered worker through the factory the app gives it)."""

    def __init__(self, address: str, token: str) -> None:
        self.address = address
        self.channel: grpc.aio.Channel = aio_channel(address, token)
        self.stub: worker_pb2_grpc.WorkerServiceAsyncStub = worker_pb2_grpc.WorkerServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()


def _stub(client: WorkerConnection) -> worker_pb2_grpc.WorkerServiceAsyncStub:
    """The stub of a worker connection (the registry's connections are WorkerClients)."""
    assert isinstance(client, WorkerClient), client
    return client.stub


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


# Each call's WorkerService request message (without assignment: the work's params), and the
# message its result is (None: raw bytes), by method (calls.py).
_W = worker_pb2
REQUEST_TYPES: dict[str, type[Message]] = {
    "AddPiece": _W.WorkerServiceAddPieceHeader,
    "SealPreCommit1": _W.WorkerServiceSealPreCommit1Request,
    "SealPreCommit2": _W.WorkerServiceSealPreCommit2Request,
    "SealCommit1": _W.WorkerServiceSealCommit1Request,
    "SealCommit2": _W.WorkerServiceSealCommit2Request,
    "FinalizeSector": _W.WorkerServiceFinalizeSectorRequest,
    "ReleaseUnsealed": _W.WorkerServiceReleaseUnsealedRequest,
    "MoveStorage": _W.MoveStorageRequest,
    "UnsealPiece": _W.WorkerServiceUnsealPieceRequest,
    "Fetch": _W.FetchRequest,
}
RESULT_TYPES: dict[str, type[Message] | None] = {
    "AddPiece": common_pb2.PieceInfo,
    "SealPreCommit1": None,
    "SealPreCommit2": common_pb2.SectorCommitments,
    "SealCommit1": None,
    "SealCommit2": None,
    "FinalizeSector": Empty,
    "ReleaseUnsealed": Empty,
    "MoveStorage": Empty,
    "UnsealPiece": Empty,
    "Fetch": Empty,
}


def params(spec: CallSpec, request: WorkerRequest) -> bytes:
    """A work's params: the worker request without its assignment."""
    copy = type(request)()
    copy.CopyFrom(request)
    if copy.DESCRIPTOR.fields_by_name.get("assignment") is not None:
        copy.ClearField("assignment")
    return copy.SerializeToString(deterministic=True)


def worker_request(spec: CallSpec, params: bytes, assignment: TaskAssignment) -> Message:
    """The request a work's task is dispatched with: its params and the assignment."""
    request = REQUEST_TYPES[spec.method].FromString(params)
    request.assignment.CopyFrom(assignment_msg(assignment))  # type: ignore[attr-defined]
    return request


def encode_result(value: Message | bytes) -> bytes:
    """A result as a work stores it: raw bytes as they are, a message serialized."""
    if isinstance(value, bytes):
        return value
    return value.SerializeToString(deterministic=True)


def decode_result(spec: CallSpec, blob: bytes) -> Any:
    """A stored result as the reply carries it: its message (raw bytes for a bytes result)."""
    result_type = RESULT_TYPES[spec.method]
    if result_type is None:
        return blob
    return result_type.FromString(blob)


def outcome_of(spec: CallSpec, message: Message) -> Outcome | None:
    """The outcome carried by a Return request or a StoredCallResult; None when it carries
    neither a result nor an error (or the wrong result field)."""
    which = message.WhichOneof("outcome")
    if which == "error":
        error = message.error  # type: ignore[attr-defined]
        code = ErrorCode(error.code) if error.code in ErrorCode._value2member_map_ else ErrorCode.UNSPECIFIED
        return Outcome.failure(code, error.message)
    if which != spec.result_field:
        return None
    return Outcome.success(encode_result(getattr(message, which)))


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


def _decoded(message_type: type[M], blob: bytes) -> M:
    try:
        return message_type.FromString(blob)
    except DecodeError as exc:
        raise ValueError(f"unreadable {message_type.DESCRIPTOR.name}: {exc}") from None


def _piece_refs(infos: Iterable[common_pb2.PieceInfo]) -> tuple[PieceRef, ...]:
    return tuple(PieceRef(int(p.size), bytes(p.commp)) for p in infos)


class WorkCodec:
    """What the store reads in a work's stored params and result (store.WorkCodec): they are the
    worker messages above, serialized. Unreadable bytes raise ValueError."""

    def added_piece(self, params: bytes, result: bytes) -> tuple[tuple[int, ...], PieceRef]:
        header = _decoded(worker_pb2.WorkerServiceAddPieceHeader, params)
        info = _decoded(common_pb2.PieceInfo, result)
        return tuple(header.existing_piece_sizes), PieceRef(info.size, bytes(info.commp))

    def pre_commit1(self, params: bytes) -> tuple[bytes, tuple[PieceRef, ...]]:
        pc1 = _decoded(worker_pb2.WorkerServiceSealPreCommit1Request, params)
        return pc1.ticket, _piece_refs(pc1.pieces)

    def pre_commit2(self, params: bytes) -> bytes:
        return _decoded(worker_pb2.WorkerServiceSealPreCommit2Request, params).pre_commit1_output

    def commit1(self, params: bytes) -> tuple[bytes, bytes, tuple[PieceRef, ...], bytes, bytes]:
        c1 = _decoded(worker_pb2.WorkerServiceSealCommit1Request, params)
        return c1.ticket, c1.seed, _piece_refs(c1.pieces), c1.comm_r, c1.comm_d

    def commit2(self, params: bytes) -> bytes:
        return _decoded(worker_pb2.WorkerServiceSealCommit2Request, params).commit1_output

    def finalize(self, params: bytes) -> tuple[tuple[int, int], ...]:
        fin = _decoded(worker_pb2.WorkerServiceFinalizeSectorRequest, params)
        return tuple((r.offset, r.size) for r in fin.keep_unsealed)

    def commitments(self, result: bytes) -> tuple[bytes, bytes]:
        out = _decoded(common_pb2.SectorCommitments, result)
        return out.comm_r, out.comm_d


CODEC = WorkCodec()


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

    async def __call__(self, handle: WorkerHandle, assignment: TaskAssignment) -> None:
        try:
            await self._relay(handle, assignment)
        except grpc.aio.AioRpcError as exc:
            raise _call_failed(exc) from None

    async def _relay(self, handle: WorkerHandle, assignment: TaskAssignment) -> None:
        assert handle.client is not None
        header = worker_pb2.WorkerServiceAddPieceHeader()
        header.CopyFrom(self.header)
        header.assignment.CopyFrom(assignment_msg(assignment))
        stub = _stub(handle.client)
        call = stub.AddPiece()
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
            if reply.call_id.id and reply.call_id.id != assignment.call_id:
                raise DispatchFailed(ErrorCode.TEMPORARY, f"worker answered with call {reply.call_id.id}")
        except BaseException:
            call.cancel()
            raise


# --- dispatching tasks and collecting their results -------------------------------------------


def piece_result(padded_size: int, commp: bytes) -> bytes:
    """An AddPiece result as a worker returns it (the stored result format), for a piece the
    lifecycle already recorded."""
    return common_pb2.PieceInfo(size=padded_size, commp=commp, piece_cid=unsealed_cid(commp)).SerializeToString()


def assignment_msg(a: TaskAssignment) -> worker_pb2.TaskAssignment:
    """The TaskAssignment message a dispatched task carries."""
    out = worker_pb2.TaskAssignment(
        call_id=common_pb2.CallId(sector=sector_id_msg(a.sector), id=a.call_id),
        work_id=a.work_id,
        attempt=a.attempt,
        gpu_ordinals=list(a.gpu_ordinals),
        threads=a.threads,
        leader_epoch=a.leader_epoch,
        worker_session_id=a.worker_session_id,
    )
    if a.timeout_s:
        out.timeout.CopyFrom(Duration(seconds=int(a.timeout_s), nanos=int((a.timeout_s % 1) * 1e9)))
    return out


async def send_task(
    handle: WorkerHandle, spec: CallSpec, params: bytes, assignment: TaskAssignment, timeout: float
) -> None:
    """Sends a work's task to its worker (the work's params with the assignment). Raises
    WorkerCallFailed, or DispatchFailed when the worker accepted another call."""
    assert handle.client is not None and spec.worker_rpc is not None
    rpc = getattr(_stub(handle.client), spec.worker_rpc)
    try:
        reply = await rpc(worker_request(spec, params, assignment), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        raise _call_failed(exc) from None
    if reply.call_id.id and reply.call_id.id != assignment.call_id:
        raise DispatchFailed(
            ErrorCode.TEMPORARY, f"worker answered with call {reply.call_id.id}, expected {assignment.call_id}"
        )


async def abort_call(client: WorkerConnection, miner: int, number: int, call_id: str, reason: str) -> None:
    """Tells a worker to stop a call (AbortCall). Raises WorkerCallFailed."""
    try:
        stub = _stub(client)
        await stub.AbortCall(
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


async def stored_results(client: WorkerConnection) -> AsyncIterator[StoredResult]:
    """The call results a worker holds (ListCallResults). Raises WorkerCallFailed (UNIMPLEMENTED
    from a worker that keeps none)."""
    try:
        stub = _stub(client)
        stream = stub.ListCallResults(worker_pb2.ListCallResultsRequest(), timeout=DISPATCH_RPC_TIMEOUT_S * 3)
        async for reply in stream:
            stored = reply.result
            spec = BY_CALL_TYPE.get(stored.call_type)
            outcome = outcome_of(spec, stored) if spec is not None else None
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


async def ack_results(client: WorkerConnection, results: Iterable[StoredResult]) -> None:
    """Lets a worker forget results the manager recorded (AckCallResult). Raises WorkerCallFailed."""
    call_ids = [
        common_pb2.CallId(sector=common_pb2.SectorId(miner=r.miner, number=r.number), id=r.call_id) for r in results
    ]
    try:
        stub = _stub(client)
        await stub.AckCallResult(worker_pb2.AckCallResultRequest(call_ids=call_ids), timeout=DISPATCH_RPC_TIMEOUT_S)
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
    client: WorkerConnection,
    assignment: TaskAssignment,
    proof_type: int,
    randomness: bytes,
    sectors: Iterable[ProvingSector],
    timeout: float,
) -> AsyncGenerator[VanillaReply, None]:
    """A worker's vanilla proofs (or per-sector errors) as they come (GenerateVanillaProofs);
    the call is cancelled when the caller stops reading. Raises WorkerCallFailed."""
    stub = _stub(client)
    stream = stub.GenerateVanillaProofs(
        worker_pb2.GenerateVanillaProofsRequest(
            assignment=assignment_msg(assignment),
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


async def stat_sector_file(client: WorkerConnection, sector: SectorId, file_type: int, storage_id: str) -> FileStat:
    """What a worker's copy of one sector file is like (StatSectorFile). Raises WorkerCallFailed."""
    try:
        stub = _stub(client)
        reply = await stub.StatSectorFile(
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


async def is_allocated(client: WorkerConnection, sector: SectorRef, r: ByteRange, storage_id: str) -> bool:
    """Whether the worker holds the range unsealed (in `storage_id`, or any of its paths for "")."""
    try:
        stub = _stub(client)
        reply = await stub.IsAllocated(
            worker_pb2.IsAllocatedRequest(sector=sector_msg(sector), range=_range(r), storage_id=storage_id),
            timeout=RPC_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError as exc:
        raise from_status(exc.code(), exc.details() or exc.code().name) from None
    return bool(reply.allocated)


async def read_piece(
    client: WorkerConnection, sector: SectorRef, r: ByteRange, storage_id: str, timeout: float | None
) -> AsyncIterator[PieceChunk]:
    """The range's bytes as the worker sends them; a failed read is Unavailable (retry)."""
    stub = _stub(client)
    stream = stub.ReadPiece(
        worker_pb2.WorkerServiceReadPieceRequest(sector=sector_msg(sector), range=_range(r), storage_id=storage_id),
        timeout=timeout,
    )
    try:
        async for reply in stream:
            yield PieceChunk(reply.chunk.offset, reply.chunk.data)
    except grpc.aio.AioRpcError as exc:
        raise Unavailable(f"reading from the worker failed: {exc.code().name}: {exc.details()}") from None


async def remove(client: WorkerConnection, sector: SectorId, types: Iterable[int]) -> list[RemovedFile]:
    """Removes the sector's files of `types` on the worker; its failure's message is `CODE details`."""
    try:
        stub = _stub(client)
        reply = await stub.Remove(
            worker_pb2.WorkerServiceRemoveRequest(sector=sector_id_msg(sector), types=_types(sorted(types))),
            timeout=RPC_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError as exc:
        raise _failure(exc) from None
    return [RemovedFile(f.storage_id, int(f.type)) for f in reply.removed]
