"""The worker's one door to the IndexService: every index call the worker makes goes through
this class, so the rest of the worker deals in domain types and the wire stays in one place.

Locks are leases: `lock()` waits for the grant, renews the lease every third of its ttl while
the block runs and releases it on exit (also when the grant raced with a cancellation: the lease
id is chosen here, so it can always be released).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.duration_pb2 import Duration

from services.common import errors
from services.common.dependency import describe_failure
from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, index_pb2_grpc
from services.worker.edge import call_failed, translated
from services.worker.failures import CallFailed
from services.worker.local_store import FsStat, LocalPath
from services.worker.messages import file_types_msg, sector_id_msg, sector_id_of
from services.worker.sectors import FileType, PathType, SectorId

log = logging.getLogger(__name__)
RPC_TIMEOUT_S = 15.0
# Every call's gRPC error becomes CallFailed here, naming the index and its address.
_translated = translated("index", lambda client, *args, **kwargs: client.address)


class IndexUnavailable(errors.Unavailable):
    """UNAVAILABLE: the index could not be reached or answered with an error we cannot act on."""


class LockLost(Exception):
    """A lease expired or was released under us: the files may no longer be ours."""


@dataclass(frozen=True)
class SectorLocation:
    """A path holding (some of) a sector's files, as StorageFindSector reports it."""

    storage_id: str
    urls: tuple[str, ...]
    weight: int
    primary: bool
    types: FileType
    healthy: bool
    can_store: bool


@dataclass(frozen=True)
class Declaration:
    sector: SectorId
    file_type: FileType
    primary: bool


def _types(values: Sequence[int]) -> FileType:
    out = FileType(0)
    for v in values:
        if v in (1, 2, 4):
            out |= FileType(v)
    return out


def fs_stat_msg(stat: FsStat) -> common_pb2.FsStat:
    return common_pb2.FsStat(
        capacity=stat.capacity,
        available=stat.available,
        fs_available=stat.fs_available,
        reserved=stat.reserved,
        max=stat.max,
        used=stat.used,
    )


def storage_info_msg(path: LocalPath, urls: list[str]) -> common_pb2.StorageInfo:
    m = path.meta
    return common_pb2.StorageInfo(
        id=m.id,
        urls=urls,
        weight=m.weight,
        max_storage=m.max_storage,
        can_seal=m.can_seal,
        can_store=m.can_store,
        groups=list(m.groups),
        allow_to=list(m.allow_to),
        allow_types=file_types_msg(m.allow_types),
        deny_types=file_types_msg(m.deny_types),
        allow_miners=list(m.allow_miners),
        deny_miners=list(m.deny_miners),
    )


class IndexClient:
    def __init__(self, channel: grpc.aio.Channel, owner_prefix: str, address: str = "") -> None:
        self.stub = index_pb2_grpc.IndexServiceStub(channel)
        self.owner_prefix = owner_prefix
        # HOST:PORT of the index, for log lines about failed calls.
        self.address = address

    # --- paths -------------------------------------------------------------------------------

    @_translated
    async def reserve(self, storage_id: str, size: int, owner: str, ttl_s: float) -> str:
        """Reserves space on a path against every worker sharing it; raises CallFailed
        (answering errors.ResourceExhausted when it does not fit)."""
        reply = await self.stub.StorageReserve(
            index_pb2.StorageReserveRequest(
                storage_id=storage_id,
                bytes=size,
                owner=owner,
                ttl=Duration(seconds=int(ttl_s), nanos=int((ttl_s % 1) * 1e9)),
            ),
            timeout=RPC_TIMEOUT_S,
        )
        return str(reply.reservation_id)

    @_translated
    async def release_reservation(self, reservation_id: str, stat: FsStat | None = None) -> None:
        request = index_pb2.StorageReleaseReservationRequest(reservation_id=reservation_id)
        if stat is not None:
            request.stat.CopyFrom(fs_stat_msg(stat))
        await self.stub.StorageReleaseReservation(request, timeout=RPC_TIMEOUT_S)

    @_translated
    async def attach(self, path: LocalPath, urls: list[str], stat: FsStat) -> None:
        """Attaches (or refreshes) the path in the index, reachable at `urls`."""
        await self.stub.StorageAttach(
            index_pb2.StorageAttachRequest(info=storage_info_msg(path, urls), stat=fs_stat_msg(stat)),
            timeout=RPC_TIMEOUT_S,
        )

    def unavailable(self, exc: CallFailed, consequence: str) -> Exception:
        """What to raise for a failed call: IndexUnavailable naming the index (the worker's
        caller learns which service to look at), or the error itself when the index answered."""
        if not exc.unreachable:
            return exc
        return IndexUnavailable(
            f"this worker cannot reach the index at {self.address or '(no address)'} ({exc.status}); {consequence}: "
            "is the index running? (worker.index / --index)"
        )

    @_translated
    async def detach(self, storage_id: str, url: str) -> None:
        try:
            await self.stub.StorageDetach(
                index_pb2.StorageDetachRequest(storage_id=storage_id, url=url), timeout=RPC_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise

    @_translated
    async def report_health(self, storage_id: str, stat: FsStat | None, error: str) -> bool:
        """False when the index does not know the path (it must be attached again). `stat` is
        None when the path could not be measured (`error` says why)."""
        try:
            await self.stub.StorageReportHealth(
                index_pb2.StorageReportHealthRequest(
                    storage_id=storage_id,
                    report=common_pb2.HealthReport(
                        stat=fs_stat_msg(stat) if stat is not None else common_pb2.FsStat(), error=error
                    ),
                ),
                timeout=RPC_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    # --- declarations ------------------------------------------------------------------------

    @_translated
    async def declare(self, storage_id: str, sector: SectorId, types: FileType, primary: bool) -> None:
        if not types:
            return
        await self.stub.StorageDeclareSector(
            index_pb2.StorageDeclareSectorRequest(
                storage_id=storage_id, sector=sector_id_msg(sector), types=file_types_msg(types), primary=primary
            ),
            timeout=RPC_TIMEOUT_S,
        )

    @_translated
    async def drop(self, storage_id: str, sector: SectorId, types: FileType) -> None:
        if not types:
            return
        await self.stub.StorageDropSector(
            index_pb2.StorageDropSectorRequest(
                storage_id=storage_id, sector=sector_id_msg(sector), types=file_types_msg(types)
            ),
            timeout=RPC_TIMEOUT_S,
        )

    @_translated
    async def redeclare(
        self, storage_id: str, found: Sequence[Declaration], drop_missing: bool
    ) -> tuple[int, int, int]:
        """Reconciles a path's declarations with `found` in one transaction; returns
        (declared, unchanged, dropped)."""

        async def requests() -> AsyncIterator[index_pb2.StorageRedeclareRequest]:
            yield index_pb2.StorageRedeclareRequest(
                header=index_pb2.StorageRedeclareHeader(storage_id=storage_id, drop_missing=drop_missing)
            )
            # Batches of 10,000; the final one (possibly empty) carries last = true, which is what
            # tells the index the listing is complete.
            starts = list(range(0, len(found), 10_000)) or [0]
            for start in starts:
                batch = [
                    index_pb2.SectorDeclaration(
                        storage_id=storage_id,
                        sector=sector_id_msg(d.sector),
                        type=common_pb2.SectorFileType.ValueType(int(d.file_type)),
                        primary=d.primary,
                    )
                    for d in found[start : start + 10_000]
                ]
                yield index_pb2.StorageRedeclareRequest(
                    batch=index_pb2.StorageRedeclareBatch(declarations=batch, last=start == starts[-1])
                )

        reply = await self.stub.StorageRedeclare(requests(), timeout=RPC_TIMEOUT_S * 4)
        return reply.declared, reply.unchanged, reply.dropped

    @_translated
    async def declared_on(self, storage_id: str, sector: SectorId | None = None) -> set[tuple[SectorId, FileType]]:
        """Every (sector, type) the index declares on one path (all pages), or of one sector."""
        out: set[tuple[SectorId, FileType]] = set()
        token = ""
        while True:
            request = index_pb2.StorageListSectorsRequest(storage_id=storage_id, page_size=10_000, page_token=token)
            if sector is not None:
                request.sector.CopyFrom(sector_id_msg(sector))
            reply = await self.stub.StorageListSectors(request, timeout=RPC_TIMEOUT_S)
            for d in reply.declarations:
                out.add((sector_id_of(d.sector), _types([d.type])))
            token = reply.next_page_token
            if not token:
                return out

    @_translated
    async def locked_sectors(self) -> dict[SectorId, str]:
        """Sectors with a live lease in the index, and who holds one."""
        reply = await self.stub.StorageGetLocks(index_pb2.StorageGetLocksRequest(), timeout=RPC_TIMEOUT_S)
        return {sector_id_of(lease.sector): lease.owner for lease in reply.locks}

    @_translated
    async def find_sector(
        self, sector: SectorId, types: FileType, sector_size: int = 0, allow_fetch: bool = False
    ) -> list[SectorLocation]:
        reply = await self.stub.StorageFindSector(
            index_pb2.StorageFindSectorRequest(
                sector=sector_id_msg(sector),
                types=file_types_msg(types),
                sector_size=sector_size,
                allow_fetch=allow_fetch,
            ),
            timeout=RPC_TIMEOUT_S,
        )
        return [
            SectorLocation(
                storage_id=loc.id,
                urls=tuple(loc.urls),
                weight=loc.weight,
                primary=loc.primary,
                types=_types(loc.types),
                healthy=loc.healthy,
                can_store=loc.can_store,
            )
            for loc in reply.locations
            if not loc.fetch_candidate
        ]

    @_translated
    async def best_alloc(
        self, types: FileType, sector_size: int, path_type: PathType, storage_ids: Sequence[str]
    ) -> list[str]:
        reply = await self.stub.StorageBestAlloc(
            index_pb2.StorageBestAllocRequest(
                types=file_types_msg(types),
                sector_size=sector_size,
                path_type=common_pb2.PathType.ValueType(int(path_type)),
                storage_ids=list(storage_ids),
            ),
            timeout=RPC_TIMEOUT_S,
        )
        return [p.id for p in reply.paths]

    # --- locks -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lock(
        self,
        sector: SectorId,
        read: FileType,
        write: FileType,
        owner: str,
        ttl_s: float = 60.0,
        on_lost: Callable[[str], None] | None = None,
    ) -> AsyncIterator[None]:
        """Holds a lock on some file types of a sector for the block. `on_lost` is called (once)
        if the lease cannot be renewed before it expires."""
        read = read & ~write
        if not read and not write:
            yield
            return
        lease_id = str(uuid.uuid4())
        request = index_pb2.StorageLockRequest(
            sector=sector_id_msg(sector),
            read_types=file_types_msg(read),
            write_types=file_types_msg(write),
            owner=f"{self.owner_prefix}/{owner}",
            ttl=Duration(seconds=int(ttl_s)),
            lease_id=lease_id,
        )
        renewer: asyncio.Task[None] | None = None
        try:
            ttl = ttl_s
            try:
                async for msg in self.stub.StorageLock(request):
                    if msg.HasField("acquired"):
                        ttl = msg.acquired.ttl.ToTimedelta().total_seconds() or ttl_s
                        break
                else:
                    raise IndexUnavailable(f"StorageLock for sector {sector} ended without a grant")
            except grpc.aio.AioRpcError as exc:
                raise call_failed(exc, "index", self.address) from exc
            renewer = asyncio.create_task(self._renew(lease_id, ttl, sector, on_lost), name=f"renew-{lease_id}")
            yield
        finally:
            if renewer is not None:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
            await asyncio.shield(self._unlock(lease_id))

    @_translated
    async def try_lock(
        self, sector: SectorId, read: FileType, write: FileType, owner: str, ttl_s: float = 60.0
    ) -> str | None:
        """A lease id when granted at once, else None (never waits)."""
        reply = await self.stub.StorageTryLock(
            index_pb2.StorageTryLockRequest(
                sector=sector_id_msg(sector),
                read_types=file_types_msg(read & ~write),
                write_types=file_types_msg(write),
                owner=f"{self.owner_prefix}/{owner}",
                ttl=Duration(seconds=int(ttl_s)),
                lease_id=str(uuid.uuid4()),
            ),
            timeout=RPC_TIMEOUT_S,
        )
        return reply.lease.lease_id if reply.acquired else None

    async def unlock(self, lease_id: str) -> None:
        await asyncio.shield(self._unlock(lease_id))

    async def _unlock(self, lease_id: str) -> None:
        for attempt in range(3):
            try:
                await self.stub.StorageUnlock(index_pb2.StorageUnlockRequest(lease_id=lease_id), timeout=RPC_TIMEOUT_S)
                return
            except grpc.aio.AioRpcError as exc:
                message, extra = describe_failure("index", self.address, exc, "unlock failed; retrying")
                log.warning(message, extra={"lease_id": lease_id, "attempt": attempt, **extra})
                await asyncio.sleep(0.5 * (attempt + 1))
        log.error("could not release lock lease; it expires by itself", extra={"lease_id": lease_id})

    async def _renew(self, lease_id: str, ttl: float, sector: SectorId, on_lost: Callable[[str], None] | None) -> None:
        loop = asyncio.get_running_loop()
        expires = loop.time() + ttl
        while True:
            await asyncio.sleep(max(1.0, ttl / 3))
            try:
                reply = await self.stub.StorageRenewLock(
                    index_pb2.StorageRenewLockRequest(lease_id=lease_id), timeout=min(RPC_TIMEOUT_S, ttl / 3)
                )
                expires = loop.time() + (reply.lease.ttl.ToTimedelta().total_seconds() or ttl)
            except grpc.aio.AioRpcError as exc:
                lost = exc.code() == grpc.StatusCode.NOT_FOUND or loop.time() >= expires
                message, extra = describe_failure(
                    "index", self.address, exc, "lock lease lost" if lost else "lock renewal failed; retrying"
                )
                log.warning(message, extra={"lease_id": lease_id, "sector": str(sector), "lost": lost, **extra})
                if lost:
                    if on_lost is not None:
                        on_lost(f"lock lease on sector {sector} lost: {exc.details()}")
                    return
