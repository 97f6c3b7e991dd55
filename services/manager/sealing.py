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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.cid import CidError, parse_unsealed_cid, sealed_cid, unsealed_cid
from services.common.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, worker_pb2, worker_pb2_grpc
from services.manager import lifecycle
from services.manager.calls import BY_METHOD, CallSpec
from services.manager.calltracker import ErrorCode, LiveWork
from services.manager.convert import byte_range, piece_info_msg, pieces, sector_id, sector_ref
from services.manager.index_client import FileType, PathType, StorageIndex, is_unavailable
from services.manager.jobs import DispatchFailed, JobRunner
from services.manager.pipelines import Pipelines
from services.manager.resources import SealProof
from services.manager.selectors import (
    AllocSelector,
    ExistingSelector,
    FixedSelector,
    SectorKey,
    Selector,
    TaskSelector,
)
from services.manager.store import ManagerStore
from services.manager.tasks import TaskType
from services.manager.validation import bytes32, failure_of, invalid, piece_layout, unpadded_capacity
from services.manager.workers import WorkerClient, WorkerHandle

log = logging.getLogger(__name__)

SEALED_CACHE = frozenset({FileType.SEALED, FileType.CACHE})
UNSEALED = frozenset({FileType.UNSEALED})
_RPC_TIMEOUT_S = 30.0


def _pc2_commitments(record: lifecycle.SectorRecord | None) -> tuple[bytes, bytes] | None:
    """(comm_r, comm_d) as the sector's recorded SealPreCommit2 returned them."""
    done = record.steps.get(lifecycle.Step.PRE_COMMIT_2) if record is not None else None
    if done is None:
        return None
    out = common_pb2.SectorCommitments.FromString(done.output)
    return bytes(out.comm_r), bytes(out.comm_d)


def _key(ref: common_pb2.SectorRef) -> SectorKey:
    return SectorKey(ref.id.miner, ref.id.number, SealProof(ref.proof_type).sector_size)


def sector_name(ref: common_pb2.SectorRef | common_pb2.SectorId) -> str:
    sid = ref.id if isinstance(ref, common_pb2.SectorRef) else ref
    return f"s-t0{sid.miner}-{sid.number}"


class Deadline:
    """The caller's deadline (monotonic), for calls made of several steps."""

    def __init__(self, seconds: float | None) -> None:
        self.at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())


@dataclass
class PieceRelay:
    """AddPiece's dispatch: relays the client's chunks to the chosen worker as they arrive. Each
    write waits for the worker's flow control, and the next chunk is read from the client only
    then, so the manager holds at most one chunk of the piece."""

    chunks: AsyncIterator[manager_pb2.AddPieceRequest]
    header: worker_pb2.WorkerServiceAddPieceHeader
    size: int

    async def __call__(self, handle: WorkerHandle, assignment: worker_pb2.TaskAssignment) -> None:
        assert handle.client is not None
        header = worker_pb2.WorkerServiceAddPieceHeader()
        header.CopyFrom(self.header)
        header.assignment.CopyFrom(assignment)
        call = handle.client.stub.AddPiece()
        try:
            await call.write(worker_pb2.WorkerServiceAddPieceRequest(header=header))
            received = 0
            try:
                async for message in self.chunks:
                    if message.WhichOneof("payload") != "chunk":
                        raise DispatchFailed(
                            ErrorCode.PERMANENT,
                            "only the first AddPiece message may be a header",
                            InvalidArgument,
                        )
                    chunk = message.chunk
                    if chunk.offset != received:
                        raise DispatchFailed(
                            ErrorCode.PERMANENT,
                            f"chunk offset {chunk.offset} but {received} bytes were sent so far",
                            InvalidArgument,
                        )
                    received += len(chunk.data)
                    if received > self.size:
                        raise DispatchFailed(
                            ErrorCode.PERMANENT,
                            f"more than piece_size ({self.size}) bytes were sent; nothing was written",
                            InvalidArgument,
                        )
                    if chunk.data:
                        await call.write(worker_pb2.WorkerServiceAddPieceRequest(chunk=chunk))
            except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
                if isinstance(exc, grpc.aio.AioRpcError) and call.done():
                    raise  # the worker failed the stream: handled as a dispatch failure
                raise DispatchFailed(
                    ErrorCode.PERMANENT,
                    "the client's piece stream ended early; nothing was written",
                    Cancelled,
                ) from None
            if received != self.size:
                raise DispatchFailed(
                    ErrorCode.PERMANENT,
                    f"only {received} of piece_size {self.size} bytes were sent; nothing was written",
                    InvalidArgument,
                )
            await call.done_writing()
            reply = await call
            if reply.call_id.id and reply.call_id.id != assignment.call_id.id:
                raise DispatchFailed(ErrorCode.TEMPORARY, f"worker answered with call {reply.call_id.id}")
        except BaseException:
            call.cancel()
            raise


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
        self._peers: dict[str, WorkerClient] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- running one task --------------------------------------------------------------------

    async def run(
        self,
        spec: CallSpec,
        sector: common_pb2.SectorRef,
        request: Message,
        priority: int,
        selector: Selector,
        deadline: Deadline,
        dedup: bool = True,
        dispatch: Any = None,
        key_extra: bytes = b"",
        generation: int = 0,
    ) -> Any:
        """Runs (or attaches to) one work and returns its decoded result."""
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
        sector: common_pb2.SectorRef,
        request: Message,
        priority: int,
        selector: Selector,
        deadline: Deadline,
        decide: Decide,
        key_extra: bytes = b"",
    ) -> Any:
        """A lifecycle step: checks the sector's record and queues the work as one step (under
        the sector's lock), then waits for it outside the lock. A step done before with these
        inputs answers its recorded result; a refused one raises before anything is queued."""
        miner, number = sector.id.miner, sector.id.number
        async with self.pipelines.locked(miner, number):
            record = await self.store.sector(miner, number)
            generation = record.generation if record is not None else 0
            work_id = self.runner.tracker.work_id_of(spec.method, spec.params(request), key_extra, generation)
            try:
                decision = decide(record, self.pipelines.in_flight(record, miner, number), work_id)
            except lifecycle.LifecycleRefused as exc:
                raise refused(exc) from None
            if isinstance(decision, lifecycle.Recorded):
                return spec.decode_result(decision.output)
            live, _ = await self.runner.open(
                spec, sector, request, priority, selector, key_extra=key_extra, generation=generation
            )
        return await self.wait(spec, sector, live, deadline)

    async def wait(self, spec: CallSpec, sector: common_pb2.SectorRef, live: LiveWork, deadline: Deadline) -> Any:
        try:
            outcome = await self.runner.tracker.wait(live, deadline.remaining())
        except TimeoutError:
            raise DeadlineExceeded(
                f"{spec.method} of {sector_name(sector)} is still in progress (work {live.work_id}); it goes on: "
                "repeat the same request to wait for (or collect) its result",
            ) from None
        if not outcome.ok:
            error = live.extra.get("dispatch_error")
            if isinstance(error, DispatchFailed) and error.caller_error is not None:
                raise error.caller_error(str(error))
            raise failure_of(outcome)
        return spec.decode_result(outcome.result)

    # --- sealing calls -----------------------------------------------------------------------

    async def add_piece(
        self, header: manager_pb2.AddPieceHeader, chunks: AsyncIterator[manager_pb2.AddPieceRequest], deadline: Deadline
    ) -> common_pb2.PieceInfo:
        proof = sector_ref(header.sector, header.HasField("sector")).proof
        piece_layout(list(header.existing_piece_sizes), header.piece_size, proof)
        worker_header = worker_pb2.WorkerServiceAddPieceHeader(
            sector=header.sector, existing_piece_sizes=header.existing_piece_sizes, piece_size=header.piece_size
        )
        key = _key(header.sector)
        selector: Selector = (
            ExistingSelector(key, UNSEALED, allow_fetch=False)
            if header.existing_piece_sizes
            else AllocSelector(key, UNSEALED, PathType.SEALING)
        )
        relay = PieceRelay(chunks, worker_header, header.piece_size)
        miner, number = header.sector.id.miner, header.sector.id.number
        spec = BY_METHOD["AddPiece"]
        async with self.pipelines.locked(miner, number):
            record = await self.store.sector(miner, number)
            try:
                claims = lifecycle.decide_add_piece(
                    record,
                    int(header.sector.proof_type),
                    list(header.existing_piece_sizes),
                    self.pipelines.in_flight(record, miner, number),
                )
                if claims:
                    record = await self.store.claim_sector(
                        miner, number, int(header.sector.proof_type), record.generation if record else 0
                    )
            except lifecycle.LifecycleRefused as exc:
                raise refused(exc) from None
            assert record is not None
            live, _ = await self.runner.open(
                spec,
                header.sector,
                worker_header,
                header.priority,
                selector,
                dedup=False,
                dispatch=relay,
                generation=record.generation,
            )
        result: common_pb2.PieceInfo = await self.wait(spec, header.sector, live, deadline)
        return result

    async def seal_pre_commit1(self, req: manager_pb2.SealPreCommit1Request, deadline: Deadline) -> bytes:
        proof = sector_ref(req.sector, req.HasField("sector")).proof
        bytes32(req.ticket, "ticket")
        refs = pieces(req.pieces, proof, full=True)
        normalized = [piece_info_msg(p) for p in refs]
        worker_req = worker_pb2.WorkerServiceSealPreCommit1Request(
            sector=req.sector, ticket=req.ticket, pieces=normalized
        )
        selector = AllocSelector(_key(req.sector), SEALED_CACHE, PathType.SEALING, prefer_holders_of=UNSEALED)

        def decide(
            record: lifecycle.SectorRecord | None, busy: list[lifecycle.InFlight], work_id: str
        ) -> lifecycle.Decision:
            return lifecycle.decide_pc1(
                record, int(req.sector.proof_type), proof.sector_size, req.ticket, refs, busy, work_id
            )

        out: bytes = await self.step(
            BY_METHOD["SealPreCommit1"], req.sector, worker_req, req.priority, selector, deadline, decide
        )
        return out

    async def seal_pre_commit2(
        self, req: manager_pb2.SealPreCommit2Request, deadline: Deadline
    ) -> common_pb2.SectorCommitments:
        sector_ref(req.sector, req.HasField("sector"))
        if not req.pre_commit1_output:
            raise invalid("pre_commit1_output is required (SealPreCommit1's output)")
        worker_req = worker_pb2.WorkerServiceSealPreCommit2Request(
            sector=req.sector, pre_commit1_output=req.pre_commit1_output
        )
        selector: Selector = ExistingSelector(
            _key(req.sector), SEALED_CACHE, allow_fetch=True, task_type=TaskType.PRE_COMMIT_2
        )

        def decide(
            record: lifecycle.SectorRecord | None, busy: list[lifecycle.InFlight], work_id: str
        ) -> lifecycle.Decision:
            # This PC2's own fetch stage is not a conflicting call.
            ours = [w for w in busy if w.method != "Fetch"]
            return lifecycle.decide_pc2(record, int(req.sector.proof_type), req.pre_commit1_output, ours, work_id)

        spec = BY_METHOD["SealPreCommit2"]
        record = await self.store.sector(req.sector.id.miner, req.sector.id.number)
        generation = record.generation if record is not None else 0
        work_id = self.runner.tracker.work_id_of(spec.method, spec.params(worker_req), b"", generation)
        try:
            first = decide(record, self.pipelines.in_flight(record, req.sector.id.miner, req.sector.id.number), work_id)
        except lifecycle.LifecycleRefused as exc:
            raise refused(exc) from None
        if isinstance(first, lifecycle.Run) and not any(
            w.work_id == work_id for w in self.pipelines.in_flight(record, req.sector.id.miner, req.sector.id.number)
        ):
            # The cache (PC2's only input) is moved to the worker that will run PC2 first, as its
            # own FETCH task, so PC2 holds its GPU and threads only while it computes.
            # Afterwards that worker holds the cache, so the ExistingSelector prefers it and still
            # re-resolves should it leave (a pin to it would wait for it forever).
            await self._fetch_stage(
                req.sector,
                frozenset({FileType.CACHE}),
                TaskType.PRE_COMMIT_2,
                worker_pb2.FETCH_MODE_MOVE,
                req.priority,
                deadline,
                record.generation if record is not None else 0,
            )
        out: common_pb2.SectorCommitments = await self.step(
            spec, req.sector, worker_req, req.priority, selector, deadline, decide
        )
        return out

    async def seal_commit1(self, req: manager_pb2.SealCommit1Request, deadline: Deadline) -> bytes:
        proof = sector_ref(req.sector, req.HasField("sector")).proof
        for name in ("ticket", "seed", "comm_r", "comm_d"):
            bytes32(getattr(req, name), name)
        refs = pieces(req.pieces, proof, full=True)
        normalized = [piece_info_msg(p) for p in refs]
        worker_req = worker_pb2.WorkerServiceSealCommit1Request(
            sector=req.sector, ticket=req.ticket, seed=req.seed, pieces=normalized, comm_r=req.comm_r, comm_d=req.comm_d
        )
        selector = ExistingSelector(_key(req.sector), SEALED_CACHE, allow_fetch=False)

        def decide(
            record: lifecycle.SectorRecord | None, busy: list[lifecycle.InFlight], work_id: str
        ) -> lifecycle.Decision:
            return lifecycle.decide_c1(
                record,
                int(req.sector.proof_type),
                req.ticket,
                req.seed,
                refs,
                req.comm_r,
                req.comm_d,
                _pc2_commitments(record),
                busy,
                work_id,
            )

        out: bytes = await self.step(
            BY_METHOD["SealCommit1"], req.sector, worker_req, req.priority, selector, deadline, decide
        )
        return out

    async def seal_commit2(self, req: manager_pb2.SealCommit2Request, deadline: Deadline) -> bytes:
        sector_ref(req.sector, req.HasField("sector"))
        if not req.commit1_output:
            raise invalid("commit1_output is required (SealCommit1's output)")
        worker_req = worker_pb2.WorkerServiceSealCommit2Request(sector=req.sector, commit1_output=req.commit1_output)

        def decide(
            record: lifecycle.SectorRecord | None, busy: list[lifecycle.InFlight], work_id: str
        ) -> lifecycle.Decision:
            return lifecycle.decide_c2(record, int(req.sector.proof_type), req.commit1_output, busy, work_id)

        out: bytes = await self.step(
            BY_METHOD["SealCommit2"], req.sector, worker_req, req.priority, TaskSelector(), deadline, decide
        )
        return out

    async def finalize_sector(self, req: manager_pb2.FinalizeSectorRequest, deadline: Deadline) -> None:
        proof = sector_ref(req.sector, req.HasField("sector")).proof
        for i, r in enumerate(req.keep_unsealed):
            byte_range(r, True, proof, f"keep_unsealed[{i}]")
        key = _key(req.sector)
        fin = worker_pb2.WorkerServiceFinalizeSectorRequest(sector=req.sector, keep_unsealed=req.keep_unsealed)
        keep = [(r.offset, r.size) for r in req.keep_unsealed]
        fin_spec = BY_METHOD["FinalizeSector"]

        def decide_fin(
            record: lifecycle.SectorRecord | None, busy: list[lifecycle.InFlight], work_id: str
        ) -> lifecycle.Decision:
            # The move of this finalize may still be in flight: it is ours, not a conflict.
            ours = [w for w in busy if w.method != "MoveStorage"]
            run_fin, _ = lifecycle.decide_finalize(record, int(req.sector.proof_type), keep, ours, [work_id])
            return lifecycle.Run() if run_fin else lifecycle.Recorded(b"")

        await self.step(
            fin_spec, req.sector, fin, req.priority, ExistingSelector(key, SEALED_CACHE, False), deadline, decide_fin
        )
        types = [FileType.SEALED, FileType.CACHE]
        if req.keep_unsealed and (self.index is None or await self.find(key, UNSEALED)):
            types.insert(0, FileType.UNSEALED)
        move = worker_pb2.MoveStorageRequest(
            sector=req.sector, types=[common_pb2.SectorFileType.ValueType(t) for t in types]
        )
        selector = AllocSelector(key, frozenset(types), PathType.STORAGE, prefer_holders_of=SEALED_CACHE)

        def decide_move(
            record: lifecycle.SectorRecord | None, busy: list[lifecycle.InFlight], work_id: str
        ) -> lifecycle.Decision:
            ours = [w for w in busy if w.method != "MoveStorage" or w.work_id == work_id]
            _, run_move = lifecycle.decide_finalize(record, int(req.sector.proof_type), keep, ours, [work_id])
            return lifecycle.Run() if run_move else lifecycle.Recorded(b"")

        await self.step(BY_METHOD["MoveStorage"], req.sector, move, req.priority, selector, deadline, decide_move)

    async def release_unsealed(self, req: manager_pb2.ReleaseUnsealedRequest, deadline: Deadline) -> None:
        proof = sector_ref(req.sector, req.HasField("sector")).proof
        if bool(req.ranges) == req.all:
            raise invalid("give exactly one of ranges (non-empty) and all")
        for i, r in enumerate(req.ranges):
            byte_range(r, True, proof, f"ranges[{i}]")
        generation = await self._require_sealed(req.sector, "ReleaseUnsealed")
        workers = await self._holder_workers(_key(req.sector), UNSEALED, TaskType.FINALIZE)
        worker_req = worker_pb2.WorkerServiceReleaseUnsealedRequest(sector=req.sector, ranges=req.ranges, all=req.all)
        await asyncio.gather(
            *[
                self.run(
                    BY_METHOD["ReleaseUnsealed"],
                    req.sector,
                    worker_req,
                    req.priority,
                    FixedSelector((wid,)),
                    deadline,
                    key_extra=b"\x00worker:" + wid.encode(),
                    generation=generation,
                )
                for wid in workers
            ]
        )

    async def unseal_piece(self, req: manager_pb2.UnsealPieceRequest, deadline: Deadline) -> None:
        proof = sector_ref(req.sector, req.HasField("sector")).proof
        byte_range(req.range, req.HasField("range"), proof)
        bytes32(req.ticket, "ticket")
        generation = await self._require_sealed(req.sector, "UnsealPiece")
        await self._unseal(req.sector, proof, req.ticket, req.unsealed_cid, req.priority, deadline, generation)

    async def _unseal(
        self,
        sector: common_pb2.SectorRef,
        proof: SealProof,
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
        whole = common_pb2.UnpaddedByteRange(offset=0, size=unpadded_capacity(proof))
        worker_req = worker_pb2.WorkerServiceUnsealPieceRequest(
            sector=sector, range=whole, ticket=ticket, comm_d=comm_d
        )
        selector: Selector = ExistingSelector(_key(sector), SEALED_CACHE, allow_fetch=True, task_type=TaskType.UNSEAL)
        await self._fetch_stage(
            sector, SEALED_CACHE, TaskType.UNSEAL, worker_pb2.FETCH_MODE_COPY, priority, deadline, generation
        )
        await self.run(
            BY_METHOD["UnsealPiece"], sector, worker_req, priority, selector, deadline, generation=generation
        )

    async def _fetch_stage(
        self,
        sector: common_pb2.SectorRef,
        types: frozenset[FileType],
        task: TaskType,
        mode: worker_pb2.FetchMode.ValueType,
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
        fetch = worker_pb2.FetchRequest(
            sector=sector,
            types=[common_pb2.SectorFileType.ValueType(int(t)) for t in sorted(types)],
            path_type=common_pb2.PATH_TYPE_SEALING,
            mode=mode,
        )
        spec = BY_METHOD["Fetch"]
        live, _ = await self.runner.open(
            spec, sector, fetch, priority, FixedSelector(tuple(targets)), generation=generation
        )
        await self.wait(spec, sector, live, deadline)
        log.info(
            "fetched a sector's files ahead of its task",
            extra={"sector": sector_name(sector), "task": task.short, "worker": live.call.worker_id},
        )

    # --- reading pieces ----------------------------------------------------------------------

    async def is_unsealed(self, req: manager_pb2.IsUnsealedRequest) -> bool:
        proof = sector_ref(req.sector, req.HasField("sector")).proof
        byte_range(req.range, req.HasField("range"), proof)
        return await self._unsealed_copy(req.sector, req.range) is not None

    async def read_piece(
        self, req: manager_pb2.ReadPieceRequest, deadline: Deadline
    ) -> AsyncIterator[manager_pb2.ReadPieceResponse]:
        """Streams the range; unseals the sector first when no worker holds the range unsealed."""
        proof = sector_ref(req.sector, req.HasField("sector")).proof
        byte_range(req.range, req.HasField("range"), proof)
        source = await self._unsealed_copy(req.sector, req.range)
        did_unseal = False
        if source is None:
            if self.index is not None and not await self.find(_key(req.sector), frozenset({FileType.SEALED})):
                raise NotFound(
                    f"{sector_name(req.sector)} has neither unsealed data nor a sealed replica anywhere",
                )
            if not req.unsealed_cid:
                raise FailedPrecondition(
                    f"the range of {sector_name(req.sector)} is not unsealed anywhere: unsealing needs unsealed_cid (and ticket)",
                )
            bytes32(req.ticket, "ticket")
            generation = await self._require_sealed(req.sector, "ReadPiece (which must unseal first)")
            await self._unseal(req.sector, proof, req.ticket, req.unsealed_cid, req.priority, deadline, generation)
            did_unseal = True
            source = await self._unsealed_copy(req.sector, req.range)
            if source is None:
                raise Unavailable(
                    f"{sector_name(req.sector)} was unsealed but no worker serves the range now; retry",
                )
        stub, storage_id = source
        return self._stream_piece(stub, req, storage_id, did_unseal, deadline)

    async def _stream_piece(
        self,
        stub: worker_pb2_grpc.WorkerServiceAsyncStub,
        req: manager_pb2.ReadPieceRequest,
        storage_id: str,
        did_unseal: bool,
        deadline: Deadline,
    ) -> AsyncIterator[manager_pb2.ReadPieceResponse]:
        yield manager_pb2.ReadPieceResponse(
            header=manager_pb2.ReadPieceHeader(did_unseal=did_unseal, size=req.range.size)
        )
        stream = stub.ReadPiece(
            worker_pb2.WorkerServiceReadPieceRequest(sector=req.sector, range=req.range, storage_id=storage_id),
            timeout=deadline.remaining(),
        )
        sent = 0
        async for reply in stream:
            chunk = reply.chunk
            if chunk.offset != sent:
                raise Unavailable(f"worker sent a chunk at {chunk.offset}, expected {sent}; retry")
            sent += len(chunk.data)
            yield manager_pb2.ReadPieceResponse(chunk=chunk)
        if sent != req.range.size:
            raise Unavailable(f"worker sent {sent} of {req.range.size} bytes; retry")

    async def _unsealed_copy(
        self, sector: common_pb2.SectorRef, r: common_pb2.UnpaddedByteRange
    ) -> tuple[worker_pb2_grpc.WorkerServiceAsyncStub, str] | None:
        """A worker (and path) that holds the range unsealed."""
        candidates: list[tuple[worker_pb2_grpc.WorkerServiceAsyncStub, str]] = []
        if self.index is None:
            candidates = [
                (h.client.stub, "") for h in self.runner.registry.workers.values() if h.connected and h.client
            ]
        else:
            for loc in await self.find(_key(sector), UNSEALED):
                for stub in self.stubs_for(loc.storage_id, loc.urls):
                    candidates.append((stub, loc.storage_id))
        for stub, storage_id in candidates:
            try:
                reply = await stub.IsAllocated(
                    worker_pb2.IsAllocatedRequest(sector=sector, range=r, storage_id=storage_id), timeout=_RPC_TIMEOUT_S
                )
            except grpc.aio.AioRpcError as exc:
                log.info(
                    "a holder could not answer IsAllocated",
                    extra={"sector": sector_name(sector), "error": exc.details()},
                )
                continue
            if reply.allocated:
                return stub, storage_id
        return None

    # --- removing ----------------------------------------------------------------------------

    async def remove(self, req: manager_pb2.RemoveRequest) -> list[common_pb2.RemovedSectorFile]:
        if not req.HasField("sector"):
            raise invalid("sector is required")
        sector_id(req.sector)
        miner, number = req.sector.miner, req.sector.number
        async with self.pipelines.locked(miner, number):
            record = await self.store.mark_removed(miner, number)
            running = await self._end_work(miner, number, f"{record.name} was removed by an operator")
        removed = await self._remove_files(req.sector)
        if running:
            self._spawn(self._remove_after(req.sector, record.generation, running), "remove-after-tasks")
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
        self, sector: common_pb2.SectorId, generation: int, call_ids: list[str], limit_s: float = 3600.0
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
                extra={"sector": sector_name(sector), "error": str(exc)},
            )
            return
        if removed:
            log.info(
                "removed the files a stopped task wrote after Remove",
                extra={"sector": sector_name(sector), "files": len(removed)},
            )

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _require_sealed(self, sector: common_pb2.SectorRef, what: str) -> int:
        """Refuses calls that need the sealed replica before there is one; returns the
        sector's generation (0 without a lifecycle record)."""
        record = await self.store.sector(sector.id.miner, sector.id.number)
        try:
            lifecycle.require_sealed(record, int(sector.proof_type), what)
        except lifecycle.LifecycleRefused as exc:
            raise refused(exc) from None
        return record.generation if record is not None else 0

    async def _remove_files(self, sector: common_pb2.SectorId) -> list[common_pb2.RemovedSectorFile]:
        req = manager_pb2.RemoveRequest(sector=sector)
        targets: dict[str, tuple[worker_pb2_grpc.WorkerServiceAsyncStub | None, set[int], list[str]]] = {}
        if self.index is None:
            for h in self.runner.registry.workers.values():
                if h.connected and h.client:
                    targets[h.worker_id] = (h.client.stub, set(), [])
        else:
            locations = await self.find(SectorKey(req.sector.miner, req.sector.number, 0), frozenset(FileType))
            for loc in locations:
                owners = self._owners(loc.storage_id, loc.urls)
                if not owners:
                    targets[f"unreachable:{loc.storage_id}"] = (None, set(), [loc.storage_id])
                    continue
                name, owner_stub = owners[0]
                entry = targets.setdefault(name, (owner_stub, set(), []))
                entry[1].update(int(t) for t in loc.types)
                entry[2].append(loc.storage_id)
        removed: list[common_pb2.RemovedSectorFile] = []
        failed: list[str] = []
        for name, (target, types, paths) in targets.items():
            if target is None:
                failed.append(f"{', '.join(paths)} (no worker serves it)")
                continue
            try:
                reply = await target.Remove(
                    worker_pb2.WorkerServiceRemoveRequest(
                        sector=req.sector, types=[common_pb2.SectorFileType.ValueType(t) for t in sorted(types)]
                    ),
                    timeout=_RPC_TIMEOUT_S,
                )
                removed.extend(reply.removed)
            except grpc.aio.AioRpcError as exc:
                failed.append(f"{', '.join(paths) or name} on {name}: {exc.code().name} {exc.details()}")
        if failed:
            raise Unavailable(
                f"could not remove every file of {sector_name(req.sector)}; still declared: {'; '.join(failed)}"
                + (f" (removed {len(removed)} other files)" if removed else ""),
            )
        await self.store.forget_sector_commitments(req.sector.miner, req.sector.number)
        return removed

    # --- what a sector was sealed with ---------------------------------------------------------

    async def sector_commitments(
        self, req: manager_pb2.SectorCommitmentsRequest
    ) -> manager_pb2.SectorCommitmentsResponse:
        if not req.HasField("sector"):
            raise invalid("sector is required")
        sector_id(req.sector)
        rec = await self.store.sector_commitments(req.sector.miner, req.sector.number)
        if rec is None:
            raise NotFound(
                f"no SealPreCommit2 result is known for {sector_name(req.sector)} "
                "(never pre-committed through this manager, or removed since)",
            )
        recorded_at = Timestamp()
        recorded_at.FromNanoseconds(int(rec.recorded_at * 1e9))
        return manager_pb2.SectorCommitmentsResponse(
            sector=common_pb2.SectorRef(
                id=common_pb2.SectorId(miner=rec.miner, number=rec.number),
                proof_type=common_pb2.RegisteredSealProof.ValueType(rec.proof_type),
            ),
            comm_r=rec.comm_r,
            comm_d=rec.comm_d,
            recorded_at=recorded_at,
            sealed_cid=sealed_cid(rec.comm_r),
            unsealed_cid=unsealed_cid(rec.comm_d),
        )

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

    def _owners(
        self, storage_id: str, urls: tuple[str, ...]
    ) -> list[tuple[str, worker_pb2_grpc.WorkerServiceAsyncStub]]:
        registry = self.runner.registry
        out = []
        for wid in registry.workers_of_path(storage_id):
            handle = registry.get(wid)
            if handle is not None and handle.connected and handle.client is not None:
                out.append((wid, handle.client.stub))
        if out:
            return out
        for url in urls:
            handle = registry.by_address(url)
            if handle is not None and handle.client is not None:
                out.append((handle.worker_id, handle.client.stub))
            else:
                peer = self._peers.get(url)
                if peer is None:
                    peer = self._peers[url] = WorkerClient(url, self._token())
                out.append((url, peer.stub))
        return out

    def stubs_for(self, storage_id: str, urls: tuple[str, ...]) -> list[worker_pb2_grpc.WorkerServiceAsyncStub]:
        return [stub for _, stub in self._owners(storage_id, urls)]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for peer in self._peers.values():
            await peer.close()
        self._peers.clear()
