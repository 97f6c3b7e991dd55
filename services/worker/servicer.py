"""WorkerService over grpc.aio: validates a request into domain values (validation.py), asks the
runner to admit and start the task (tasks.py), or calls the serving functions (serving.py), and
maps domain errors to the status codes worker.proto documents (one table, `_CODES`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

import rust_core
from services.common import errors
from services.common.errors import status_errors
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from services.worker import bulk, cleanup, serving, tasks, validation
from services.worker.callstore import call_key
from services.worker.parts import Disabled, Parts
from services.worker.paths import MetaError, PathMeta
from services.worker.resources import (
    ALL_TASK_TYPES,
    SHORT_NAME_OF,
)
from services.worker.sealer import PAD_BLOCK
from services.worker.sectors import (
    FileType,
    PathType,
    post_proof_info,
    types_to_proto,
)
from services.worker.storage_control import fs_stat_message
from services.worker.tarstream import TarError, stream_tar
from services.worker.wire import encode_chunk_response

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
TT = common_pb2.TaskType
CT = worker_pb2.CallType
F = TypeVar("F", bound=Callable[..., Any])


def _dependency_errors(fn: F) -> F:
    """A call to another service that fails inside a handler (a peer, the index) answers
    UNAVAILABLE with that service's status: the request may succeed later or elsewhere. The
    client edges translate most such failures into domain errors themselves; this catches the
    rest, so no handler answers INTERNAL for another service's outage."""

    def translated(exc: grpc.aio.AioRpcError) -> errors.Unavailable:
        return errors.Unavailable(f"a dependency failed: {exc.code().name}: {exc.details()}")

    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def stream(self: Any, request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for item in fn(self, request, context):
                    yield item
            except grpc.aio.AioRpcError as exc:
                raise translated(exc) from exc

        return stream  # type: ignore[return-value]

    @functools.wraps(fn)
    async def unary(self: Any, request: Any, context: Context) -> Any:
        try:
            return await fn(self, request, context)
        except grpc.aio.AioRpcError as exc:
            raise translated(exc) from exc

    return unary  # type: ignore[return-value]


def _handled(fn: F) -> F:
    """Every handler's errors become statuses (services/common/errors.py): the worker's domain
    errors subclass the common kinds, so no table of its own is needed."""
    return status_errors()(_dependency_errors(fn))


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    def __init__(self, parts: Parts) -> None:
        self.p = parts

    # --- helpers -------------------------------------------------------------------------------

    def _check_enabled(self, task_type: int) -> None:
        if self.p.runner.shutting_down:
            raise Disabled("the worker is shutting down")
        if task_type not in self.p.task_types:
            raise Disabled(f"task type {TT.Name(TT.ValueType(task_type))} is disabled on this worker")

    def _check_gpus(self, ordinals: Sequence[int]) -> None:
        have = {g.ordinal for g in self.p.resources.gpus}
        for o in ordinals:
            if o not in have:
                raise validation.Invalid(
                    f"GPU ordinal {o} does not exist on this worker (it has {sorted(have) or 'none'})"
                )

    def _dispatch(
        self,
        call_type: int,
        task_type: int,
        sector: tasks.SectorRef,
        seal_proof: int,
        assignment: worker_pb2.TaskAssignment,
        has_assignment: bool,
        work: Callable[[tasks.TaskEnv, tasks.TaskContext], Awaitable[tasks.Outcome]],
    ) -> common_pb2.CallId:
        """The common path of every asynchronous task RPC (after its own checks)."""
        call = validation.assignment_call(assignment, has_assignment, sector.id)
        self._check_gpus(assignment.gpu_ordinals)
        if self.p.runner.known(call):
            return call
        self._check_enabled(task_type)
        env = self.p.env()
        self.p.runner.admit(task_type, seal_proof)
        ctx = self.p.runner.context_for(call, list(assignment.gpu_ordinals))
        fault, short, attempt = self.p.task_fault, SHORT_NAME_OF.get(task_type, ""), assignment.attempt

        async def run(c: tasks.TaskContext) -> tasks.Outcome:
            await fault.before(short, attempt)
            return await work(env, c)

        self.p.runner.start(call, call_type, task_type, seal_proof, validation.timeout_s(assignment), ctx, run)
        log.info("task started", extra={"call": call_key(call), "task": TT.Name(TT.ValueType(task_type))})
        return call

    # --- tasks -------------------------------------------------------------------------------

    @_handled
    async def AddPiece(
        self, request_iterator: AsyncIterator[worker_pb2.WorkerServiceAddPieceRequest], context: Context
    ) -> worker_pb2.WorkerServiceAddPieceResponse:
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            raise validation.Invalid("empty stream: the first message must be the header") from None
        if not first.HasField("header"):
            raise validation.Invalid("the first message must be the header")
        h = first.header
        sector = validation.sector_ref(h.sector, h.HasField("sector"))
        call = validation.assignment_call(h.assignment, h.HasField("assignment"), sector.id)
        existing = list(h.existing_piece_sizes)
        validation.piece_sizes(existing, h.piece_size)
        _, offset = tasks.piece_offset(existing, h.piece_size)
        if offset + h.piece_size + h.piece_size // 127 > sector.size:
            raise validation.Invalid(
                f"a {h.piece_size}-byte piece does not fit after the existing pieces in a {sector.size}-byte sector"
            )
        if self.p.runner.known(call):
            return worker_pb2.WorkerServiceAddPieceResponse(call_id=call)
        self._check_enabled(TT.TASK_TYPE_ADD_PIECE)
        env = self.p.env()
        self.p.runner.admit(TT.TASK_TYPE_ADD_PIECE, h.sector.proof_type)
        ctx = self.p.runner.context_for(call, [])
        with self.p.runner.inline(
            call, CT.CALL_TYPE_ADD_PIECE, TT.TASK_TYPE_ADD_PIECE, h.sector.proof_type, ctx
        ) as running:
            try:
                await self.p.task_fault.before("AP", h.assignment.attempt)
                async with tasks.add_piece(env, ctx, sector, existing, h.piece_size) as sink:
                    async for msg in request_iterator:
                        if not msg.HasField("chunk"):
                            raise tasks.BadStream("only the first message may be a header")
                        if msg.chunk.offset != sink.received:
                            raise tasks.BadStream(f"chunk at offset {msg.chunk.offset}, expected {sink.received}")
                        await sink.feed(msg.chunk.data)
                    piece = await sink.finish()
            except (tasks.BadStream, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - the task failed: its outcome is returned
                self.p.runner.record(running, tasks.classify(exc))
                return worker_pb2.WorkerServiceAddPieceResponse(call_id=call)
            self.p.runner.record(running, ("piece", piece))
        return worker_pb2.WorkerServiceAddPieceResponse(call_id=call)

    @_handled
    async def SealPreCommit1(
        self, request: worker_pb2.WorkerServiceSealPreCommit1Request, context: Context
    ) -> worker_pb2.WorkerServiceSealPreCommit1Response:
        sector = validation.sector_ref(request.sector, request.HasField("sector"))
        ticket = validation.bytes32("ticket", request.ticket)
        pieces = validation.pieces(list(request.pieces))
        total = sum(p.padded_size for p in pieces)
        if total != sector.size:
            raise validation.Invalid(f"the pieces' padded sizes add up to {total}, not the sector size {sector.size}")
        call = self._dispatch(
            CT.CALL_TYPE_SEAL_PRE_COMMIT_1,
            TT.TASK_TYPE_PRE_COMMIT_1,
            sector,
            request.sector.proof_type,
            request.assignment,
            request.HasField("assignment"),
            lambda env, ctx: tasks.pre_commit1(env, ctx, sector, ticket, pieces),
        )
        return worker_pb2.WorkerServiceSealPreCommit1Response(call_id=call)

    @_handled
    async def SealPreCommit2(
        self, request: worker_pb2.WorkerServiceSealPreCommit2Request, context: Context
    ) -> worker_pb2.WorkerServiceSealPreCommit2Response:
        sector = validation.sector_ref(request.sector, request.HasField("sector"))
        if not request.pre_commit1_output:
            raise validation.Invalid("pre_commit1_output is required")
        p1 = bytes(request.pre_commit1_output)
        call = self._dispatch(
            CT.CALL_TYPE_SEAL_PRE_COMMIT_2,
            TT.TASK_TYPE_PRE_COMMIT_2,
            sector,
            request.sector.proof_type,
            request.assignment,
            request.HasField("assignment"),
            lambda env, ctx: tasks.pre_commit2(env, ctx, sector, p1),
        )
        return worker_pb2.WorkerServiceSealPreCommit2Response(call_id=call)

    @_handled
    async def SealCommit1(
        self, request: worker_pb2.WorkerServiceSealCommit1Request, context: Context
    ) -> worker_pb2.WorkerServiceSealCommit1Response:
        sector = validation.sector_ref(request.sector, request.HasField("sector"))
        ticket = validation.bytes32("ticket", request.ticket)
        seed = validation.bytes32("seed", request.seed)
        comm_r = validation.bytes32("comm_r", request.comm_r)
        comm_d = validation.bytes32("comm_d", request.comm_d)
        pieces = validation.pieces(list(request.pieces))
        call = self._dispatch(
            CT.CALL_TYPE_SEAL_COMMIT_1,
            TT.TASK_TYPE_COMMIT_1,
            sector,
            request.sector.proof_type,
            request.assignment,
            request.HasField("assignment"),
            lambda env, ctx: tasks.commit1(env, ctx, sector, ticket, seed, pieces, comm_r, comm_d),
        )
        return worker_pb2.WorkerServiceSealCommit1Response(call_id=call)

    @_handled
    async def SealCommit2(
        self, request: worker_pb2.WorkerServiceSealCommit2Request, context: Context
    ) -> worker_pb2.WorkerServiceSealCommit2Response:
        sector = validation.sector_ref(request.sector, request.HasField("sector"))
        if not request.commit1_output:
            raise validation.Invalid("commit1_output is required")
        c1 = bytes(request.commit1_output)
        call = self._dispatch(
            CT.CALL_TYPE_SEAL_COMMIT_2,
            TT.TASK_TYPE_COMMIT_2,
            sector,
            request.sector.proof_type,
            request.assignment,
            request.HasField("assignment"),
            lambda env, ctx: tasks.commit2(env, ctx, sector, c1),
        )
        return worker_pb2.WorkerServiceSealCommit2Response(call_id=call)

    @_handled
    async def FinalizeSector(
        self, request: worker_pb2.WorkerServiceFinalizeSectorRequest, context: Context
    ) -> worker_pb2.WorkerServiceFinalizeSectorResponse:
        sector = validation.sector_ref(request.sector, request.HasField("sector"))
        keep = [validation.unpadded_range(r, sector.size) for r in request.keep_unsealed]
        call = self._dispatch(
            CT.CALL_TYPE_FINALIZE_SECTOR,
            TT.TASK_TYPE_FINALIZE,
            sector,
            request.sector.proof_type,
            request.assignment,
            request.HasField("assignment"),
            lambda env, ctx: tasks.finalize(env, ctx, sector, keep),
        )
        return worker_pb2.WorkerServiceFinalizeSectorResponse(call_id=call)

    @_handled
    async def ReleaseUnsealed(
        self, request: worker_pb2.WorkerServiceReleaseUnsealedRequest, context: Context
    ) -> worker_pb2.WorkerServiceReleaseUnsealedResponse:
        sector = validation.sector_ref(request.sector, request.HasField("sector"))
        if bool(request.ranges) == request.all:
            raise validation.Invalid("give exactly one of ranges (non-empty) and all")
        ranges = [validation.unpadded_range(r, sector.size) for r in request.ranges]
        everything = request.all
        call = self._dispatch(
            CT.CALL_TYPE_RELEASE_UNSEALED,
            TT.TASK_TYPE_FINALIZE,
            sector,
            request.sector.proof_type,
            request.assignment,
            request.HasField("assignment"),
            lambda env, ctx: tasks.release_unsealed(env, ctx, sector, ranges, everything),
        )
        return worker_pb2.WorkerServiceReleaseUnsealedResponse(call_id=call)

    @_handled
    async def MoveStorage(
        self, request: worker_pb2.MoveStorageRequest, context: Context
    ) -> worker_pb2.MoveStorageResponse:
        sector = validation.sector_ref(request.sector, request.HasField("sector"))
        types = validation.file_types(list(request.types))
        call = self._dispatch(
            CT.CALL_TYPE_MOVE_STORAGE,
            TT.TASK_TYPE_FETCH,
            sector,
            request.sector.proof_type,
            request.assignment,
            request.HasField("assignment"),
            lambda env, ctx: tasks.move_storage(env, ctx, sector, types),
        )
        return worker_pb2.MoveStorageResponse(call_id=call)

    @_handled
    async def UnsealPiece(
        self, request: worker_pb2.WorkerServiceUnsealPieceRequest, context: Context
    ) -> worker_pb2.WorkerServiceUnsealPieceResponse:
        sector = validation.sector_ref(request.sector, request.HasField("sector"))
        if not request.HasField("range"):
            raise validation.Invalid("range is required")
        offset, size = validation.unpadded_range(request.range, sector.size)
        ticket = validation.bytes32("ticket", request.ticket)
        comm_d = validation.bytes32("comm_d", request.comm_d)
        call = self._dispatch(
            CT.CALL_TYPE_UNSEAL_PIECE,
            TT.TASK_TYPE_UNSEAL,
            sector,
            request.sector.proof_type,
            request.assignment,
            request.HasField("assignment"),
            lambda env, ctx: tasks.unseal_piece(env, ctx, sector, offset, size, ticket, comm_d),
        )
        return worker_pb2.WorkerServiceUnsealPieceResponse(call_id=call)

    @_handled
    async def Fetch(self, request: worker_pb2.FetchRequest, context: Context) -> worker_pb2.FetchResponse:
        sector = validation.sector_ref(request.sector, request.HasField("sector"))
        types = validation.file_types(list(request.types))
        if request.path_type not in (common_pb2.PATH_TYPE_SEALING, common_pb2.PATH_TYPE_STORAGE):
            raise validation.Invalid("path_type must be SEALING or STORAGE")
        if request.mode not in (worker_pb2.FETCH_MODE_MOVE, worker_pb2.FETCH_MODE_COPY):
            raise validation.Invalid("mode must be MOVE or COPY")
        path_type = PathType(request.path_type)
        move = request.mode == worker_pb2.FETCH_MODE_MOVE
        call = self._dispatch(
            CT.CALL_TYPE_FETCH,
            TT.TASK_TYPE_FETCH,
            sector,
            request.sector.proof_type,
            request.assignment,
            request.HasField("assignment"),
            lambda env, ctx: tasks.fetch(env, ctx, sector, types, path_type, move),
        )
        return worker_pb2.FetchResponse(call_id=call)

    # --- synchronous work ----------------------------------------------------------------------

    @_handled
    async def GenerateVanillaProofs(
        self, request: worker_pb2.GenerateVanillaProofsRequest, context: Context
    ) -> AsyncIterator[worker_pb2.GenerateVanillaProofsResponse]:
        try:
            kind, size = post_proof_info(request.proof_type)
        except ValueError as exc:
            raise validation.Invalid(str(exc)) from None
        randomness = validation.bytes32("randomness", request.randomness)
        if not request.sectors:
            raise validation.Invalid("sectors must not be empty")
        if not request.HasField("assignment") or not request.assignment.call_id.id:
            raise validation.Invalid("assignment.call_id is required")
        sectors = []
        miners = set()
        for i, s in enumerate(request.sectors):
            ref = validation.sector_ref(s.sector, s.HasField("sector"))
            if ref.size != size:
                raise validation.Invalid(f"sectors[{i}] has {ref.size}-byte sectors; the proof type is for {size}")
            sectors.append((ref.id, validation.bytes32(f"sectors[{i}].comm_r", s.comm_r)))
            miners.add(ref.id.miner)
        if len(miners) > 1:
            raise validation.Invalid("all sectors must belong to one miner")
        task_type = TT.TASK_TYPE_GENERATE_WINDOW_POST if kind.name == "WINDOW" else TT.TASK_TYPE_GENERATE_WINNING_POST
        self._check_enabled(task_type)
        env = self.p.env()
        owner = f"post:{request.assignment.call_id.id or 'adhoc'}"
        log.info(
            "vanilla proofs",
            extra={"call": request.assignment.call_id.id, "kind": kind.name, "sectors": len(sectors)},
        )
        ctx = tasks.TaskContext(owner=owner, gpu_ordinals=list(request.assignment.gpu_ordinals))
        async for sector, outcome in tasks.vanilla_proofs(env, ctx, kind, size, randomness, sectors):
            reply = worker_pb2.GenerateVanillaProofsResponse(sector=sector.to_proto())
            if isinstance(outcome, tasks.TaskFailure):
                reply.error.CopyFrom(common_pb2.TaskError(code=outcome.code, message=outcome.message))
            else:
                reply.vanilla_proof = outcome
            yield reply

    @_handled
    async def Remove(
        self, request: worker_pb2.WorkerServiceRemoveRequest, context: Context
    ) -> worker_pb2.WorkerServiceRemoveResponse:
        sector = validation.sector_id(request.sector, request.HasField("sector"))
        types = validation.file_types(list(request.types), default=FileType.UNSEALED | FileType.SEALED | FileType.CACHE)
        removed = await tasks.remove_sector(self.p.env(), sector, types)
        return worker_pb2.WorkerServiceRemoveResponse(
            removed=[
                common_pb2.RemovedSectorFile(storage_id=sid, type=common_pb2.SectorFileType.ValueType(int(t)))
                for sid, t in removed
            ]
        )

    @_handled
    async def AbortCall(self, request: worker_pb2.AbortCallRequest, context: Context) -> worker_pb2.AbortCallResponse:
        if not request.HasField("call_id"):
            raise validation.Invalid("call_id is required")
        return worker_pb2.AbortCallResponse(found=self.p.runner.abort(request.call_id, request.reason))

    # --- call results --------------------------------------------------------------------------

    @_handled
    async def ListCallResults(
        self, request: worker_pb2.ListCallResultsRequest, context: Context
    ) -> AsyncIterator[worker_pb2.ListCallResultsResponse]:
        for result in await asyncio.to_thread(self.p.calls.pending):
            yield worker_pb2.ListCallResultsResponse(result=result)

    @_handled
    async def AckCallResult(
        self, request: worker_pb2.AckCallResultRequest, context: Context
    ) -> worker_pb2.AckCallResultResponse:
        if not request.call_ids:
            raise validation.Invalid("call_ids must not be empty")
        deleted = 0
        for call in request.call_ids:
            deleted += await asyncio.to_thread(self.p.calls.ack, call_key(call))
        return worker_pb2.AckCallResultResponse(deleted=deleted)

    # --- information and control --------------------------------------------------------------

    @_handled
    async def Info(self, request: worker_pb2.InfoRequest, context: Context) -> worker_pb2.InfoResponse:
        return worker_pb2.InfoResponse(info=await self.p.info())

    async def Session(self, request: worker_pb2.SessionRequest, context: Context) -> worker_pb2.SessionResponse:
        started = Timestamp()
        started.FromNanoseconds(int(self.p.identity.started_at * 1e9))
        return worker_pb2.SessionResponse(
            session_id=self.p.identity.session_id, started_at=started, worker_id=self.p.identity.worker_id
        )

    @_handled
    async def Paths(self, request: worker_pb2.PathsRequest, context: Context) -> worker_pb2.PathsResponse:
        info = await self.p.info()
        return worker_pb2.PathsResponse(paths=info.paths)

    async def TaskTypes(self, request: worker_pb2.TaskTypesRequest, context: Context) -> worker_pb2.TaskTypesResponse:
        return worker_pb2.TaskTypesResponse(task_types=[TT.ValueType(t) for t in self.p.task_types.sorted()])

    def _task_type_list(self, values: Sequence[int]) -> list[int]:
        if not values:
            raise validation.Invalid("task_types must not be empty")
        for v in values:
            if v not in ALL_TASK_TYPES:
                raise validation.Invalid(f"unknown task type {v}")
        return list(values)

    @_handled
    async def EnableTaskType(
        self, request: worker_pb2.EnableTaskTypeRequest, context: Context
    ) -> worker_pb2.EnableTaskTypeResponse:
        self.p.task_types.enable(self._task_type_list(request.task_types))
        return worker_pb2.EnableTaskTypeResponse(task_types=[TT.ValueType(t) for t in self.p.task_types.sorted()])

    @_handled
    async def DisableTaskType(
        self, request: worker_pb2.DisableTaskTypeRequest, context: Context
    ) -> worker_pb2.DisableTaskTypeResponse:
        self.p.task_types.disable(self._task_type_list(request.task_types))
        return worker_pb2.DisableTaskTypeResponse(task_types=[TT.ValueType(t) for t in self.p.task_types.sorted()])

    @_handled
    async def StorageAttachLocal(
        self, request: worker_pb2.StorageAttachLocalRequest, context: Context
    ) -> worker_pb2.StorageAttachLocalResponse:
        root = validation.storage_root(request.path)
        init = None
        if request.HasField("init"):
            c = request.init
            if not c.can_seal and not c.can_store:
                raise validation.Invalid("init needs can_seal or can_store (or both)")
            try:
                init = PathMeta(
                    id="00000000-0000-0000-0000-000000000000",
                    weight=c.weight if c.HasField("weight") else 10,
                    can_seal=c.can_seal,
                    can_store=c.can_store,
                    max_storage=c.max_storage,
                    groups=tuple(c.groups),
                    allow_to=tuple(c.allow_to),
                    allow_types=validation.file_types(list(c.allow_types), default=FileType(0)),
                    deny_types=validation.file_types(list(c.deny_types), default=FileType(0)),
                    allow_miners=tuple(c.allow_miners),
                    deny_miners=tuple(c.deny_miners),
                )
            except MetaError as exc:
                raise validation.Invalid(str(exc)) from None
        path, declared = await self.p.storage_control().attach(root, init)
        return worker_pb2.StorageAttachLocalResponse(
            path=await self.p.storage_control().path_message(path), declared=declared
        )

    @_handled
    async def StorageDetachLocal(
        self, request: worker_pb2.StorageDetachLocalRequest, context: Context
    ) -> worker_pb2.StorageDetachLocalResponse:
        target = request.WhichOneof("target")
        if target is None:
            raise validation.Invalid("give storage_id or local_path")
        storage_id = request.storage_id if target == "storage_id" else self.p.local.by_root(request.local_path).id
        detached = await self.p.storage_control().detach(storage_id, request.force)
        return worker_pb2.StorageDetachLocalResponse(storage_id=detached)

    @_handled
    async def StorageCleanup(
        self, request: worker_pb2.StorageCleanupRequest, context: Context
    ) -> worker_pb2.StorageCleanupResponse:
        control = self.p.storage_control()
        found = await cleanup.cleanup(self.p.local, control.require_index(), request.storage_id, request.apply)
        reply = worker_pb2.StorageCleanupResponse()
        for o in found:
            entry = reply.entries.add(
                storage_id=o.storage_id,
                path=str(o.path),
                type=types_to_proto(o.file_type)[0],
                size=o.size,
                removed=o.removed,
                skipped=o.skipped,
            )
            if o.sector is not None:
                entry.sector.CopyFrom(o.sector.to_proto())
            if o.removed or (not request.apply and not o.skipped):
                reply.reclaimable_bytes += o.size
        return reply

    @_handled
    async def StorageRedeclareLocal(
        self, request: worker_pb2.StorageRedeclareLocalRequest, context: Context
    ) -> worker_pb2.StorageRedeclareLocalResponse:
        results = await self.p.storage_control().redeclare(request.storage_id, request.drop_missing)
        return worker_pb2.StorageRedeclareLocalResponse(
            paths=[
                worker_pb2.RedeclaredPath(
                    storage_id=r.storage_id, declared=r.declared, unchanged=r.unchanged, dropped=r.dropped
                )
                for r in results
            ]
        )

    # --- serving files -------------------------------------------------------------------------

    @_handled
    async def read_sector_file_wire(
        self, request: worker_pb2.ReadSectorFileRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """ReadSectorFile, yielding serialised ReadSectorFileResponse messages (see wire.py)."""
        sector = validation.sector_id(request.sector, request.HasField("sector"))
        file_type = validation.one_file_type(request.type)
        if file_type == FileType.CACHE:
            raise errors.FailedPrecondition("the cache is a directory: use ReadSectorDir")
        copy = await asyncio.to_thread(serving.locate, self.p.local, sector, file_type, request.storage_id)
        fd, size, length = await asyncio.to_thread(serving.open_range, copy, request.offset, request.length)
        pending: asyncio.Future[list[bytes]] | None = None
        try:
            chunk = self.p.config.worker.fetch_chunk_bytes
            if length == 0:
                yield encode_chunk_response(0, b"", size)
            batch = chunk * 8

            def read(start: int) -> asyncio.Future[list[bytes]]:
                want = min(length - start, batch)
                return asyncio.ensure_future(
                    asyncio.to_thread(serving.read_all_chunks, fd, request.offset + start, want, chunk)
                )

            # The next batch is read while this one is sent.
            pending = read(0) if length else None
            sent = 0
            while pending is not None:
                datas = await pending
                queued = sent + sum(len(d) for d in datas)
                pending = read(queued) if queued < length else None
                for data in datas:
                    yield encode_chunk_response(sent, data, size if sent == 0 else None)
                    sent += len(data)
                    self.p.fault.count(len(data))
        finally:
            # A read may still be running in its thread: it must not see the fd closed.
            if pending is not None:
                with contextlib.suppress(BaseException):
                    await pending
            os.close(fd)

    @_handled
    async def OpenTransfer(
        self, request: worker_pb2.OpenTransferRequest, context: Context
    ) -> worker_pb2.OpenTransferResponse:
        sector = validation.sector_id(request.sector, request.HasField("sector"))
        file_type = validation.one_file_type(request.type)
        if file_type == FileType.CACHE:
            raise errors.FailedPrecondition("the cache is a directory: use ReadSectorDir")
        server = self.p.bulk_server
        if server is None:
            raise bulk.ChannelOff(
                "this worker runs no bulk side channel (worker.bulk_transfer = false): use ReadSectorFile"
            )
        copy = await asyncio.to_thread(serving.locate, self.p.local, sector, file_type, request.storage_id)
        fd, size, length = await asyncio.to_thread(serving.open_range, copy, request.offset, request.length)
        ticket, expires = server.book.issue(fd, request.offset, length)
        expires_at = Timestamp()
        expires_at.FromNanoseconds(int(expires * 1e9))
        return worker_pb2.OpenTransferResponse(
            ticket=ticket,
            address=self.p.bulk_address,
            offset=request.offset,
            length=length,
            file_size=size,
            expires_at=expires_at,
        )

    @_handled
    async def StatSectorFile(
        self, request: worker_pb2.StatSectorFileRequest, context: Context
    ) -> worker_pb2.StatSectorFileResponse:
        sector = validation.sector_id(request.sector, request.HasField("sector"))
        file_type = validation.one_file_type(request.type)
        copy = await asyncio.to_thread(serving.locate, self.p.local, sector, file_type, request.storage_id)
        st = await asyncio.to_thread(serving.stat_file, copy)
        modified = Timestamp()
        modified.FromNanoseconds(int(st.mtime * 1e9))
        return worker_pb2.StatSectorFileResponse(
            storage_id=st.storage_id,
            is_dir=st.is_dir,
            size=st.size,
            allocated=st.allocated,
            modified_at=modified,
            entries=[worker_pb2.DirEntry(name=e.name, size=e.size) for e in st.entries],
        )

    @_handled
    async def read_sector_dir_wire(
        self, request: worker_pb2.ReadSectorDirRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """ReadSectorDir, yielding serialised ReadSectorDirResponse messages (see wire.py)."""
        sector = validation.sector_id(request.sector, request.HasField("sector"))
        validation.one_file_type(request.type, allowed=FileType.CACHE)
        copy = await asyncio.to_thread(serving.locate, self.p.local, sector, FileType.CACHE, request.storage_id)
        try:
            entries, total = await asyncio.to_thread(serving.plan_dir, copy, list(request.names))
        except (FileNotFoundError, TarError) as exc:
            raise serving.NotServed(str(exc)) from None
        chunks = stream_tar(entries, self.p.config.worker.fetch_chunk_bytes)
        sent = 0
        while True:
            data = await asyncio.to_thread(next, chunks, None)
            if data is None:
                break
            yield encode_chunk_response(sent, data, total if sent == 0 else None)
            sent += len(data)
            self.p.fault.count(len(data))

    @_handled
    async def StatPath(self, request: worker_pb2.StatPathRequest, context: Context) -> worker_pb2.StatPathResponse:
        stat = await asyncio.to_thread(self.p.local.stat, request.storage_id)
        return worker_pb2.StatPathResponse(stat=fs_stat_message(stat))

    @_handled
    async def IsAllocated(
        self, request: worker_pb2.IsAllocatedRequest, context: Context
    ) -> worker_pb2.IsAllocatedResponse:
        sector = validation.sector_ref(request.sector, request.HasField("sector"))
        offset, size = validation.unpadded_range(request.range, sector.size, piece_sized=False)
        try:
            path = await asyncio.to_thread(
                serving.unsealed_with_range, self.p.local, sector.id, sector.size, offset, size, request.storage_id
            )
        except serving.NotServed:
            return worker_pb2.IsAllocatedResponse(allocated=False, file_present=False)
        except serving.WrongKind:
            return worker_pb2.IsAllocatedResponse(allocated=False, file_present=True)
        return worker_pb2.IsAllocatedResponse(allocated=bool(path), file_present=True)

    @_handled
    async def RemoveSectorFile(
        self, request: worker_pb2.RemoveSectorFileRequest, context: Context
    ) -> worker_pb2.RemoveSectorFileResponse:
        sector = validation.sector_id(request.sector, request.HasField("sector"))
        file_type = validation.one_file_type(request.type)
        removed = await tasks.remove_local(self.p.env(), sector, file_type, request.storage_id)
        if not removed:
            raise serving.NotServed(f"no local {file_type.dirname} file of sector {sector}")
        return worker_pb2.RemoveSectorFileResponse(
            removed=[
                common_pb2.RemovedSectorFile(storage_id=p.id, type=common_pb2.SectorFileType.ValueType(int(file_type)))
                for p in removed
            ]
        )

    @_handled
    async def ReadPiece(
        self, request: worker_pb2.WorkerServiceReadPieceRequest, context: Context
    ) -> AsyncIterator[worker_pb2.WorkerServiceReadPieceResponse]:
        sector = validation.sector_ref(request.sector, request.HasField("sector"))
        if not request.HasField("range"):
            raise validation.Invalid("range is required")
        offset, size = validation.unpadded_range(request.range, sector.size)
        env = self.p.env()
        async with env.index.lock(sector.id, FileType.UNSEALED, FileType(0), "read-piece", env.lock_ttl_s):
            try:
                path = await asyncio.to_thread(
                    serving.unsealed_with_range,
                    self.p.local,
                    sector.id,
                    sector.size,
                    offset,
                    size,
                    request.storage_id,
                )
            except serving.WrongKind as exc:
                raise errors.FailedPrecondition(str(exc)) from None
            sent = 0
            while sent < size:
                n = min(PAD_BLOCK, size - sent)
                data = await asyncio.to_thread(rust_core.fr32_unpad_range, path, offset + sent, n)
                yield worker_pb2.WorkerServiceReadPieceResponse(chunk=common_pb2.Chunk(offset=sent, data=data))
                sent += n


SERVICE_NAME = "sectorstorage.v1.WorkerService"


class _CaptureHandlers:
    """Stands in for a server to collect the generated method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self.handlers = dict(handlers)


def add_worker_service(servicer: Any, server: grpc.aio.Server) -> None:
    """The generated handlers, except that the two file streams send pre-serialised messages
    (wire.py) instead of message objects: same bytes on the wire, fewer copies."""
    capture = _CaptureHandlers()
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(servicer, capture)  # type: ignore[arg-type]
    handlers = capture.handlers
    handlers["ReadSectorFile"] = grpc.unary_stream_rpc_method_handler(
        servicer.read_sector_file_wire, request_deserializer=worker_pb2.ReadSectorFileRequest.FromString
    )
    handlers["ReadSectorDir"] = grpc.unary_stream_rpc_method_handler(
        servicer.read_sector_dir_wire, request_deserializer=worker_pb2.ReadSectorDirRequest.FromString
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
