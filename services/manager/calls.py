"""The worker task calls, as data: for each, its task type, the worker request it sends, the
Return RPC and outcome field it comes back with, and how its result is stored.

A work's parameters are the worker request message without its `assignment` (deterministically
serialized): exactly what will run, so hashing them gives the work id, and a manager that
restarted can dispatch the work again from its database row alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.empty_pb2 import Empty
from google.protobuf.message import Message

from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, worker_pb2
from services.manager.calltracker import ErrorCode, Outcome
from services.manager.tasks import TaskType


@dataclass(frozen=True)
class CallSpec:
    method: str
    call_type: int
    task_type: TaskType
    # The WorkerService request message (without assignment = the work's params).
    request_type: type[Message]
    # The worker RPC (None: dispatched by custom code, e.g. AddPiece's stream).
    worker_rpc: str | None
    # The oneof field of Return<method>Request / StoredCallResult carrying a success.
    result_field: str
    # Its message type; None when it is raw bytes.
    result_type: type[Message] | None

    @property
    def return_rpc(self) -> str:
        return f"Return{self.method}"

    def encode_result(self, value: Message | bytes) -> bytes:
        if isinstance(value, bytes):
            return value
        return value.SerializeToString(deterministic=True)

    def decode_result(self, blob: bytes) -> Any:
        if self.result_type is None:
            return blob
        return self.result_type.FromString(blob)

    def params(self, request: Message) -> bytes:
        """A work's params: the worker request without its assignment."""
        copy = type(request)()
        copy.CopyFrom(request)
        if copy.DESCRIPTOR.fields_by_name.get("assignment") is not None:
            copy.ClearField("assignment")
        return copy.SerializeToString(deterministic=True)

    def worker_request(self, params: bytes, assignment: worker_pb2.TaskAssignment) -> Message:
        request = self.request_type.FromString(params)
        request.assignment.CopyFrom(assignment)  # type: ignore[attr-defined]
        return request

    def outcome_of(self, message: Message) -> Outcome | None:
        """The outcome carried by a Return request or a StoredCallResult; None when it carries
        neither a result nor an error (or the wrong result field)."""
        which = message.WhichOneof("outcome")
        if which == "error":
            error = message.error  # type: ignore[attr-defined]
            code = ErrorCode(error.code) if error.code in ErrorCode._value2member_map_ else ErrorCode.UNSPECIFIED
            return Outcome.failure(code, error.message)
        if which != self.result_field:
            return None
        return Outcome.success(self.encode_result(getattr(message, which)))


W = worker_pb2
C = W.CallType
SPECS: tuple[CallSpec, ...] = (
    CallSpec(
        "AddPiece",
        C.CALL_TYPE_ADD_PIECE,
        TaskType.ADD_PIECE,
        W.WorkerServiceAddPieceHeader,
        None,
        "piece",
        common_pb2.PieceInfo,
    ),
    CallSpec(
        "SealPreCommit1",
        C.CALL_TYPE_SEAL_PRE_COMMIT_1,
        TaskType.PRE_COMMIT_1,
        W.WorkerServiceSealPreCommit1Request,
        "SealPreCommit1",
        "pre_commit1_output",
        None,
    ),
    CallSpec(
        "SealPreCommit2",
        C.CALL_TYPE_SEAL_PRE_COMMIT_2,
        TaskType.PRE_COMMIT_2,
        W.WorkerServiceSealPreCommit2Request,
        "SealPreCommit2",
        "commitments",
        common_pb2.SectorCommitments,
    ),
    CallSpec(
        "SealCommit1",
        C.CALL_TYPE_SEAL_COMMIT_1,
        TaskType.COMMIT_1,
        W.WorkerServiceSealCommit1Request,
        "SealCommit1",
        "commit1_output",
        None,
    ),
    CallSpec(
        "SealCommit2",
        C.CALL_TYPE_SEAL_COMMIT_2,
        TaskType.COMMIT_2,
        W.WorkerServiceSealCommit2Request,
        "SealCommit2",
        "proof",
        None,
    ),
    CallSpec(
        "FinalizeSector",
        C.CALL_TYPE_FINALIZE_SECTOR,
        TaskType.FINALIZE,
        W.WorkerServiceFinalizeSectorRequest,
        "FinalizeSector",
        "done",
        Empty,
    ),
    CallSpec(
        "ReleaseUnsealed",
        C.CALL_TYPE_RELEASE_UNSEALED,
        TaskType.FINALIZE,
        W.WorkerServiceReleaseUnsealedRequest,
        "ReleaseUnsealed",
        "done",
        Empty,
    ),
    CallSpec(
        "MoveStorage", C.CALL_TYPE_MOVE_STORAGE, TaskType.FETCH, W.MoveStorageRequest, "MoveStorage", "done", Empty
    ),
    CallSpec(
        "UnsealPiece",
        C.CALL_TYPE_UNSEAL_PIECE,
        TaskType.UNSEAL,
        W.WorkerServiceUnsealPieceRequest,
        "UnsealPiece",
        "done",
        Empty,
    ),
    CallSpec("Fetch", C.CALL_TYPE_FETCH, TaskType.FETCH, W.FetchRequest, "Fetch", "done", Empty),
)
BY_METHOD: dict[str, CallSpec] = {s.method: s for s in SPECS}
BY_CALL_TYPE: dict[int, CallSpec] = {s.call_type: s for s in SPECS}

# Return<Method>Request message types, for the servicer.
RETURN_REQUESTS: dict[str, type[Message]] = {
    spec.method: getattr(manager_pb2, f"Return{spec.method}Request") for spec in SPECS
}
