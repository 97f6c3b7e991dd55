"""Task types the scheduler places, and the order in which queued requests are considered.

The values are the wire enum's (`sectorstorage.v1.TaskType`), so a TaskType converts to and from
protos without a table. The queue order is the reference's (`sealtasks` order, then priority,
then sector number) with PoSt ahead of everything: a Window or Winning PoSt that waits behind a
sealing backlog misses its deadline, which costs the provider far more than a late seal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


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
        return SPECS[self]

    @property
    def short(self) -> str:
        return SPECS[self].short


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


SPECS: dict[TaskType, TaskSpec] = {
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

BY_SHORT: dict[str, TaskType] = {spec.short: tt for tt, spec in SPECS.items()}

POST_TASKS = frozenset({TaskType.GENERATE_WINDOW_POST, TaskType.GENERATE_WINNING_POST})

QueueKey = tuple[int, int, int, int, int]


def queue_key(task_type: TaskType, priority: int, sector_number: int, seq: int) -> QueueKey:
    """Sort key of a queued request; smaller is considered first.

    1. queue class (Winning PoSt, Window PoSt, FIN/GET, the rest): FIN and GET jump ahead of
       sealing work regardless of priority, as in the reference;
    2. higher priority first;
    3. task order (UNS, C1, C2, PC2, PC1, AP: finishing a sector beats starting a new one);
    4. lower sector number first (older sectors finish first);
    5. arrival.
    """
    spec = SPECS[task_type]
    return (spec.queue_class, -priority, spec.order, sector_number, seq)


def parse_task_type(text: str) -> TaskType:
    """Accepts a short name (`PC1`), an enum name (`PRE_COMMIT_1`) or a reference id."""
    key = text.strip()
    if key.upper() in BY_SHORT:
        return BY_SHORT[key.upper()]
    upper = key.upper().removeprefix("TASK_TYPE_")
    if upper in TaskType.__members__:
        return TaskType[upper]
    for tt, spec in SPECS.items():
        if spec.ref_id == key:
            return tt
    raise ValueError(f"unknown task type {text!r}; use one of {', '.join(sorted(BY_SHORT))}")
