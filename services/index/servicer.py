"""IndexService over gRPC: a thin adapter from messages to the store and lock manager, and from
their errors to status codes (InvalidArgument -> INVALID_ARGUMENT, NotFound -> NOT_FOUND, ...;
a database that cannot be reached -> UNAVAILABLE; anything else -> INTERNAL, logged)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from services.common.errors import status_errors
from services.common.proto.sectorstorage.v1 import index_pb2, index_pb2_grpc
from services.index import convert
from services.index.domain import (
    InvalidArgument,
    Lease,
    check_uuid,
)
from services.index.locks import LockManager, Waiting
from services.index.policy import check_sector_size
from services.index.store import IndexStore

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]

# Domain errors (services/common/errors.py) become statuses; a database outage is UNAVAILABLE.
_handled = status_errors(database="index")


class IndexServicer(index_pb2_grpc.IndexServiceServicer):
    def __init__(self, store: IndexStore, locks: LockManager) -> None:
        self.store = store
        self.locks = locks

    # -- paths ----------------------------------------------------------------------------------

    @_handled
    async def StorageAttach(
        self, request: index_pb2.StorageAttachRequest, context: Context
    ) -> index_pb2.StorageAttachResponse:
        if not request.HasField("info"):
            raise InvalidArgument("info is required (the path's id, urls, weight, ...)")
        created, info = await self.store.attach(convert.path_info(request.info), convert.fs_stat(request.stat))
        return index_pb2.StorageAttachResponse(created=created, info=convert.info_msg(info))

    @_handled
    async def StorageDetach(
        self, request: index_pb2.StorageDetachRequest, context: Context
    ) -> index_pb2.StorageDetachResponse:
        removed, dropped = await self.store.detach(request.storage_id, request.url)
        return index_pb2.StorageDetachResponse(path_removed=removed, dropped_declarations=dropped)

    @_handled
    async def StorageGetInfo(
        self, request: index_pb2.StorageGetInfoRequest, context: Context
    ) -> index_pb2.StorageGetInfoResponse:
        state = await self.store.get_info(request.storage_id)
        return index_pb2.StorageGetInfoResponse(
            info=convert.info_msg(state.info),
            stat=convert.stat_msg(state.stat),
            health=convert.health_msg(state.health),
        )

    @_handled
    async def StorageList(
        self, request: index_pb2.StorageListRequest, context: Context
    ) -> index_pb2.StorageListResponse:
        return index_pb2.StorageListResponse(paths=[convert.list_entry(s) for s in await self.store.list_paths()])

    @_handled
    async def StorageListSectors(
        self, request: index_pb2.StorageListSectorsRequest, context: Context
    ) -> index_pb2.StorageListSectorsResponse:
        sector = convert.sector(request.sector, True) if request.HasField("sector") else None
        decls, token = await self.store.list_sectors(request.storage_id, sector, request.page_size, request.page_token)
        return index_pb2.StorageListSectorsResponse(
            declarations=[convert.declaration_msg(d) for d in decls], next_page_token=token
        )

    @_handled
    async def StorageReserve(
        self, request: index_pb2.StorageReserveRequest, context: Context
    ) -> index_pb2.StorageReserveResponse:
        ttl = convert.duration_seconds(request.ttl) if request.HasField("ttl") else 0.0
        reservation_id, left = await self.store.reserve(request.storage_id, request.bytes, request.owner, ttl)
        return index_pb2.StorageReserveResponse(reservation_id=reservation_id, available_after=left)

    @_handled
    async def StorageReleaseReservation(
        self, request: index_pb2.StorageReleaseReservationRequest, context: Context
    ) -> index_pb2.StorageReleaseReservationResponse:
        stat = convert.fs_stat(request.stat) if request.HasField("stat") else None
        released = await self.store.release_reservation(request.reservation_id, stat)
        return index_pb2.StorageReleaseReservationResponse(released=released)

    @_handled
    async def StorageReportHealth(
        self, request: index_pb2.StorageReportHealthRequest, context: Context
    ) -> index_pb2.StorageReportHealthResponse:
        if not request.HasField("report"):
            raise InvalidArgument("report is required (the path's stat and error, empty when healthy)")
        health = await self.store.report_health(
            request.storage_id, convert.fs_stat(request.report.stat), request.report.error
        )
        return index_pb2.StorageReportHealthResponse(health=convert.health_msg(health))

    # -- sector files ---------------------------------------------------------------------------

    @_handled
    async def StorageDeclareSector(
        self, request: index_pb2.StorageDeclareSectorRequest, context: Context
    ) -> index_pb2.StorageDeclareSectorResponse:
        sector = convert.sector(request.sector, request.HasField("sector"))
        await self.store.declare(request.storage_id, sector, convert.types(request.types), request.primary)
        return index_pb2.StorageDeclareSectorResponse()

    @_handled
    async def StorageDropSector(
        self, request: index_pb2.StorageDropSectorRequest, context: Context
    ) -> index_pb2.StorageDropSectorResponse:
        sector = convert.sector(request.sector, request.HasField("sector"))
        await self.store.drop(request.storage_id, sector, convert.types(request.types))
        return index_pb2.StorageDropSectorResponse()

    @_handled
    async def StorageRedeclare(
        self, request_iterator: AsyncIterator[index_pb2.StorageRedeclareRequest], context: Context
    ) -> index_pb2.StorageRedeclareResponse:
        storage_id = ""
        drop_missing = False
        listed: dict[tuple[int, int, int], bool] = {}
        seen_header = complete = False
        async for message in request_iterator:
            kind = message.WhichOneof("payload")
            if not seen_header:
                if kind != "header":
                    raise InvalidArgument(
                        "the first StorageRedeclare message must be a header (storage_id, drop_missing)"
                    )
                storage_id = await self.store.require_path(message.header.storage_id)
                drop_missing = message.header.drop_missing
                seen_header = True
                continue
            if kind != "batch":
                raise InvalidArgument("only the first StorageRedeclare message may be a header; send batches after it")
            if complete:
                raise InvalidArgument(
                    "a StorageRedeclare message came after the batch with last = true; nothing was changed"
                )
            complete = message.batch.last
            for i, decl in enumerate(message.batch.declarations):
                what = f"declarations[{i}]"
                if decl.storage_id and check_uuid(decl.storage_id, f"{what}.storage_id") != storage_id:
                    raise InvalidArgument(
                        f"{what}.storage_id {decl.storage_id} differs from the header's {storage_id}; leave it empty"
                    )
                sector = convert.sector(decl.sector, decl.HasField("sector"), f"{what}.sector")
                file_type = convert.single_type(decl.type, f"{what}.type")
                key = (sector.miner, sector.number, int(file_type))
                listed[key] = listed.get(key, False) or decl.primary
        if not seen_header:
            raise InvalidArgument("empty StorageRedeclare stream: send a header first")
        if not complete:
            # Also what a cancelled stream can look like here: never apply a partial listing.
            raise InvalidArgument(
                "the StorageRedeclare stream ended without a batch with last = true; nothing was changed"
            )
        result = await self.store.redeclare(storage_id, listed, drop_missing)
        return index_pb2.StorageRedeclareResponse(
            declared=result.declared, unchanged=result.unchanged, dropped=result.dropped
        )

    @_handled
    async def StorageFindSector(
        self, request: index_pb2.StorageFindSectorRequest, context: Context
    ) -> index_pb2.StorageFindSectorResponse:
        sector = convert.sector(request.sector, request.HasField("sector"))
        types = convert.types(request.types)
        size = check_sector_size(request.sector_size) if request.allow_fetch else request.sector_size
        locations = await self.store.find(sector, types, size, request.allow_fetch)
        return index_pb2.StorageFindSectorResponse(locations=[convert.location_msg(loc) for loc in locations])

    @_handled
    async def StorageBestAlloc(
        self, request: index_pb2.StorageBestAllocRequest, context: Context
    ) -> index_pb2.StorageBestAllocResponse:
        types = convert.types(request.types)
        size = check_sector_size(request.sector_size)
        path_type = convert.path_type(request.path_type)
        miner = convert.miner(request.miner) if request.HasField("miner") else None
        result = await self.store.best_alloc(
            types, size, path_type, miner, list(request.storage_ids), request.include_rejected
        )
        return index_pb2.StorageBestAllocResponse(
            paths=[convert.info_msg(p) for p in result.paths],
            rejected=[index_pb2.RejectedPath(storage_id=r.storage_id, reason=r.reason) for r in result.rejected],
        )

    # -- locks ----------------------------------------------------------------------------------

    @_handled
    async def StorageGetLocks(
        self, request: index_pb2.StorageGetLocksRequest, context: Context
    ) -> index_pb2.StorageGetLocksResponse:
        sector = convert.sector(request.sector, True) if request.HasField("sector") else None
        return index_pb2.StorageGetLocksResponse(
            locks=[convert.lease_msg(lease) for lease in await self.locks.list_locks(sector)]
        )

    @_handled
    async def StorageLock(
        self, request: index_pb2.StorageLockRequest, context: Context
    ) -> AsyncIterator[index_pb2.StorageLockResponse]:
        lock_request = convert.lock_request(request)
        remaining = context.time_remaining()
        # End a little before the client's own deadline so that it gets our message (which
        # names the holders) rather than a bare "Deadline Exceeded".
        deadline = (
            None if remaining is None else asyncio.get_running_loop().time() + remaining - min(0.05, remaining / 10)
        )
        events = self.locks.acquire(lock_request, deadline)
        try:
            async for event in events:
                if isinstance(event, Waiting):
                    yield index_pb2.StorageLockResponse(
                        waiting=index_pb2.LockWaiting(blocking=[convert.lease_msg(b) for b in event.blocking])
                    )
                    continue
                lease: Lease = event
                try:
                    yield index_pb2.StorageLockResponse(acquired=convert.lock_lease_msg(lease))
                except BaseException:
                    # The client went away before the grant reached it: nobody will unlock it.
                    self.locks.release_later(lease.lease_id)
                    raise
                return
        finally:
            await events.aclose()

    @_handled
    async def StorageTryLock(
        self, request: index_pb2.StorageTryLockRequest, context: Context
    ) -> index_pb2.StorageTryLockResponse:
        attempt = await self.locks.try_lock(convert.lock_request(request))
        if attempt.lease is not None:
            return index_pb2.StorageTryLockResponse(acquired=True, lease=convert.lock_lease_msg(attempt.lease))
        return index_pb2.StorageTryLockResponse(
            acquired=False, blocking=[convert.lease_msg(b) for b in attempt.blocking]
        )

    @_handled
    async def StorageRenewLock(
        self, request: index_pb2.StorageRenewLockRequest, context: Context
    ) -> index_pb2.StorageRenewLockResponse:
        ttl = convert.duration_seconds(request.ttl) if request.HasField("ttl") else None
        lease = await self.locks.renew(request.lease_id, ttl)
        return index_pb2.StorageRenewLockResponse(lease=convert.lock_lease_msg(lease))

    @_handled
    async def StorageUnlock(
        self, request: index_pb2.StorageUnlockRequest, context: Context
    ) -> index_pb2.StorageUnlockResponse:
        return index_pb2.StorageUnlockResponse(released=await self.locks.unlock(request.lease_id))
