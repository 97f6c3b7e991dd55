"""A call's domain values: its id, its type, how it ended (an outcome, or a TaskFailure with its
code) and the result the call store keeps until the manager has it. The enums are the fleet's
(services/common/vocabulary.py: CallType, TaskErrorCode as ErrorCode), which mirror the wire's
value for value, so messages.py converts them without a table; nothing here knows a message."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.vocabulary import CallType as CallType
from services.common.vocabulary import TaskType


def task_type_name(task_type: int) -> str:
    """A task type's wire name (TASK_TYPE_PRE_COMMIT_1), as the worker's logs and errors give it;
    ValueError for an unknown value."""
    return f"TASK_TYPE_{TaskType(task_type).name}"


class TaskFailure(Exception):
    """A task's failure as the manager gets it: a TaskErrorCode value and a message for people."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CallId:
    """A call's id: the sector it works on and a UUID. Not checked here (an AbortCall or an
    acknowledgement may name any call); convert.py checks the ids of new calls."""

    miner: int
    number: int
    id: str

    @property
    def key(self) -> str:
        """The reference's string form `<miner>-<number>-<uuid>`."""
        return f"{self.miner}-{self.number}-{self.id}"

    @classmethod
    def parse_key(cls, key: str) -> CallId:
        miner, number, uuid_ = key.split("-", 2)
        return cls(int(miner), int(number), uuid_)


@dataclass(frozen=True)
class AddedPiece:
    """ADD_PIECE's outcome: the piece written (padded size, commP and its CID)."""

    size: int
    commp: bytes
    piece_cid: str


@dataclass(frozen=True)
class Commitments:
    """SEAL_PRE_COMMIT_2's outcome: CommD and CommR, and each as a CID."""

    comm_d: bytes
    comm_r: bytes
    unsealed_cid: str
    sealed_cid: str


# A successful call's outcome: the name of its StoredCallResult field and its value (None for
# `done`, bytes for the phase outputs and the proof).
OutcomeValue = AddedPiece | Commitments | bytes | None
Outcome = tuple[str, OutcomeValue]
DONE: Outcome = ("done", None)


@dataclass(frozen=True)
class CallResult:
    """A finished call as the call store keeps it and the manager gets it back. Times are Unix
    nanoseconds (None: not recorded); `outcome` is None only in a record that has none (it is
    dropped as unreturnable)."""

    call_id: CallId
    call_type: int
    outcome: Outcome | TaskFailure | None
    started_ns: int | None = None
    finished_ns: int | None = None
