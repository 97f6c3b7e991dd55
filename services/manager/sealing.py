"""The sealing operations: for each client call, which task(s) it becomes, on which workers they
may run (selector), and what comes back (reference §1.5). A task that must run where its inputs
are not gets a FETCH task first on the worker that will run it (`_fetch_stage`).

| call            | task(s)                    | selector                                                      |
|-----------------|----------------------------|---------------------------------------------------------------|
| AddPiece        | AP                         | first piece: alloc(unsealed, sealing); else existing(unsealed) |
| SealPreCommit1  | PC1                        | alloc(sealed+cache, sealing), holders of the unsealed first    |
| SealPreCommit2  | (GET), PC2                 | existing(cache); no holder can run PC2: GET then PC2 there     |
| SealCommit1     | C1                         | existing(sealed+cache), never fetched                          |
| SealCommit2     | C2                         | task (needs no files; specialized workers first)               |
| FinalizeSector  | FIN, then GET (MoveStorage)| existing(sealed+cache); alloc(types, storage), holders first   |
| ReleaseUnsealed | FIN on each holder         | that worker                                                    |
| UnsealPiece     | (GET), UNS (whole sector)  | existing(sealed+cache); no holder can run UNS: GET, then UNS   |
| ReadPiece       | (UNS when needed), read    | a worker holding the range unsealed                            |
| Remove          | WorkerService.Remove       | every worker holding a file                                    |

The calls take domain values (domain.py; the servicer decodes requests through convert.py) and
raise the fleet's domain errors; the worker requests a work runs, and every call to a worker, are
worker_link.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import rust_core
from services.common.cid import CidError, parse_unsealed_cid
from services.common.errors import (
    Aborted,
    AlreadyExists,
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    NotFound,
    Unavailable,
)
from services.manager import lifecycle, worker_link
from services.manager.calls import BY_METHOD, CallSpec
from services.manager.calltracker import LiveWork
from services.manager.domain import (
    AddPieceInput,
    ByteRange,
    Commit1Input,
    Commit2Input,
    FinalizeInput,
    PieceChunk,
    PieceStream,
    PreCommit1Input,
    PreCommit2Input,
    ReadPieceInput,
    ReleaseUnsealedInput,
    RemovedFile,
    SectorId,
    SectorRef,
    UnsealInput,
)
from services.manager.index_client import FileType, PathType, StorageIndex, is_unavailable
from services.manager.jobs import JobRunner
from services.manager.pipelines import Pipelines
from services.manager.selectors import (
    AllocSelector,
    ExistingSelector,
    FixedSelector,
    SectorKey,
    Selector,
    TaskSelector,
)
from services.manager.store import ManagerStore, SectorCommitmentsRecord
from services.manager.tasks import TaskType
from services.manager.validation import bytes32, failure_of, invalid, piece_layout, unpadded_capacity
from services.manager.worker_link import DispatchFailed, FetchMode, PieceRelay, WorkerRequest
from services.manager.workers import WorkerConnection

log = logging.getLogger(__name__)

SEALED_CACHE = frozenset({FileType.SEALED, FileType.CACHE})
UNSEALED = frozenset({FileType.UNSEALED})
_RPC_TIMEOUT_S = 30.0


def _pc2_commitments(record: lifecycle.SectorRecord | None) -> tuple[bytes, bytes] | None:
    """(comm_r, comm_d) as the sector's recorded SealPreCommit2 returned them."""
    done = record.steps.get(lifecycle.Step.PRE_COMMIT_2) if record is not None else None
    if done is None:
        return None
    return worker_link.commitments_of(done.output)


def _key(ref: SectorRef) -> SectorKey:
    return SectorKey(ref.miner, ref.number, ref.proof.sector_size)


class Deadline:
    """The caller's deadline (monotonic), for calls made of several steps."""

    def __init__(self, seconds: float | None) -> None:
        self.at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())


_REFUSAL_ERROR: dict[lifecycle.Refusal, type[DomainError]] = {
    lifecycle.Refusal.PRECONDITION: FailedPrecondition,
    lifecycle.Refusal.CLAIMED: AlreadyExists,
    lifecycle.Refusal.CONFLICT: Aborted,
}


def refused(exc: lifecycle.LifecycleRefused) -> DomainError:
    """The caller's error for a step the sector's lifecycle refuses (a precondition not met, the
    sector claimed by another caller, or a conflicting call in flight)."""
    return _REFUSAL_ERROR[exc.kind](exc.message)


# Decides a step from the sector's record, its work in flight and the work id the call maps to.
Decide = Callable[[lifecycle.SectorRecord | None, list[lifecycle.InFlight], str], lifecycle.Decision]


class Sealing:
    def __init__(
        self, runner: JobRunner, index: StorageIndex | None, token: Callable[[], str], store: ManagerStore
    ) -> None:
        self.runner = runner
        self.index = index
        # The sector lifecycle records, and where SealPreCommit2 results are remembered as the
        # sector's commitments (the store records both with the work's outcome).
        self.store = store
        self.pipelines = Pipelines(store, runner.tracker)
        runner.work_guard = self.pipelines.unwanted
        self._token = token
        self._peers: dict[str, WorkerConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- running one task --------------------------------------------------------------------

    async def run(
        self,
        spec: CallSpec,
        sector: SectorRef,
        request: WorkerRequest,
        priority: int,
        selector: Selector,
        deadline: Deadline,
        dedup: bool = True,
        dispatch: Any = None,
        key_extra: bytes = b"",
        generation: int = 0,
    ) -> Any:
        """Runs (or attaches to) one work and returns its decoded result. `request` is the worker
        request worker_link built (the work's params)."""
        live, _ = await self.runner.open(
            spec,
            sector,
            request,
            priority,
            selector,
            dedup=dedup,
            dispatch=dispatch,
            key_extra=key_extra,
            generation=generation,
        )
        return await self.wait(spec, sector, live, deadline)

    async def step(
        self,
        spec: CallSpec,
        sector: SectorRef,
        request: WorkerRequest,
        priority: int,
        selector: Selector,
        deadline: Deadline,
        decide: Decide,
        key_extra: bytes = b"",
    ) -> Any:
        """A lifecycle step: checks the sector's record and queues the work as one step (under
        the sector's lock), then waits for it outside the lock. A step done before with these
        inputs answers its recorded result; a refused one raises before anything is queued."""
        miner, number = sector.miner, sector.number
        async with self.pipelines.locked(miner, number):
            record = await self.store.sector(miner, number)
            generation = record.generation if record is not None else 0
            work_id = self.runner.tracker.work_id_of(
                spec.method, worker_link.params(spec, request), key_extra, generation
            )
            try:
                decision = decide(record, self.pipelines.in_flight(record, miner, number), work_id)
            except lifecycle.LifecycleRefused as exc:
                raise refused(exc) from None
            if isinstance(decision, lifecycle.Recorded):
                recorded: lifecycle.Recorded | None = decision
                finished = self.runner.tracker.works.get(work_id)
            else:
                recorded, finished = None, None
                live, _ = await self.runner.open(
                    spec, sector, request, priority, selector, key_extra=key_extra, generation=generation
                )
        if recorded is None:
            return await self.wait(spec, sector, live, deadline)
        if finished is not None:
            # The step's work finished with nobody waiting (its caller was cut by a restart) and
            # this caller got its result from the record: it is delivered, not left live
            # (SealingJobs would show it forever). Its completion writes the record before it
            # marks the work done, so a caller can read the record inside that moment: wait it
            # out (outside the sector's lock) rather than leave the work undelivered.
            left = deadline.remaining()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.done.wait(), timeout=5.0 if left is None else min(5.0, left))
            if finished.done.is_set():
                await self.runner.tracker.deliver(finished)
        return worker_link.decode_result(spec, recorded.output)

    async def wait(self, spec: CallSpec, sector: SectorRef, live: LiveWork, deadline: Deadline) -> Any:
        """The work's decoded result (the worker's result message, which the reply carries as
        is); the caller's error when it failed for good."""
        try:
            outcome = await self.runner.tracker.wait(live, deadline.remaining())
        except TimeoutError:
            raise DeadlineExceeded(
                f"{spec.method} of {sector.name} is still in progress (work {live.work_id}); it goes on: "
                "repeat the same request to wait for (or collect) its result",
            ) from None
        if not outcome.ok:
            error = live.extra.get("dispatch_error")
            if isinstance(error, DispatchFailed) and error.caller_error is not None:
                raise error.caller_error(str(error))
            raise failure_of(outcome)
        return worker_link.decode_result(spec, outcome.result)

    # --- sealing calls -----------------------------------------------------------------------

    async def add_piece(self, inp: AddPieceInput, chunks: AsyncIterator[PieceChunk], deadline: Deadline) -> Any:
        """Writes a piece into the sector; returns the worker's PieceInfo. `chunks` are relayed
        to the worker as they come (at most one held here)."""
        sector = inp.sector
        piece_layout(list(inp.existing_piece_sizes), inp.piece_size, sector.proof)
        worker_header = worker_link.add_piece_header(inp)
        key = _key(sector)
        selector: Selector = (
            ExistingSelector(key, UNSEALED, allow_fetch=False)
            if inp.existing_piece_sizes
            else AllocSelector(key, UNSEALED, PathType.SEALING)
        )
        miner, number = sector.miner, sector.number
        spec = BY_METHOD["AddPiece"]
        replayed = await self._replayed_piece(inp, chunks, await self.store.sector(miner, number))
        if replayed is not None:
            return worker_link.decode_result(spec, replayed)
        relay = PieceRelay(chunks, worker_header, inp.piece_size)
        late: lifecycle.LifecycleRefused | None = None
        async with self.pipelines.locked(miner, number):
            record = await self.store.sector(miner, number)
            try:
                claims = lifecycle.decide_add_piece(
                    record,
                    int(sector.proof),
                    list(inp.existing_piece_sizes),
                    self.pipelines.in_flight(record, miner, number),
                )
                if claims:
                    record = await self.store.claim_sector(
                        miner, number, int(sector.proof), record.generation if record else 0
                    )
            except lifecycle.LifecycleRefused as exc:
                late = exc
            if late is None:
                assert record is not None
                live, _ = await self.runner.open(
                    spec,
                    sector,
                    worker_header,
                    inp.priority,
                    selector,
                    dedup=False,
                    dispatch=relay,
                    generation=record.generation,
                )
        if late is not None:
            # The first look found no piece, but one was recorded meanwhile (this AddPiece sent
            # again while its first try finished): the same bytes answer it.
            again = await self._replayed_piece(inp, chunks, record)
            if again is not None:
                return worker_link.decode_result(spec, again)
            raise refused(late) from None
        return await self.wait(spec, sector, live, deadline)

    async def _replayed_piece(
        self, inp: AddPieceInput, chunks: AsyncIterator[PieceChunk], record: lifecycle.SectorRecord | None
    ) -> bytes | None:
        """The stored result to answer when this AddPiece repeats one the record holds (same
        position and size, and its bytes have the recorded commP), else None. Reads the stream
        only when a recorded piece could match (then it is used up either way: a mismatch is
        refused by the lifecycle, which never relays it)."""
        earlier = lifecycle.added_piece(record, inp.existing_piece_sizes, inp.piece_size)
        if earlier is None:
            return None
        commp = await _commp_of(chunks, inp.piece_size, earlier.size)
        if commp != earlier.commp:
            return None
        log.info("a repeated AddPiece answered with its recorded piece", extra={"sector": inp.sector.name})
        return worker_link.piece_result(earlier.size, earlier.commp)

    async def seal_pre_commit1(self, inp: PreCommit1Input, deadline: Deadline) -> bytes:
        sector = inp.sector
        worker_req = worker_link.pre_commit1(inp)
        selector = AllocSelector(_key(sector), SEALED_CACHE, PathType.SEALING, prefer_holders_of=UNSEALED)

        def decide(
            record: lifecycle.SectorRecord | None, busy: list[lifecycle.InFlight], work_id: str
        ) -> lifecycle.Decision:
            return lifecycle.decide_pc1(
                record, int(sector.proof), sector.proof.sector_size, inp.ticket, inp.pieces, busy, work_id
            )

        out: bytes = await self.step(
            BY_METHOD["SealPreCommit1"], sector, worker_req, inp.priority, selector, deadline, decide
        )
        return out

    async def seal_pre_commit2(self, inp: PreCommit2Input, deadline: Deadline) -> Any:
        """Returns the worker's SectorCommitments (comm_r, comm_d)."""
        sector = inp.sector
        worker_req = worker_link.pre_commit2(inp)
        selector: Selector = ExistingSelector(
            _key(sector), SEALED_CACHE, allow_fetch=True, task_type=TaskType.PRE_COMMIT_2
        )

        def decide(
            record: lifecycle.SectorRecord | None, busy: list[lifecycle.InFlight], work_id: str
        ) -> lifecycle.Decision:
            # This PC2's own fetch stage is not a conflicting call.
            ours = [w for w in busy if w.method != "Fetch"]
            return lifecycle.decide_pc2(record, int(sector.proof), inp.pre_commit1_output, ours, work_id)

        spec = BY_METHOD["SealPreCommit2"]
        record = await self.store.sector(sector.miner, sector.number)
        generation = record.generation if record is not None else 0
        work_id = self.runner.tracker.work_id_of(spec.method, worker_link.params(spec, worker_req), b"", generation)
        try:
            first = decide(record, self.pipelines.in_flight(record, sector.miner, sector.number), work_id)
        except lifecycle.LifecycleRefused as exc:
            raise refused(exc) from None
        if isinstance(first, lifecycle.Run) and not any(
            w.work_id == work_id for w in self.pipelines.in_flight(record, sector.miner, sector.number)
        ):
            # The cache (PC2's only input) is moved to the worker that will run PC2 first, as its
            # own FETCH task, so PC2 holds its GPU and threads only while it computes.
            # Afterwards that worker holds the cache, so the ExistingSelector prefers it and still
            # re-resolves should it leave (a pin to it would wait for it forever).
            await self._fetch_stage(
                sector,
                frozenset({FileType.CACHE}),
                TaskType.PRE_COMMIT_2,
                FetchMode.MOVE,
                inp.priority,
                deadline,
                record.generation if record is not None else 0,
            )
        return await self.step(spec, sector, worker_req, inp.priority, selector, deadline, decide)

    async def seal_commit1(self, inp: Commit1Input, deadline: Deadline) -> bytes:
        sector = inp.sector
        worker_req = worker_link.commit1(inp)
        selector = ExistingSelector(_key(sector), SEALED_CACHE, allow_fetch=False)

        def decide(
            record: lifecycle.SectorRecord | None, busy: list[lifecycle.InFlight], work_id: str
        ) -> lifecycle.Decision:
            return lifecycle.decide_c1(
                record,
                int(sector.proof),
                inp.ticket,
                inp.seed,
                inp.pieces,
                inp.comm_r,
                inp.comm_d,
                _pc2_commitments(record),
                busy,
                work_id,
            )

        out: bytes = await self.step(
            BY_METHOD["SealCommit1"], sector, worker_req, inp.priority, selector, deadline, decide
        )
        return out

    async def seal_commit2(self, inp: Commit2Input, deadline: Deadline) -> bytes:
        sector = inp.sector
        worker_req = worker_link.commit2(inp)

        def decide(
            record: lifecycle.SectorRecord | None, busy: list[lifecycle.InFlight], work_id: str
        ) -> lifecycle.Decision:
            return lifecycle.decide_c2(record, int(sector.proof), inp.commit1_output, busy, work_id)

        out: bytes = await self.step(
            BY_METHOD["SealCommit2"], sector, worker_req, inp.priority, TaskSelector(), deadline, decide
        )
        return out

    async def finalize_sector(self, inp: FinalizeInput, deadline: Deadline) -> None:
        sector = inp.sector
        key = _key(sector)
        fin = worker_link.finalize(inp)
        keep = [(r.offset, r.size) for r in inp.keep_unsealed]
        fin_spec = BY_METHOD["FinalizeSector"]

        def decide_fin(
            record: lifecycle.SectorRecord | None, busy: list[lifecycle.InFlight], work_id: str
        ) -> lifecycle.Decision:
            # The move of this finalize may still be in flight: it is ours, not a conflict.
            ours = [w for w in busy if w.method != "MoveStorage"]
            run_fin, _ = lifecycle.decide_finalize(record, int(sector.proof), keep, ours, [work_id])
            return lifecycle.Run() if run_fin else lifecycle.Recorded(b"")

        await self.step(
            fin_spec, sector, fin, inp.priority, ExistingSelector(key, SEALED_CACHE, False), deadline, decide_fin
        )
        types = [FileType.SEALED, FileType.CACHE]
        if inp.keep_unsealed and (self.index is None or await self.find(key, UNSEALED)):
            types.insert(0, FileType.UNSEALED)
        move = worker_link.move_storage(sector, types)
        selector = AllocSelector(key, frozenset(types), PathType.STORAGE, prefer_holders_of=SEALED_CACHE)

        def decide_move(
            record: lifecycle.SectorRecord | None, busy: list[lifecycle.InFlight], work_id: str
        ) -> lifecycle.Decision:
            ours = [w for w in busy if w.method != "MoveStorage" or w.work_id == work_id]
            _, run_move = lifecycle.decide_finalize(record, int(sector.proof), keep, ours, [work_id])
            return lifecycle.Run() if run_move else lifecycle.Recorded(b"")

        await self.step(BY_METHOD["MoveStorage"], sector, move, inp.priority, selector, deadline, decide_move)

    async def release_unsealed(self, inp: ReleaseUnsealedInput, deadline: Deadline) -> None:
        sector = inp.sector
        generation = await self._require_sealed(sector, "ReleaseUnsealed")
        workers = await self._holder_workers(_key(sector), UNSEALED, TaskType.FINALIZE)
        worker_req = worker_link.release_unsealed(inp)
        await asyncio.gather(
            *[
                self.run(
                    BY_METHOD["ReleaseUnsealed"],
                    sector,
                    worker_req,
                    inp.priority,
                    FixedSelector((wid,)),
                    deadline,
                    key_extra=b"\x00worker:" + wid.encode(),
                    generation=generation,
                )
                for wid in workers
            ]
        )

    async def unseal_piece(self, inp: UnsealInput, deadline: Deadline) -> None:
        generation = await self._require_sealed(inp.sector, "UnsealPiece")
        await self._unseal(inp.sector, inp.ticket, inp.unsealed_cid, inp.priority, deadline, generation)

    async def _unseal(
        self,
        sector: SectorRef,
        ticket: bytes,
        cid: str,
        priority: int,
        deadline: Deadline,
        generation: int = 0,
    ) -> None:
        if not cid:
            raise invalid("unsealed_cid is required (the sector's CommD as a CID)")
        try:
            comm_d = parse_unsealed_cid(cid)
        except CidError as exc:
            raise invalid(f"unsealed_cid: {exc}") from None
        whole = ByteRange(0, unpadded_capacity(sector.proof))
        worker_req = worker_link.unseal(sector, whole, ticket, comm_d)
        selector: Selector = ExistingSelector(_key(sector), SEALED_CACHE, allow_fetch=True, task_type=TaskType.UNSEAL)
        await self._fetch_stage(sector, SEALED_CACHE, TaskType.UNSEAL, FetchMode.COPY, priority, deadline, generation)
        await self.run(
            BY_METHOD["UnsealPiece"], sector, worker_req, priority, selector, deadline, generation=generation
        )

    async def _fetch_stage(
        self,
        sector: SectorRef,
        types: frozenset[FileType],
        task: TaskType,
        mode: FetchMode,
        priority: int,
        deadline: Deadline,
        generation: int,
    ) -> None:
        """When no holder of the sector's files can run `task`, brings the files to a worker that
        can, as a FETCH task of its own (the GET row and caps apply; TaskHistory shows it), so
        the task's selector then finds that worker a holder and places it there with its inputs
        local. Nothing when a holder can run the task, or no worker can take both (the task then
        fetches for itself, or waits)."""
        if self.index is None:
            return
        key = _key(sector)
        candidates = await ExistingSelector(key, types, allow_fetch=True, task_type=task).resolve(self.runner.selectors)
        if candidates.anywhere or any(self.runner.can_run(w, task) for w in candidates.preferred):
            return
        targets = sorted(
            w
            for w in (candidates.pool or ())
            if self.runner.can_run(w, task) and self.runner.can_run(w, TaskType.FETCH)
        )
        if not targets:
            return
        fetch = worker_link.fetch(sector, types, mode)
        spec = BY_METHOD["Fetch"]
        live, _ = await self.runner.open(
            spec, sector, fetch, priority, FixedSelector(tuple(targets)), generation=generation
        )
        await self.wait(spec, sector, live, deadline)
        log.info(
            "fetched a sector's files ahead of its task",
            extra={"sector": sector.name, "task": task.short, "worker": live.call.worker_id},
        )

    # --- reading pieces ----------------------------------------------------------------------

    async def is_unsealed(self, sector: SectorRef, r: ByteRange) -> bool:
        return await self._unsealed_copy(sector, r) is not None

    async def read_piece(self, inp: ReadPieceInput, deadline: Deadline) -> PieceStream:
        """Streams the range; unseals the sector first when no worker holds the range unsealed."""
        sector = inp.sector
        source = await self._unsealed_copy(sector, inp.range)
        did_unseal = False
        if source is None:
            if self.index is not None and not await self.find(_key(sector), frozenset({FileType.SEALED})):
                raise NotFound(f"{sector.name} has neither unsealed data nor a sealed replica anywhere")
            if not inp.unsealed_cid:
                raise FailedPrecondition(
                    f"the range of {sector.name} is not unsealed anywhere: unsealing needs unsealed_cid (and ticket)",
                )
            bytes32(inp.ticket, "ticket")
            generation = await self._require_sealed(sector, "ReadPiece (which must unseal first)")
            await self._unseal(sector, inp.ticket, inp.unsealed_cid, inp.priority, deadline, generation)
            did_unseal = True
            source = await self._unsealed_copy(sector, inp.range)
            if source is None:
                raise Unavailable(f"{sector.name} was unsealed but no worker serves the range now; retry")
        client, storage_id = source
        return PieceStream(did_unseal, inp.range.size, self._stream_piece(client, inp, storage_id, deadline))

    async def _stream_piece(
        self, client: WorkerConnection, inp: ReadPieceInput, storage_id: str, deadline: Deadline
    ) -> AsyncIterator[PieceChunk]:
        """The worker's chunks, checked to come in order and add up to the range."""
        sent = 0
        async for chunk in worker_link.read_piece(client, inp.sector, inp.range, storage_id, deadline.remaining()):
            if chunk.offset != sent:
                raise Unavailable(f"worker sent a chunk at {chunk.offset}, expected {sent}; retry")
            sent += len(chunk.data)
            yield chunk
        if sent != inp.range.size:
            raise Unavailable(f"worker sent {sent} of {inp.range.size} bytes; retry")

    async def _unsealed_copy(self, sector: SectorRef, r: ByteRange) -> tuple[WorkerConnection, str] | None:
        """A worker (and path) that holds the range unsealed."""
        candidates: list[tuple[WorkerConnection, str]] = []
        if self.index is None:
            candidates = [(h.client, "") for h in self.runner.registry.workers.values() if h.connected and h.client]
        else:
            for loc in await self.find(_key(sector), UNSEALED):
                for client in self.clients_for(loc.storage_id, loc.urls):
                    candidates.append((client, loc.storage_id))
        for client, storage_id in candidates:
            try:
                allocated = await worker_link.is_allocated(client, sector, r, storage_id)
            except DomainError as exc:
                log.info(
                    "a holder could not answer IsAllocated",
                    extra={"sector": sector.name, "error": str(exc)},
                )
                continue
            if allocated:
                return client, storage_id
        return None

    # --- removing ----------------------------------------------------------------------------

    async def remove(self, sector: SectorId) -> list[RemovedFile]:
        miner, number = sector.miner, sector.number
        async with self.pipelines.locked(miner, number):
            record = await self.store.mark_removed(miner, number)
            running = await self._end_work(miner, number, f"{record.name} was removed by an operator")
        removed = await self._remove_files(sector)
        if running:
            self._spawn(self._remove_after(sector, record.generation, running), "remove-after-tasks")
        return removed

    async def _end_work(self, miner: int, number: int, reason: str) -> list[str]:
        """Ends every queued or running work of the sector (their callers get ABORTED); returns
        the call ids that were placed on a worker, whose tasks may still write files."""
        placed = []
        for live in self.pipelines.live_works(miner, number):
            call_id = live.call.call_id
            was_placed = call_id in self.runner.scheduler.assigned or bool(live.call.worker_id)
            if await self.runner.abort(call_id, reason) is not None and was_placed:
                placed.append(call_id)
        return placed

    async def _remove_after(
        self, sector: SectorId, generation: int, call_ids: list[str], limit_s: float = 3600.0
    ) -> None:
        """Removes again what tasks that were running at a Remove wrote, once their workers
        confirmed the end (the scheduler released their resources), while the sector is still
        removed in the same generation."""
        loop = asyncio.get_running_loop()
        until = loop.time() + limit_s
        while any(c in self.runner.scheduler.assigned for c in call_ids) and loop.time() < until:
            await asyncio.sleep(0.5)
        record = await self.store.sector(sector.miner, sector.number)
        if record is None or not record.removed or record.generation != generation:
            return
        try:
            removed = await self._remove_files(sector)
        except DomainError as exc:
            log.warning(
                "could not remove what a stopped task wrote; Remove again",
                extra={"sector": sector.name, "error": str(exc)},
            )
            return
        if removed:
            log.info(
                "removed the files a stopped task wrote after Remove",
                extra={"sector": sector.name, "files": len(removed)},
            )

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _require_sealed(self, sector: SectorRef, what: str) -> int:
        """Refuses calls that need the sealed replica before there is one; returns the
        sector's generation (0 without a lifecycle record)."""
        record = await self.store.sector(sector.miner, sector.number)
        try:
            lifecycle.require_sealed(record, int(sector.proof), what)
        except lifecycle.LifecycleRefused as exc:
            raise refused(exc) from None
        return record.generation if record is not None else 0

    async def _remove_files(self, sector: SectorId) -> list[RemovedFile]:
        targets: dict[str, tuple[WorkerConnection | None, set[int], list[str]]] = {}
        if self.index is None:
            for h in self.runner.registry.workers.values():
                if h.connected and h.client:
                    targets[h.worker_id] = (h.client, set(), [])
        else:
            locations = await self.find(SectorKey(sector.miner, sector.number, 0), frozenset(FileType))
            for loc in locations:
                owners = self._owners(loc.storage_id, loc.urls)
                if not owners:
                    targets[f"unreachable:{loc.storage_id}"] = (None, set(), [loc.storage_id])
                    continue
                name, owner = owners[0]
                entry = targets.setdefault(name, (owner, set(), []))
                entry[1].update(int(t) for t in loc.types)
                entry[2].append(loc.storage_id)
        removed: list[RemovedFile] = []
        failed: list[str] = []
        for name, (target, types, paths) in targets.items():
            if target is None:
                failed.append(f"{', '.join(paths)} (no worker serves it)")
                continue
            try:
                removed.extend(await worker_link.remove(target, sector, types))
            except DomainError as exc:
                failed.append(f"{', '.join(paths) or name} on {name}: {exc}")
        if failed:
            raise Unavailable(
                f"could not remove every file of {sector.name}; still declared: {'; '.join(failed)}"
                + (f" (removed {len(removed)} other files)" if removed else ""),
            )
        await self.store.forget_sector_commitments(sector.miner, sector.number)
        return removed

    # --- what the manager knows of sectors ----------------------------------------------------

    async def sector_record(self, sector: SectorId) -> lifecycle.SectorRecord:
        """The sector's lifecycle record (SectorStatus); NotFound when the manager has none."""
        record = await self.store.sector(sector.miner, sector.number)
        if record is None:
            raise NotFound(
                f"the manager has no lifecycle record of {sector.name} (no AddPiece or Remove of it was recorded)",
            )
        return record

    async def list_sectors(
        self, after: tuple[int, int] | None, size: int, states: frozenset[int]
    ) -> tuple[list[lifecycle.SectorRecord], tuple[int, int] | None]:
        """A page of sector records in (miner, number) order after `after`, only those in `states`
        (all when empty), and the (miner, number) the next page starts after (None: no more).
        Records are read in batches of `size` until the page is full or the table ends."""
        page: list[lifecycle.SectorRecord] = []
        last: tuple[int, int] | None = None
        while len(page) < size:
            batch = await self.store.sectors(after, size)
            if not batch:
                break
            for record in batch:
                after = (record.miner, record.number)
                if not states or int(record.state) in states:
                    page.append(record)
                    last = after
                    if len(page) == size:
                        break
            if len(batch) < size:
                break
        return page, (last if len(page) == size else None)

    # --- what a sector was sealed with ---------------------------------------------------------

    async def sector_commitments(self, sector: SectorId) -> SectorCommitmentsRecord:
        rec = await self.store.sector_commitments(sector.miner, sector.number)
        if rec is None:
            raise NotFound(
                f"no SealPreCommit2 result is known for {sector.name} "
                "(never pre-committed through this manager, or removed since)",
            )
        return rec

    # --- where files are ---------------------------------------------------------------------

    async def find(self, key: SectorKey, types: frozenset[FileType]) -> list[Any]:
        assert self.index is not None
        try:
            return [
                loc
                for loc in await self.index.find_sector(key.miner, key.number, sorted(types), key.sector_size, False)
                if not loc.fetch_candidate
            ]
        except Exception as exc:
            if is_unavailable(exc):
                raise Unavailable(f"the index is unavailable: {exc}") from None
            raise

    async def _holder_workers(self, key: SectorKey, types: frozenset[FileType], task_type: TaskType) -> list[str]:
        registry = self.runner.registry
        if self.index is None:
            return sorted(
                h.worker_id for h in registry.workers.values() if h.connected and int(task_type) in h.info.task_types
            )
        out: dict[str, None] = {}
        for loc in await self.find(key, types):
            for wid in registry.workers_of_path(loc.storage_id):
                out.setdefault(wid, None)
        return list(out)

    def _owners(self, storage_id: str, urls: tuple[str, ...]) -> list[tuple[str, WorkerConnection]]:
        registry = self.runner.registry
        out = []
        for wid in registry.workers_of_path(storage_id):
            handle = registry.get(wid)
            if handle is not None and handle.connected and handle.client is not None:
                out.append((wid, handle.client))
        if out:
            return out
        for url in urls:
            handle = registry.by_address(url)
            if handle is not None and handle.client is not None:
                out.append((handle.worker_id, handle.client))
            else:
                peer = self._peers.get(url)
                if peer is None:
                    peer = self._peers[url] = worker_link.WorkerClient(url, self._token())
                out.append((url, peer))
        return out

    def clients_for(self, storage_id: str, urls: tuple[str, ...]) -> list[WorkerConnection]:
        """Channels to the workers that serve a path (registered ones first, else its URLs)."""
        return [client for _, client in self._owners(storage_id, urls)]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for peer in self._peers.values():
            await peer.close()
        self._peers.clear()


async def _commp_of(chunks: AsyncIterator[PieceChunk], piece_size: int, padded_size: int) -> bytes | None:
    """commP of a piece stream, or None when it is not `piece_size` bytes in order."""
    hasher = rust_core.PieceHasher()
    received = 0
    async for chunk in chunks:
        if chunk.offset != received:
            return None
        received += len(chunk.data)
        if received > piece_size:
            return None
        await asyncio.to_thread(hasher.update, chunk.data)
    if received != piece_size:
        return None
    return hasher.finish(padded_size)
