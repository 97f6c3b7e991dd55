"""The sector lifecycle's rules (services/manager/lifecycle.py) and its records in the manager's
database (SQLite files and PostgreSQL): steps recorded in the transaction that stores the
work's outcome, only for the sector's current generation, kept across a reopen; claims and
removals; and a property test driving random sequences of decisions."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.db import Database
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from services.common.vocabulary import TaskErrorCode as ErrorCode
from services.manager import lifecycle as lc
from services.manager.calltracker import CallTracker, Outcome, RetryPolicy, SectorRefKey
from tests.unit.manager.db import databases, db_url, open_store  # noqa: F401 - fixtures

MINER, NUMBER, P2K = 1000, 7, 5
TICKET = bytes([0x11] * 32)
PIECE = lc.PieceRef(2048, bytes(range(32)))


async def finish(tracker: CallTracker, method: str, params: bytes, outcome: Outcome, generation: int) -> None:
    live, _ = await tracker.open(
        method, 1, SectorRefKey(MINER, NUMBER, P2K), params, 0, generation=generation, dedup=method != "AddPiece"
    )
    assert await tracker.mark_dispatching(live, "w1", "h", "s", (), 1)
    await tracker.complete(live.call.call_id, method, outcome)
    await tracker.wait(live, 1)


def ref() -> common_pb2.SectorRef:
    return common_pb2.SectorRef(id=common_pb2.SectorId(miner=MINER, number=NUMBER), proof_type=P2K)  # type: ignore[arg-type]


def test_steps_are_recorded_with_the_outcome_for_the_current_generation_only(
    db_url: str, databases: list[Database]
) -> None:
    async def run() -> None:
        store = open_store(db_url, databases)
        tracker = CallTracker(store, RetryPolicy(max_attempts=1))
        assert await store.sector(MINER, NUMBER) is None
        record = await store.claim_sector(MINER, NUMBER, P2K, 0)
        assert record.generation == 1 and record.state is lc.SectorState.PIECES
        with pytest.raises(lc.LifecycleRefused):  # a second claim of the same number
            await store.claim_sector(MINER, NUMBER, P2K, 0)

        header = worker_pb2.WorkerServiceAddPieceHeader(sector=ref(), piece_size=2032).SerializeToString()
        piece = common_pb2.PieceInfo(size=PIECE.size, commp=PIECE.commp).SerializeToString()
        await finish(tracker, "AddPiece", header, Outcome.success(piece), 1)
        pc1_params = worker_pb2.WorkerServiceSealPreCommit1Request(
            sector=ref(), ticket=TICKET, pieces=[common_pb2.PieceInfo(size=PIECE.size, commp=PIECE.commp)]
        ).SerializeToString(deterministic=True)
        # A failure is recorded as the sector's last error, not as a step.
        await finish(tracker, "SealPreCommit1", pc1_params, Outcome.failure(ErrorCode.PERMANENT, "bad pieces"), 1)
        failed = await store.sector(MINER, NUMBER)
        assert failed is not None and failed.state is lc.SectorState.FAILED and failed.last_error == "bad pieces"
        # Aborts record nothing.
        await finish(tracker, "SealPreCommit1", pc1_params + b"\x00", Outcome.failure(ErrorCode.ABORTED, "stop"), 1)
        # Work of another generation records nothing.
        await finish(tracker, "SealPreCommit1", pc1_params, Outcome.success(b"stale"), 5)
        await finish(tracker, "SealPreCommit1", pc1_params, Outcome.success(b"p1o"), 1)

        databases[-1].close()
        reopened = open_store(db_url, databases)
        record2 = await reopened.sector(MINER, NUMBER)
        assert record2 is not None
        assert record2.pieces == (PIECE,)
        assert record2.state is lc.SectorState.PRE_COMMIT_1_DONE and not record2.last_error
        done = record2.steps[lc.Step.PRE_COMMIT_1]
        assert done.output == b"p1o" and done.input_digest == lc.digest_pc1(TICKET, [PIECE])

        removed = await reopened.mark_removed(MINER, NUMBER)
        assert removed.state is lc.SectorState.REMOVED
        again = await reopened.claim_sector(MINER, NUMBER, P2K, removed.generation)
        assert again.generation == 2 and again.pieces == () and not again.steps

    asyncio.run(run())


def _record(**steps: bytes) -> lc.SectorRecord:
    record = lc.SectorRecord(MINER, NUMBER, P2K, 1, pieces=(PIECE,))
    for name, output in steps.items():
        step = lc.Step(name)
        record.steps[step] = lc.StepRecord(step, b"", output, 1.0)
    return record


def test_rules_name_the_state_and_what_to_do() -> None:
    with pytest.raises(lc.LifecycleRefused) as err:
        lc.decide_pc2(None, P2K, b"x", [], "w")
    assert err.value.kind is lc.Refusal.PRECONDITION and "AddPiece" in err.value.message
    record = _record()
    record.steps[lc.Step.PRE_COMMIT_1] = lc.StepRecord(
        lc.Step.PRE_COMMIT_1, lc.digest_pc1(TICKET, [PIECE]), b"p1o", 1.0
    )
    assert lc.decide_pc1(record, P2K, 2048, TICKET, [PIECE], [], "w") == lc.Recorded(b"p1o")
    with pytest.raises(lc.LifecycleRefused) as err:
        lc.decide_pc1(record, P2K, 2048, bytes(32), [PIECE], [], "w")
    assert "PRE_COMMIT_1_DONE" in err.value.message
    with pytest.raises(lc.LifecycleRefused) as err:
        lc.decide_pc2(record, P2K, b"p1", [], "w")
    assert "pre_commit1_output" in err.value.message
    assert lc.decide_pc2(record, P2K, b"p1o", [], "w") == lc.Run()
    with pytest.raises(lc.LifecycleRefused) as err:
        lc.decide_pc2(record, P2K, b"p1o", [lc.InFlight("SealCommit1", "other")], "w")
    assert err.value.kind is lc.Refusal.CONFLICT
    # One pipeline: a first piece on a claimed number, or a second AddPiece at once.
    with pytest.raises(lc.LifecycleRefused) as err:
        lc.decide_add_piece(_record(), P2K, [], [])
    assert err.value.kind is lc.Refusal.CLAIMED
    # An AddPiece while another is in flight: a conflict to retry (ABORTED), since it may be the
    # same AddPiece sent again after its manager died; the retry then finds the piece recorded
    # (answered if the bytes match, ALREADY_EXISTS if not) or the sector free.
    with pytest.raises(lc.LifecycleRefused) as err:
        lc.decide_add_piece(lc.SectorRecord(MINER, NUMBER, P2K, 1), P2K, [], [lc.InFlight("AddPiece", "a")])
    assert err.value.kind is lc.Refusal.CONFLICT
    assert lc.decide_add_piece(None, P2K, [], []) is True
    removed = _record()
    removed.removed = True
    assert lc.decide_add_piece(removed, P2K, [], []) is True
    with pytest.raises(lc.LifecycleRefused) as err:
        lc.decide_c2(removed, P2K, b"c", [], "w")
    assert "REMOVED" in err.value.message


# --- property: random call sequences never regress a sector or lose a recorded step ---------

ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["add", "pc1", "pc2", "c1", "c2", "fin", "remove", "finish"]),
        st.booleans(),  # right inputs or not
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ACTIONS)
def test_random_call_sequences_never_lose_a_recorded_step(actions: list[tuple[str, bool]]) -> None:
    """A model of the manager: each accepted call queues work, "finish" completes the oldest
    queued work (apply), Remove ends everything. Whatever the order, a step once recorded keeps
    its output until Remove, no step is recorded without its prerequisite, and a repeat of a
    recorded step with its inputs returns that output."""
    record: lc.SectorRecord | None = None
    queue: list[tuple[int, lc.Effect]] = []
    outputs: dict[lc.Step, bytes] = {}
    comm = (bytes([1]) * 32, bytes([2]) * 32)
    pc2_out = common_pb2.SectorCommitments(comm_r=comm[0], comm_d=comm[1]).SerializeToString()
    for n, (action, right) in enumerate(actions):
        in_flight = [lc.InFlight(_method(e), f"w{i}") for i, (_, e) in enumerate(queue)]
        try:
            if action == "add":
                claims = lc.decide_add_piece(record, P2K, [] if right else [2032], in_flight)
                if claims:
                    record = lc.SectorRecord(MINER, NUMBER, P2K, (record.generation if record else 0) + 1)
                    outputs.clear()
                assert record is not None
                queue.append((record.generation, lc.PieceAdded((), PIECE)))
            elif action == "remove":
                record = record or lc.SectorRecord(MINER, NUMBER, P2K, 0)
                record.removed = True
                queue.clear()
                outputs.clear()
            elif action == "finish":
                if queue and record is not None:
                    generation, effect = queue.pop(0)
                    lc.apply(record, generation, effect, float(n))
            else:
                step, decision = _decide(action, right, record, in_flight, comm, outputs)
                if isinstance(decision, lc.Recorded):
                    assert decision.output == outputs[step]
                elif record is not None:
                    output = pc2_out if step is lc.Step.PRE_COMMIT_2 else f"{step.value}-{n}".encode()
                    queue.append((record.generation, lc.StepDone(step, _digest(step, right, comm), output)))
        except lc.LifecycleRefused:
            pass
        if record is not None and not record.removed:
            for step, done in record.steps.items():
                outputs.setdefault(step, done.output)
                assert outputs[step] == done.output  # never overwritten
                index = lc.STEP_ORDER.index(step)
                assert all(prev in record.steps for prev in lc.STEP_ORDER[:index])  # prerequisites first
            if record.steps:
                assert record.padded_total() == 2048


def _method(effect: lc.Effect) -> str:
    if isinstance(effect, lc.PieceAdded):
        return "AddPiece"
    assert isinstance(effect, lc.StepDone)
    return {v: k for k, v in lc.STEP_OF_METHOD.items()}[effect.step]


def _digest(step: lc.Step, right: bool, comm: tuple[bytes, bytes]) -> bytes:
    ticket = TICKET if right else bytes(32)
    if step is lc.Step.PRE_COMMIT_1:
        return lc.digest_pc1(ticket, [PIECE])
    if step is lc.Step.COMMIT_1:
        return lc.digest_c1(ticket, TICKET, [PIECE], *comm)
    return lc.digest_blob(step, b"")


def _decide(
    action: str,
    right: bool,
    record: lc.SectorRecord | None,
    in_flight: list[lc.InFlight],
    comm: tuple[bytes, bytes],
    outputs: dict[lc.Step, bytes],
) -> tuple[lc.Step, lc.Decision]:
    ticket = TICKET if right else bytes(32)
    if action == "pc1":
        return lc.Step.PRE_COMMIT_1, lc.decide_pc1(record, P2K, 2048, ticket, [PIECE], in_flight, "")
    if action == "pc2":
        return lc.Step.PRE_COMMIT_2, lc.decide_pc2(
            record, P2K, outputs.get(lc.Step.PRE_COMMIT_1, b"?") if right else b"?", in_flight, ""
        )
    if action == "c1":
        pc2 = record.steps.get(lc.Step.PRE_COMMIT_2) if record else None
        got = comm if pc2 is not None else None
        return lc.Step.COMMIT_1, lc.decide_c1(record, P2K, ticket, TICKET, [PIECE], *comm, got, in_flight, "")
    if action == "c2":
        return lc.Step.COMMIT_2, lc.decide_c2(
            record, P2K, outputs.get(lc.Step.COMMIT_1, b"?") if right else b"?", in_flight, ""
        )
    run_fin, run_move = lc.decide_finalize(record, P2K, [] if right else [(0, 127)], in_flight, [""])
    step = lc.Step.FINALIZE if run_fin else lc.Step.MOVE_STORAGE
    if not run_fin and not run_move:
        return lc.Step.MOVE_STORAGE, lc.Recorded(outputs.get(lc.Step.MOVE_STORAGE, b""))
    return step, lc.Run()
