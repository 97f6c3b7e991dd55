"""Scheduling requests and the structures that keep them in queue order.

`RequestQueue` holds every waiting request by id (listings sort it on demand). The scheduler
does not walk that queue on every event: it files each request into *lanes*, one per (shape,
set of acceptable workers), each a heap in queue order. All requests in a lane need the same
resources and accept the same workers, so when a worker frees resources only the heads of the
lanes that worker can serve need a look, and a lane whose shape does not fit is skipped whole.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from services.manager.resources import Shape
from services.manager.tasks import QueueKey

if TYPE_CHECKING:
    from services.manager.accounting import Grant
    from services.manager.selectors import Candidates


_tiebreak = itertools.count()


class RequestState(Enum):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    REMOVED = "removed"


@dataclass(eq=False, slots=True)
class SchedRequest:
    """One task waiting for (or holding) a place on a worker."""

    id: str
    shape: Shape
    sector_number: int
    priority: int
    candidates: Candidates
    queued_at: float = 0.0
    # Whatever the caller attaches (the job); the scheduler never looks at it.
    payload: object = None
    key: QueueKey = (0, 0, 0, 0, 0)
    state: RequestState = RequestState.QUEUED
    worker_id: str = ""
    grant: Grant | None = None

    @property
    def queued(self) -> bool:
        return self.state is RequestState.QUEUED


@dataclass(slots=True)
class Lane:
    """Queued requests of one shape that accept the same workers, in queue order.

    A heap with lazy deletion: placed or cancelled requests stay in the heap until they reach
    its head, where `peek` drops them."""

    heap: list[tuple[QueueKey, int, SchedRequest]] = field(default_factory=list)

    def push(self, request: SchedRequest) -> None:
        # A re-filed request (new candidates) shares its key with the stale entry it replaces.
        heapq.heappush(self.heap, (request.key, next(_tiebreak), request))

    def peek(self) -> SchedRequest | None:
        heap = self.heap
        while heap:
            request = heap[0][2]
            if request.state is RequestState.QUEUED:
                return request
            heapq.heappop(heap)
        return None

    def pop(self) -> None:
        heapq.heappop(self.heap)

    def __len__(self) -> int:
        return len(self.heap)


class RequestQueue:
    """Every queued request by id."""

    def __init__(self) -> None:
        self._by_id: dict[str, SchedRequest] = {}

    def add(self, request: SchedRequest) -> None:
        if request.id in self._by_id:
            raise ValueError(f"request {request.id} is already queued")
        self._by_id[request.id] = request

    def get(self, request_id: str) -> SchedRequest | None:
        return self._by_id.get(request_id)

    def discard(self, request_id: str) -> SchedRequest | None:
        return self._by_id.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._by_id

    def ordered(self) -> list[SchedRequest]:
        """The queue in scheduling order (sorts: for listings, not for scheduling)."""
        return sorted(self._by_id.values(), key=lambda r: r.key)

    def values(self) -> list[SchedRequest]:
        return list(self._by_id.values())
