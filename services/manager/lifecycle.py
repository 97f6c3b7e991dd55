"""The sector lifecycle: one durable record per sector that every sealing call checks before
anything is queued, so that the API is safe for any caller in any order.

    (none) --AddPiece, no existing pieces--> PIECES --pieces fill the sector, PC1--> PC1_DONE
    --PC2--> PC2_DONE --C1--> C1_DONE --C2--> C2_DONE --Finalize--> FINALIZED
    any state --Remove (ADMIN)--> REMOVED --AddPiece, no existing pieces--> PIECES (generation+1)

The rules (`decide_*` below) are plain functions over a `SectorRecord`:
- a step already done with the same inputs answers its recorded output (no re-run, no file
  touched); the same step with other inputs is refused (a sealed replica is never re-made over
  by accident: Remove it first);
- a step whose prerequisite is missing is refused, saying which state the sector is in and what
  the caller must do;
- the first AddPiece claims the sector for one pipeline: a second pipeline on the same number
  is refused while the first one lives;
- every work carries the sector's generation; the claim after a Remove starts a new one, and
  work of an older generation is dropped instead of run.

Outcomes are recorded by the store in the transaction that stores the work's outcome
(`effect_of`), so a crash can never leave a finished step unrecorded or recorded twice.
This module knows nothing of gRPC: refusals are `LifecycleRefused` with a `Refusal` kind that
the sealing layer maps to a status code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class Step(StrEnum):
    """A recorded sealing step (AddPiece is recorded as the sector's piece list instead)."""

    PRE_COMMIT_1 = "pc1"
    PRE_COMMIT_2 = "pc2"
    COMMIT_1 = "c1"
    COMMIT_2 = "c2"
    # FinalizeSector's first task: the cache cleared, unsealed data not kept freed.
    FINALIZE = "finalize"
    # FinalizeSector's second task: the files moved to long-term storage.
    MOVE_STORAGE = "move"


# The steps in pipeline order; each one's prerequisite is the one before it.
STEP_ORDER: tuple[Step, ...] = (
    Step.PRE_COMMIT_1,
    Step.PRE_COMMIT_2,
    Step.COMMIT_1,
    Step.COMMIT_2,
    Step.FINALIZE,
    Step.MOVE_STORAGE,
)

# The manager method whose successful work records each step.
STEP_OF_METHOD: dict[str, Step] = {
    "SealPreCommit1": Step.PRE_COMMIT_1,
    "SealPreCommit2": Step.PRE_COMMIT_2,
    "SealCommit1": Step.COMMIT_1,
    "SealCommit2": Step.COMMIT_2,
    "FinalizeSector": Step.FINALIZE,
    "MoveStorage": Step.MOVE_STORAGE,
}


class SectorState(IntEnum):
    """Mirrors `sectorstorage.v1.SectorLifecycleState` (manager.proto)."""

    UNSPECIFIED = 0
    PIECES = 1
    PRE_COMMIT_1_DONE = 2
    PRE_COMMIT_2_DONE = 3
    COMMIT_1_DONE = 4
    COMMIT_2_DONE = 5
    FINALIZED = 6
    REMOVED = 7
    FAILED = 8


_STATE_AFTER: dict[Step, SectorState] = {
    Step.PRE_COMMIT_1: SectorState.PRE_COMMIT_1_DONE,
    Step.PRE_COMMIT_2: SectorState.PRE_COMMIT_2_DONE,
    Step.COMMIT_1: SectorState.COMMIT_1_DONE,
    Step.COMMIT_2: SectorState.COMMIT_2_DONE,
    Step.FINALIZE: SectorState.COMMIT_2_DONE,
    Step.MOVE_STORAGE: SectorState.FINALIZED,
}


class Refusal(StrEnum):
    """Why a call is refused; the sealing layer maps each to a gRPC status."""

    # The sector is not in a state that accepts this call (FAILED_PRECONDITION).
    PRECONDITION = "precondition"
    # Another pipeline owns the sector number (ALREADY_EXISTS).
    CLAIMED = "claimed"
    # A conflicting call of the same sector is in flight (ABORTED: retry once it ended).
    CONFLICT = "conflict"


class LifecycleRefused(Exception):
    def __init__(self, kind: Refusal, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class PieceRef:
    """A piece of the sector as AddPiece wrote it: padded size and commP."""

    size: int
    commp: bytes


@dataclass(frozen=True)
class StepRecord:
    step: Step
    # SHA-256 over the step's inputs (`digest_*`): a repeat with other inputs is refused.
    input_digest: bytes
    # The step's result as the work stored it (phase-1 output, commitments, proof...).
    output: bytes
    done_at: float


@dataclass
class SectorRecord:
    miner: int
    number: int
    proof_type: int
    generation: int
    removed: bool = False
    pieces: tuple[PieceRef, ...] = ()
    steps: dict[Step, StepRecord] = field(default_factory=dict)
    # The last permanent failure of a step of this generation (cleared when a step succeeds).
    last_error: str = ""
    last_error_step: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def name(self) -> str:
        return sector_name(self.miner, self.number)

    @property
    def state(self) -> SectorState:
        if self.removed:
            return SectorState.REMOVED
        if self.last_error:
            return SectorState.FAILED
        done = self.last_step()
        return _STATE_AFTER[done] if done is not None else SectorState.PIECES

    def last_step(self) -> Step | None:
        for step in reversed(STEP_ORDER):
            if step in self.steps:
                return step
        return None

    def padded_total(self) -> int:
        return sum(p.size for p in self.pieces)


def sector_name(miner: int, number: int) -> str:
    return f"s-t0{miner}-{number}"


# --- input digests ---------------------------------------------------------------------------


def _digest(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def pieces_bytes(pieces: Iterable[PieceRef]) -> bytes:
    return b"".join(p.size.to_bytes(8, "big") + p.commp for p in pieces)


def digest_pc1(ticket: bytes, pieces: Sequence[PieceRef]) -> bytes:
    return _digest(b"pc1", ticket, pieces_bytes(pieces))


def digest_blob(step: Step, blob: bytes) -> bytes:
    """PC2 and C2 take the previous step's opaque output: their input is that output."""
    return _digest(step.value.encode(), blob)


def digest_c1(ticket: bytes, seed: bytes, pieces: Sequence[PieceRef], comm_r: bytes, comm_d: bytes) -> bytes:
    return _digest(b"c1", ticket, seed, pieces_bytes(pieces), comm_r, comm_d)


def digest_finalize(keep_unsealed: Sequence[tuple[int, int]]) -> bytes:
    return _digest(b"finalize", b"".join(o.to_bytes(8, "big") + s.to_bytes(8, "big") for o, s in keep_unsealed))


# --- what a finished work records ------------------------------------------------------------


@dataclass(frozen=True)
class PieceAdded:
    """A successful AddPiece: the piece joins the sector's list if it was added at the end
    of the pieces recorded when the work was asked for."""

    existing_sizes: tuple[int, ...]
    piece: PieceRef


@dataclass(frozen=True)
class StepDone:
    step: Step
    input_digest: bytes
    output: bytes


@dataclass(frozen=True)
class StepFailed:
    step: str
    message: str


Effect = PieceAdded | StepDone | StepFailed


def apply(record: SectorRecord, generation: int, effect: Effect, now: float) -> bool:
    """Applies a finished work's effect to the sector's record; False (nothing changes) when the
    work belongs to another generation or the sector was removed since."""
    if record.removed or record.generation != generation:
        return False
    if isinstance(effect, PieceAdded):
        padded = tuple(_padded(s) for s in effect.existing_sizes)
        if tuple(p.size for p in record.pieces) != padded or record.steps:
            return False
        record.pieces = record.pieces + (effect.piece,)
        record.last_error = record.last_error_step = ""
    elif isinstance(effect, StepDone):
        if effect.step in record.steps:
            return False
        record.steps[effect.step] = StepRecord(effect.step, effect.input_digest, effect.output, now)
        record.last_error = record.last_error_step = ""
    else:
        record.last_error = effect.message
        record.last_error_step = effect.step
    record.updated_at = now
    return True


def _padded(unpadded: int) -> int:
    return unpadded // 127 * 128


# --- what a call may do ----------------------------------------------------------------------


@dataclass(frozen=True)
class InFlight:
    """A live work of the sector's current generation (queued or running)."""

    method: str
    work_id: str


@dataclass(frozen=True)
class Run:
    """Schedule the work (or attach to the identical one in flight)."""


@dataclass(frozen=True)
class Recorded:
    """The step was done with these inputs: answer its recorded output."""

    output: bytes


Decision = Run | Recorded


def _refuse(
    record: SectorRecord | None, what: str, todo: str, kind: Refusal = Refusal.PRECONDITION
) -> LifecycleRefused:
    if record is None:
        return LifecycleRefused(kind, f"{what}: the sector has no pieces (no AddPiece was recorded for it); {todo}")
    return LifecycleRefused(
        kind, f"{what}: {record.name} is {record.state.name} (generation {record.generation}); {todo}"
    )


def _check_proof(record: SectorRecord, proof_type: int, what: str) -> None:
    if record.proof_type != proof_type:
        raise LifecycleRefused(
            Refusal.PRECONDITION,
            f"{what}: {record.name} is being sealed with proof type {record.proof_type}, not {proof_type}; "
            "send the sector's own proof type",
        )


def _live(record: SectorRecord | None, what: str) -> SectorRecord:
    if record is None:
        raise _refuse(None, what, "start with AddPiece (existing_piece_sizes empty)")
    if record.removed:
        raise _refuse(record, what, "it was removed: start again with AddPiece (existing_piece_sizes empty)")
    return record


def added_piece(record: SectorRecord | None, existing_sizes: Sequence[int], piece_size: int) -> PieceRef | None:
    """The recorded piece a repeated AddPiece would be (its existing sizes are a prefix of the
    recorded pieces, and the next recorded piece has its size), or None. A client whose AddPiece
    was cut (a manager died after the piece was written) sends it again; if the bytes are the
    same (Sealing compares their commP) it gets that piece back instead of a refusal."""
    if record is None or record.removed:
        return None
    recorded = record.pieces
    asked = tuple(_padded(s) for s in existing_sizes)
    if len(recorded) <= len(asked) or tuple(p.size for p in recorded[: len(asked)]) != asked:
        return None
    following = recorded[len(asked)]
    return following if following.size == _padded(piece_size) else None


def decide_add_piece(
    record: SectorRecord | None, proof_type: int, existing_sizes: Sequence[int], in_flight: Sequence[InFlight]
) -> bool:
    """Whether an AddPiece may run; True when it claims the sector (a new generation starts)."""
    what = "AddPiece"
    fresh = record is None or record.removed
    if fresh:
        if existing_sizes:
            raise _refuse(record, what, "the sector holds no pieces: send existing_piece_sizes empty to start it")
        return True
    assert record is not None
    _check_proof(record, proof_type, what)
    if any(w.method == "AddPiece" for w in in_flight):
        # ABORTED, not ALREADY_EXISTS: this may be the same AddPiece sent again after its
        # manager died (its work is still being cleared up); retrying tells them apart.
        raise LifecycleRefused(
            Refusal.CONFLICT,
            f"{what}: another AddPiece of {record.name} is in progress; one piece is added at a time "
            "(wait for it and send its size in existing_piece_sizes, or retry the same AddPiece)",
        )
    if record.steps or any(w.method != "AddPiece" for w in in_flight):
        raise _refuse(record, what, "pieces can only be added before SealPreCommit1 (Remove the sector to start over)")
    recorded = tuple(p.size for p in record.pieces)
    asked = tuple(_padded(s) for s in existing_sizes)
    if asked != recorded:
        if not existing_sizes:
            raise _refuse(
                record,
                what,
                f"another pipeline already added {len(recorded)} piece(s) to this sector number: "
                "seal a different sector number, or Remove this one first",
                Refusal.CLAIMED,
            )
        raise _refuse(
            record,
            what,
            f"existing_piece_sizes must list the {len(recorded)} piece(s) recorded for it (padded sizes "
            f"{list(recorded)}); SectorStatus shows them",
        )
    return False


def decide_pc1(
    record: SectorRecord | None,
    proof_type: int,
    sector_size: int,
    ticket: bytes,
    pieces: Sequence[PieceRef],
    in_flight: Sequence[InFlight],
    work_id: str,
) -> Decision:
    what = "SealPreCommit1"
    record = _live(record, what)
    _check_proof(record, proof_type, what)
    digest = digest_pc1(ticket, pieces)
    done = record.steps.get(Step.PRE_COMMIT_1)
    if done is not None:
        if done.input_digest == digest:
            return Recorded(done.output)
        raise _refuse(
            record,
            what,
            "it was pre-committed with another ticket or other pieces; "
            "send the same ones (or Remove the sector to seal it again)",
        )
    _no_other_work(record, what, in_flight, work_id)
    if tuple(pieces) != record.pieces:
        raise _refuse(
            record,
            what,
            f"pieces must be exactly the {len(record.pieces)} piece(s) AddPiece recorded for it, in order "
            "(sizes and commP as AddPiece returned them; SectorStatus lists them)",
        )
    if record.padded_total() != sector_size:
        raise _refuse(
            record, what, f"its pieces fill {record.padded_total()} of {sector_size} bytes: add pieces until it is full"
        )
    return Run()


def decide_pc2(
    record: SectorRecord | None, proof_type: int, pc1_output: bytes, in_flight: Sequence[InFlight], work_id: str
) -> Decision:
    what = "SealPreCommit2"
    record = _live(record, what)
    _check_proof(record, proof_type, what)
    return _decide_blob_step(
        record, what, Step.PRE_COMMIT_2, Step.PRE_COMMIT_1, pc1_output, "pre_commit1_output", in_flight, work_id
    )


def decide_c2(
    record: SectorRecord | None, proof_type: int, c1_output: bytes, in_flight: Sequence[InFlight], work_id: str
) -> Decision:
    what = "SealCommit2"
    record = _live(record, what)
    _check_proof(record, proof_type, what)
    return _decide_blob_step(
        record, what, Step.COMMIT_2, Step.COMMIT_1, c1_output, "commit1_output", in_flight, work_id
    )


def _decide_blob_step(
    record: SectorRecord,
    what: str,
    step: Step,
    previous: Step,
    blob: bytes,
    field_name: str,
    in_flight: Sequence[InFlight],
    work_id: str,
) -> Decision:
    before = record.steps.get(previous)
    if before is None:
        raise _refuse(record, what, f"it needs {previous.name} first")
    if blob != before.output:
        raise _refuse(
            record,
            what,
            f"{field_name} is not the output {previous.name} recorded for this sector "
            f"({len(blob)} bytes sent, {len(before.output)} recorded): send it unchanged",
        )
    done = record.steps.get(step)
    if done is not None:
        return Recorded(done.output)
    _no_other_work(record, what, in_flight, work_id)
    return Run()


def decide_c1(
    record: SectorRecord | None,
    proof_type: int,
    ticket: bytes,
    seed: bytes,
    pieces: Sequence[PieceRef],
    comm_r: bytes,
    comm_d: bytes,
    pc2_comm: tuple[bytes, bytes] | None,
    in_flight: Sequence[InFlight],
    work_id: str,
) -> Decision:
    """`pc2_comm` is (comm_r, comm_d) decoded from the recorded PC2 output."""
    what = "SealCommit1"
    record = _live(record, what)
    _check_proof(record, proof_type, what)
    if Step.PRE_COMMIT_2 not in record.steps or pc2_comm is None:
        raise _refuse(record, what, "it needs PRE_COMMIT_2 first")
    pc1 = record.steps[Step.PRE_COMMIT_1]
    if digest_pc1(ticket, pieces) != pc1.input_digest:
        raise _refuse(record, what, "ticket and pieces must be the ones SealPreCommit1 used")
    if (comm_r, comm_d) != pc2_comm:
        raise _refuse(record, what, "comm_r and comm_d must be the ones SealPreCommit2 returned (SectorCommitments)")
    digest = digest_c1(ticket, seed, pieces, comm_r, comm_d)
    done = record.steps.get(Step.COMMIT_1)
    if done is not None:
        if done.input_digest == digest:
            return Recorded(done.output)
        raise _refuse(record, what, "it was committed with another seed (Remove the sector to seal it again)")
    _no_other_work(record, what, in_flight, work_id)
    return Run()


def decide_finalize(
    record: SectorRecord | None,
    proof_type: int,
    keep_unsealed: Sequence[tuple[int, int]],
    in_flight: Sequence[InFlight],
    work_ids: Sequence[str],
) -> tuple[bool, bool]:
    """(run the finalize task, run the move) — both False: finalized already with these inputs."""
    what = "FinalizeSector"
    record = _live(record, what)
    _check_proof(record, proof_type, what)
    if Step.COMMIT_2 not in record.steps:
        raise _refuse(record, what, "it needs COMMIT_2 first (finalizing clears the cache that commit needs)")
    digest = digest_finalize(keep_unsealed)
    fin = record.steps.get(Step.FINALIZE)
    if fin is not None and fin.input_digest != digest:
        raise _refuse(
            record, what, "it was finalized with other keep_unsealed ranges; use ReleaseUnsealed to free more"
        )
    _no_other_work(record, what, in_flight, *work_ids)
    return fin is None, Step.MOVE_STORAGE not in record.steps


def require_sealed(record: SectorRecord | None, proof_type: int, what: str) -> None:
    """Calls that need the sealed replica to stay whole (ReleaseUnsealed: the unsealed copy is
    the only copy of the data before PC2). Sectors sealed before the lifecycle existed have no
    record and are let through."""
    if record is None:
        return
    record = _live(record, what)
    _check_proof(record, proof_type, what)
    if Step.PRE_COMMIT_2 not in record.steps:
        raise _refuse(record, what, "before SealPreCommit2 the unsealed data is the sector's only copy")


def _no_other_work(record: SectorRecord, what: str, in_flight: Sequence[InFlight], *work_ids: str) -> None:
    others = [w for w in in_flight if w.work_id not in work_ids]
    if others:
        busy = ", ".join(sorted({w.method for w in others}))
        raise LifecycleRefused(
            Refusal.CONFLICT,
            f"{what}: {record.name} has other work in progress ({busy}, generation {record.generation}); "
            "wait for it to finish (SectorStatus shows it) and send the call again",
        )
