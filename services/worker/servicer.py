"""WorkerService over grpc.aio, in the index's shape: each handler decodes its request
(convert.py), calls the domain (dispatch.py starts task calls; reads.py streams files; the
stores, call store and storage control answer the rest) and encodes the reply. Errors are the
domain's own (services/common/errors.py kinds), mapped to statuses by one decorator."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from services.common import errors
from services.common.errors import status_errors
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from services.worker import bulk, cleanup, convert, reads, serving, tasks, validation
from services.worker.callstore import call_key
from services.worker.dispatch import Dispatcher
from services.worker.messages import call_id_msg, call_id_of, stored_result_msg
from services.worker.parts import Parts
from services.worker.sectors import FileType
from services.worker.wire import encode_chunk_response

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
F = TypeVar("F", bound=Callable[..., Any])


# Every handler's errors become statuses (services/common/errors.py): the worker's domain errors
# subclass the common kinds, so it needs no table of its own. A failed call to the index or a peer
# arrives as failures.CallFailed (their clients translate it): UNAVAILABLE, "a dependency failed".
_handled = status_errors()


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.dispatch = Dispatcher(parts)

    async def info(self) -> common_pb2.WorkerInfo:
        """The WorkerInfo of Info, and of the manager link's registrations and heartbeats."""
        return convert.worker_info(self.parts, await self.parts.path_stats())

    # --- tasks: decode, start (dispatch.py), answer with the call id ---------------------------

    @_handled
    async def AddPiece(
        self, request_iterator: AsyncIterator[worker_pb2.WorkerServiceAddPieceRequest], context: Context
    ) -> worker_pb2.WorkerServiceAddPieceResponse:
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            raise validation.Invalid("empty stream: the first message must be the header") from None
        call = await self.dispatch.add_piece(convert.add_piece(first), convert.piece_bytes(request_iterator))
        return worker_pb2.WorkerServiceAddPieceResponse(call_id=call_id_msg(call))

    @_handled
    async def SealPreCommit1(
        self, request: worker_pb2.WorkerServiceSealPreCommit1Request, context: Context
    ) -> worker_pb2.WorkerServiceSealPreCommit1Response:
        return worker_pb2.WorkerServiceSealPreCommit1Response(
            call_id=call_id_msg(self.dispatch.start(convert.pre_commit1(request)))
        )

    @_handled
    async def SealPreCommit2(
        self, request: worker_pb2.WorkerServiceSealPreCommit2Request, context: Context
    ) -> worker_pb2.WorkerServiceSealPreCommit2Response:
        return worker_pb2.WorkerServiceSealPreCommit2Response(
            call_id=call_id_msg(self.dispatch.start(convert.pre_commit2(request)))
        )

    @_handled
    async def SealCommit1(
        self, request: worker_pb2.WorkerServiceSealCommit1Request, context: Context
    ) -> worker_pb2.WorkerServiceSealCommit1Response:
        return worker_pb2.WorkerServiceSealCommit1Response(
            call_id=call_id_msg(self.dispatch.start(convert.commit1(request)))
        )

    @_handled
    async def SealCommit2(
        self, request: worker_pb2.WorkerServiceSealCommit2Request, context: Context
    ) -> worker_pb2.WorkerServiceSealCommit2Response:
        return worker_pb2.WorkerServiceSealCommit2Response(
            call_id=call_id_msg(self.dispatch.start(convert.commit2(request)))
        )

    @_handled
    async def FinalizeSector(
        self, request: worker_pb2.WorkerServiceFinalizeSectorRequest, context: Context
    ) -> worker_pb2.WorkerServiceFinalizeSectorResponse:
        return worker_pb2.WorkerServiceFinalizeSectorResponse(
            call_id=call_id_msg(self.dispatch.start(convert.finalize(request)))
        )

    @_handled
    async def ReleaseUnsealed(
        self, request: worker_pb2.WorkerServiceReleaseUnsealedRequest, context: Context
    ) -> worker_pb2.WorkerServiceReleaseUnsealedResponse:
        call = self.dispatch.start(convert.release_unsealed(request))
        return worker_pb2.WorkerServiceReleaseUnsealedResponse(call_id=call_id_msg(call))

    @_handled
    async def MoveStorage(
        self, request: worker_pb2.MoveStorageRequest, context: Context
    ) -> worker_pb2.MoveStorageResponse:
        return worker_pb2.MoveStorageResponse(call_id=call_id_msg(self.dispatch.start(convert.move_storage(request))))

    @_handled
    async def UnsealPiece(
        self, request: worker_pb2.WorkerServiceUnsealPieceRequest, context: Context
    ) -> worker_pb2.WorkerServiceUnsealPieceResponse:
        return worker_pb2.WorkerServiceUnsealPieceResponse(
            call_id=call_id_msg(self.dispatch.start(convert.unseal_piece(request)))
        )

    @_handled
    async def Fetch(self, request: worker_pb2.FetchRequest, context: Context) -> worker_pb2.FetchResponse:
        return worker_pb2.FetchResponse(call_id=call_id_msg(self.dispatch.start(convert.fetch(request))))

    # --- synchronous work ----------------------------------------------------------------------

    @_handled
    async def GenerateVanillaProofs(
        self, request: worker_pb2.GenerateVanillaProofsRequest, context: Context
    ) -> AsyncIterator[worker_pb2.GenerateVanillaProofsResponse]:
        proofs = self.dispatch.vanilla_proofs(convert.vanilla_proofs(request))
        async with contextlib.aclosing(proofs):
            async for sector, outcome in proofs:
                yield convert.vanilla_reply(sector, outcome)

    @_handled
    async def Remove(
        self, request: worker_pb2.WorkerServiceRemoveRequest, context: Context
    ) -> worker_pb2.WorkerServiceRemoveResponse:
        sector = convert.sector_id(request.sector, request.HasField("sector"))
        types = convert.file_types(request.types, default=FileType.UNSEALED | FileType.SEALED | FileType.CACHE)
        removed = await tasks.remove_sector(self.parts.env(), sector, types)
        return worker_pb2.WorkerServiceRemoveResponse(removed=convert.removed_files(removed))

    @_handled
    async def AbortCall(self, request: worker_pb2.AbortCallRequest, context: Context) -> worker_pb2.AbortCallResponse:
        if not request.HasField("call_id"):
            raise validation.Invalid("call_id is required")
        return worker_pb2.AbortCallResponse(found=self.parts.runner.abort(call_id_of(request.call_id), request.reason))

    # --- call results --------------------------------------------------------------------------

    @_handled
    async def ListCallResults(
        self, request: worker_pb2.ListCallResultsRequest, context: Context
    ) -> AsyncIterator[worker_pb2.ListCallResultsResponse]:
        for result in await asyncio.to_thread(self.parts.calls.pending):
            yield worker_pb2.ListCallResultsResponse(result=stored_result_msg(result))

    @_handled
    async def AckCallResult(
        self, request: worker_pb2.AckCallResultRequest, context: Context
    ) -> worker_pb2.AckCallResultResponse:
        if not request.call_ids:
            raise validation.Invalid("call_ids must not be empty")
        deleted = 0
        for call in request.call_ids:
            deleted += await asyncio.to_thread(self.parts.calls.ack, call_key(call_id_of(call)))
        return worker_pb2.AckCallResultResponse(deleted=deleted)

    # --- information and control --------------------------------------------------------------

    @_handled
    async def Info(self, request: worker_pb2.InfoRequest, context: Context) -> worker_pb2.InfoResponse:
        return worker_pb2.InfoResponse(info=await self.info())

    @_handled
    async def Session(self, request: worker_pb2.SessionRequest, context: Context) -> worker_pb2.SessionResponse:
        identity = self.parts.identity
        return worker_pb2.SessionResponse(
            session_id=identity.session_id,
            started_at=convert.timestamp(identity.started_at),
            worker_id=identity.worker_id,
        )

    @_handled
    async def Paths(self, request: worker_pb2.PathsRequest, context: Context) -> worker_pb2.PathsResponse:
        paths = await self.parts.path_stats()
        urls = self.parts.storage.urls if self.parts.storage is not None else []
        return worker_pb2.PathsResponse(paths=[convert.storage_path(path, urls, stat) for path, stat in paths])

    @_handled
    async def TaskTypes(self, request: worker_pb2.TaskTypesRequest, context: Context) -> worker_pb2.TaskTypesResponse:
        return worker_pb2.TaskTypesResponse(task_types=convert.task_types(self.parts.task_types.sorted()))

    @_handled
    async def EnableTaskType(
        self, request: worker_pb2.EnableTaskTypeRequest, context: Context
    ) -> worker_pb2.EnableTaskTypeResponse:
        self.parts.task_types.enable(convert.task_type_list(request.task_types))
        return worker_pb2.EnableTaskTypeResponse(task_types=convert.task_types(self.parts.task_types.sorted()))

    @_handled
    async def DisableTaskType(
        self, request: worker_pb2.DisableTaskTypeRequest, context: Context
    ) -> worker_pb2.DisableTaskTypeResponse:
        self.parts.task_types.disable(convert.task_type_list(request.task_types))
        return worker_pb2.DisableTaskTypeResponse(task_types=convert.task_types(self.parts.task_types.sorted()))

    @_handled
    async def StorageAttachLocal(
        self, request: worker_pb2.StorageAttachLocalRequest, context: Context
    ) -> worker_pb2.StorageAttachLocalResponse:
        root = validation.storage_root(request.path)
        init = convert.path_init(request.init) if request.HasField("init") else None
        control = self.parts.storage_control()
        path, declared = await control.attach(root, init)
        return worker_pb2.StorageAttachLocalResponse(
            path=convert.storage_path(path, control.urls, await control.stat(path)), declared=declared
        )

    @_handled
    async def StorageDetachLocal(
        self, request: worker_pb2.StorageDetachLocalRequest, context: Context
    ) -> worker_pb2.StorageDetachLocalResponse:
        target = request.WhichOneof("target")
        if target is None:
            raise validation.Invalid("give storage_id or local_path")
        storage_id = request.storage_id if target == "storage_id" else self.parts.local.by_root(request.local_path).id
        detached = await self.parts.storage_control().detach(storage_id, request.force)
        return worker_pb2.StorageDetachLocalResponse(storage_id=detached)

    @_handled
    async def StorageCleanup(
        self, request: worker_pb2.StorageCleanupRequest, context: Context
    ) -> worker_pb2.StorageCleanupResponse:
        control = self.parts.storage_control()
        found = await cleanup.cleanup(self.parts.local, control.require_index(), request.storage_id, request.apply)
        return convert.cleanup_reply(found, request.apply)

    @_handled
    async def StorageRedeclareLocal(
        self, request: worker_pb2.StorageRedeclareLocalRequest, context: Context
    ) -> worker_pb2.StorageRedeclareLocalResponse:
        results = await self.parts.storage_control().redeclare(request.storage_id, request.drop_missing)
        return worker_pb2.StorageRedeclareLocalResponse(
            paths=[
                worker_pb2.RedeclaredPath(
                    storage_id=r.storage_id, declared=r.declared, unchanged=r.unchanged, dropped=r.dropped
                )
                for r in results
            ]
        )

    # --- serving files (reads.py streams them) -------------------------------------------------

    @_handled
    async def read_sector_file_wire(
        self, request: worker_pb2.ReadSectorFileRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """ReadSectorFile, yielding serialised ReadSectorFileResponse messages (see wire.py)."""
        sector = convert.sector_id(request.sector, request.HasField("sector"))
        file_type = convert.one_file_type(request.type)
        chunks = reads.file_chunks(
            self.parts.local,
            sector,
            file_type,
            request.storage_id,
            request.offset,
            request.length,
            self.parts.config.worker.fetch_chunk_bytes,
            self.parts.fault,
        )
        async with contextlib.aclosing(chunks):
            async for c in chunks:
                yield encode_chunk_response(c.offset, c.data, c.total, c.crc32c)

    @_handled
    async def OpenTransfer(
        self, request: worker_pb2.OpenTransferRequest, context: Context
    ) -> worker_pb2.OpenTransferResponse:
        sector = convert.sector_id(request.sector, request.HasField("sector"))
        file_type = convert.one_file_type(request.type)
        if file_type == FileType.CACHE:
            raise errors.FailedPrecondition("the cache is a directory: use ReadSectorDir")
        server = self.parts.bulk_server
        if server is None:
            raise bulk.ChannelOff(
                "this worker runs no bulk side channel (worker.bulk_transfer = false): use ReadSectorFile"
            )
        fd, size, length = await reads.open_range(
            self.parts.local, sector, file_type, request.storage_id, request.offset, request.length
        )
        ticket, expires = server.book.issue(fd, request.offset, length, checksum=request.checksum)
        return worker_pb2.OpenTransferResponse(
            ticket=ticket,
            address=self.parts.bulk_address,
            offset=request.offset,
            length=length,
            file_size=size,
            expires_at=convert.timestamp(expires),
            checksum=request.checksum,
        )

    @_handled
    async def StatSectorFile(
        self, request: worker_pb2.StatSectorFileRequest, context: Context
    ) -> worker_pb2.StatSectorFileResponse:
        sector = convert.sector_id(request.sector, request.HasField("sector"))
        file_type = convert.one_file_type(request.type)
        copy = await asyncio.to_thread(serving.locate, self.parts.local, sector, file_type, request.storage_id)
        return convert.stat_reply(await asyncio.to_thread(serving.stat_file, copy))

    @_handled
    async def read_sector_dir_wire(
        self, request: worker_pb2.ReadSectorDirRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """ReadSectorDir, yielding serialised ReadSectorDirResponse messages (see wire.py)."""
        sector = convert.sector_id(request.sector, request.HasField("sector"))
        convert.one_file_type(request.type, allowed=FileType.CACHE)
        chunks = reads.dir_chunks(
            self.parts.local,
            sector,
            list(request.names),
            request.storage_id,
            self.parts.config.worker.fetch_chunk_bytes,
            self.parts.fault,
        )
        async with contextlib.aclosing(chunks):
            async for c in chunks:
                yield encode_chunk_response(c.offset, c.data, c.total, c.crc32c)

    @_handled
    async def StatPath(self, request: worker_pb2.StatPathRequest, context: Context) -> worker_pb2.StatPathResponse:
        stat = await asyncio.to_thread(self.parts.local.stat, request.storage_id)
        return worker_pb2.StatPathResponse(stat=convert.fs_stat(stat))

    @_handled
    async def IsAllocated(
        self, request: worker_pb2.IsAllocatedRequest, context: Context
    ) -> worker_pb2.IsAllocatedResponse:
        sector = convert.sector_ref(request.sector, request.HasField("sector"))
        offset, size = convert.unpadded_range(request.range, sector.size, piece_sized=False)
        try:
            path = await asyncio.to_thread(
                serving.unsealed_with_range, self.parts.local, sector.id, sector.size, offset, size, request.storage_id
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
        sector = convert.sector_id(request.sector, request.HasField("sector"))
        file_type = convert.one_file_type(request.type)
        removed = await tasks.remove_local(self.parts.env(), sector, file_type, request.storage_id)
        if not removed:
            raise serving.NotServed(f"no local {file_type.dirname} file of sector {sector}")
        return worker_pb2.RemoveSectorFileResponse(removed=convert.removed_files((p.id, file_type) for p in removed))

    @_handled
    async def ReadPiece(
        self, request: worker_pb2.WorkerServiceReadPieceRequest, context: Context
    ) -> AsyncIterator[worker_pb2.WorkerServiceReadPieceResponse]:
        sector = convert.sector_ref(request.sector, request.HasField("sector"))
        if not request.HasField("range"):
            raise validation.Invalid("range is required")
        offset, size = convert.unpadded_range(request.range, sector.size)
        chunks = reads.piece_chunks(self.parts.env(), sector, offset, size, request.storage_id)
        async with contextlib.aclosing(chunks):
            async for c in chunks:
                yield worker_pb2.WorkerServiceReadPieceResponse(chunk=convert.chunk(c))


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
