"""The fleet's one vocabulary for what every service names the same way: seal proof types and
their sector sizes, task types with their short names (AP, PC1, ... as operators and the
reference write them) and how to parse them, a miner's prover id, and what manager and worker
say of a task call (its CallType, and the TaskErrorCode that decides whether it is retried). The
values are the wire enums' (`sectorstorage.v1.RegisteredSealProof`, `TaskType`, `CallType`,
`TaskErrorCode`), so they convert to and from protos without a table;
tests/unit/common/test_vocabulary.py pins them against the protos and rust_core."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


class SealProof(IntEnum):
    """Mirrors `sectorstorage.v1.RegisteredSealProof` (Filecoin's V1_1 ids)."""

    STACKED_DRG_2KIB_V1_1 = 5
    STACKED_DRG_8MIB_V1_1 = 6
    STACKED_DRG_512MIB_V1_1 = 7
    STACKED_DRG_32GIB_V1_1 = 8
    STACKED_DRG_64GIB_V1_1 = 9

    @property
    def sector_size(self) -> int:
        return SECTOR_SIZES[self]

    @property
    def label(self) -> str:
        return SIZE_LABELS[self]


SECTOR_SIZES: dict[SealProof, int] = {
    SealProof.STACKED_DRG_2KIB_V1_1: 2 * KiB,
    SealProof.STACKED_DRG_8MIB_V1_1: 8 * MiB,
    SealProof.STACKED_DRG_512MIB_V1_1: 512 * MiB,
    SealProof.STACKED_DRG_32GIB_V1_1: 32 * GiB,
    SealProof.STACKED_DRG_64GIB_V1_1: 64 * GiB,
}
SIZE_LABELS: dict[SealProof, str] = {
    SealProof.STACKED_DRG_2KIB_V1_1: "2KiB",
    SealProof.STACKED_DRG_8MIB_V1_1: "8MiB",
    SealProof.STACKED_DRG_512MIB_V1_1: "512MiB",
    SealProof.STACKED_DRG_32GIB_V1_1: "32GiB",
    SealProof.STACKED_DRG_64GIB_V1_1: "64GiB",
}
PROOF_BY_SIZE: dict[int, SealProof] = {size: proof for proof, size in SECTOR_SIZES.items()}


class TaskType(IntEnum):
    """Mirrors `sectorstorage.v1.TaskType` value for value."""

    ADD_PIECE = 1
    PRE_COMMIT_1 = 2
    PRE_COMMIT_2 = 3
    COMMIT_1 = 4
    COMMIT_2 = 5
    FINALIZE = 6
    FETCH = 7
    UNSEAL = 8
    GENERATE_WINDOW_POST = 9
    GENERATE_WINNING_POST = 10

    @property
    def spec(self) -> TaskSpec:
        return TASK_SPECS[self]

    @property
    def short(self) -> str:
        return TASK_SPECS[self].short


@dataclass(frozen=True)
class TaskSpec:
    """What the reference calls a task type: its id string, its CLI short name and its order."""

    ref_id: str
    short: str
    # Lower runs first (the reference's sealtasks order; FIN and GET are negative).
    order: int
    # Queue class: 0 Winning PoSt, 1 Window PoSt, 2 FIN/GET, 3 everything else. A lower class is
    # always considered first, whatever the priorities; within a class priority decides.
    queue_class: int


TASK_SPECS: dict[TaskType, TaskSpec] = {
    TaskType.GENERATE_WINNING_POST: TaskSpec("post/v0/winningproof", "WNP", -4, 0),
    TaskType.GENERATE_WINDOW_POST: TaskSpec("post/v0/windowproof", "WDP", -3, 1),
    TaskType.FINALIZE: TaskSpec("seal/v0/finalize", "FIN", -2, 2),
    TaskType.FETCH: TaskSpec("seal/v0/fetch", "GET", -1, 2),
    TaskType.UNSEAL: TaskSpec("seal/v0/unseal", "UNS", 1, 3),
    TaskType.COMMIT_1: TaskSpec("seal/v0/commit/1", "C1", 2, 3),
    TaskType.COMMIT_2: TaskSpec("seal/v0/commit/2", "C2", 3, 3),
    TaskType.PRE_COMMIT_2: TaskSpec("seal/v0/precommit/2", "PC2", 4, 3),
    TaskType.PRE_COMMIT_1: TaskSpec("seal/v0/precommit/1", "PC1", 5, 3),
    TaskType.ADD_PIECE: TaskSpec("seal/v0/addpiece", "AP", 6, 3),
}
TASK_BY_SHORT: dict[str, TaskType] = {spec.short: tt for tt, spec in TASK_SPECS.items()}


def parse_task_type(text: str) -> TaskType:
    """A task type from its short name (`PC1`, any case), its enum name (`PRE_COMMIT_1` or
    `TASK_TYPE_PRE_COMMIT_1`), its number, or the reference's id (`seal/v0/precommit/1`)."""
    key = text.strip()
    upper = key.upper()
    if upper in TASK_BY_SHORT:
        return TASK_BY_SHORT[upper]
    name = upper.removeprefix("TASK_TYPE_")
    if name in TaskType.__members__:
        return TaskType[name]
    if key.isdigit() and int(key) in TaskType._value2member_map_:
        return TaskType(int(key))
    for tt, spec in TASK_SPECS.items():
        if spec.ref_id == key:
            return tt
    raise ValueError(f"unknown task type {text!r}: use one of {', '.join(TASK_BY_SHORT)}")


def prover_id(miner: int) -> bytes:
    """Filecoin's prover id of a miner actor: the payload of its ID address (the actor id as an
    unsigned LEB128 varint), zero-padded to 32 bytes. Workers seal with it and the manager
    verifies with it, so both must take it from here."""
    if miner < 0:
        raise ValueError(f"miner id {miner} is negative")
    out = bytearray()
    value = miner
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            break
    return bytes(out).ljust(32, b"\0")


class CallType(IntEnum):
    """Mirrors `sectorstorage.v1.CallType`: which task RPC a call was (and so its Return RPC)."""

    UNSPECIFIED = 0
    ADD_PIECE = 1
    SEAL_PRE_COMMIT_1 = 2
    SEAL_PRE_COMMIT_2 = 3
    SEAL_COMMIT_1 = 4
    SEAL_COMMIT_2 = 5
    FINALIZE_SECTOR = 6
    RELEASE_UNSEALED = 7
    MOVE_STORAGE = 8
    UNSEAL_PIECE = 9
    FETCH = 10


class TaskErrorCode(IntEnum):
    """Mirrors `sectorstorage.v1.TaskErrorCode`: why a task failed, which decides whether the
    manager retries it."""

    UNSPECIFIED = 0
    PERMANENT = 1
    TEMPORARY = 2
    WORKER_RESTARTED = 3
    ALLOCATE_SPACE = 4
    ABORTED = 5
    TIMED_OUT = 6
    SECTOR_NOT_FOUND = 7

    @property
    def wire_name(self) -> str:
        """The name the protos (and the logs) give it: TASK_ERROR_CODE_<NAME>."""
        return f"TASK_ERROR_CODE_{self.name}"

    @property
    def temporary(self) -> bool:
        """Worth another attempt (elsewhere, or later): the failure was the worker's moment, not the request's."""
        return self in (
            TaskErrorCode.TEMPORARY,
            TaskErrorCode.WORKER_RESTARTED,
            TaskErrorCode.ALLOCATE_SPACE,
            TaskErrorCode.TIMED_OUT,
        )
