"""Task types the scheduler places, and the order in which queued requests are considered.

The values are the wire enum's (`sectorstorage.v1.TaskType`), so a TaskType converts to and from
protos without a table. The queue order is the reference's (`sealtasks` order, then priority,
then sector number) with PoSt ahead of everything: a Window or Winning PoSt that waits behind a
sealing backlog misses its deadline, which costs the provider far more than a late seal.
"""

from __future__ import annotations

from services.common.vocabulary import TASK_BY_SHORT, TASK_SPECS, TaskSpec, TaskType, parse_task_type

__all__ = ["BY_SHORT", "POST_TASKS", "SPECS", "TaskSpec", "TaskType", "parse_task_type", "queue_key"]


# The vocabulary lives in services/common/vocabulary.py; the scheduler's names for it stay here.
SPECS = TASK_SPECS
BY_SHORT = TASK_BY_SHORT

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
