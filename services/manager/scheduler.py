"""The placement engine: puts queued requests on workers, in queue order, without overcommitting
any worker, preferring workers that hold the sector's files and then the least loaded.

It is synchronous, single-threaded plain code (the manager calls it from its event loop) and
never waits on the network: selectors are resolved before a request arrives here.

Scheduling is event-driven, and each event costs about what it changes:
- a new request is placed at once on its best fitting worker, or filed into its lanes
  (see `queue.py`). Picking "the least loaded fitting worker" of a large pool uses a heap of
  workers ranked by utilization (lazily refreshed), not a scan; a shape that fitted nowhere is
  remembered until some worker frees resources, so a burst of identical requests against a full
  fleet costs O(1) each;
- a worker that frees resources (task done, registered, enabled, grown) is offered only the heads
  of the lanes it can serve, merged in queue order; a lane whose shape stops fitting is dropped
  for the rest of that fill.
The invariant after every event: no queued request fits on any worker it accepts. That is what
the reference's full `trySched` pass establishes, at a cost independent of the queue length.

Which fitting worker wins is the assigner's one ranking key (`Scheduler._load`), used by the
preferred-worker loop, the small-pool scan and the ranking heaps alike:
- `utilization` (default): the least loaded worker (busiest of CPU, RAM, RAM+swap, GPU);
- `spread`: the least recently placed-on worker, i.e. round-robin over the fitting workers, so a
  batch lands evenly even when tasks are so light that utilization barely moves.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from services.manager.accounting import Grant, Hardware, Need, Rejection, WaitReason, WorkerCapacity
from services.manager.queue import Lane, RequestQueue, RequestState, SchedRequest
from services.manager.resources import ResourceRow, ResourceTable, Shape
from services.manager.selectors import Candidates
from services.manager.tasks import TaskType, queue_key

Anchor = tuple[str, object]
LaneKey = tuple[Shape, Anchor]
# (specialized rank, assigner key, worker id, worker version): ties go to the lowest id, as in
# the small-pool scan; entries of an older version are stale and skipped.
RankEntry = tuple[int, float, str, int]

ASSIGNERS = ("utilization", "spread")

# Pools this small are scanned directly; larger ones use the ranking heaps.
SMALL_POOL = 24

# How close each reason is to being placed, for the main reason of a waiting request.
_CLOSENESS = {
    WaitReason.NOT_CONSIDERED: 0,
    WaitReason.RESOURCES_BUSY: 1,
    WaitReason.CAP_REACHED: 2,
    WaitReason.SECTOR_FILES_ELSEWHERE: 3,
    WaitReason.INDEX_UNAVAILABLE: 3,
    WaitReason.NO_STORAGE: 4,
    WaitReason.WORKER_UNAVAILABLE: 5,
    WaitReason.INSUFFICIENT_RESOURCES: 6,
    WaitReason.TASK_TYPE_NOT_ENABLED: 7,
    WaitReason.NO_WORKERS: 8,
}


@dataclass(eq=False)
class SchedWorker:
    """A worker as the scheduler sees it."""

    id: str
    hostname: str
    hardware: Hardware
    task_types: frozenset[TaskType]
    table: ResourceTable
    capacity: WorkerCapacity
    # Enabled, not cordoned, connected.
    schedulable: bool = True
    version: int = 0
    # Placement sequence number of the last task placed here (0: never); the spread key.
    last_placed: int = 0
    assigned: dict[str, SchedRequest] = field(default_factory=dict)
    _needs: dict[Shape, Need] = field(default_factory=dict)

    def row(self, shape: Shape) -> ResourceRow:
        return self.table.row(shape)

    def need(self, shape: Shape) -> Need:
        need = self._needs.get(shape)
        if need is None:
            need = self._needs[shape] = self.capacity.need(shape, self.table.row(shape))
        return need

    def fits(self, shape: Shape) -> bool:
        return self.capacity.fits(self.need(shape))

    def check(self, shape: Shape) -> Rejection | None:
        return self.capacity.check_need(self.need(shape))


@dataclass(frozen=True)
class Diagnosis:
    """Why one queued request waits."""

    reason: WaitReason
    unsatisfiable: bool
    rejections: tuple[tuple[str, WaitReason, str], ...]


@dataclass
class SchedStats:
    placements: int = 0
    fills: int = 0
    full_passes: int = 0


AssignFn = Callable[[SchedRequest, SchedWorker], None]


class Scheduler:
    """Queue, workers and their resource accounting.

    `on_assign(request, worker)` is called synchronously for each placement, with the grant
    (threads, GPU ordinals) in `request.grant`; it must not call back into the scheduler (hand
    the work to the event loop instead).
    """

    def __init__(
        self, on_assign: AssignFn, clock: Callable[[], float] = time.monotonic, assigner: str = "utilization"
    ) -> None:
        if assigner not in ASSIGNERS:
            raise ValueError(f"unknown assigner {assigner!r}: use one of {', '.join(ASSIGNERS)}")
        self.assigner = assigner
        self._spread = assigner == "spread"
        self._placement_seq = itertools.count(1)
        self._on_assign = on_assign
        self._clock = clock
        self.workers: dict[str, SchedWorker] = {}
        self.queue = RequestQueue()
        self.assigned: dict[str, SchedRequest] = {}
        self.stats = SchedStats()
        self._seq = itertools.count()
        self._lanes: dict[LaneKey, Lane] = {}
        self._lanes_by_anchor: defaultdict[Anchor, set[LaneKey]] = defaultdict(set)
        self._pool_ids: dict[frozenset[str], int] = {}
        self._pool_members: dict[int, frozenset[str]] = {}
        self._pool_refs: Counter[int] = Counter()
        self._pools_of_worker: defaultdict[str, set[int]] = defaultdict(set)
        self._pool_seq = itertools.count(1)
        self._rankings: dict[tuple[TaskType, bool], list[RankEntry]] = {}
        # (shape, pool or None for "anywhere") -> generation at which nothing in it fitted.
        self._exhausted: dict[tuple[Shape, frozenset[str] | None], int] = {}
        self._generation = 0
        # Set when this manager hands its lead over: nothing more is placed (the next leader
        # places what is queued), while what is placed keeps its resources until it ends.
        self.frozen = False

    def freeze(self) -> None:
        """Places nothing from now on."""
        self.frozen = True

    # --- workers -----------------------------------------------------------------------------

    def upsert_worker(
        self,
        worker_id: str,
        hostname: str,
        hardware: Hardware,
        task_types: Iterable[TaskType],
        table: ResourceTable,
        schedulable: bool = True,
    ) -> SchedWorker:
        """Adds a worker or updates its description; running tasks stay accounted."""
        worker = self.workers.get(worker_id)
        if worker is None:
            worker = SchedWorker(
                worker_id, hostname, hardware, frozenset(task_types), table, WorkerCapacity(hardware), schedulable
            )
            self.workers[worker_id] = worker
        else:
            if hardware != worker.hardware:
                capacity = WorkerCapacity(hardware)
                for request in worker.assigned.values():
                    assert request.grant is not None
                    request.grant = capacity.allocate(request.shape, request.grant.row)
                worker.capacity = capacity
                worker.hardware = hardware
            worker._needs.clear()
            worker.hostname = hostname
            worker.task_types = frozenset(task_types)
            worker.table = table
            worker.schedulable = schedulable
        self._changed(worker, freed=True)
        return worker

    def set_schedulable(self, worker_id: str, schedulable: bool) -> None:
        worker = self.workers.get(worker_id)
        if worker is None or worker.schedulable == schedulable:
            return
        worker.schedulable = schedulable
        self._changed(worker, freed=schedulable)

    def remove_worker(self, worker_id: str) -> list[SchedRequest]:
        """Forgets a worker; returns the requests it held (their resources are gone with it)."""
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return []
        held = list(worker.assigned.values())
        for request in held:
            self.assigned.pop(request.id, None)
            request.state = RequestState.REMOVED
        worker.assigned.clear()
        worker.version += 1
        return held

    # --- requests ----------------------------------------------------------------------------

    def submit(self, request: SchedRequest) -> bool:
        """Queues a request; True when it was placed at once."""
        if request.id in self.queue or request.id in self.assigned:
            raise ValueError(f"request {request.id} is already known")
        task_type = request.shape[0]
        request.key = queue_key(task_type, request.priority, request.sector_number, next(self._seq))
        request.state = RequestState.QUEUED
        if not request.queued_at:
            request.queued_at = self._clock()
        if self._try_place(request):
            return True
        self.queue.add(request)
        self._file(request)
        return False

    def cancel(self, request_id: str) -> SchedRequest | None:
        """Removes a queued request; None when it is not queued (unknown or already placed)."""
        request = self.queue.discard(request_id)
        if request is not None:
            request.state = RequestState.REMOVED
        return request

    def release(self, request_id: str) -> SchedRequest | None:
        """A placed request ended: its worker gets its resources back and is offered more work."""
        request = self.assigned.pop(request_id, None)
        if request is None:
            return None
        request.state = RequestState.REMOVED
        worker = self.workers.get(request.worker_id)
        if worker is not None and worker.assigned.pop(request_id, None) is not None:
            assert request.grant is not None
            worker.capacity.release(request.grant)
            self._changed(worker, freed=True)
        return request

    def force_assign(self, request: SchedRequest, worker_id: str) -> Grant:
        """Accounts a request already running on a worker (recovery after a manager restart),
        without checking that it fits: it runs whether or not it does."""
        worker = self.workers[worker_id]
        request.key = queue_key(request.shape[0], request.priority, request.sector_number, next(self._seq))
        self.queue.discard(request.id)
        need = worker.need(request.shape)
        request.grant = worker.capacity.allocate(request.shape, need.row, need)
        request.state = RequestState.ASSIGNED
        request.worker_id = worker_id
        self.assigned[request.id] = request
        worker.assigned[request.id] = request
        self._changed(worker, freed=False)
        return request.grant

    def update_candidates(self, request_id: str, candidates: Candidates) -> bool:
        """A queued request's selector was resolved again (files moved, paths filled up, workers
        joined). True when that placed it."""
        old = self.queue.discard(request_id)
        if old is None:
            return False
        old.state = RequestState.REMOVED
        new = SchedRequest(
            id=old.id,
            shape=old.shape,
            sector_number=old.sector_number,
            priority=old.priority,
            candidates=candidates,
            queued_at=old.queued_at,
            payload=old.payload,
            key=old.key,
        )
        if self._try_place(new):
            return True
        self.queue.add(new)
        self._file(new)
        return False

    def full_pass(self) -> int:
        """Offers every queued request, in queue order, to its workers again; returns how many
        were placed. Events keep the queue settled; this is the periodic safety net (and what
        SchedDiag's force_sched runs)."""
        self.stats.full_passes += 1
        self._generation += 1
        self._exhausted.clear()
        placed = 0
        for request in self.queue.ordered():
            if request.state is RequestState.QUEUED and self._try_place(request):
                placed += 1
        return placed

    # --- placement ---------------------------------------------------------------------------

    def _try_place(self, request: SchedRequest) -> bool:
        if self.frozen:
            return False
        shape = request.shape
        task_type = shape[0]
        candidates = request.candidates
        best: SchedWorker | None = None
        best_util = math.inf
        for worker_id in candidates.preferred:
            worker = self.workers.get(worker_id)
            if worker is None or not worker.schedulable or task_type not in worker.task_types:
                continue
            if worker.fits(shape):
                util = self._load(worker)
                if util < best_util:
                    best, best_util = worker, util
        if best is not None:
            self._assign(request, best)
            return True
        if not candidates.anywhere and not candidates.pool:
            return False
        exhausted_key = (shape, None if candidates.anywhere else candidates.pool)
        if self._exhausted.get(exhausted_key) == self._generation:
            return False
        chosen = self._pick_from_pool(shape, candidates)
        if chosen is None:
            self._exhausted[exhausted_key] = self._generation
            return False
        self._assign(request, chosen)
        return True

    def _pick_from_pool(self, shape: Shape, candidates: Candidates) -> SchedWorker | None:
        task_type = shape[0]
        specialized = candidates.specialized_first
        members = None if candidates.anywhere else candidates.pool
        if members is not None and len(members) <= SMALL_POOL:
            best: SchedWorker | None = None
            best_key: tuple[int, float, str] | None = None
            for worker_id in members:
                worker = self.workers.get(worker_id)
                if worker is None or not worker.schedulable or task_type not in worker.task_types:
                    continue
                if not worker.fits(shape):
                    continue
                key = (len(worker.task_types) if specialized else 0, self._load(worker), worker_id)
                if best_key is None or key < best_key:
                    best, best_key = worker, key
            return best
        heap = self._ranking(task_type, specialized)
        skipped: list[RankEntry] = []
        chosen: SchedWorker | None = None
        while heap:
            entry = heap[0]
            worker = self.workers.get(entry[2])
            if worker is None or worker.version != entry[3]:
                heapq.heappop(heap)
                continue
            skipped.append(heapq.heappop(heap))
            if members is not None and worker.id not in members:
                continue
            if worker.fits(shape):
                chosen = worker
                break
        for entry in skipped:
            heapq.heappush(heap, entry)
        return chosen

    def _assign(self, request: SchedRequest, worker: SchedWorker) -> None:
        need = worker.need(request.shape)
        request.grant = worker.capacity.allocate(request.shape, need.row, need)
        request.state = RequestState.ASSIGNED
        request.worker_id = worker.id
        self.queue.discard(request.id)
        self.assigned[request.id] = request
        worker.assigned[request.id] = request
        worker.last_placed = next(self._placement_seq)
        self.stats.placements += 1
        self._changed(worker, freed=False)
        self._on_assign(request, worker)

    def _fill(self, worker: SchedWorker) -> None:
        """Offers a worker the requests that accept it, in queue order, while they fit."""
        if not worker.schedulable or not self.queue or self.frozen:
            return
        self.stats.fills += 1
        anchors: list[Anchor] = [("w", worker.id)]
        anchors.extend(("*", tt) for tt in worker.task_types)
        anchors.extend(("p", pid) for pid in self._pools_of_worker.get(worker.id, ()))
        heads: list[tuple[tuple[int, int, int, int, int], LaneKey]] = []
        empty: list[LaneKey] = []
        fitting: dict[Shape, bool] = {}
        task_types = worker.task_types
        for anchor in anchors:
            for lane_key in self._lanes_by_anchor.get(anchor, ()):
                shape = lane_key[0]
                ok = fitting.get(shape)
                if ok is None:
                    ok = fitting[shape] = shape[0] in task_types and worker.fits(shape)
                if not ok:
                    continue
                head = self._lanes[lane_key].peek()
                if head is None:
                    empty.append(lane_key)
                else:
                    heads.append((head.key, lane_key))
        for lane_key in empty:
            self._drop_lane(lane_key)
        heapq.heapify(heads)
        while heads:
            key, lane_key = heapq.heappop(heads)
            lane = self._lanes.get(lane_key)
            if lane is None:
                continue
            head = lane.peek()
            if head is None:
                self._drop_lane(lane_key)
                continue
            if head.key != key:
                heapq.heappush(heads, (head.key, lane_key))
                continue
            if not worker.fits(lane_key[0]):
                continue
            lane.pop()
            self._assign(head, worker)
            following = lane.peek()
            if following is None:
                self._drop_lane(lane_key)
            else:
                heapq.heappush(heads, (following.key, lane_key))

    # --- lanes, pools, rankings --------------------------------------------------------------

    def _file(self, request: SchedRequest) -> None:
        shape = request.shape
        candidates = request.candidates
        for worker_id in candidates.preferred:
            self._lane((shape, ("w", worker_id))).push(request)
        if candidates.anywhere:
            self._lane((shape, ("*", shape[0]))).push(request)
        elif candidates.pool:
            self._lane((shape, ("p", self._intern(candidates.pool)))).push(request)

    def _lane(self, key: LaneKey) -> Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane()
            anchor = key[1]
            self._lanes_by_anchor[anchor].add(key)
            if anchor[0] == "p":
                assert isinstance(anchor[1], int)
                self._pool_refs[anchor[1]] += 1
        return lane

    def _drop_lane(self, key: LaneKey) -> None:
        if self._lanes.pop(key, None) is None:
            return
        anchor = key[1]
        keys = self._lanes_by_anchor.get(anchor)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._lanes_by_anchor[anchor]
        if anchor[0] == "p":
            pid = anchor[1]
            assert isinstance(pid, int)
            self._pool_refs[pid] -= 1
            if self._pool_refs[pid] <= 0:
                del self._pool_refs[pid]
                members = self._pool_members.pop(pid)
                del self._pool_ids[members]
                for worker_id in members:
                    pools = self._pools_of_worker.get(worker_id)
                    if pools is not None:
                        pools.discard(pid)
                        if not pools:
                            del self._pools_of_worker[worker_id]

    def _intern(self, pool: frozenset[str]) -> int:
        pid = self._pool_ids.get(pool)
        if pid is None:
            pid = next(self._pool_seq)
            self._pool_ids[pool] = pid
            self._pool_members[pid] = pool
            for worker_id in pool:
                self._pools_of_worker[worker_id].add(pid)
        return pid

    def _load(self, worker: SchedWorker) -> float:
        """The assigner's ranking key among fitting workers: lower is chosen first."""
        if self._spread:
            return float(worker.last_placed)
        return worker.capacity.utilization()

    def _rank_entry(self, worker: SchedWorker, specialized: bool) -> RankEntry:
        return (len(worker.task_types) if specialized else 0, self._load(worker), worker.id, worker.version)

    def _ranking(self, task_type: TaskType, specialized: bool) -> list[RankEntry]:
        key = (task_type, specialized)
        heap = self._rankings.get(key)
        if heap is None or len(heap) > 4 * len(self.workers) + 64:
            heap = [
                self._rank_entry(w, specialized)
                for w in self.workers.values()
                if w.schedulable and task_type in w.task_types
            ]
            heapq.heapify(heap)
            self._rankings[key] = heap
        return heap

    def _changed(self, worker: SchedWorker, freed: bool) -> None:
        """A worker's utilization, state or description changed."""
        worker.version += 1
        if worker.schedulable and self._rankings:
            util = self._load(worker)
            n_types = len(worker.task_types)
            task_types = worker.task_types
            for (task_type, specialized), heap in self._rankings.items():
                if task_type in task_types:
                    heapq.heappush(heap, (n_types if specialized else 0, util, worker.id, worker.version))
        if freed:
            self._generation += 1
            if self._exhausted:
                self._exhausted.clear()
            self._fill(worker)

    # --- diagnostics -------------------------------------------------------------------------

    def diagnose(self, request: SchedRequest, with_rejections: bool = True) -> Diagnosis:
        """Why a queued request waits, per worker, and whether any worker could ever run it."""
        if not self.workers:
            return Diagnosis(WaitReason.NO_WORKERS, False, ())
        shape = request.shape
        task_type = shape[0]
        rejections: list[tuple[str, WaitReason, str]] = []
        main = WaitReason.NO_WORKERS
        ever = False
        for worker in sorted(self.workers.values(), key=lambda w: w.id):
            row = worker.row(shape)
            reason: WaitReason
            detail = ""
            static: Rejection | None = None
            if task_type not in worker.task_types:
                reason, detail = WaitReason.TASK_TYPE_NOT_ENABLED, f"{task_type.short} not enabled"
            else:
                static = worker.capacity.check_idle(shape, row)
                if static is None:
                    ever = True
                if static is not None:
                    reason, detail = static
                elif not worker.schedulable:
                    reason, detail = WaitReason.WORKER_UNAVAILABLE, "disabled, cordoned or disconnected"
                elif not request.candidates.accepts(worker.id):
                    reason = request.candidates.reason
                    detail = (
                        "no path can take the new files"
                        if reason is WaitReason.NO_STORAGE
                        else "does not hold the sector's files"
                    )
                else:
                    busy = worker.check(shape)
                    reason, detail = (
                        busy if busy is not None else (WaitReason.NOT_CONSIDERED, "fits now; placed on the next pass")
                    )
            if _CLOSENESS[reason] < _CLOSENESS[main]:
                main = reason
            if with_rejections:
                rejections.append((worker.id, reason, detail))
        return Diagnosis(main, not ever, tuple(rejections))
