"""Builders shared by the manager's unit tests: workers and requests for the scheduler core."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from services.manager.accounting import Hardware
from services.manager.queue import SchedRequest
from services.manager.resources import GiB, ResourceTable, SealProof
from services.manager.scheduler import Scheduler, SchedWorker
from services.manager.selectors import ANYWHERE, Candidates
from services.manager.tasks import TaskType

ALL_TYPES = frozenset(TaskType)
P2K = SealProof.STACKED_DRG_2KIB_V1_1
P32G = SealProof.STACKED_DRG_32GIB_V1_1
_ids = itertools.count(1)

# The reference's worked example (§3.4): 128 GiB RAM, 200 GiB swap, 2 GiB reserved, 32 CPUs, 1 GPU.
DECENT = Hardware(mem_physical=128 * GiB, mem_swap=200 * GiB, mem_reserved=2 * GiB, cpus=32, gpu_ordinals=(0,))


def request(
    task_type: TaskType,
    proof: SealProof = P32G,
    number: int = 0,
    priority: int = 0,
    candidates: Candidates = ANYWHERE,
    rid: str | None = None,
) -> SchedRequest:
    return SchedRequest(
        id=rid or f"r{next(_ids)}",
        shape=(task_type, proof),
        sector_number=number,
        priority=priority,
        candidates=candidates,
    )


class Recorder:
    """Collects placements in order."""

    def __init__(self) -> None:
        self.placed: list[tuple[SchedRequest, SchedWorker]] = []

    def __call__(self, req: SchedRequest, worker: SchedWorker) -> None:
        self.placed.append((req, worker))

    def names(self) -> list[str]:
        return [f"{r.shape[0].short}@{w.id}" for r, w in self.placed]


def add_worker(
    sched: Scheduler,
    worker_id: str,
    hardware: Hardware = DECENT,
    task_types: Iterable[TaskType] = ALL_TYPES,
    table: ResourceTable | None = None,
    schedulable: bool = True,
) -> SchedWorker:
    return sched.upsert_worker(worker_id, worker_id, hardware, task_types, table or ResourceTable(), schedulable)
