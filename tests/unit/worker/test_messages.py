"""The worker's message forms of its domain values (messages.py): call results are stored and
returned as the same StoredCallResult bytes the runner wrote before they were plain values, and
read back to equal values; the enums mirror the protos' value for value."""

from __future__ import annotations

from google.protobuf.empty_pb2 import Empty
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from services.common.vocabulary import TaskErrorCode as ErrorCode
from services.worker.calls import AddedPiece, CallId, CallResult, CallType, Commitments, TaskFailure
from services.worker.messages import RESULT_CODEC, call_id_msg, call_id_of, stored_result_msg
from services.worker.returns import return_request

CALL = CallId(1000, 7, "7f6d1c2e-0000-4000-8000-000000000001")
STARTED_NS, FINISHED_NS = 1_700_000_000_123_456_789, 1_700_000_042_987_654_321


def ts(ns: int) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(ns)
    return out


def expected(call_type: int, **outcome: object) -> worker_pb2.StoredCallResult:
    """The message as the runner built it from protobuf outcomes."""
    return worker_pb2.StoredCallResult(
        call_id=common_pb2.CallId(sector=common_pb2.SectorId(miner=1000, number=7), id=CALL.id),
        call_type=worker_pb2.CallType.ValueType(call_type),
        started_at=ts(STARTED_NS),
        finished_at=ts(FINISHED_NS),
        **outcome,  # type: ignore[arg-type]
    )


def test_enums_mirror_the_protos() -> None:
    assert {c.name: c.value for c in CallType} == {
        n.removeprefix("CALL_TYPE_"): v for n, v in worker_pb2.CallType.items()
    }
    assert {c.wire_name: c.value for c in ErrorCode} == dict(common_pb2.TaskErrorCode.items())


def test_call_ids_round_trip_unchecked() -> None:
    assert call_id_of(call_id_msg(CALL)) == CALL
    assert CallId.parse_key(CALL.key) == CALL
    assert call_id_of(common_pb2.CallId()) == CallId(0, 0, "")  # an AbortCall may name anything


def test_every_outcome_is_stored_as_before_and_read_back() -> None:
    piece = AddedPiece(2048, b"c" * 32, "baga6ea4seaq")
    commitments = Commitments(b"d" * 32, b"r" * 32, "baga6ea4seaq", "bagboea4b5abc")
    cases = [
        (CallType.FINALIZE_SECTOR, ("done", None), {"done": Empty()}),
        (
            CallType.ADD_PIECE,
            ("piece", piece),
            {"piece": common_pb2.PieceInfo(size=2048, commp=b"c" * 32, piece_cid="baga6ea4seaq")},
        ),
        (CallType.SEAL_PRE_COMMIT_1, ("pre_commit1_output", b"p1"), {"pre_commit1_output": b"p1"}),
        (
            CallType.SEAL_PRE_COMMIT_2,
            ("commitments", commitments),
            {
                "commitments": common_pb2.SectorCommitments(
                    comm_d=b"d" * 32, comm_r=b"r" * 32, unsealed_cid="baga6ea4seaq", sealed_cid="bagboea4b5abc"
                )
            },
        ),
        (CallType.SEAL_COMMIT_1, ("commit1_output", b"c1"), {"commit1_output": b"c1"}),
        (CallType.SEAL_COMMIT_2, ("proof", b"proof"), {"proof": b"proof"}),
    ]
    for call_type, outcome, fields in cases:
        result = CallResult(CALL, call_type, outcome, STARTED_NS, FINISHED_NS)  # type: ignore[arg-type]
        data = RESULT_CODEC.encode(result)
        assert data == expected(call_type, **fields).SerializeToString(), call_type
        assert RESULT_CODEC.decode(data) == result


def test_failures_are_stored_with_their_code_and_a_message() -> None:
    failed = CallResult(CALL, CallType.FETCH, TaskFailure(ErrorCode.ABORTED, "task aborted"), STARTED_NS, FINISHED_NS)
    data = RESULT_CODEC.encode(failed)
    error = common_pb2.TaskError(code=common_pb2.TASK_ERROR_CODE_ABORTED, message="task aborted")
    assert data == expected(CallType.FETCH, error=error).SerializeToString()
    back = RESULT_CODEC.decode(data)
    assert isinstance(back.outcome, TaskFailure)
    assert (back.outcome.code, back.outcome.message) == (ErrorCode.ABORTED, "task aborted")
    assert (back.started_ns, back.finished_ns) == (STARTED_NS, FINISHED_NS)
    silent = CallResult(CALL, CallType.FETCH, TaskFailure(ErrorCode.TEMPORARY, ""), STARTED_NS, FINISHED_NS)
    assert stored_result_msg(silent).error.message == "task failed"


def test_a_stored_result_becomes_its_return_request() -> None:
    result = CallResult(CALL, CallType.SEAL_COMMIT_2, ("proof", b"proof"), STARTED_NS, FINISHED_NS)
    method, request = return_request(RESULT_CODEC.decode(RESULT_CODEC.encode(result)), "worker-1")
    assert method == "ReturnSealCommit2"
    assert request.proof == b"proof" and request.call_id == call_id_msg(CALL)
    assert request.meta.worker_id == "worker-1" and request.meta.started_at == ts(STARTED_NS)
