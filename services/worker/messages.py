"""The message forms of the worker's shared domain values (sector ids, file types, call ids, call
results and their outcomes), for every edge that speaks protobuf: convert.py and servicer.py
(WorkerService), index_client.py, peers.py, manager_link.py, returns.py, and the call store's
codec (RESULT_CODEC: the store keeps StoredCallResult bytes, app.py hands it this). The domain
modules (sectors.py and the rest of `[grpc_free]` in architecture.toml) never see a message;
this is the lowest layer of the edge, importing no other edge module, so each client can use it
without an import cycle through convert.py."""

from __future__ import annotations

from google.protobuf.empty_pb2 import Empty
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from services.worker.calls import AddedPiece, CallId, CallResult, Commitments, Outcome, OutcomeValue, TaskFailure
from services.worker.callstore import ResultCodec
from services.worker.sectors import FileType, SectorId


def sector_id_msg(sector: SectorId) -> common_pb2.SectorId:
    return common_pb2.SectorId(miner=sector.miner, number=sector.number)


def sector_id_of(msg: common_pb2.SectorId) -> SectorId:
    """A SectorId from its message; ValueError when out of range."""
    return SectorId(msg.miner, msg.number)


def file_type_msg(file_type: FileType) -> common_pb2.SectorFileType.ValueType:
    """One file type's SectorFileType value (the enum's values are the FileType bits)."""
    return common_pb2.SectorFileType.ValueType(int(file_type))


def file_types_msg(types: FileType) -> list[common_pb2.SectorFileType.ValueType]:
    """A set of file types as a repeated SectorFileType, in the reference's order."""
    return [file_type_msg(t) for t in types.singles()]


def call_id_msg(call: CallId) -> common_pb2.CallId:
    return common_pb2.CallId(sector=common_pb2.SectorId(miner=call.miner, number=call.number), id=call.id)


def call_id_of(msg: common_pb2.CallId) -> CallId:
    """A CallId as the message has it (unchecked: see calls.CallId)."""
    return CallId(msg.sector.miner, msg.sector.number, msg.id)


def task_error_msg(failure: TaskFailure) -> common_pb2.TaskError:
    return common_pb2.TaskError(code=common_pb2.TaskErrorCode.ValueType(failure.code), message=failure.message)


def _outcome_msg(value: OutcomeValue) -> Message | bytes:
    if value is None:
        return Empty()
    if isinstance(value, AddedPiece):
        return common_pb2.PieceInfo(size=value.size, commp=value.commp, piece_cid=value.piece_cid)
    if isinstance(value, Commitments):
        return common_pb2.SectorCommitments(
            comm_d=value.comm_d, comm_r=value.comm_r, unsealed_cid=value.unsealed_cid, sealed_cid=value.sealed_cid
        )
    return value


def _timestamp(ns: int) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def stored_result_msg(result: CallResult) -> worker_pb2.StoredCallResult:
    """A result as StoredCallResult (what the call store keeps and ListCallResults answers); a
    failure without a message says "task failed"."""
    msg = worker_pb2.StoredCallResult(
        call_id=call_id_msg(result.call_id),
        call_type=worker_pb2.CallType.ValueType(result.call_type),
        started_at=None if result.started_ns is None else _timestamp(result.started_ns),
        finished_at=None if result.finished_ns is None else _timestamp(result.finished_ns),
    )
    outcome = result.outcome
    if isinstance(outcome, TaskFailure):
        msg.error.CopyFrom(task_error_msg(TaskFailure(outcome.code, outcome.message or "task failed")))
    elif outcome is not None:
        name, value = outcome
        encoded = _outcome_msg(value)
        if isinstance(encoded, Message):
            getattr(msg, name).CopyFrom(encoded)
        else:
            setattr(msg, name, encoded)
    return msg


def call_result_of(msg: worker_pb2.StoredCallResult) -> CallResult:
    field = msg.WhichOneof("outcome")
    outcome: Outcome | TaskFailure | None
    if field is None:
        outcome = None
    elif field == "error":
        outcome = TaskFailure(msg.error.code, msg.error.message)
    elif field == "done":
        outcome = (field, None)
    elif field == "piece":
        outcome = (field, AddedPiece(msg.piece.size, msg.piece.commp, msg.piece.piece_cid))
    elif field == "commitments":
        c = msg.commitments
        outcome = (field, Commitments(c.comm_d, c.comm_r, c.unsealed_cid, c.sealed_cid))
    else:
        outcome = (field, bytes(getattr(msg, field)))
    return CallResult(
        call_id=call_id_of(msg.call_id),
        call_type=msg.call_type,
        outcome=outcome,
        started_ns=msg.started_at.ToNanoseconds() if msg.HasField("started_at") else None,
        finished_ns=msg.finished_at.ToNanoseconds() if msg.HasField("finished_at") else None,
    )


RESULT_CODEC = ResultCodec(
    encode=lambda result: stored_result_msg(result).SerializeToString(),
    decode=lambda data: call_result_of(worker_pb2.StoredCallResult.FromString(data)),
)
