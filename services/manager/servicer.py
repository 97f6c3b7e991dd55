"""ManagerService over grpc.aio: unpacks requests, calls the domain code, packs replies. The
domain's errors (services/common/errors.py) become the RPC's status in one decorator,
`status_errors`; a database outage is UNAVAILABLE."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from services.common.config import ProofsBackend
from services.common.errors import FailedPrecondition, NotFound, Unavailable, status_errors
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, manager_pb2_grpc
from services.manager import convert, proofs_backend, views, worker_link
from services.manager.calls import BY_METHOD, SPECS
from services.manager.calltracker import ReturnStatus
from services.manager.jobs import JobRunner
from services.manager.operators import Operators
from services.manager.post import Proving
from services.manager.sealing import Deadline, Sealing
from services.manager.store import ManagerStore
from services.manager.validation import invalid
from services.manager.workers import WorkerHandle

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
JobState = manager_pb2.JobState
_STATE_NAMES = {
    "queued": JobState.JOB_STATE_QUEUED,
    "assigned": JobState.JOB_STATE_ASSIGNED,
    "running": JobState.JOB_STATE_RUNNING,
}


_statuses = status_errors(database="the manager's")
F = TypeVar("F", bound=Callable[..., Any])


def handled(fn: F) -> F:
    """Waits until the manager finished starting (it recovers its works first: a call before that
    would not find them), then runs the handler; its domain errors become statuses."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def stream(self: ManagerServicer, request: Any, context: Context) -> AsyncIterator[Any]:
            await self.ready.wait()
            async for item in fn(self, request, context):
                yield item

        return _statuses(stream)  # type: ignore[return-value]

    @functools.wraps(fn)
    async def unary(self: ManagerServicer, request: Any, context: Context) -> Any:
        await self.ready.wait()
        return await fn(self, request, context)

    return _statuses(unary)  # type: ignore[return-value]


def _deadline(context: Context) -> Deadline:
    return Deadline(context.time_remaining())


class ManagerServicer(manager_pb2_grpc.ManagerServiceServicer):
    def __init__(
        self,
        runner: JobRunner,
        sealing: Sealing,
        proving: Proving,
        store: ManagerStore,
        operators: Operators,
        session_id: str,
        ready: asyncio.Event,
        proofs_backend: ProofsBackend = ProofsBackend.EMULATED,
    ) -> None:
        self.runner = runner
        self.proofs_backend = proofs_backend
        self.sealing = sealing
        self.proving = proving
        self.store = store
        self.session_id = session_id
        self.ready = ready
        self.operators = operators
        # Builds the Managers reply (set by the app once it knows its lease).
        self.managers_view: Callable[[], Awaitable[manager_pb2.ManagersResponse]] | None = None

    # --- sealing API -------------------------------------------------------------------------

    @handled
    async def AddPiece(
        self, request_iterator: AsyncIterator[manager_pb2.AddPieceRequest], context: Context
    ) -> manager_pb2.AddPieceResponse:
        first = None
        async for message in request_iterator:
            first = message
            break
        if first is None or first.WhichOneof("payload") != "header":
            raise invalid("the first AddPiece message must be a header")
        piece = await self.sealing.add_piece(
            convert.add_piece(first.header), convert.piece_chunks(request_iterator), _deadline(context)
        )
        return manager_pb2.AddPieceResponse(piece=piece)

    @handled
    async def SealPreCommit1(
        self, request: manager_pb2.SealPreCommit1Request, context: Context
    ) -> manager_pb2.SealPreCommit1Response:
        return manager_pb2.SealPreCommit1Response(
            pre_commit1_output=await self.sealing.seal_pre_commit1(convert.pre_commit1(request), _deadline(context))
        )

    @handled
    async def SealPreCommit2(
        self, request: manager_pb2.SealPreCommit2Request, context: Context
    ) -> manager_pb2.SealPreCommit2Response:
        return manager_pb2.SealPreCommit2Response(
            commitments=await self.sealing.seal_pre_commit2(convert.pre_commit2(request), _deadline(context))
        )

    @handled
    async def SealCommit1(
        self, request: manager_pb2.SealCommit1Request, context: Context
    ) -> manager_pb2.SealCommit1Response:
        return manager_pb2.SealCommit1Response(
            commit1_output=await self.sealing.seal_commit1(convert.commit1(request), _deadline(context))
        )

    @handled
    async def SealCommit2(
        self, request: manager_pb2.SealCommit2Request, context: Context
    ) -> manager_pb2.SealCommit2Response:
        return manager_pb2.SealCommit2Response(
            proof=await self.sealing.seal_commit2(convert.commit2(request), _deadline(context))
        )

    @handled
    async def FinalizeSector(
        self, request: manager_pb2.FinalizeSectorRequest, context: Context
    ) -> manager_pb2.FinalizeSectorResponse:
        await self.sealing.finalize_sector(convert.finalize(request), _deadline(context))
        return manager_pb2.FinalizeSectorResponse()

    @handled
    async def ReleaseUnsealed(
        self, request: manager_pb2.ReleaseUnsealedRequest, context: Context
    ) -> manager_pb2.ReleaseUnsealedResponse:
        await self.sealing.release_unsealed(convert.release_unsealed(request), _deadline(context))
        return manager_pb2.ReleaseUnsealedResponse()

    @handled
    async def Remove(self, request: manager_pb2.RemoveRequest, context: Context) -> manager_pb2.RemoveResponse:
        removed = await self.sealing.remove(convert.required_sector_id(request.sector, request.HasField("sector")))
        return manager_pb2.RemoveResponse(removed=[convert.removed_file(f) for f in removed])

    @handled
    async def SectorCommitments(
        self, request: manager_pb2.SectorCommitmentsRequest, context: Context
    ) -> manager_pb2.SectorCommitmentsResponse:
        sector = convert.required_sector_id(request.sector, request.HasField("sector"))
        return convert.sector_commitments(await self.sealing.sector_commitments(sector))

    @handled
    async def SectorStatus(
        self, request: manager_pb2.SectorStatusRequest, context: Context
    ) -> manager_pb2.SectorStatusResponse:
        sector = convert.required_sector_id(request.sector, request.HasField("sector"))
        return views.sector_status(await self.sealing.sector_record(sector), self.runner)

    @handled
    async def ListSectors(
        self, request: manager_pb2.ListSectorsRequest, context: Context
    ) -> manager_pb2.ListSectorsResponse:
        size, after = convert.list_sectors_page(request.page_size, request.page_token)
        records, following = await self.sealing.list_sectors(after, size, frozenset(int(st) for st in request.states))
        return manager_pb2.ListSectorsResponse(
            sectors=[views.sector_status(record, self.runner, with_jobs=False) for record in records],
            next_page_token=f"{following[0]}-{following[1]}" if following is not None else "",
        )

    @handled
    async def UnsealPiece(
        self, request: manager_pb2.UnsealPieceRequest, context: Context
    ) -> manager_pb2.UnsealPieceResponse:
        await self.sealing.unseal_piece(convert.unseal(request), _deadline(context))
        return manager_pb2.UnsealPieceResponse()

    @handled
    async def ReadPiece(
        self, request: manager_pb2.ReadPieceRequest, context: Context
    ) -> AsyncIterator[manager_pb2.ReadPieceResponse]:
        stream = await self.sealing.read_piece(convert.read_piece(request), _deadline(context))
        yield manager_pb2.ReadPieceResponse(
            header=manager_pb2.ReadPieceHeader(did_unseal=stream.did_unseal, size=stream.size)
        )
        async for chunk in stream.chunks:
            yield manager_pb2.ReadPieceResponse(chunk=common_pb2.Chunk(offset=chunk.offset, data=chunk.data))

    @handled
    async def IsUnsealed(
        self, request: manager_pb2.IsUnsealedRequest, context: Context
    ) -> manager_pb2.IsUnsealedResponse:
        sector, r = convert.sector_range(request)
        return manager_pb2.IsUnsealedResponse(unsealed=await self.sealing.is_unsealed(sector, r))

    @handled
    async def CheckProvable(
        self, request: manager_pb2.CheckProvableRequest, context: Context
    ) -> manager_pb2.CheckProvableResponse:
        kind, _, sectors = convert.post_request(
            request.proof_type, bytes(32), request.sectors, need_comm_r=request.expensive
        )
        if kind != "window":
            raise invalid("proof_type must be a Window PoSt type")
        bad = await self.proving.check_provable(request.proof_type, sectors, request.expensive, _deadline(context))
        return manager_pb2.CheckProvableResponse(bad_sectors=[convert.bad_sector_msg(b) for b in bad])

    @handled
    async def GenerateWindowPoSt(
        self, request: manager_pb2.GenerateWindowPoStRequest, context: Context
    ) -> manager_pb2.GenerateWindowPoStResponse:
        if not 5 <= request.proof_type <= 9:
            raise invalid("proof_type must be a Window PoSt type")
        _, _, sectors = convert.post_request(request.proof_type, request.randomness, request.sectors)
        proof, skipped = await self.proving.generate_post(
            request.proof_type, request.randomness, sectors, _deadline(context)
        )
        return manager_pb2.GenerateWindowPoStResponse(
            proofs=convert.post_proofs(request.proof_type, proof),
            skipped=[convert.bad_sector_msg(b) for b in skipped],
        )

    @handled
    async def GenerateWinningPoSt(
        self, request: manager_pb2.GenerateWinningPoStRequest, context: Context
    ) -> manager_pb2.GenerateWinningPoStResponse:
        if not 10 <= request.proof_type <= 14:
            raise invalid("proof_type must be a Winning PoSt type")
        _, _, sectors = convert.post_request(request.proof_type, request.randomness, request.sectors)
        proof, skipped = await self.proving.generate_post(
            request.proof_type, request.randomness, sectors, _deadline(context)
        )
        return manager_pb2.GenerateWinningPoStResponse(
            proofs=convert.post_proofs(request.proof_type, proof),
            skipped=[convert.bad_sector_msg(b) for b in skipped],
        )

    @handled
    async def GenerateWinningPoStSectorChallenge(
        self, request: manager_pb2.GenerateWinningPoStSectorChallengeRequest, context: Context
    ) -> manager_pb2.GenerateWinningPoStSectorChallengeResponse:
        return manager_pb2.GenerateWinningPoStSectorChallengeResponse(
            indices=self.proving.winning_challenge(convert.winning_challenge(request))
        )

    @handled
    async def VerifySeal(
        self, request: manager_pb2.VerifySealRequest, context: Context
    ) -> manager_pb2.VerifySealResponse:
        valid, reason = await asyncio.to_thread(self.proving.verify_seal, convert.seal_verification(request))
        return manager_pb2.VerifySealResponse(valid=valid, reason=reason)

    @handled
    async def VerifyWindowPoSt(
        self, request: manager_pb2.VerifyWindowPoStRequest, context: Context
    ) -> manager_pb2.VerifyWindowPoStResponse:
        valid, reason = await self._verify_post("window", request.randomness, request.sectors, request.proofs)
        return manager_pb2.VerifyWindowPoStResponse(valid=valid, reason=reason)

    @handled
    async def VerifyWinningPoSt(
        self, request: manager_pb2.VerifyWinningPoStRequest, context: Context
    ) -> manager_pb2.VerifyWinningPoStResponse:
        valid, reason = await self._verify_post("winning", request.randomness, request.sectors, request.proofs)
        return manager_pb2.VerifyWinningPoStResponse(valid=valid, reason=reason)

    async def _verify_post(
        self,
        kind: str,
        randomness: bytes,
        sectors: Sequence[common_pb2.ProvingSector],
        proofs: Sequence[common_pb2.PoStProof],
    ) -> tuple[bool, str]:
        """A Verify*PoSt: the proofs are looked at before the sectors (a request without a proof
        of this kind answers not valid, whatever its sectors)."""
        pairs = [(int(p.proof_type), bytes(p.proof)) for p in proofs]
        problem = self.proving.proof_problem(kind, pairs)
        if problem is not None:
            return False, problem
        proof_type, proof = pairs[0]
        _, _, checked = convert.post_request(proof_type, randomness, sectors)
        return await asyncio.to_thread(self.proving.verify_post, kind, proof_type, randomness, checked, proof)

    # --- worker side -------------------------------------------------------------------------

    @handled
    async def RegisterWorker(
        self, request: manager_pb2.RegisterWorkerRequest, context: Context
    ) -> manager_pb2.RegisterWorkerResponse:
        wid = request.info.worker_id
        if not wid or not request.session_id or not request.address:
            raise invalid("info.worker_id, session_id and address are required")
        refused = proofs_backend.mismatch(self.proofs_backend, request.proofs_backend, wid)
        if refused:
            raise FailedPrecondition(refused)
        address = convert.worker_address(request.address)
        state = self.operators.state_of(wid)
        handle = await self.runner.register_worker(
            wid, request.session_id, address, convert.worker_info(request.info), state.enabled, state.cordoned
        )
        settings = self.runner.settings
        return manager_pb2.RegisterWorkerResponse(
            manager_session_id=self.session_id,
            heartbeat_interval=convert.duration_msg(settings.heartbeat_interval_s),
            heartbeat_timeout=convert.duration_msg(settings.heartbeat_timeout_s),
            state=views.worker_state(handle),
        )

    @handled
    async def WorkerHeartbeat(
        self, request: manager_pb2.WorkerHeartbeatRequest, context: Context
    ) -> manager_pb2.WorkerHeartbeatResponse:
        if not request.worker_id or not request.session_id:
            raise invalid("worker_id and session_id are required")
        result = self.runner.heartbeat(
            request.worker_id,
            request.session_id,
            [c.id for c in request.running_calls],
            convert.worker_info(request.info) if request.HasField("info") else None,
            request.shutting_down,
        )
        if result is None:
            raise NotFound(
                f"worker {request.worker_id} with session {request.session_id} is not registered (or was marked gone): register again",
            )
        handle, unknown = result
        stale = set(unknown)
        return manager_pb2.WorkerHeartbeatResponse(
            manager_session_id=self.session_id,
            state=views.worker_state(handle),
            unknown_calls=[c for c in request.running_calls if c.id in stale],
        )

    async def _return(self, method: str, request: Any, context: Context) -> None:
        cid = convert.call_id(request.call_id, request.HasField("call_id"))
        spec = BY_METHOD[method]
        outcome = worker_link.outcome_of(spec, request)
        if outcome is None:
            raise invalid(f"Return{method} needs exactly one of {spec.result_field} or error")
        meta = request.meta
        status = await self.runner.handle_return(
            method,
            cid,
            outcome,
            convert.timestamp_seconds("meta.started_at", meta.started_at),
            convert.timestamp_seconds("meta.finished_at", meta.finished_at),
        )
        if status is ReturnStatus.NOT_FOUND:
            raise NotFound(f"no record of call {cid}: drop its result")
        if status is ReturnStatus.WRONG_METHOD:
            raise FailedPrecondition(f"call {cid} was not dispatched as {method}: drop its result")

    # --- operator ----------------------------------------------------------------------------

    @handled
    async def SealingJobs(
        self, request: manager_pb2.SealingJobsRequest, context: Context
    ) -> manager_pb2.SealingJobsResponse:
        delivered = await self.store.delivered_works() if request.include_delivered else []
        return manager_pb2.SealingJobsResponse(jobs=views.sealing_jobs(self.runner, request, delivered))

    @handled
    async def WorkerStats(
        self, request: manager_pb2.WorkerStatsRequest, context: Context
    ) -> manager_pb2.WorkerStatsResponse:
        handles = sorted(self.runner.registry.workers.values(), key=lambda h: h.worker_id)
        if request.worker_id:
            handles = [h for h in handles if h.worker_id == request.worker_id]
            if not handles:
                raise NotFound(f"unknown worker {request.worker_id}")
        stats = [views.worker_stat(h, self.runner) for h in handles]
        if request.include_resources:
            for stat, handle in zip(stats, handles, strict=True):
                stat.resources.extend(views.resource_rows(handle.info, request.default_resources))
        return manager_pb2.WorkerStatsResponse(workers=stats)

    @handled
    async def SchedDiag(self, request: manager_pb2.SchedDiagRequest, context: Context) -> manager_pb2.SchedDiagResponse:
        return views.sched_diag(self.runner, request.force_sched)

    @_statuses
    async def Managers(self, request: manager_pb2.ManagersRequest, context: Context) -> manager_pb2.ManagersResponse:
        """Answered by this manager itself, leader or standby: never forwarded (forward.py) and
        never waiting for this manager to lead (no `handled`), so it shows what each one sees."""
        if self.managers_view is None:
            raise Unavailable("the manager is still starting: retry")
        return await self.managers_view()

    @handled
    async def Abort(self, request: manager_pb2.AbortRequest, context: Context) -> manager_pb2.AbortResponse:
        cid = convert.call_id(request.call_id, request.HasField("call_id"))
        result = await self.runner.abort(cid, request.reason)
        if result is None:
            raise NotFound(f"no live call {cid} (unknown or already finished)")
        return manager_pb2.AbortResponse(previous_state=_STATE_NAMES.get(result[0], JobState.JOB_STATE_UNSPECIFIED))

    def _worker(self, wid: str) -> WorkerHandle:
        return self.operators.worker(convert.worker_id(wid))

    async def _set_state(self, handle: WorkerHandle, **changes: bool) -> manager_pb2.WorkerState:
        return views.worker_state(await self.operators.set_state(handle, **changes))

    @handled
    async def EnableWorker(
        self, request: manager_pb2.EnableWorkerRequest, context: Context
    ) -> manager_pb2.EnableWorkerResponse:
        return manager_pb2.EnableWorkerResponse(
            state=await self._set_state(self._worker(request.worker_id), enabled=True)
        )

    @handled
    async def DisableWorker(
        self, request: manager_pb2.DisableWorkerRequest, context: Context
    ) -> manager_pb2.DisableWorkerResponse:
        return manager_pb2.DisableWorkerResponse(
            state=await self._set_state(self._worker(request.worker_id), enabled=False)
        )

    @handled
    async def CordonWorker(
        self, request: manager_pb2.CordonWorkerRequest, context: Context
    ) -> manager_pb2.CordonWorkerResponse:
        return manager_pb2.CordonWorkerResponse(
            state=await self._set_state(self._worker(request.worker_id), cordoned=True)
        )

    @handled
    async def UncordonWorker(
        self, request: manager_pb2.UncordonWorkerRequest, context: Context
    ) -> manager_pb2.UncordonWorkerResponse:
        return manager_pb2.UncordonWorkerResponse(
            state=await self._set_state(self._worker(request.worker_id), cordoned=False, draining=False)
        )

    @handled
    async def DrainWorker(
        self, request: manager_pb2.DrainWorkerRequest, context: Context
    ) -> manager_pb2.DrainWorkerResponse:
        handle = self._worker(request.worker_id)
        limit = (
            convert.duration_seconds("timeout", request.timeout)
            if request.HasField("timeout")
            else context.time_remaining()
        )
        drained = await self.operators.drain(handle, limit, request.abort_remaining)
        remaining = [
            j
            for j in views.sealing_jobs(self.runner, manager_pb2.SealingJobsRequest(worker_id=handle.worker_id), [])
            if j.state in (JobState.JOB_STATE_ASSIGNED, JobState.JOB_STATE_RUNNING)
        ]
        return manager_pb2.DrainWorkerResponse(drained=drained, remaining=remaining, state=views.worker_state(handle))

    @handled
    async def TaskHistory(
        self, request: manager_pb2.TaskHistoryRequest, context: Context
    ) -> manager_pb2.TaskHistoryResponse:
        size = request.page_size or 100
        size = min(size, 1000)
        if request.HasField("sector"):
            convert.sector_id(request.sector, "sector")
        filters = convert.history_filters(request)
        before = convert.decode_page_token(request.page_token, filters) if request.page_token else None
        calls = await self.store.history(
            size + 1,
            before=before,
            miner=request.sector.miner if request.HasField("sector") else None,
            number=request.sector.number if request.HasField("sector") else None,
            failed_only=request.failed_only,
            task_type=int(request.task_type) or None,
            worker_id=request.worker_id or None,
            since=convert.timestamp_seconds("since", request.since) if request.HasField("since") else None,
        )
        page, more = calls[:size], len(calls) > size
        return manager_pb2.TaskHistoryResponse(
            runs=[convert.task_run(c) for c in page],
            next_page_token=convert.encode_page_token(page[-1], filters) if more else "",
        )


def _return_rpc(method: str) -> Callable[..., Awaitable[Any]]:
    response_type = getattr(manager_pb2, f"Return{method}Response")

    @handled
    async def rpc(self: ManagerServicer, request: Any, context: Context) -> Any:
        await self._return(method, request, context)
        return response_type()

    rpc.__name__ = f"Return{method}"
    return rpc


for _spec in SPECS:
    setattr(ManagerServicer, _spec.return_rpc, _return_rpc(_spec.method))
