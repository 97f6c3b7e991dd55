"""The queue page: every request the scheduler holds (SchedDiag), grouped by why it waits, each
with what every worker said when it did not take it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.web.model import SchedDiag
from services.web.views.fleet import Badge, state_badges
from services.web.views.format import age

# What each wait reason means, for the person reading the page.
REASONS: dict[str, str] = {
    "not-considered": "not considered by the scheduler yet (just queued, or the start-up delay)",
    "task-type-not-enabled": "no worker accepts this task type",
    "insufficient-resources": "no worker is big enough for it, even idle",
    "resources-busy": "the workers that could run it are busy",
    "cap-reached": "the workers run as many tasks of this type as their caps allow",
    "no-storage": "no path of the workers can take the new files",
    "sector-files-elsewhere": "the sector's files are on workers that cannot take it",
    "worker-unavailable": "the workers are disabled, cordoned, draining or disconnected",
    "no-workers": "no worker is registered",
    "index-unavailable": "the index does not answer: placement waits for it",
    "unspecified": "no reason given",
}


@dataclass(frozen=True)
class RejectionRow:
    worker: str
    reason: str
    detail: str


@dataclass(frozen=True)
class RequestRow:
    call_id: str
    sector: str
    task: str
    priority: int
    waiting: str
    unsatisfiable: bool
    rejections: tuple[RejectionRow, ...]


@dataclass(frozen=True)
class ReasonGroup:
    reason: str
    explanation: str
    requests: tuple[RequestRow, ...]


@dataclass(frozen=True)
class WorkerRow:
    worker: str
    badges: tuple[Badge, ...]
    assigned: int
    running: int


@dataclass(frozen=True)
class QueuePage:
    groups: tuple[ReasonGroup, ...]
    total: int
    unsatisfiable: int
    workers: tuple[WorkerRow, ...]
    awaiting_return: tuple[str, ...]
    returned_work: int


def worker_label(hostname: str, worker_id: str) -> str:
    """'host:1a2b3c4d' (hosts often run several workers), as sectorctl writes them."""
    if not worker_id:
        return "-"
    return f"{hostname}:{worker_id[:8]}" if hostname else worker_id


def build(diag: SchedDiag, now: float) -> QueuePage:
    hosts = {w.worker_id: w.hostname for w in diag.workers}
    order: list[str] = []
    grouped: dict[str, list[RequestRow]] = {}
    for r in diag.requests:
        if r.reason not in grouped:
            order.append(r.reason)
        grouped.setdefault(r.reason, []).append(
            RequestRow(
                call_id=r.call_id,
                sector=str(r.sector),
                task=r.task,
                priority=r.priority,
                waiting=age(r.queued_at, now).removesuffix(" ago"),
                unsatisfiable=r.unsatisfiable,
                rejections=tuple(
                    RejectionRow(worker_label(hosts.get(x.worker_id, ""), x.worker_id), x.reason, x.detail)
                    for x in r.rejections
                ),
            )
        )
    # The biggest group first: where most work is stuck.
    order.sort(key=lambda reason: -len(grouped[reason]))
    groups = tuple(ReasonGroup(reason, REASONS.get(reason, reason), tuple(grouped[reason])) for reason in order)
    return QueuePage(
        groups=groups,
        total=len(diag.requests),
        unsatisfiable=sum(1 for r in diag.requests if r.unsatisfiable),
        workers=_workers(diag),
        awaiting_return=diag.awaiting_return,
        returned_work=diag.returned_work,
    )


def _workers(diag: SchedDiag) -> tuple[WorkerRow, ...]:
    rows: Sequence[WorkerRow] = [
        WorkerRow(worker_label(w.hostname, w.worker_id), state_badges(w.state), w.assigned, w.running)
        for w in diag.workers
    ]
    return tuple(rows)
